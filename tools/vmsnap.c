/* vmsnap — the command-line front end.  A thin layer on libvmsnap: option
 * parsing (GOptionContext), output, exit codes.  No storage logic here. */
#include <config.h>

#include <locale.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

typedef struct {
  const char *name;
  const char *args;
  const char *summary;
  int (*run) (int argc, char **argv);
} command;

static int cmd_backends (int argc, char **argv);
static int cmd_plan (int argc, char **argv);
static int cmd_create (int argc, char **argv);
static int cmd_list (int argc, char **argv);
static int cmd_info (int argc, char **argv);
static int cmd_revert (int argc, char **argv);
static int cmd_delete (int argc, char **argv);
static int cmd_merge (int argc, char **argv);
static int cmd_recover (int argc, char **argv);
static int cmd_chain (int argc, char **argv);
static int cmd_config (int argc, char **argv);
static int cmd_check (int argc, char **argv);

static const command commands[] = {
  { "backends", "", "list snapshot backends: loaded, not installed, or why not", cmd_backends },
  { "plan", "DOMAIN", "show which backend would snapshot each disk, and why", cmd_plan },
  { "create", "DOMAIN NAME", "snapshot every disk of the domain", cmd_create },
  { "list", "DOMAIN", "list the domain's snapshots (--tree: as a tree)", cmd_list },
  { "info", "DOMAIN NAME", "show one snapshot", cmd_info },
  { "revert", "DOMAIN NAME", "make the disks what they were at snapshot NAME", cmd_revert },
  { "delete", "DOMAIN NAME", "delete a snapshot; the others stay as they are", cmd_delete },
  { "merge", "DOMAIN", "shorten backing chains without losing a named snapshot", cmd_merge },
  { "recover", "DOMAIN", "finish or roll back an operation a crash interrupted", cmd_recover },
  { "chain", "DOMAIN", "the files behind each disk and which snapshot each holds", cmd_chain },
  { "check", "DOMAIN", "compare the catalog with storage; --repair corrects the catalog", cmd_check },
  { "config", "", "every setting, its effective value and where it came from", cmd_config },
};

static const char exit_codes[] =
  "Exit status:\n"
  "  0  success\n"
  "  1  an operation failed (storage, tool, libvirt, backend load)\n"
  "  2  usage error, or a bad configuration (unknown key, bad value,\n"
  "     missing --config file)\n"
  "  3  bad input: malformed domain XML, domain or file not found\n"
  "  4  not possible: no backend can take a disk, an override was refused,\n"
  "     a chain would exceed vmsnap.max-chain-depth, or the operation is\n"
  "     not implemented yet\n"
  "  5  busy: another vmsnap holds the domain\n"
  "  6  check (or list/info --verify): the catalog and storage differ\n"
  "     (after check --repair: what it could not correct)\n";

/* Output is UTF-8 as it comes (paths, names): g_print would convert it to
 * the locale's charset and turn non-ASCII into '?' under LC_ALL=C. */
static void
out (const char *s)
{
  fputs (s, stdout);
}

/* Report an error once, on stderr, and turn it into the exit code. */
static int
fail (GError *err)
{
  int code = vmsnap_exit_code (err);

  fprintf (stderr, "vmsnap: error: %s\n", err->message);
  g_error_free (err);
  return code ? code : 1;
}

static int
usage_error (GOptionContext *oc, const char *msg)
{
  fprintf (stderr, "vmsnap: %s\n", msg);
  if (oc) {
    g_autofree char *help = g_option_context_get_help (oc, TRUE, NULL);
    fputs (help, stderr);
  }
  return 2;
}

/* Parse ARGV with OC; return -1 when fine, else the exit code. */
static int
parse (GOptionContext *oc, int *argc, char ***argv)
{
  g_autoptr (GError) err = NULL;

  g_option_context_set_description (oc, exit_codes);
  if (!g_option_context_parse (oc, argc, argv, &err)) {
    fprintf (stderr, "vmsnap: %s (see --help)\n", err->message);
    return 2;
  }
  return -1;
}

static void
print_json (JsonNode *root)
{
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autofree char *s = NULL;

  json_generator_set_root (g, root);
  json_generator_set_pretty (g, TRUE);
  json_generator_set_indent (g, 2);
  s = json_generator_to_data (g, NULL);
  out (s);
  out ("\n");
}

/* ------------------------------------------------------- configuration */

/* The configuration options of every command that works on a domain (and
 * of `vmsnap config`): they become the context's vmsnap_config_options. */
typedef struct {
  char *file;
  char **settings;             /* -o SECTION.KEY=VALUE, repeatable */
  char *lvm_snapshot_size;
  char *rbd_revert_mode;
  char *state_dir;             /* --state-dir (domain commands, config) */
} config_opts;

static void
add_config (GOptionContext *oc, config_opts *cf)
{
  GOptionEntry entries[] = {
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &cf->file,
      "read this configuration file (default: $VMSNAP_CONFIG or "
      VMSNAP_CONFIG_FILE_DEFAULT ")", "FILE" },
    { "option", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &cf->settings,
      "set a configuration key, above the environment and the file "
      "(repeatable; vmsnap config lists the keys)", "SECTION.KEY=VALUE" },
    { "lvm-snapshot-size", 0, 0, G_OPTION_ARG_STRING, &cf->lvm_snapshot_size,
      "= -o lvm.snapshot-size=SIZE: COW space of a thick LV's snapshot "
      "(N% of the LV, or 512M, 2G)", "SIZE" },
    { "rbd-revert-mode", 0, 0, G_OPTION_ARG_STRING, &cf->rbd_revert_mode,
      "= -o rbd.revert-mode=MODE: auto, rollback or clone", "MODE" },
    { NULL },
  };
  GOptionGroup *g = g_option_group_new ("config", "Configuration (vmsnap.conf(5)):",
                                        "Show the configuration options", NULL, NULL);
  g_option_group_add_entries (g, entries);
  g_option_context_add_group (oc, g);
}

static void
config_clear (config_opts *cf)
{
  g_free (cf->file);
  g_strfreev (cf->settings);
  g_free (cf->lvm_snapshot_size);
  g_free (cf->rbd_revert_mode);
  g_free (cf->state_dir);
}

