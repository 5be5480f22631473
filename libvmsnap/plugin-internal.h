/* Lifecycle plugins: the core's side (libvmsnap/plugin.c). */
#ifndef VMSNAP_PLUGIN_INTERNAL_H
#define VMSNAP_PLUGIN_INTERNAL_H

#include <json-glib/json-glib.h>
#include <vmsnap/plugin.h>

/* What the engine knows of the operation, for every phase. */
typedef struct {
  const char *operation;
  const char *domain;
  const char *uuid;
  const char *snapshot;
  const char *state;            /* running, paused, shut off, file */
  char **targets;               /* NULL-terminated */
  char **backends;              /* parallel to targets */
  void *libvirt_domain;
  const vmsnap_config *config;
  GPtrArray *messages;          /* char*, owned by the caller */
} vmsnap_hook_call;

gboolean vmsnap_plugins_run (vmsnap_hook_call *hc, vmsnap_hook_phase phase,
                             gboolean succeeded, const char *error, GError **err);
gboolean vmsnap_plugin_loaded (const char *name);
const char *vmsnap_hook_phase_name (vmsnap_hook_phase phase);

#endif
