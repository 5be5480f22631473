/* The contract as the shipped backends keep it: the registration fills
 * abi_version/struct_size, state-changing slots reject unknown flags, and
 * slots not delivered yet fail with NOT_IMPLEMENTED (never a fake success);
 * probe gives exactly one verdict. */
#include <config.h>

#include <string.h>
#include <ltdl.h>

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

static const vmsnap_backend *
open_backend (const char *name)
{
  const char *top = g_getenv ("abs_top_builddir");
  g_autofree char *base = g_strdup_printf ("%s/backends/%s/%s", top, name, name);
  g_autofree char *la = g_strconcat (base, ".la", NULL);
  lt_dlhandle h;
  const vmsnap_backend *(*entry) (void);

  if (!g_file_test (la, G_FILE_TEST_EXISTS))
    return NULL;                /* optional backend not built */
  h = lt_dlopenext (base);
  if (h == NULL)
    g_error ("cannot load %s: %s", base, lt_dlerror ());
  entry = (const vmsnap_backend *(*) (void)) lt_dlsym (h, "vmsnap_backend_entry");
  g_assert_nonnull (entry);
  return entry ();
}

static void
check_slots (gconstpointer data)
{
  const char *name = data;
  const vmsnap_backend *be = open_backend (name);
  vmsnap_disk disk = { .struct_size = sizeof disk, .target = "vdz",
                       .type = VMSNAP_DISK_TYPE_FILE, .type_name = "file" };
  vmsnap_merge_spec spec = { .struct_size = sizeof spec };

  if (be == NULL) {
    g_test_skip ("backend not built");
    return;
  }
  g_assert_cmpuint (be->abi_version, ==, VMSNAP_BACKEND_ABI_VERSION);
  g_assert_cmpuint (be->struct_size, ==, sizeof (vmsnap_backend));
  g_assert_cmpstr (be->name, ==, name);

  /* Unknown flags are rejected before anything else. */
  {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->create (NULL, &disk, "s1", 0x80000000u, NULL, &err), ==, -1);
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS);
  }
  /* The pause window's slots come in pairs, check flags, and never
   * succeed without an operation context. */
  g_assert_true ((be->prepare != NULL) == (be->abort != NULL));
  if (be->prepare) {
    g_autoptr (GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL;
    g_assert_cmpint (be->prepare (NULL, &disk, "s1", 0x80000000u, &e1), ==, -1);
    g_assert_error (e1, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS);
    g_assert_cmpint (be->abort (NULL, &disk, "s1", 0x80000000u, &e2), ==, -1);
    g_assert_error (e2, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS);
    g_assert_cmpint (be->prepare (NULL, &disk, "s1", 0, &e3), ==, -1);
    g_assert_nonnull (e3);
    g_assert_cmpint (be->abort (NULL, &disk, "s1", 0, &e4), ==, -1);
    g_assert_nonnull (e4);
  }
  /* Delivered backends are exercised by the integration tests; here only
   * that they never succeed without an operation context. */
  if (strcmp (name, "qcow2-external") == 0 || strcmp (name, "qcow2-internal") == 0
      || strcmp (name, "lvm") == 0 || strcmp (name, "rbd") == 0) {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->create (NULL, &disk, "s1", 0, NULL, &err), ==, -1);
    g_assert_nonnull (err);
    /* qcow2-internal has no chain to consolidate: no merge slot. */
    g_assert_true ((be->merge != NULL) == (strcmp (name, "qcow2-internal") != 0));
    g_assert_nonnull (be->discard);
    g_assert_nonnull (be->list);
    return;
  }
  /* Not delivered yet: a clear error naming backend, slot and disk. */
  {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->create (NULL, &disk, "s1", 0, NULL, &err), ==, -1);
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_NOT_IMPLEMENTED);
    g_assert_nonnull (strstr (err->message, name));
    g_assert_nonnull (strstr (err->message, "vdz"));
    g_assert_cmpint (vmsnap_exit_code (err), ==, 4);
  }
  {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->revert (NULL, &disk, "x", 0, NULL, &err), ==, -1);
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_NOT_IMPLEMENTED);
  }
  {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->delete (NULL, &disk, "x", 0, NULL, &err), ==, -1);
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_NOT_IMPLEMENTED);
  }
  if (be->merge) {
    g_autoptr (GError) err = NULL;
    g_assert_cmpint (be->merge (NULL, &disk, &spec, 0, NULL, &err), ==, -1);
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_NOT_IMPLEMENTED);
  }
}

static void
test_exit_codes (void)
{
  struct { int code; int exit; } map[] = {
    { VMSNAP_ERR_FAILED, 1 }, { VMSNAP_ERR_USAGE, 2 },
    { VMSNAP_ERR_INVALID_INPUT, 3 }, { VMSNAP_ERR_UNSUPPORTED, 4 },
    { VMSNAP_ERR_NOT_IMPLEMENTED, 4 }, { VMSNAP_ERR_BUSY, 5 },
    { VMSNAP_ERR_INVALID_FLAGS, 1 }, { VMSNAP_ERR_BACKEND_LOAD, 1 },
  };

  g_assert_cmpint (vmsnap_exit_code (NULL), ==, 0);
  for (size_t i = 0; i < G_N_ELEMENTS (map); i++) {
    g_autoptr (GError) e = g_error_new (VMSNAP_ERROR, map[i].code, "x");
    g_assert_cmpint (vmsnap_exit_code (e), ==, map[i].exit);
  }
  {
    g_autoptr (GError) e = g_error_new (G_FILE_ERROR, G_FILE_ERROR_NOENT, "x");
    g_assert_cmpint (vmsnap_exit_code (e), ==, 1);
  }
}

static void
test_check_flags (void)
{
  g_autoptr (GError) err = NULL;

  g_assert_true (vmsnap_check_flags ("b", "create", 0x3, 0x3, NULL));
  g_assert_false (vmsnap_check_flags ("b", "create", 0x4, 0x3, &err));
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS);
  g_assert_nonnull (strstr (err->message, "0x4"));
}

static void
test_caps_names (void)
{
  g_auto (GStrv) none = vmsnap_caps_names (0);
  g_auto (GStrv) two = vmsnap_caps_names (VMSNAP_CAP_MEMORY | VMSNAP_CAP_CREATE_ONLINE);

  g_assert_cmpuint (g_strv_length (none), ==, 0);
  g_assert_cmpuint (g_strv_length (two), ==, 2);
  g_assert_cmpstr (two[0], ==, "create-online");
  g_assert_cmpstr (two[1], ==, "memory");
}

int
main (int argc, char **argv)
{
  static const char *names[] = { "qcow2-internal", "qcow2-external", "lvm", "rbd" };

  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (lt_dlinit (), ==, 0);
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *path = g_strdup_printf ("/contract/slots/%s", names[i]);
    g_test_add_data_func (path, names[i], check_slots);
  }
  g_test_add_func ("/contract/exit-codes", test_exit_codes);
  g_test_add_func ("/contract/check-flags", test_check_flags);
  g_test_add_func ("/contract/caps-names", test_caps_names);
  return g_test_run ();
}