/* A context with the configuration CF asks for. */
static vmsnap_ctx *
new_ctx (const config_opts *cf, GError **err)
{
  g_autoptr (GPtrArray) set = g_ptr_array_new_with_free_func (g_free);
  vmsnap_config_options co = { .file = cf->file };

  for (char **o = cf->settings; o && *o; o++)
    g_ptr_array_add (set, g_strdup (*o));
  if (cf->state_dir)
    g_ptr_array_add (set, g_strconcat ("vmsnap.state-dir=", cf->state_dir, NULL));
  if (cf->lvm_snapshot_size)
    g_ptr_array_add (set, g_strconcat ("lvm.snapshot-size=", cf->lvm_snapshot_size, NULL));
  if (cf->rbd_revert_mode)
    g_ptr_array_add (set, g_strconcat ("rbd.revert-mode=", cf->rbd_revert_mode, NULL));
  g_ptr_array_add (set, NULL);
  co.settings = (const char *const *) set->pdata;
  return vmsnap_ctx_new_full (&co, err);
}

static int
cmd_config (int argc, char **argv)
{
  config_opts cf = { 0 };
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print JSON", NULL },
    { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &cf.state_dir,
      "= -o vmsnap.state-dir=DIR", "DIR" },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("- show the configuration");
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autofree char *text = NULL;
  GError *err = NULL;
  int rc;

  g_option_context_add_main_entries (oc, entries, NULL);
  add_config (oc, &cf);
  g_option_context_set_summary (oc,
    "Every setting vmsnap and its installed backends know, its effective\n"
    "value and where it came from: the command line (-o), an environment\n"
    "variable, the configuration file, or the built-in default (highest\n"
    "first).  Sections of backends that are not installed are ignored, with\n"
    "a note.  An unknown key or a bad value exits 2.");
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    config_clear (&cf);
    return rc;
  }
  if (argc != 1) {
    config_clear (&cf);
    return usage_error (oc, "config takes no arguments");
  }
  ctx = new_ctx (&cf, &err);
  config_clear (&cf);
  if (ctx == NULL)
    return fail (err);
  text = json ? vmsnap_config_to_json (ctx) : vmsnap_config_to_text (ctx);
  out (text);
  if (json)
    out ("\n");
  return 0;
}

/* ------------------------------------------------------------ backends */

static int
cmd_backends (int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print JSON", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("- list snapshot backends");
  g_autoptr (vmsnap_ctx) ctx = NULL;
  GError *err = NULL;
  int rc, bad = 0;

  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_set_summary (oc,
    "Lists every backend: loaded (with version, module file and capabilities),\n"
    "not installed (an optional package), failed to load or refused (why).\n"
    "Exits 1 when a backend failed to load or was refused.");
  if ((rc = parse (oc, &argc, &argv)) >= 0)
    return rc;
  if (argc != 1)
    return usage_error (oc, "backends takes no arguments");
  ctx = vmsnap_ctx_new (&err);
  if (ctx == NULL)
    return fail (err);

  if (json) {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    g_autoptr (JsonNode) root = NULL;
    json_builder_begin_array (b);
    for (size_t i = 0; i < vmsnap_backend_count (ctx); i++) {
      const vmsnap_backend_info *bi = vmsnap_backend_get (ctx, i);
      g_auto (GStrv) caps = vmsnap_caps_names (bi->caps);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, bi->name);
      json_builder_set_member_name (b, "status");
      json_builder_add_string_value (b, vmsnap_backend_status_name (bi->status));
      json_builder_set_member_name (b, "version");
      json_builder_add_string_value (b, bi->version);
      json_builder_set_member_name (b, "description");
      json_builder_add_string_value (b, bi->description);
      json_builder_set_member_name (b, "module");
      json_builder_add_string_value (b, bi->path);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, bi->message);
      json_builder_set_member_name (b, "capabilities");
      json_builder_begin_array (b);
      for (char **c = caps; *c; c++)
        json_builder_add_string_value (b, *c);
      json_builder_end_array (b);
      json_builder_end_object (b);
      if (bi->status == VMSNAP_BACKEND_LOAD_FAILED || bi->status == VMSNAP_BACKEND_REFUSED)
        bad++;
    }
    json_builder_end_array (b);
    root = json_builder_get_root (b);
    print_json (root);
    return bad ? 1 : 0;
  }

  printf ("%-16s %-14s %-8s %s\n", "BACKEND", "STATUS", "VERSION", "MODULE / REASON");
  for (size_t i = 0; i < vmsnap_backend_count (ctx); i++) {
    const vmsnap_backend_info *bi = vmsnap_backend_get (ctx, i);
    g_auto (GStrv) caps = vmsnap_caps_names (bi->caps);
    g_autofree char *capstr = g_strjoinv (", ", caps);

    if (bi->status == VMSNAP_BACKEND_LOADED) {
      printf ("%-16s %-14s %-8s %s\n", bi->name, "loaded", bi->version, bi->path);
      if (bi->description)
        printf ("%-16s %s\n", "", bi->description);
      printf ("%-16s capabilities: %s\n", "", capstr);
    } else {
      printf ("%-16s %-14s %-8s %s\n", bi->name,
               vmsnap_backend_status_name (bi->status), "-", bi->message);
      if (bi->status != VMSNAP_BACKEND_NOT_INSTALLED)
        bad++;
    }
  }
  return bad ? 1 : 0;
}

/* ---------------------------------------------------------------- plan */

