/* vmsnap — the lifecycle plugin contract.
 *
 * A plugin is a libtool module (-module -avoid-version) installed under
 * $(pkglibdir)/plugins, loaded by the same loader as the backends (libltdl;
 * search order: $VMSNAP_PLUGIN_DIR, colon-separated; the build tree for
 * programs run from it; $(pkglibdir)/plugins).  It exports exactly one
 * symbol, vmsnap_plugin_entry, defined by VMSNAP_REGISTER_PLUGIN().
 *
 * The core calls every loaded plugin's hook, in name order, at these
 * points of an operation (create, revert, delete, merge):
 *
 *   BEFORE   before anything is changed.  Returning -1 aborts the
 *            operation: nothing is changed, and the error (which must name
 *            the plugin and what failed) is the operation's.
 *   FREEZE   create only: right before the capture (the pause window or
 *            the libvirt transaction) of a running domain.  -1 aborts the
 *            create: nothing is changed; every plugin whose FREEZE already
 *            succeeded gets THAW.
 *   THAW     create only: right after the capture (the VM resumed), on
 *            every error path after a successful FREEZE, and from
 *            `vmsnap recover` when a process died between the two (the
 *            journal records the freeze).  Errors are reported as
 *            warnings; THAW must be idempotent.
 *   AFTER    after the operation ended, with `succeeded`.  Errors are
 *            warnings: the operation's outcome stands.
 *
 * Compatibility rules are those of backend.h: the structs open with their
 * size, new fields and slots are only appended, a plugin reads a field only
 * if event->struct_size covers it.  A hook must not print, exit, or keep
 * pointers from the event after it returns; it may append lines for the
 * user to event->messages.
 */
#ifndef VMSNAP_PLUGIN_H
#define VMSNAP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include <vmsnap/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMSNAP_PLUGIN_ABI_VERSION 1

typedef enum {
  VMSNAP_HOOK_BEFORE = 1,
  VMSNAP_HOOK_FREEZE,
  VMSNAP_HOOK_THAW,
  VMSNAP_HOOK_AFTER,
} vmsnap_hook_phase;

typedef struct vmsnap_hook_event {
  size_t struct_size;
  vmsnap_hook_phase phase;
  const char *operation;      /* "create", "revert", "delete", "merge" */
  const char *domain;         /* the domain's name */
  const char *uuid;
  const char *snapshot;       /* NULL for merge */
  /* A JSON object describing the operation: operation, domain, uuid,
   * snapshot, phase, state (running/paused/shut off/file), disks
   * [{target, backend}], and for AFTER: succeeded, error. */
  const char *json;
  int succeeded;              /* AFTER and THAW: did the operation succeed */
  /* The libvirt domain (a virDomainPtr) or NULL for a domain XML file. */
  void *libvirt_domain;
  /* The effective configuration: vmsnap_option_get (config, "SECTION.KEY").
   * Core keys used by the shipped plugins: vmsnap.quiesce (off, on,
   * best-effort), vmsnap.quiesce-timeout, vmsnap.hooks-dir,
   * vmsnap.hook-timeout. */
  const vmsnap_config *config;
  /* Lines for the user (warnings, what was done): g_ptr_array_add a
   * g_strdup'ed string; the core prints them (text) or reports them in
   * "plugin_messages" (JSON). */
  GPtrArray *messages;
} vmsnap_hook_event;

typedef struct vmsnap_plugin {
  /* Filled by VMSNAP_REGISTER_PLUGIN; never set by hand. */
  uint32_t abi_version;
  uint32_t struct_size;
  /* Mandatory: short unique name, [a-z0-9-]. */
  const char *name;
  const char *version;
  const char *description;
  /* Mandatory.  0 on success, -1 with *err set. */
  int (*hook) (const vmsnap_hook_event *event, GError **err);
} vmsnap_plugin;

#define VMSNAP_PLUGIN_MIN_SIZE (offsetof (vmsnap_plugin, hook) + sizeof (void *))

#define VMSNAP_REGISTER_PLUGIN(var)                                      \
  VMSNAP_BACKEND_EXPORT const vmsnap_plugin *vmsnap_plugin_entry (void);  \
  VMSNAP_BACKEND_EXPORT const vmsnap_plugin *vmsnap_plugin_entry (void)   \
  {                                                                      \
    (var).abi_version = VMSNAP_PLUGIN_ABI_VERSION;                       \
    (var).struct_size = sizeof (var);                                    \
    return &(var);                                                       \
  }

#ifdef __cplusplus
}
#endif

#endif /* VMSNAP_PLUGIN_H */
