/* An out-of-tree backend, built by tests/packaging/deb.sh against the
 * installed libvmsnap-dev only:
 *
 *   cc -shared -fPIC -o DIR/pkgtest.so pkgtest-backend.c \
 *      $(pkg-config --cflags --libs vmsnap-backend)
 *
 * The loader must then report it loaded from VMSNAP_BACKEND_DIR=DIR.  It
 * claims no disk (the probe says so), so it never acts on storage. */
#include <vmsnap/backend.h>

static int
pt_probe (const vmsnap_disk *disk, const vmsnap_probe_request *req,
          vmsnap_probe_result *res, GError **err)
{
  (void) disk;
  (void) req;
  (void) err;
  vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                    "pkgtest: a packaging test module, takes no disk");
  return 0;
}

static int
pt_refuse (const char *slot, unsigned int flags, GError **err)
{
  if (!vmsnap_check_flags ("pkgtest", slot, flags, 0, err))
    return -1;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
               "pkgtest: a packaging test module cannot %s anything", slot);
  return -1;
}

static int
pt_create (vmsnap_op *op, const vmsnap_disk *disk, const char *name,
           unsigned int flags, vmsnap_result *res, GError **err)
{
  (void) op;
  (void) disk;
  (void) name;
  (void) res;
  return pt_refuse ("create", flags, err);
}

static int
pt_revert (vmsnap_op *op, const vmsnap_disk *disk, const char *locator,
           unsigned int flags, vmsnap_result *res, GError **err)
{
  (void) op;
  (void) disk;
  (void) locator;
  (void) res;
  return pt_refuse ("revert", flags, err);
}

static int
pt_delete (vmsnap_op *op, const vmsnap_disk *disk, const char *locator,
           unsigned int flags, vmsnap_result *res, GError **err)
{
  (void) op;
  (void) disk;
  (void) locator;
  (void) res;
  return pt_refuse ("delete", flags, err);
}

static vmsnap_backend pkgtest = {
  .name = "pkgtest",
  .version = "0.0.1-pkgtest",
  .description = "out-of-tree backend built from libvmsnap-dev",
  .caps = VMSNAP_CAP_CREATE_OFFLINE,
  .probe = pt_probe,
  .create = pt_create,
  .revert = pt_revert,
  .delete = pt_delete,
};

VMSNAP_REGISTER_BACKEND (pkgtest)