static int
cmd_plan (int argc, char **argv)
{
  gboolean json = FALSE, memory = FALSE;
  g_autofree char *uri = NULL;
  g_auto (GStrv) overrides = NULL;
  GOptionEntry entries[] = {
    { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
      "libvirt URI (default: LIBVIRT_DEFAULT_URI)", "URI" },
    { "memory", 0, 0, G_OPTION_ARG_NONE, &memory,
      "plan for a snapshot that includes the memory state", NULL },
    { "backend", 'b', 0, G_OPTION_ARG_STRING_ARRAY, &overrides,
      "use backend NAME for disk TARGET (repeatable)", "TARGET=NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print JSON", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("DOMAIN - show the snapshot plan");
  config_opts cf = { 0 };
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_domain) dom = NULL;
  g_autoptr (vmsnap_plan) plan = NULL;
  vmsnap_plan_options opts = { 0 };
  GError *err = NULL;
  g_autofree char *text = NULL;
  int rc;

  g_option_context_add_main_entries (oc, entries, NULL);
  add_config (oc, &cf);
  g_option_context_set_summary (oc,
    "DOMAIN is a libvirt domain name or UUID (on --connect URI), or a path to\n"
    "a domain XML file (no daemon needed).  For every disk: the backend that\n"
    "would snapshot it, why, and the limits that apply; for the VM: the mode,\n"
    "whether it must pause, and where the memory state would go.  Nothing is\n"
    "changed.  Exits 4 when some disk cannot be snapshotted as asked.");
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    config_clear (&cf);
    return rc;
  }
  if (argc != 2) {
    config_clear (&cf);
    return usage_error (oc, "plan needs exactly one DOMAIN");
  }
  ctx = new_ctx (&cf, &err);
  config_clear (&cf);
  if (ctx == NULL)
    return fail (err);
  dom = vmsnap_domain_open (ctx, argv[1], uri, &err);
  if (dom == NULL)
    return fail (err);
  opts.memory = memory;
  opts.overrides = (const char *const *) overrides;
  plan = vmsnap_plan_new (ctx, dom, &opts, &err);
  if (plan == NULL)
    return fail (err);
  text = json ? vmsnap_plan_to_json (plan) : vmsnap_plan_to_text (plan);
  out (text);
  if (json)
    out ("\n");
  if (!vmsnap_plan_possible (plan))
    return fail (vmsnap_plan_error (plan));
  return 0;
}

/* ------------------------------------------------- snapshot commands */

/* Options every command on a domain takes. */
typedef struct {
  char *uri;
  config_opts cf;             /* --config, -o, shortcuts, --state-dir */
  gboolean no_wait;
  gboolean json;
} common_opts;

static void
add_common (GOptionContext *oc, common_opts *co)
{
  GOptionEntry entries[] = {
    { "connect", 'c', 0, G_OPTION_ARG_STRING, &co->uri,
      "libvirt URI (default: LIBVIRT_DEFAULT_URI)", "URI" },
    { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &co->cf.state_dir,
      "where catalogs live (= -o vmsnap.state-dir=DIR; default: "
      "$VMSNAP_STATE_DIR, the file, or " VMSNAP_STATE_DIR_DEFAULT ")", "DIR" },
    { "no-wait", 0, 0, G_OPTION_ARG_NONE, &co->no_wait,
      "fail at once if another vmsnap works on the domain", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &co->json, "print JSON", NULL },
    { NULL },
  };
  GOptionGroup *g = g_option_group_new ("common", "Options of every domain command:",
                                        "Show the common options", NULL, NULL);
  g_option_group_add_entries (g, entries);
  g_option_context_add_group (oc, g);
  add_config (oc, &co->cf);
}

static void
common_clear (common_opts *co)
{
  g_free (co->uri);
  config_clear (&co->cf);
  memset (&co->cf, 0, sizeof co->cf);
}

static vmsnap_engine *
open_engine (vmsnap_ctx **ctx, const char *spec, const common_opts *co,
             unsigned int extra, GError **err)
{
  vmsnap_engine_options eo = {
    .uri = co->uri,
    .flags = (co->no_wait ? VMSNAP_ENGINE_NO_WAIT : 0) | extra,
  };
  vmsnap_engine *e;
  g_autofree char *rec = NULL;

  /* --state-dir is the setting vmsnap.state-dir (on the command line). */
  *ctx = new_ctx (&co->cf, err);
  if (*ctx == NULL)
    return NULL;
  e = vmsnap_engine_open (*ctx, spec, &eo, err);
  if (e && (rec = vmsnap_engine_recover_report (e)) != NULL && !co->json)
    fprintf (stderr, "vmsnap: recovered an interrupted operation first\n");
  return e;
}

static JsonObject *
parse_obj (JsonParser *p, const char *json)
{
  if (!json_parser_load_from_data (p, json, -1, NULL))
    return NULL;
  return json_node_get_object (json_parser_get_root (p));
}

static const char *
ostr (JsonObject *o, const char *k)
{
  JsonNode *n = o ? json_object_get_member (o, k) : NULL;

  return n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_string (n) : NULL;
}

/* The same, never NULL (for printf). */
static const char *
ostr0 (JsonObject *o, const char *k)
{
  const char *v = ostr (o, k);

  return v ? v : "";
}

static void
human_size (guint64 n, char *buf, size_t len)
{
  g_autofree char *s = g_format_size_full (n, G_FORMAT_SIZE_IEC_UNITS);
  g_strlcpy (buf, s, len);
}

