/* vmsnap — the command-line front end.  A thin layer on libvmsnap: option
 * parsing (GOptionContext), output, exit codes.  No storage logic here. */
#include <config.h>

#include <locale.h>
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

static const command commands[] = {
  { "backends", "", "list snapshot backends: loaded, not installed, or why not", cmd_backends },
  { "plan", "DOMAIN", "show which backend would snapshot each disk, and why", cmd_plan },
};

static const char exit_codes[] =
  "Exit status:\n"
  "  0  success\n"
  "  1  an operation failed (storage, tool, libvirt, backend load)\n"
  "  2  usage error\n"
  "  3  bad input: malformed domain XML, domain or file not found\n"
  "  4  not possible: no backend can take a disk, an override was refused,\n"
  "     or the operation is not implemented yet\n"
  "  5  busy: another vmsnap holds the domain\n";

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
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autoptr (vmsnap_domain) dom = NULL;
  g_autoptr (vmsnap_plan) plan = NULL;
  vmsnap_plan_options opts = { 0 };
  GError *err = NULL;
  g_autofree char *text = NULL;
  int rc;

  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_set_summary (oc,
    "DOMAIN is a libvirt domain name or UUID (on --connect URI), or a path to\n"
    "a domain XML file (no daemon needed).  For every disk: the backend that\n"
    "would snapshot it, why, and the limits that apply; for the VM: the mode,\n"
    "whether it must pause, and where the memory state would go.  Nothing is\n"
    "changed.  Exits 4 when some disk cannot be snapshotted as asked.");
  if ((rc = parse (oc, &argc, &argv)) >= 0)
    return rc;
  if (argc != 2)
    return usage_error (oc, "plan needs exactly one DOMAIN");
  ctx = vmsnap_ctx_new (&err);
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

/* ---------------------------------------------------------------- main */

static void
main_usage (FILE *f)
{
  fprintf (f, "Usage: vmsnap COMMAND [OPTIONS] [ARGS]\n\n"
              "Snapshots of VM disks across qcow2, image files, LVM and Ceph RBD.\n\n"
              "Commands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (f, "  %-9s %-8s %s\n", commands[i].name, commands[i].args,
             commands[i].summary);
  fprintf (f, "\n'vmsnap COMMAND --help' describes a command.\n\n%s", exit_codes);
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
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
