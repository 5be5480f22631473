/* The configuration's validation, one value at a time, for every setting
 * type: the test module "good" declares one setting of each type
 * (tests/unit/modules/testmod.c).  Each value goes through the command
 * line and the file; rejections are usage errors (exit 2) naming the
 * place, the section, the key and what is allowed; accepted values read
 * back through the getters.  Then precedence and the typed getters. */
#include <config.h>

#include <string.h>
#include <glib/gstdio.h>

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

static char *tmpdir;

typedef struct {
  const char *key;      /* in section [good] */
  const char *value;
  const char *error;    /* NULL: accepted; else part of the message */
} vcase;

static const vcase cases[] = {
  { "name", "x y z", NULL },
  { "name", "", "='' is empty: give a value" },
  { "count", "-5", NULL },
  { "count", "10", NULL },
  { "count", "11", "='11' is not a number of apples from -5 to 10" },
  { "count", "-6", "is not a number of apples from -5 to 10" },
  { "count", "3.0", "is not a number of apples" },
  { "count", "0x3", "is not a number of apples" },
  { "count", "", "is not a number of apples" },
  { "flag", "yes", NULL },
  { "flag", "Off", NULL },
  { "flag", "1", NULL },
  { "flag", "maybe", "='maybe': use true or false" },
  { "colour", "blue", NULL },
  { "colour", "Blue", "='Blue': use red, green or blue" },
  { "size", "100%", NULL },
  { "size", "0.5%", NULL },
  { "size", "512M", NULL },
  { "size", "1.5GiB", NULL },
  { "size", "4096", NULL },
  { "size", "2tb", NULL },
  { "size", "101%", "='101%' is neither a percentage" },
  { "size", "0%", "is neither a percentage" },
  { "size", "0", "is neither a percentage" },
  { "size", "-1G", "is neither a percentage" },
  { "size", "1X", "is neither a percentage" },
  { "size", "1Gbit", "is neither a percentage" },
  { "size", "inf", "is neither a percentage" },
  { "size", "nan%", "is neither a percentage" },
  { "size", "%", "is neither a percentage" },
  { "size", "99999999999999999999P", "is neither a percentage" },
};

static void
check_error (GError *err, const char *where, const vcase *c)
{
  if (err == NULL)
    g_error ("[good] %s='%s' was accepted (%s)", c->key, c->value, where);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE);
  g_assert_cmpint (vmsnap_exit_code (err), ==, 2);
  if (strstr (err->message, where) == NULL || strstr (err->message, c->error) == NULL)
    g_error ("[good] %s='%s': message '%s' lacks '%s' or '%s'", c->key, c->value,
             err->message, where, c->error);
}

static void
test_values (void)
{
  g_autofree char *file = g_build_filename (tmpdir, "case.conf", NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    const vcase *c = &cases[i];
    g_autofree char *name = g_strdup_printf ("good.%s", c->key);
    g_autofree char *setting = g_strdup_printf ("%s=%s", name, c->value);
    g_autofree char *text = g_strdup_printf ("[good]\n%s=%s\n", c->key, c->value);
    g_autofree char *file_where = g_strdup_printf ("%s: [good] %s", file, c->key);
    g_autofree char *cli_where = g_strdup_printf ("option %s", name);
    const char *settings[] = { setting, NULL };
    vmsnap_config_options co = { .file = file, .settings = settings };
    vmsnap_config_options fo = { .file = file };
    g_autoptr (GError) e1 = NULL;
    g_autoptr (GError) e2 = NULL;
    g_autoptr (vmsnap_ctx) c1 = NULL;
    g_autoptr (vmsnap_ctx) c2 = NULL;

    g_assert_true (g_file_set_contents (file, "", -1, NULL));
    c1 = vmsnap_ctx_new_full (&co, &e1);
    g_assert_true (g_file_set_contents (file, text, -1, NULL));
    c2 = vmsnap_ctx_new_full (&fo, &e2);
    if (c->error == NULL) {
      g_assert_no_error (e1);
      g_assert_no_error (e2);
      g_assert_cmpstr (vmsnap_option_get (vmsnap_ctx_config (c1), name), ==, c->value);
      g_assert_cmpstr (vmsnap_option_get (vmsnap_ctx_config (c2), name), ==, c->value);
      continue;
    }
    g_assert_null (c1);
    check_error (e1, cli_where, c);
    g_assert_null (c2);
    check_error (e2, file_where, c);
  }
}

