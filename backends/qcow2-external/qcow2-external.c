/* qcow2-external: the active image is frozen as the snapshot and a new
 * qcow2 overlay (backing format always explicit) goes on top.  Works for any
 * file base (qcow2, raw, vmdk, vdi, vpc, vhdx), for block devices and for
 * network disks QEMU can open as a backing image.
 *
 * This issue delivers probe and capabilities; create/revert/merge/delete
 * arrive with the engine issue and fail with "not implemented yet" until
 * then. */
#include <config.h>

#include <string.h>

#include <vmsnap/backend.h>
#include "../pending.h"

#define NAME "qcow2-external"

static const char *const overlay_bases[] = {
  "qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx", NULL,
};

static int
qext_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
            vmsnap_probe_result *res, GError **err)
{
  const char *fmt = d->format;

  switch (d->type) {
  case VMSNAP_DISK_TYPE_FILE:
  case VMSNAP_DISK_TYPE_BLOCK:
    if (fmt == NULL || !g_strv_contains (overlay_bases, fmt)) {
      vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                        "format '%s' cannot be the backing image of a qcow2 "
                        "overlay (supported: qcow2, raw, vmdk, vdi, vpc, vhdx)",
                        fmt ? fmt : "none");
      return 0;
    }
    if (d->type == VMSNAP_DISK_TYPE_BLOCK) {
      vmsnap_probe_set (res, VMSNAP_FIT_CAN, 20,
                        "%s block device %s becomes the read-only base of a "
                        "qcow2 overlay file", fmt, d->source);
      vmsnap_probe_add_limit (res, "the device itself is not snapshotted; the "
                              "overlay file lives in vmsnap's state directory");
      return 0;
    }
    if (strcmp (fmt, "qcow2") == 0)
      vmsnap_probe_set (res, VMSNAP_FIT_CAN, 60,
                        "qcow2 image: frozen as the snapshot, a new qcow2 "
                        "overlay on top");
    else
      vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 70,
                        "%s image: frozen as the snapshot's read-only base, a "
                        "qcow2 overlay on top (backing format %s, explicit)",
                        fmt, fmt);
    if (d->n_chain > 0 && d->chain[0]->n_internal_snapshots > 0)
      vmsnap_probe_add_limit (res, "%s holds %u internal snapshot(s) made "
                              "outside vmsnap; they stay in the frozen image",
                              d->source, d->chain[0]->n_internal_snapshots);
    if (d->n_chain > 8)
      vmsnap_probe_add_limit (res, "backing chain already %zu layers deep: "
                              "vmsnap merge shortens it", d->n_chain);
    if (req->memory)
      vmsnap_probe_add_limit (res, "memory state goes to an external file "
                              "next to the overlays");
    vmsnap_probe_add_detail (res, "chain_length", "%zu", d->n_chain);
    return 0;
  case VMSNAP_DISK_TYPE_NETWORK:
    if (d->protocol && g_strv_contains ((const char *const[]) {
          "rbd", "nbd", "iscsi", "gluster", "http", "https", "ftp", "ftps",
          "ssh", "nfs", NULL }, d->protocol)) {
      const char *what = d->source ? d->source
                         : d->n_hosts && d->hosts[0]->socket ? d->hosts[0]->socket
                         : d->n_hosts && d->hosts[0]->name ? d->hosts[0]->name : "(no name)";
      vmsnap_probe_set (res, VMSNAP_FIT_CAN, 10,
                        "%s disk %s becomes the read-only base of a local "
                        "qcow2 overlay", d->protocol, what);
      vmsnap_probe_add_limit (res, "the %s storage itself is not snapshotted; "
                              "the overlay is a local file", d->protocol);
      return 0;
    }
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "QEMU cannot use a %s network disk as a backing image",
                      d->protocol ? d->protocol : "protocol-less");
    return 0;
  default:
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "a %s disk cannot be the base of a qcow2 overlay",
                      d->type_name);
    return 0;
  }
}

VMSNAP_PENDING_CREATE (qext_create, NAME)
VMSNAP_PENDING_REVERT (qext_revert, NAME)
VMSNAP_PENDING_MERGE (qext_merge, NAME)
VMSNAP_PENDING_DELETE (qext_delete, NAME)

static vmsnap_backend qcow2_external = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "qcow2 overlay on any image file, block or network disk",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_REVERT_ONLINE
        | VMSNAP_CAP_MERGE_OFFLINE | VMSNAP_CAP_MERGE_ONLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_REVERT_NEEDS_SHUTOFF | VMSNAP_CAP_ONE_TRANSACTION,
  .probe = qext_probe,
  .create = qext_create,
  .revert = qext_revert,
  .merge = qext_merge,
  .delete = qext_delete,
};

VMSNAP_REGISTER_BACKEND (qcow2_external)
