dnl The RBD backend: in-process librbd + librados (Debian: librbd-dev,
dnl librados-dev; Ceph Pacific ships no pkg-config files, so check the
dnl headers and the functions we call).
dnl --with-rbd=yes|no|check (default check).
AC_DEFUN([VMSNAP_BACKEND_RBD], [
  AC_ARG_WITH([rbd],
    [AS_HELP_STRING([--with-rbd@<:@=yes|no|check@:>@],
      [build the Ceph RBD backend (needs librbd, librados) @<:@default=check@:>@])],
    [], [with_rbd=check])
  vmsnap_rbd_reason=
  RBD_LIBS=
  AS_CASE([$with_rbd],
    [no], [vmsnap_rbd_reason="disabled by --without-rbd"],
    [yes|check], [
      AC_CHECK_HEADERS([rados/librados.h rbd/librbd.h], [], [
        vmsnap_rbd_reason="rados/librados.h or rbd/librbd.h not found (install librbd-dev librados-dev)"
      ])
      AS_IF([test -z "$vmsnap_rbd_reason"], [
        AC_CHECK_LIB([rados], [rados_create2], [], [
          vmsnap_rbd_reason="librados lacks rados_create2 (install librados-dev)"])
      ])
      AS_IF([test -z "$vmsnap_rbd_reason"], [
        AC_CHECK_LIB([rbd], [rbd_snap_rollback_with_progress], [RBD_LIBS="-lrbd -lrados"], [
          vmsnap_rbd_reason="librbd lacks rbd_snap_rollback_with_progress (install librbd-dev)"], [-lrados])
      ])
    ],
    [AC_MSG_ERROR([--with-rbd takes yes, no or check, not '$with_rbd'])])
  AS_IF([test -n "$RBD_LIBS"], [with_rbd=yes], [
    AS_IF([test "x$with_rbd" = xyes],
      [AC_MSG_ERROR([--with-rbd=yes but $vmsnap_rbd_reason])])
    with_rbd=no
  ])
  AC_SUBST([RBD_LIBS])
  AM_CONDITIONAL([WITH_RBD], [test "x$with_rbd" = xyes])
])
