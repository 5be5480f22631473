/* Slots whose implementation is delivered by a later issue: they reject
 * unknown flags, then fail with VMSNAP_ERR_NOT_IMPLEMENTED and a message
 * naming the backend, the slot and the disk — never a fake success.
 * Internal to the backends, not installed. */
#ifndef VMSNAP_BACKENDS_PENDING_H
#define VMSNAP_BACKENDS_PENDING_H

#include <vmsnap/backend.h>

static inline int
vmsnap_pending_slot (const char *backend, const char *slot,
                     const vmsnap_disk *disk, unsigned int flags, GError **err)
{
  if (!vmsnap_check_flags (backend, slot, flags, 0, err))
    return -1;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_NOT_IMPLEMENTED,
               "backend %s: %s on disk %s is not implemented yet in this "
               "version of vmsnap", backend, slot, disk->target);
  return -1;
}

#define VMSNAP_PENDING_CREATE(fn, backend)                                   \
  static int fn (vmsnap_op *op, const vmsnap_disk *d, const char *name,      \
                 unsigned int flags, vmsnap_result *res, GError **err)       \
  { return vmsnap_pending_slot ((backend), "create", d, flags, err); }

#define VMSNAP_PENDING_REVERT(fn, backend)                                   \
  static int fn (vmsnap_op *op, const vmsnap_disk *d, const char *locator,   \
                 unsigned int flags, vmsnap_result *res, GError **err)       \
  { return vmsnap_pending_slot ((backend), "revert", d, flags, err); }

#define VMSNAP_PENDING_MERGE(fn, backend)                                    \
  static int fn (vmsnap_op *op, const vmsnap_disk *d,                        \
                 const vmsnap_merge_spec *spec, unsigned int flags,          \
                 vmsnap_result *res, GError **err)                           \
  { return vmsnap_pending_slot ((backend), "merge", d, flags, err); }

#define VMSNAP_PENDING_DELETE(fn, backend)                                   \
  static int fn (vmsnap_op *op, const vmsnap_disk *d, const char *locator,   \
                 unsigned int flags, vmsnap_result *res, GError **err)       \
  { return vmsnap_pending_slot ((backend), "delete", d, flags, err); }

#endif
