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
      dnl rados_blocklist_add: Pacific (16) and later (older releases call
      dnl it rados_blacklist_add); rbd_list_children3, rbd_clone3 and the
      dnl rbd_get_parent of linked image specs: Nautilus (14) and later.
      AS_IF([test -z "$vmsnap_rbd_reason"], [
        AC_CHECK_LIB([rados], [rados_blocklist_add], [:], [
          vmsnap_rbd_reason="librados lacks rados_blocklist_add (needs Ceph 16 Pacific or later: install librados-dev)"])
      ])
      AS_IF([test -z "$vmsnap_rbd_reason"], [
        AC_CHECK_LIB([rbd], [rbd_snap_rollback_with_progress], [:], [
          vmsnap_rbd_reason="librbd lacks rbd_snap_rollback_with_progress (install librbd-dev)"], [-lrados])
      ])
      AS_IF([test -z "$vmsnap_rbd_reason"], [
        AC_CHECK_LIB([rbd], [rbd_list_children3], [RBD_LIBS="-lrbd -lrados"], [
          vmsnap_rbd_reason="librbd lacks rbd_list_children3 (needs Ceph 14 Nautilus or later: install librbd-dev)"], [-lrados])
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
