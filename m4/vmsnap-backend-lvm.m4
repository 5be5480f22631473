dnl The LVM backend: in-process liblvm2cmd, and libdevmapper for thin-pool
dnl messages (Debian: liblvm2-dev, which brings libdevmapper-dev).
dnl --with-lvm=yes|no|check (default check).  Asked for and missing is a hard
dnl error; the reason is kept for the summary at the end of configure.
AC_DEFUN([VMSNAP_BACKEND_LVM], [
  AC_ARG_WITH([lvm],
    [AS_HELP_STRING([--with-lvm@<:@=yes|no|check@:>@],
      [build the LVM backend (needs liblvm2cmd) @<:@default=check@:>@])],
    [], [with_lvm=check])
  vmsnap_lvm_reason=
  LVM2CMD_LIBS=
  AS_CASE([$with_lvm],
    [no], [vmsnap_lvm_reason="disabled by --without-lvm"],
    [yes|check], [
      AC_CHECK_HEADER([lvm2cmd.h], [
        AC_CHECK_HEADER([libdevmapper.h], [
          AC_CHECK_LIB([devmapper], [dm_task_create], [
            AC_CHECK_LIB([lvm2cmd], [lvm2_run], [LVM2CMD_LIBS="-llvm2cmd -ldevmapper"],
              [vmsnap_lvm_reason="liblvm2cmd lacks lvm2_run (install liblvm2-dev)"])
          ], [vmsnap_lvm_reason="libdevmapper lacks dm_task_create (install libdevmapper-dev)"])
        ], [vmsnap_lvm_reason="libdevmapper.h not found (install libdevmapper-dev)"])
      ], [vmsnap_lvm_reason="lvm2cmd.h not found (install liblvm2-dev)"])
    ],
    [AC_MSG_ERROR([--with-lvm takes yes, no or check, not '$with_lvm'])])
  AS_IF([test -n "$LVM2CMD_LIBS"], [with_lvm=yes], [
    AS_IF([test "x$with_lvm" = xyes],
      [AC_MSG_ERROR([--with-lvm=yes but $vmsnap_lvm_reason])])
    with_lvm=no
  ])
  AC_SUBST([LVM2CMD_LIBS])
  AM_CONDITIONAL([WITH_LVM], [test "x$with_lvm" = xyes])
])