/* Print an operation report for people. */
static void
print_report (const char *json)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o = parse_obj (p, json), *then;
  JsonArray *disks, *warn;

  if (o == NULL)
    return;
  disks = json_object_get_array_member (o, "disks");
  for (guint i = 0; disks && i < json_array_get_length (disks); i++) {
    JsonObject *d = json_array_get_object_element (disks, i);
    gint64 bytes = json_object_get_int_member_with_default (d, "bytes_copied", 0);
    char sz[64];
    printf ("  %-6s %-15s", ostr0 (d, "target"), ostr0 (d, "backend"));
    if (ostr (d, "note"))
      printf (" %s", ostr (d, "note"));
    else if (ostr (d, "new_source"))
      printf (" active image now %s", ostr (d, "new_source"));
    if (json_object_get_boolean_member_with_default (d, "kept", FALSE))
      printf (" (storage kept: other points depend on it)");
    if (bytes > 0) {
      human_size ((guint64) bytes, sz, sizeof sz);
      printf (" [%s copied]", sz);
    }
    printf ("\n");
  }
  if (json_object_has_member (o, "pause_ms"))
    printf ("  the VM was paused for %.1f ms\n", json_object_get_double_member (o, "pause_ms"));
  if (json_object_has_member (o, "frozen_ms"))
    printf ("  the guest's file systems were frozen for %.1f ms\n",
            json_object_get_double_member (o, "frozen_ms"));
  warn = json_object_has_member (o, "plugin_messages")
         ? json_object_get_array_member (o, "plugin_messages") : NULL;
  for (guint i = 0; warn && i < json_array_get_length (warn); i++) {
    const char *m = json_array_get_string_element (warn, i);
    if (g_str_has_prefix (m, "warning: "))
      fprintf (stderr, "vmsnap: %s\n", m);
    else
      printf ("  %s\n", m);
  }
  warn = json_object_get_array_member (o, "warnings");
  for (guint i = 0; warn && i < json_array_get_length (warn); i++)
    fprintf (stderr, "vmsnap: warning: %s\n", json_array_get_string_element (warn, i));
  then = json_object_has_member (o, "then_merged")
         ? json_object_get_object_member (o, "then_merged") : NULL;
  if (then) {
    g_autoptr (JsonGenerator) g = json_generator_new ();
    g_autoptr (JsonNode) n = json_node_new (JSON_NODE_OBJECT);
    g_autofree char *sub = NULL;
    json_node_set_object (n, then);
    json_generator_set_root (g, n);
    sub = json_generator_to_data (g, NULL);
    printf ("Then consolidated what it left:\n");
    print_report (sub);
  }
}

typedef enum { SNAP_CREATE, SNAP_REVERT, SNAP_DELETE } snap_cmd;

/* create --quiesce[=SECONDS|best-effort]: the settings it stands for. */
static char *quiesce_setting[3];

static gboolean
quiesce_cb (const char *name G_GNUC_UNUSED, const char *value,
            gpointer data G_GNUC_UNUSED, GError **err)
{
  g_free (quiesce_setting[0]);
  g_free (quiesce_setting[1]);
  quiesce_setting[1] = NULL;
  if (value == NULL || *value == '\0') {
    quiesce_setting[0] = g_strdup ("vmsnap.quiesce=on");
  } else if (!strcmp (value, "best-effort")) {
    quiesce_setting[0] = g_strdup ("vmsnap.quiesce=best-effort");
  } else if (strspn (value, "0123456789") == strlen (value) && strlen (value) < 6) {
    quiesce_setting[0] = g_strdup ("vmsnap.quiesce=on");
    quiesce_setting[1] = g_strconcat ("vmsnap.quiesce-timeout=", value, NULL);
  } else {
    quiesce_setting[0] = NULL;
    g_set_error (err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--quiesce=%s: give the agent's time limit in seconds, or "
                 "best-effort (a plain pause when the agent fails)", value);
    return FALSE;
  }
  return TRUE;
}

/* Append the --quiesce settings to CF's -o list. */
static void
add_quiesce_settings (config_opts *cf)
{
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();

  if (quiesce_setting[0] == NULL)
    return;
  for (char **o = cf->settings; o && *o; o++)
    g_strv_builder_add (b, *o);
  for (int i = 0; i < 2 && quiesce_setting[i]; i++)
    g_strv_builder_add (b, quiesce_setting[i]);
  g_strfreev (cf->settings);
  cf->settings = g_strv_builder_end (b);
}

static int
snapshot_cmd (int argc, char **argv, snap_cmd which)
{
  static const char *const what[] = { "DOMAIN NAME - snapshot every disk",
                                      "DOMAIN NAME - revert to a snapshot",
                                      "DOMAIN NAME - delete a snapshot" };
  common_opts co = { 0 };
  g_autofree char *description = NULL;
  gboolean memory = FALSE, running = FALSE, paused = FALSE, stopped = FALSE;
  g_auto (GStrv) overrides = NULL;
  GOptionEntry create_entries[] = {
    { "description", 'd', 0, G_OPTION_ARG_STRING, &description,
      "a description kept with the snapshot", "TEXT" },
    { "memory", 0, 0, G_OPTION_ARG_NONE, &memory,
      "also keep the memory state of the running VM", NULL },
    { "backend", 'b', 0, G_OPTION_ARG_STRING_ARRAY, &overrides,
      "use BACKEND for disk TARGET (repeatable)", "TARGET=BACKEND" },
    { "quiesce", 0, G_OPTION_FLAG_OPTIONAL_ARG, G_OPTION_ARG_CALLBACK, (gpointer) quiesce_cb,
      "freeze the guest's file systems through its agent for the snapshot "
      "(= -o vmsnap.quiesce=on; SECONDS: the agent's time limit; best-effort: "
      "a plain pause if the agent fails; the value only with '=')", "SECONDS|best-effort" },
    { NULL },
  };
  GOptionEntry revert_entries[] = {
    { "running", 0, 0, G_OPTION_ARG_NONE, &running,
      "the domain runs after the revert", NULL },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused,
      "the domain is started paused after the revert", NULL },
    { "stopped", 0, 0, G_OPTION_ARG_NONE, &stopped,
      "the domain is left shut off after the revert", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new (what[which]);
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_engine) e = NULL;
  g_autofree char *report = NULL;
  GError *err = NULL;
  int rc;

  if (which == SNAP_CREATE) {
    g_option_context_add_main_entries (oc, create_entries, NULL);
    /* --quiesce takes its value only with '=': "--quiesce DOMAIN" must
     * not eat the domain. */
    for (int i = 1; i < argc; i++)
      if (!strcmp (argv[i], "--quiesce"))
        argv[i] = (char *) "--quiesce=";
      else if (!strcmp (argv[i], "--"))
        break;
  }
  if (which == SNAP_REVERT)
    g_option_context_add_main_entries (oc, revert_entries, NULL);
  add_common (oc, &co);
  if (which == SNAP_REVERT)
    g_option_context_set_summary (oc,
      "The disks become what they were at snapshot NAME; NAME stays and can be\n"
      "reverted to again; later snapshots stay (the tree branches); the state\n"
      "before the revert is discarded.  A running domain is restarted on the\n"
      "reverted disks and keeps running (a snapshot with memory resumes where\n"
      "it was taken) unless --paused or --stopped says otherwise.");
  if (which == SNAP_DELETE)
    g_option_context_set_summary (oc,
      "Any snapshot can be deleted, also one with children.  Its data is merged\n"
      "in the direction that copies fewer bytes; the direction and the bytes\n"
      "copied are reported.  Storage other points still share is kept unnamed\n"
      "until vmsnap merge.");
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    common_clear (&co);
    return rc;
  }
  if (argc != 3) {
    common_clear (&co);
    return usage_error (oc, "needs DOMAIN and NAME");
  }
  if ((running ? 1 : 0) + (paused ? 1 : 0) + (stopped ? 1 : 0) > 1) {
    common_clear (&co);
    return usage_error (oc, "--running, --paused and --stopped exclude each other");
  }
  add_quiesce_settings (&co.cf);
  e = open_engine (&ctx, argv[1], &co, 0, &err);
  if (e != NULL) {
    if (which == SNAP_CREATE) {
      vmsnap_create_options copts = {
        .description = description, .memory = memory,
        .overrides = (const char *const *) overrides,
      };
      report = vmsnap_engine_create (e, argv[2], &copts, &err);
    } else if (which == SNAP_REVERT)
      report = vmsnap_engine_revert (e, argv[2],
                                     running ? VMSNAP_AFTER_REVERT_RUNNING
                                     : paused ? VMSNAP_AFTER_REVERT_PAUSED
                                     : stopped ? VMSNAP_AFTER_REVERT_STOPPED
                                     : VMSNAP_AFTER_REVERT_DEFAULT, &err);
    else
      report = vmsnap_engine_delete (e, argv[2], &err);
  }
  if (report == NULL) {
    common_clear (&co);
    return fail (err);
  }
  if (co.json) {
    out (report);
    out ("\n");
  } else {
    static const char *const done[] = { "Created", "Reverted to", "Deleted" };
    printf ("%s snapshot %s of domain %s\n", done[which], argv[2], argv[1]);
    print_report (report);
  }
  common_clear (&co);
  return 0;
}

