/* Lifecycle plugins (include/vmsnap/plugin.h): loading and calling them.
 *
 * Plugins are found like backends (the loader's directories with
 * "plugins" for "backends": $VMSNAP_PLUGIN_DIR, the build tree,
 * $(pkglibdir)/plugins), loaded once per process, never unloaded, and
 * called in name order.  A plugin that cannot be loaded or is refused is
 * reported to the user at every operation (a warning), never silently
 * skipped.
 */
#include <config.h>

#include <string.h>

#include "internal.h"
#include "plugin-internal.h"

typedef struct {
  char *name;
  vmsnap_plugin pl;       /* copied: min(struct_size, ours), rest zero */
} loaded_plugin;

static GMutex plugins_lock;
static GPtrArray *plugins;     /* loaded_plugin*, by name */
static GPtrArray *problems;    /* char*: why a plugin is not loaded */

static gint
cmp_plugin (gconstpointer a, gconstpointer b)
{
  return strcmp ((*(loaded_plugin *const *) a)->name, (*(loaded_plugin *const *) b)->name);
}

static void
load_plugin (const char *name, const char *base)
{
  g_autofree char *why = NULL;
  void *h = vmsnap_module_open (base, &why);
  const vmsnap_plugin *(*entry) (void);
  const vmsnap_plugin *pl;
  loaded_plugin *lp;

  if (h == NULL) {
    g_ptr_array_add (problems, g_strdup_printf (
      "plugin %s: failed to load %s: %s (run ldd(1) on it; reinstall its "
      "package or remove it)", name, base, why));
    return;
  }
  entry = (const vmsnap_plugin *(*) (void)) vmsnap_module_sym (h, "vmsnap_plugin_entry");
  if (entry == NULL || (pl = entry ()) == NULL) {
    g_ptr_array_add (problems, g_strdup_printf (
      "plugin %s: %s does not export vmsnap_plugin_entry (use "
      "VMSNAP_REGISTER_PLUGIN)", name, base));
    return;
  }
  if (pl->abi_version != VMSNAP_PLUGIN_ABI_VERSION || pl->struct_size < VMSNAP_PLUGIN_MIN_SIZE
      || pl->hook == NULL || pl->name == NULL || strcmp (pl->name, name) != 0) {
    g_ptr_array_add (problems, g_strdup_printf (
      "plugin %s: refused: %s", name,
      pl->abi_version != VMSNAP_PLUGIN_ABI_VERSION
      ? "built for another plugin ABI (rebuild it against this libvmsnap-dev)"
      : pl->struct_size < VMSNAP_PLUGIN_MIN_SIZE ? "its vmsnap_plugin struct is too small"
      : pl->hook == NULL ? "mandatory slot 'hook' is NULL"
      : "its registered name differs from its file name"));
    return;
  }
  lp = g_new0 (loaded_plugin, 1);
  lp->name = g_strdup (name);
  memcpy (&lp->pl, pl, MIN ((size_t) pl->struct_size, sizeof lp->pl));
  g_ptr_array_add (plugins, lp);
}

static void
load_all (void)
{
  g_autoptr (GPtrArray) dirs = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);

  plugins = g_ptr_array_new ();
  problems = g_ptr_array_new_with_free_func (g_free);
  dirs = vmsnap_module_dirs (g_getenv ("VMSNAP_PLUGIN_DIR"), "plugins", VMSNAP_PLUGIN_INSTALL_DIR);
  for (guint i = 0; i < dirs->len; i++) {
    g_autoptr (GDir) d = g_dir_open (dirs->pdata[i], 0, NULL);
    const char *ent;
    vmsnap_module_scan_dir (dirs->pdata[i], names);
    /* The build tree: DIR/NAME/NAME.la */
    while (d && (ent = g_dir_read_name (d)) != NULL) {
      g_autofree char *base = NULL;
      if (!vmsnap_module_valid_name (ent)
          || g_ptr_array_find_with_equal_func (names, ent, g_str_equal, NULL))
        continue;
      base = vmsnap_module_find_in (dirs->pdata[i], ent);
      if (base)
        g_ptr_array_add (names, g_strdup (ent));
    }
  }
  for (guint i = 0; i < names->len; i++) {
    g_autofree char *base = NULL;
    for (guint d = 0; d < dirs->len && base == NULL; d++)
      base = vmsnap_module_find_in (dirs->pdata[d], names->pdata[i]);
    if (base)
      load_plugin (names->pdata[i], base);
  }
  g_ptr_array_sort (plugins, cmp_plugin);
}

static void
ensure_loaded (void)
{
  g_mutex_lock (&plugins_lock);
  if (plugins == NULL)
    load_all ();
  g_mutex_unlock (&plugins_lock);
}

