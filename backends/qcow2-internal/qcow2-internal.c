/* qcow2-internal: qcow2's own snapshot table.  Offline through qemu-img
 * snapshot, running VMs through libvirt (full-system internal snapshot, the
 * memory state included).
 *
 * This issue delivers probe and capabilities; create/revert/delete arrive
 * with the online issue and fail with "not implemented yet" until then. */
#include <config.h>

#include <string.h>

#include <vmsnap/backend.h>
#include "../pending.h"

#define NAME "qcow2-internal"

static int
qint_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
            vmsnap_probe_result *res, GError **err)
{
  if (d->type != VMSNAP_DISK_TYPE_FILE && d->type != VMSNAP_DISK_TYPE_BLOCK) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "internal snapshots need a local qcow2 image; this is "
                      "a %s disk", d->type_name);
    return 0;
  }
  if (d->format == NULL || strcmp (d->format, "qcow2") != 0) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "internal snapshots need qcow2; %s has no snapshot table",
                      d->format ? d->format : "an undeclared format");
    return 0;
  }
  if (d->n_chain > 0 && d->chain[0]->data_file) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s keeps its data in external data file %s; QEMU "
                      "cannot take internal snapshots of such an image",
                      d->source, d->chain[0]->data_file);
    return 0;
  }
  if (req->memory)
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 80,
                      "qcow2 image: snapshot table entry, memory state kept "
                      "in the image");
  else
    vmsnap_probe_set (res, VMSNAP_FIT_CAN, 40,
                      "qcow2 image: snapshot table entry in the image itself");
  if (d->n_chain > 1)
    vmsnap_probe_add_limit (res, "only the top image %s gets the internal "
                            "snapshot; its %zu backing layer(s) stay as they are",
                            d->source, d->n_chain - 1);
  if (req->online)
    vmsnap_probe_add_limit (res, "QEMU stops the guest's vCPUs while it writes "
                            "the snapshot; revert restarts QEMU");
  if (d->n_chain > 0)
    vmsnap_probe_add_detail (res, "internal_snapshots", "%u",
                             d->chain[0]->n_internal_snapshots);
  return 0;
}

VMSNAP_PENDING_CREATE (qint_create, NAME)
VMSNAP_PENDING_REVERT (qint_revert, NAME)
VMSNAP_PENDING_DELETE (qint_delete, NAME)

/* No merge slot: internal snapshots share clusters by refcount, there is
 * no chain to consolidate. */
static vmsnap_backend qcow2_internal = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "qcow2 internal snapshots (snapshot table), memory state included",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_REVERT_ONLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_MEMORY | VMSNAP_CAP_VM_INTERNAL,
  .probe = qint_probe,
  .create = qint_create,
  .revert = qint_revert,
  .delete = qint_delete,
};

VMSNAP_REGISTER_BACKEND (qcow2_internal)