static int
cmd_create (int argc, char **argv)
{
  return snapshot_cmd (argc, argv, SNAP_CREATE);
}

static int
cmd_revert (int argc, char **argv)
{
  return snapshot_cmd (argc, argv, SNAP_REVERT);
}

static int
cmd_delete (int argc, char **argv)
{
  return snapshot_cmd (argc, argv, SNAP_DELETE);
}

static int
cmd_merge (int argc, char **argv)
{
  common_opts co = { 0 };
  g_autofree char *disk = NULL;
  int max_depth = 0;
  GOptionEntry entries[] = {
    { "disk", 0, 0, G_OPTION_ARG_STRING, &disk, "only this disk", "TARGET" },
    { "max-depth", 0, 0, G_OPTION_ARG_INT, &max_depth,
      "also copy shared unnamed layers into their dependents until chains are "
      "at most N deep (as far as named snapshots allow)", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("DOMAIN - shorten backing chains");
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_engine) e = NULL;
  g_autofree char *report = NULL;
  GError *err = NULL;
  int rc;

  g_option_context_add_main_entries (oc, entries, NULL);
  add_common (oc, &co);
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    common_clear (&co);
    return rc;
  }
  if (argc != 2 || max_depth < 0) {
    common_clear (&co);
    return usage_error (oc, argc != 2 ? "needs DOMAIN" : "--max-depth must be >= 0");
  }
  e = open_engine (&ctx, argv[1], &co, 0, &err);
  if (e)
    report = vmsnap_engine_merge (e, disk, (unsigned) max_depth, &err);
  common_clear (&co);
  if (report == NULL)
    return fail (err);
  if (co.json) {
    out (report);
    out ("\n");
  } else {
    printf ("Merged domain %s\n", argv[1]);
    print_report (report);
  }
  return 0;
}