gboolean
vmsnap_plugin_loaded (const char *name)
{
  ensure_loaded ();
  for (guint i = 0; i < plugins->len; i++)
    if (!strcmp (((loaded_plugin *) plugins->pdata[i])->name, name))
      return TRUE;
  return FALSE;
}

static const char *const phase_names[] = { "", "before", "freeze", "thaw", "after" };

const char *
vmsnap_hook_phase_name (vmsnap_hook_phase phase)
{
  return (unsigned) phase < G_N_ELEMENTS (phase_names) ? phase_names[phase] : "";
}

static char *
event_json (const vmsnap_hook_call *hc, vmsnap_hook_phase phase, gboolean succeeded,
            const char *error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
#define S(k, v) do { json_builder_set_member_name (b, k); \
                     if (v) json_builder_add_string_value (b, v); \
                     else json_builder_add_null_value (b); } while (0)
  S ("operation", hc->operation);
  S ("phase", vmsnap_hook_phase_name (phase));
  S ("domain", hc->domain);
  S ("uuid", hc->uuid);
  S ("snapshot", hc->snapshot);
  S ("state", hc->state);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; hc->targets && hc->targets[i]; i++) {
    json_builder_begin_object (b);
    S ("target", hc->targets[i]);
    S ("backend", hc->backends && hc->backends[i] ? hc->backends[i] : NULL);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  if (phase == VMSNAP_HOOK_AFTER || phase == VMSNAP_HOOK_THAW) {
    json_builder_set_member_name (b, "succeeded");
    json_builder_add_boolean_value (b, succeeded);
    S ("error", error);
  }
#undef S
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  return json_generator_to_data (g, NULL);
}

/* Run every plugin's hook for PHASE.  BEFORE and FREEZE stop at the first
 * failure (FREEZE then thaws the plugins already frozen) and return FALSE
 * with *err; THAW and AFTER run them all and turn failures into warnings. */
gboolean
vmsnap_plugins_run (vmsnap_hook_call *hc, vmsnap_hook_phase phase, gboolean succeeded,
                    const char *error, GError **err)
{
  g_autofree char *json = NULL;
  vmsnap_hook_event ev = { 0 };
  gboolean stop_on_error = phase == VMSNAP_HOOK_BEFORE || phase == VMSNAP_HOOK_FREEZE;

  ensure_loaded ();
  if (phase == VMSNAP_HOOK_BEFORE)
    for (guint i = 0; i < problems->len; i++)
      g_ptr_array_add (hc->messages, g_strdup_printf ("warning: %s", (char *) problems->pdata[i]));
  json = event_json (hc, phase, succeeded, error);
  ev.struct_size = sizeof ev;
  ev.phase = phase;
  ev.operation = hc->operation;
  ev.domain = hc->domain;
  ev.uuid = hc->uuid;
  ev.snapshot = hc->snapshot;
  ev.json = json;
  ev.succeeded = succeeded;
  ev.libvirt_domain = hc->libvirt_domain;
  ev.config = hc->config;
  ev.messages = hc->messages;
  for (guint i = 0; i < plugins->len; i++) {
    loaded_plugin *lp = plugins->pdata[i];
    g_autoptr (GError) e = NULL;
    if (lp->pl.hook (&ev, &e) == 0)
      continue;
    if (stop_on_error) {
      if (phase == VMSNAP_HOOK_FREEZE) {
        /* Thaw the ones frozen so far (and this one: a partial freeze). */
        vmsnap_hook_event tev = ev;
        g_autofree char *tjson = event_json (hc, VMSNAP_HOOK_THAW, FALSE, e ? e->message : NULL);
        tev.phase = VMSNAP_HOOK_THAW;
        tev.json = tjson;
        for (guint k = 0; k <= i; k++) {
          g_autoptr (GError) te = NULL;
          loaded_plugin *tp = plugins->pdata[k];
          if (tp->pl.hook (&tev, &te) != 0)
            g_ptr_array_add (hc->messages, g_strdup_printf (
              "warning: plugin %s (thaw): %s", tp->name, te ? te->message : "failed"));
        }
      }
      if (e)
        g_propagate_error (err, g_steal_pointer (&e));
      else
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "plugin %s failed (%s %s) without saying why", lp->name,
                     vmsnap_hook_phase_name (phase), hc->operation);
      return FALSE;
    }
    g_ptr_array_add (hc->messages, g_strdup_printf (
      "warning: plugin %s (%s %s): %s", lp->name, vmsnap_hook_phase_name (phase),
      hc->operation, e ? e->message : "failed without saying why"));
  }
  return TRUE;
}
