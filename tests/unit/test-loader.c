/* The loader: each failure mode of a module gives its own error, and every
 * backend built in the tree loads from the build tree. */
#include <config.h>

#include <string.h>

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

static vmsnap_ctx *ctx;

static const vmsnap_backend_info *
find (const char *name)
{
  for (size_t i = 0; i < vmsnap_backend_count (ctx); i++) {
    const vmsnap_backend_info *bi = vmsnap_backend_get (ctx, i);
    if (strcmp (bi->name, name) == 0)
      return bi;
  }
  return NULL;
}

static void
expect (const char *name, vmsnap_backend_status status, const char *needle)
{
  const vmsnap_backend_info *bi = find (name);

  g_assert_nonnull (bi);
  if (bi->status != status)
    g_error ("%s: status %s, expected %s (%s)", name,
             vmsnap_backend_status_name (bi->status),
             vmsnap_backend_status_name (status), bi->message);
  if (needle) {
    g_assert_nonnull (bi->message);
    if (strstr (bi->message, needle) == NULL)
      g_error ("%s: message '%s' lacks '%s'", name, bi->message, needle);
  }
}

static void
test_good (void)
{
  const vmsnap_backend_info *bi = find ("good");

  expect ("good", VMSNAP_BACKEND_LOADED, NULL);
  g_assert_cmpstr (bi->version, ==, "1.0");
  g_assert_cmpuint (bi->caps, ==, VMSNAP_CAP_CREATE_OFFLINE);
  g_assert_null (bi->message);
  g_assert_true (g_str_has_suffix (bi->path, ".so"));
}

static void
test_badabi (void)
{
  expect ("badabi", VMSNAP_BACKEND_REFUSED, "ABI 99");
}

static void
test_noslot (void)
{
  expect ("noslot", VMSNAP_BACKEND_REFUSED, "mandatory slot 'revert' is NULL");
}

static void
test_noabort (void)
{
  expect ("noabort", VMSNAP_BACKEND_REFUSED, "a 'prepare' slot but no 'abort' slot");
}

static void
test_small (void)
{
  expect ("small", VMSNAP_BACKEND_REFUSED, "registers a struct of 16 bytes");
}

/* A module built before the options slot: loads, the slot zero-filled
 * (what its struct does not have is never read). */
static void
test_older_struct (void)
{
  expect ("old", VMSNAP_BACKEND_LOADED, NULL);
}

static void
test_bad_options (void)
{
  expect ("badopts", VMSNAP_BACKEND_REFUSED,
          "bad settings declaration: setting 'count': the default 'many' is "
          "not a valid int");
}

static void
test_noentry (void)
{
  expect ("noentry", VMSNAP_BACKEND_REFUSED, "does not export vmsnap_backend_entry");
}

static void
test_unresolved (void)
{
  expect ("unresolved", VMSNAP_BACKEND_LOAD_FAILED,
          "vmsnap_test_symbol_defined_nowhere");
  expect ("unresolved", VMSNAP_BACKEND_LOAD_FAILED, "ldd(1)");
}

/* Every backend module present in the build tree loads from it. */
static void
test_build_tree (void)
{
  const char *top = g_getenv ("abs_top_builddir");
  const char *names[] = { "qcow2-internal", "qcow2-external", "lvm", "rbd" };
  guint built = 0;

  g_assert_nonnull (top);
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *la = g_strdup_printf ("%s/backends/%s/%s.la", top,
                                           names[i], names[i]);
    const vmsnap_backend_info *bi = find (names[i]);
    g_assert_nonnull (bi);
    if (!g_file_test (la, G_FILE_TEST_EXISTS)) {
      g_assert_cmpint (bi->status, ==, VMSNAP_BACKEND_NOT_INSTALLED);
      g_assert_nonnull (strstr (bi->message, "package vmsnap-backend-"));
      continue;
    }
    built++;
    expect (names[i], VMSNAP_BACKEND_LOADED, NULL);
    g_assert_true (g_str_has_prefix (bi->path, top));
    g_assert_cmpstr (bi->version, ==, PACKAGE_VERSION);
    g_assert_true (bi->caps & VMSNAP_CAP_CREATE_OFFLINE);
  }
  /* The qcow2 backends are always built. */
  g_assert_cmpuint (built, >=, 2);
}

/* Loading twice in one process works: modules are never unloaded. */
static void
test_second_context (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_ctx) c2 = vmsnap_ctx_new (&err);

  g_assert_no_error (err);
  g_assert_cmpuint (vmsnap_backend_count (c2), ==, vmsnap_backend_count (ctx));
}

int
main (int argc, char **argv)
{
  const char *mods = g_getenv ("VMSNAP_TEST_MODULES");
  g_autoptr (GError) err = NULL;
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_assert_nonnull (mods);
  g_setenv ("VMSNAP_BACKEND_DIR", mods, TRUE);
  ctx = vmsnap_ctx_new (&err);
  g_assert_no_error (err);

  g_test_add_func ("/loader/good", test_good);
  g_test_add_func ("/loader/bad-abi", test_badabi);
  g_test_add_func ("/loader/missing-slot", test_noslot);
  g_test_add_func ("/loader/prepare-without-abort", test_noabort);
  g_test_add_func ("/loader/struct-too-small", test_small);
  g_test_add_func ("/loader/older-struct", test_older_struct);
  g_test_add_func ("/loader/bad-options", test_bad_options);
  g_test_add_func ("/loader/no-entry", test_noentry);
  g_test_add_func ("/loader/unresolved-symbol", test_unresolved);
  g_test_add_func ("/loader/build-tree", test_build_tree);
  g_test_add_func ("/loader/second-context", test_second_context);
  rc = g_test_run ();
  vmsnap_ctx_free (ctx);
  return rc;
}