/* vmsnap check: drift between the catalog and storage (libvmsnap/check.c). */
static int
cmd_check (int argc, char **argv)
{
  common_opts co = { 0 };
  gboolean repair = FALSE;
  GOptionEntry entries[] = {
    { "repair", 0, 0, G_OPTION_ARG_NONE, &repair,
      "correct the catalog from storage (storage is never changed)", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("DOMAIN - compare the catalog with storage");
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autofree char *json = NULL;
  vmsnap_engine_options eo = { 0 };
  JsonObject *o;
  GError *err = NULL;
  bool left = false;
  int rc;

  g_option_context_add_main_entries (oc, entries, NULL);
  add_common (oc, &co);
  g_option_context_set_summary (oc,
    "Reports every difference between the catalog and what storage holds.\n"
    "Without --repair nothing is written, created or locked.");
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    common_clear (&co);
    return rc;
  }
  if (argc != 2) {
    common_clear (&co);
    return usage_error (oc, "needs DOMAIN");
  }
  ctx = new_ctx (&co.cf, &err);
  eo.uri = co.uri;
  eo.flags = co.no_wait ? VMSNAP_ENGINE_NO_WAIT : 0;
  if (ctx)
    json = vmsnap_check_domain (ctx, argv[1], &eo, repair ? VMSNAP_CHECK_REPAIR : 0,
                                &left, &err);
  common_clear (&co);
  if (json == NULL)
    return fail (err);
  if (co.json) {
    out (json);
    out ("\n");
    return left ? 6 : 0;
  }
  o = parse_obj (p, json);
  {
    static const char *const parts[] = { "differences", "changes", "remaining", "notes" };
    JsonArray *diff = json_object_get_array_member (o, parts[0]);
    JsonArray *chg = json_object_get_array_member (o, parts[1]);
    JsonArray *rem = json_object_get_array_member (o, parts[2]);
    JsonArray *notes = json_object_get_array_member (o, parts[3]);
    guint nd = json_array_get_length (diff);

    if (nd == 0)
      printf ("Domain %s: the catalog and storage agree\n", argv[1]);
    else
      printf ("Domain %s: %u difference%s between the catalog and storage\n",
              argv[1], nd, nd == 1 ? "" : "s");
    for (guint i = 0; i < nd; i++) {
      JsonObject *d = json_array_get_object_element (diff, i);
      printf ("  %-18s disk %-6s snapshot %-16s %s\n    fix: %s\n", ostr0 (d, "kind"),
              ostr0 (d, "disk"), ostr (d, "snapshot") ? ostr (d, "snapshot") : "-",
              ostr0 (d, "storage"), ostr0 (d, "fix"));
    }
    for (guint i = 0; i < json_array_get_length (chg); i++)
      printf ("Repaired: %s\n", json_array_get_string_element (chg, i));
    if (repair && json_array_get_length (rem) > 0)
      printf ("%u difference%s left that --repair cannot correct (see the fixes above)\n",
              json_array_get_length (rem), json_array_get_length (rem) == 1 ? "" : "s");
    for (guint i = 0; i < json_array_get_length (notes); i++)
      printf ("Note: %s\n", json_array_get_string_element (notes, i));
  }
  return left ? 6 : 0;
}

static int
cmd_recover (int argc, char **argv)
{
  common_opts co = { 0 };
  g_autoptr (GOptionContext) oc = g_option_context_new ("DOMAIN - finish an interrupted operation");
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_engine) e = NULL;
  g_autofree char *report = NULL;
  GError *err = NULL;
  int rc;

  add_common (oc, &co);
  g_option_context_set_summary (oc,
    "Every command on a domain first does this; recover does only this.\n"
    "Operations a crash interrupted are finished (or, for a create or revert\n"
    "that had not switched the domain yet, rolled back).");
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    common_clear (&co);
    return rc;
  }
  if (argc != 2) {
    common_clear (&co);
    return usage_error (oc, "needs DOMAIN");
  }
  {
    gboolean json = co.json;
    co.json = TRUE;    /* keep open_engine quiet: we print the report */
    e = open_engine (&ctx, argv[1], &co, 0, &err);
    co.json = json;
  }
  common_clear (&co);
  if (e == NULL)
    return fail (err);
  report = vmsnap_engine_recover_report (e);
  if (co.json)
    out (report ? report : "{ \"recovered\" : null }"), out ("\n");
  else if (report == NULL)
    printf ("Nothing to recover for domain %s\n", argv[1]);
  else {
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *o = parse_obj (p, report);
    printf ("Recovered domain %s: %s %s %s\n", argv[1], ostr0 (o, "recovered"),
            ostr0 (o, "snapshot"), ostr0 (o, "result"));
    print_report (report);
  }
  return 0;
}

/* Each snapshot once, however the parents point (the library refuses a
 * catalog with two snapshots of one name or a parent cycle; this must not
 * recurse for ever even so: it did, until the stack overflowed). */
static void
print_tree (JsonArray *snaps, const char *parent, int depth, GHashTable *shown)
{
  for (guint i = 0; i < json_array_get_length (snaps); i++) {
    JsonObject *s = json_array_get_object_element (snaps, i);
    const char *p = ostr (s, "parent");
    if (g_strcmp0 (p, parent) != 0 || g_hash_table_contains (shown, s))
      continue;
    g_hash_table_add (shown, s);
    printf ("%*s%s%s%s%s%s\n", depth * 2, "", depth ? "└─ " : "", ostr0 (s, "name"),
            json_object_get_boolean_member (s, "current") ? "  <- current" : "",
            ostr (s, "description") ? "  " : "", ostr0 (s, "description"));
    print_tree (snaps, ostr (s, "name"), depth + 1, shown);
  }
}

/* list/info --verify: what `vmsnap check` finds (read-only), for every
 * snapshot (ONLY NULL) or snapshot ONLY, as a JSON object of its own:
 * { "differences": [...], "notes": [...] }.  *LEFT: any difference. */
static JsonNode *
verify_node (vmsnap_ctx *ctx, const char *spec, const common_opts *co,
             const char *only, bool *left, GError **err)
{
  vmsnap_engine_options eo = { .uri = co->uri, .flags = co->no_wait ? VMSNAP_ENGINE_NO_WAIT : 0 };
  g_autofree char *json = vmsnap_check_domain (ctx, spec, &eo, 0, left, err);
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o, *v;
  JsonArray *diff, *kept;

  if (json == NULL || (o = parse_obj (p, json)) == NULL)
    return NULL;
  diff = json_object_get_array_member (o, "differences");
  kept = json_array_new ();
  for (guint i = 0; diff && i < json_array_get_length (diff); i++) {
    JsonObject *d = json_array_get_object_element (diff, i);
    /* A difference of no snapshot in particular (a disk that does not
     * open) concerns ONLY too. */
    if (only == NULL || ostr (d, "snapshot") == NULL
        || g_strcmp0 (ostr (d, "snapshot"), only) == 0)
      json_array_add_element (kept, json_node_copy (json_array_get_element (diff, i)));
  }
  *left = json_array_get_length (kept) > 0;
  v = json_object_new ();
  json_object_set_array_member (v, "differences", kept);
  if (json_object_has_member (o, "notes"))
    json_object_set_member (v, "notes", json_node_copy (json_object_get_member (o, "notes")));
  {
    JsonNode *n = json_node_new (JSON_NODE_OBJECT);
    json_node_take_object (n, v);
    return n;
  }
}

/* The human form of verify_node's object, after the listing. */
static void
print_verify (JsonNode *vn, const char *spec)
{
  JsonObject *v = json_node_get_object (vn);
  JsonArray *diff = json_object_get_array_member (v, "differences");
  JsonArray *notes = json_object_has_member (v, "notes")
                     ? json_object_get_array_member (v, "notes") : NULL;
  guint nd = json_array_get_length (diff);

  if (nd == 0)
    printf ("Verified: the catalog and storage agree\n");
  else
    printf ("Verified: %u difference%s between the catalog and storage "
            "(vmsnap check %s --repair corrects the catalog)\n",
            nd, nd == 1 ? "" : "s", spec);
  for (guint i = 0; i < nd; i++) {
    JsonObject *d = json_array_get_object_element (diff, i);
    printf ("  %-18s disk %-6s snapshot %-16s %s\n    fix: %s\n", ostr0 (d, "kind"),
            ostr0 (d, "disk"), ostr (d, "snapshot") ? ostr (d, "snapshot") : "-",
            ostr0 (d, "storage"), ostr0 (d, "fix"));
  }
  for (guint i = 0; notes && i < json_array_get_length (notes); i++)
    printf ("Note: %s\n", json_array_get_string_element (notes, i));
}