/* Defaults, then file < environment < command line, and the getters. */
static void
test_precedence (void)
{
  g_autofree char *file = g_build_filename (tmpdir, "prec.conf", NULL);
  g_autofree char *in_file = g_strdup_printf ("good.count in %s", file);
  const char *settings[] = { "good.colour=red", "good.size=1k", "good.size=50%", NULL };
  vmsnap_config_options co = { .file = file, .settings = settings };
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_ctx) ctx = NULL;
  const vmsnap_config *cfg;
  bool pct = FALSE;

  g_assert_true (g_file_set_contents (file, "[good]\ncount = 7\ncolour = blue\n"
                                      "flag = on\nname = from file\n", -1, NULL));
  g_setenv ("VMSNAP_TEST_GOOD_COLOUR", "green", TRUE);
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_unsetenv ("VMSNAP_TEST_GOOD_COLOUR");
  g_assert_no_error (err);
  cfg = vmsnap_ctx_config (ctx);
  g_assert_cmpint (vmsnap_option_get_int (cfg, "good.count"), ==, 7);
  g_assert_cmpstr (vmsnap_option_origin (cfg, "good.count"), ==, in_file);
  g_assert_true (vmsnap_option_get_bool (cfg, "good.flag"));
  g_assert_cmpstr (vmsnap_option_get (cfg, "good.name"), ==, "from file");
  /* The command line over the environment over the file. */
  g_assert_cmpstr (vmsnap_option_get (cfg, "good.colour"), ==, "red");
  g_assert_cmpstr (vmsnap_option_origin (cfg, "good.colour"), ==,
                   "good.colour on the command line");
  /* The last of several wins; a percentage is of WHOLE, rounded up. */
  g_assert_cmpuint (vmsnap_option_get_size (cfg, "good.size", 1001, &pct), ==, 501);
  g_assert_true (pct);
  /* Defaults of the core; undeclared keys and no configuration. */
  g_assert_cmpint (vmsnap_option_get_int (cfg, "vmsnap.quiesce-timeout"), ==, 10);
  g_assert_cmpstr (vmsnap_option_origin (cfg, "vmsnap.quiesce-timeout"), ==,
                   "vmsnap.quiesce-timeout, the default");
  g_assert_null (vmsnap_option_get (cfg, "good.nosuch"));
  g_assert_null (vmsnap_option_get (NULL, "good.count"));
  g_assert_cmpint (vmsnap_option_get_int (cfg, "good.name"), ==, 0);
  g_assert_false (vmsnap_option_get_bool (NULL, "good.flag"));
}

static void
test_env (void)
{
  g_autofree char *file = g_build_filename (tmpdir, "env.conf", NULL);
  vmsnap_config_options co = { .file = file };
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_ctx) ctx = NULL;
  const vmsnap_config *cfg;
  bool pct = TRUE;

  g_assert_true (g_file_set_contents (file, "[good]\ncount = 7\nsize = 2k\n", -1, NULL));
  g_setenv ("VMSNAP_TEST_GOOD_COUNT", "-2", TRUE);
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_assert_no_error (err);
  cfg = vmsnap_ctx_config (ctx);
  g_assert_cmpint (vmsnap_option_get_int (cfg, "good.count"), ==, -2);
  g_assert_cmpstr (vmsnap_option_origin (cfg, "good.count"), ==, "VMSNAP_TEST_GOOD_COUNT");
  g_assert_cmpuint (vmsnap_option_get_size (cfg, "good.size", 1, &pct), ==, 2048);
  g_assert_false (pct);
  g_clear_pointer (&ctx, vmsnap_ctx_free);

  /* Empty is unset. */
  g_setenv ("VMSNAP_TEST_GOOD_COUNT", "", TRUE);
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_assert_no_error (err);
  g_assert_cmpint (vmsnap_option_get_int (vmsnap_ctx_config (ctx), "good.count"), ==, 7);
  g_clear_pointer (&ctx, vmsnap_ctx_free);

  g_setenv ("VMSNAP_TEST_GOOD_COUNT", "eleven", TRUE);
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_unsetenv ("VMSNAP_TEST_GOOD_COUNT");
  g_assert_null (ctx);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE);
  g_assert_nonnull (strstr (err->message, "VMSNAP_TEST_GOOD_COUNT='eleven' is not a number "
                            "of apples from -5 to 10 (the environment variable for good.count)"));
}

/* Sections of modules that are not loaded: ignored with a note when the
 * module exists (refused here), an error when nothing by that name does. */
static void
test_sections (void)
{
  g_autofree char *file = g_build_filename (tmpdir, "sect.conf", NULL);
  vmsnap_config_options co = { .file = file };
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_ctx) ctx = NULL;
  g_autofree char *json = NULL;

  g_assert_true (g_file_set_contents (file, "[badopts]\ncount = 1\n[noslot]\n", -1, NULL));
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_assert_no_error (err);
  json = vmsnap_config_to_json (ctx);
  g_assert_nonnull (strstr (json, "section [badopts] of "));
  g_assert_nonnull (strstr (json, "ignored: backend badopts: module "));
  /* An empty section is not worth a note. */
  g_assert_null (strstr (json, "[noslot]"));
  g_clear_pointer (&ctx, vmsnap_ctx_free);

  g_assert_true (g_file_set_contents (file, "[nosuch]\n", -1, NULL));
  ctx = vmsnap_ctx_new_full (&co, &err);
  g_assert_null (ctx);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE);
  g_assert_nonnull (strstr (err->message, "unknown section [nosuch] (known sections: vmsnap, "));
}

int
main (int argc, char **argv)
{
  const char *mods = g_getenv ("VMSNAP_TEST_MODULES");
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_assert_nonnull (mods);
  g_setenv ("VMSNAP_BACKEND_DIR", mods, TRUE);
  g_unsetenv ("VMSNAP_CONFIG");
  g_unsetenv ("VMSNAP_TEST_GOOD_COUNT");
  g_unsetenv ("VMSNAP_TEST_GOOD_COLOUR");
  tmpdir = g_dir_make_tmp ("vmsnap-test-config.XXXXXX", NULL);
  g_assert_nonnull (tmpdir);

  g_test_add_func ("/config/values", test_values);
  g_test_add_func ("/config/precedence", test_precedence);
  g_test_add_func ("/config/environment", test_env);
  g_test_add_func ("/config/sections", test_sections);
  rc = g_test_run ();
  {
    const char *files[] = { "case.conf", "prec.conf", "env.conf", "sect.conf" };
    for (size_t i = 0; i < G_N_ELEMENTS (files); i++) {
      g_autofree char *f = g_build_filename (tmpdir, files[i], NULL);
      g_unlink (f);
    }
    g_rmdir (tmpdir);
  }
  g_free (tmpdir);
  return rc;
}