static int
view_cmd (int argc, char **argv, int which)
{
  common_opts co = { 0 };
  gboolean tree = FALSE, names = FALSE, verify = FALSE;
  g_autofree char *disk = NULL;
  GOptionEntry list_entries[] = {
    { "tree", 0, 0, G_OPTION_ARG_NONE, &tree, "show the snapshot tree", NULL },
    { "names", 0, 0, G_OPTION_ARG_NONE, &names,
      "print only the snapshot names, one per line (for scripts and completion)", NULL },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      "also compare the catalog with storage, as vmsnap check does (exit 6 on a difference)", NULL },
    { NULL },
  };
  GOptionEntry info_entries[] = {
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      "also compare the snapshot with storage, as vmsnap check does (exit 6 on a difference)", NULL },
    { NULL },
  };
  g_autoptr (JsonNode) vnode = NULL;
  bool left = false;
  GOptionEntry chain_entries[] = {
    { "disk", 0, 0, G_OPTION_ARG_STRING, &disk, "only this disk", "TARGET" },
    { NULL },
  };
  static const char *const what[] = { "DOMAIN - list snapshots", "DOMAIN NAME - show a snapshot",
                                      "DOMAIN - the files behind each disk" };
  g_autoptr (GOptionContext) oc = g_option_context_new (what[which]);
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_engine) e = NULL;
  g_autofree char *json = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o;
  GError *err = NULL;
  int rc, want = which == 1 ? 3 : 2;

  if (which == 0)
    g_option_context_add_main_entries (oc, list_entries, NULL);
  if (which == 1)
    g_option_context_add_main_entries (oc, info_entries, NULL);
  if (which == 2)
    g_option_context_add_main_entries (oc, chain_entries, NULL);
  add_common (oc, &co);
  if ((rc = parse (oc, &argc, &argv)) >= 0) {
    common_clear (&co);
    return rc;
  }
  if (argc != want) {
    common_clear (&co);
    return usage_error (oc, which == 1 ? "needs DOMAIN and NAME" : "needs DOMAIN");
  }
  if (names && (tree || co.json || verify)) {
    common_clear (&co);
    return usage_error (oc, tree ? "--names and --tree exclude each other"
                            : co.json ? "--names and --json exclude each other"
                            : "--names and --verify exclude each other");
  }
  if (which == 1 && !vmsnap_valid_snapshot_name (argv[2], &err)) {
    common_clear (&co);
    return fail (err);
  }
  e = open_engine (&ctx, argv[1], &co, VMSNAP_ENGINE_READ_ONLY, &err);
  if (e)
    json = which == 2 ? vmsnap_engine_chain (e, disk, &err) : vmsnap_engine_list (e, &err);
  if (json == NULL) {
    common_clear (&co);
    return fail (err);
  }
  /* The listing comes from the catalog alone (no image opened); storage
   * only when asked. */
  if (verify && (vnode = verify_node (ctx, argv[1], &co, which == 1 ? argv[2] : NULL,
                                      &left, &err)) == NULL) {
    common_clear (&co);
    return fail (err);
  }
  o = parse_obj (p, json);
  if (vnode && which == 0 && co.json) {
    /* list --json --verify: the listing with a "verify" member. */
    g_autoptr (JsonGenerator) g = json_generator_new ();
    json_object_set_member (o, "verify", json_node_ref (vnode));
    json_generator_set_root (g, json_parser_get_root (p));
    json_generator_set_pretty (g, TRUE);
    json_generator_set_indent (g, 2);
    g_free (json);
    json = json_generator_to_data (g, NULL);
  }
  if (which == 1) {
    JsonArray *snaps = json_object_get_array_member (o, "snapshots");
    JsonObject *found = NULL;
    for (guint i = 0; i < json_array_get_length (snaps); i++) {
      JsonObject *s = json_array_get_object_element (snaps, i);
      if (g_strcmp0 (ostr (s, "name"), argv[2]) == 0)
        found = s;
    }
    if (found == NULL) {
      common_clear (&co);
      return fail (g_error_new (VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                                "domain %s has no snapshot named '%s'", argv[1], argv[2]));
    }
    if (co.json) {
      g_autoptr (JsonGenerator) g = json_generator_new ();
      g_autoptr (JsonNode) n = json_node_new (JSON_NODE_OBJECT);
      g_autofree char *s = NULL;
      if (vnode)
        json_object_set_member (found, "verify", json_node_ref (vnode));
      json_node_set_object (n, found);
      json_generator_set_root (g, n);
      json_generator_set_pretty (g, TRUE);
      s = json_generator_to_data (g, NULL);
      out (s);
      out ("\n");
    } else {
      JsonArray *disks = json_object_get_array_member (found, "disks");
      printf ("Name:        %s\nCreated:     %s\nParent:      %s\nCurrent:     %s\n",
              ostr0 (found, "name"), ostr0 (found, "created"),
              ostr (found, "parent") ? ostr (found, "parent") : "-",
              json_object_get_boolean_member (found, "current") ? "yes" : "no");
      if (ostr (found, "description"))
        printf ("Description: %s\n", ostr (found, "description"));
      if (ostr (found, "memory"))
        printf ("Memory:      %s (%" G_GINT64_FORMAT " bytes)\n", ostr (found, "memory"),
                json_object_get_int_member_with_default (found, "memory_size", 0));
      if (ostr (found, "nvram"))
        printf ("NVRAM:       %s (of %s)\n", ostr (found, "nvram"),
                ostr0 (found, "nvram_source"));
      for (guint i = 0; i < json_array_get_length (disks); i++) {
        JsonObject *d = json_array_get_object_element (disks, i);
        printf ("Disk %-6s  %-15s %s\n", ostr0 (d, "target"), ostr0 (d, "backend"),
                ostr0 (d, "locator"));
      }
      if (vnode)
        print_verify (vnode, argv[1]);
    }
  } else if (co.json) {
    out (json);
    out ("\n");
  } else if (names) {
    JsonArray *snaps = json_object_get_array_member (o, "snapshots");
    for (guint i = 0; snaps && i < json_array_get_length (snaps); i++) {
      out (ostr0 (json_array_get_object_element (snaps, i), "name"));
      out ("\n");
    }
  } else if (which == 0) {
    JsonArray *snaps = json_object_get_array_member (o, "snapshots");
    JsonObject *pend = json_object_has_member (o, "pending")
                       && !json_node_is_null (json_object_get_member (o, "pending"))
                       ? json_object_get_object_member (o, "pending") : NULL;
    if (pend && json_object_get_boolean_member_with_default (pend, "damaged", FALSE))
      printf ("PENDING: an operation left a journal that vmsnap will not replay: "
              "%s\n", ostr0 (pend, "error"));
    else if (pend)
      printf ("PENDING: %s %s did not finish%s%s; run vmsnap recover %s\n",
              ostr0 (pend, "operation"), ostr0 (pend, "snapshot"),
              ostr (pend, "error") ? ": " : "", ostr0 (pend, "error"), argv[1]);
    if (tree) {
      g_autoptr (GHashTable) shown = g_hash_table_new (NULL, NULL);
      print_tree (snaps, NULL, 0, shown);
    }
    else {
      printf ("%-24s %-21s %-24s %s\n", "NAME", "CREATED", "PARENT", "DESCRIPTION");
      for (guint i = 0; i < json_array_get_length (snaps); i++) {
        JsonObject *s = json_array_get_object_element (snaps, i);
        printf ("%-24s %-21s %-24s %s%s%s\n", ostr0 (s, "name"), ostr0 (s, "created"),
                ostr (s, "parent") ? ostr (s, "parent") : "-",
                ostr (s, "description") ? ostr (s, "description") : "",
                json_object_get_boolean_member (s, "current") ? "  (current)" : "",
                json_object_has_member (s, "lost_disks")
                ? "  (partial: a disk's data is gone, see vmsnap check)" : "");
      }
    }
    if (json_object_get_int_member (o, "kept_unnamed_points") > 0)
      printf ("(%" G_GINT64_FORMAT " unnamed point(s) kept for their dependents; "
              "vmsnap merge consolidates them)\n",
              json_object_get_int_member (o, "kept_unnamed_points"));
    if (vnode)
      print_verify (vnode, argv[1]);
  } else {
    JsonArray *disks = json_object_get_array_member (o, "disks");
    for (guint i = 0; i < json_array_get_length (disks); i++) {
      JsonObject *d = json_array_get_object_element (disks, i);
      JsonArray *files = json_object_get_array_member (d, "files");
      printf ("%s:\n", ostr0 (d, "target"));
      for (guint k = 0; k < json_array_get_length (files); k++) {
        JsonObject *f = json_array_get_object_element (files, k);
        JsonArray *h = json_object_get_array_member (f, "holds");
        GString *hs = g_string_new (NULL);
        char a[32], sz[32];
        human_size ((guint64) json_object_get_int_member_with_default (f, "size", 0), sz, sizeof sz);
        human_size ((guint64) json_object_get_int_member_with_default (f, "allocated", 0), a, sizeof a);
        for (guint m = 0; h && m < json_array_get_length (h); m++)
          g_string_append_printf (hs, "%s%s", m ? ", " : "", json_array_get_string_element (h, m));
        printf ("  %-7s %s (%s, %s, %s allocated)%s%s%s%s\n",
                g_strcmp0 (ostr (f, "role"), "active") == 0 ? "active" : "",
                ostr (f, "path") ? ostr (f, "path") : ostr0 (f, "locator"),
                ostr (f, "format") ? ostr (f, "format") : "?", sz, a,
                hs->len ? " holds " : "", hs->str,
                ostr (f, "backing") ? " <- " : "", ostr (f, "backing") ? ostr (f, "backing") : "");
        if (*ostr0 (f, "error"))
          printf ("          cannot read it: %s\n", ostr0 (f, "error"));
        g_string_free (hs, TRUE);
      }
    }
  }
  common_clear (&co);
  return left ? 6 : 0;
}

static int
cmd_list (int argc, char **argv)
{
  return view_cmd (argc, argv, 0);
}

static int
cmd_info (int argc, char **argv)
{
  return view_cmd (argc, argv, 1);
}

static int
cmd_chain (int argc, char **argv)
{
  return view_cmd (argc, argv, 2);
}

/* ---------------------------------------------------------------- main */

static void
main_usage (FILE *f)
{
  fprintf (f, "Usage: vmsnap COMMAND [OPTIONS] [ARGS]\n\n"
              "Snapshots of VM disks across qcow2, image files, LVM and Ceph RBD.\n\n"
              "Commands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (f, "  %-9s %-12s %s\n", commands[i].name, commands[i].args,
             commands[i].summary);
  fprintf (f, "\n'vmsnap COMMAND --help' describes a command.\n\n%s", exit_codes);
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  /* Files vmsnap creates (overlays, catalogs, journals) are private. */
  umask (077);
  if (argc < 2) {
    main_usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0) {
    if (argc > 2 && strcmp (argv[1], "help") == 0) {
      char *hargv[] = { argv[2], (char *) "--help", NULL };
      for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
        if (strcmp (commands[i].name, argv[2]) == 0) {
          g_autofree char *prg = g_strdup_printf ("vmsnap %s", argv[2]);
          g_set_prgname (prg);
          return commands[i].run (2, hargv);
        }
    }
    main_usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("vmsnap %s (backend ABI %d)\n", PACKAGE_VERSION, VMSNAP_BACKEND_ABI_VERSION);
    return 0;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i].name, argv[1]) == 0) {
      g_autofree char *prg = g_strdup_printf ("vmsnap %s", argv[1]);
      g_set_prgname (prg);
      return commands[i].run (argc - 1, argv + 1);
    }
  fprintf (stderr, "vmsnap: unknown command '%s'\n\n", argv[1]);
  main_usage (stderr);
  return 2;
}
