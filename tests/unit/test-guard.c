/* The central guard (libvmsnap/guard.c, doc/security.md) on its own: which
 * storage a domain's disks use, by identity (a symlink or another spelling
 * of a path is the same file; /dev/VG/LV and lvm:VG/LV the same LV; an RBD
 * snapshot's image), what each locator form and each qemu-img command
 * line would remove or write, and vmsnap_op_run refusing a qemu-img that
 * would write another disk's image before it runs anything.  Linked with
 * libvmsnap's sources (the guard is internal). */
#include <config.h>

#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "../../libvmsnap/internal.h"

static char *tmpdir;

static vmsnap_domain *
domain (void)
{
  g_autofree char *xml = g_strdup_printf (
    "<domain type='qemu'><name>g</name><uuid>7d4b0a5e-3f37-4a4a-9d55-0f4bcd1b1a11</uuid>"
    "<devices>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='%s/a.qcow2'/><target dev='vda'/></disk>"
    "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
    "<source dev='/dev/vg0/data'/><target dev='vdb'/></disk>"
    "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
    "<source protocol='rbd' name='pool/img'><host name='127.0.0.1'/></source>"
    "<target dev='vdc'/></disk>"
    "</devices></domain>", tmpdir);
  vmsnap_domain *dom = vmsnap_domain_new ();
  g_autoptr (GError) err = NULL;

  g_assert_true (vmsnap_domain_parse (dom, xml, strlen (xml), "test", &err));
  g_assert_no_error (err);
  return dom;
}

static void
expect (const vmsnap_guard *g, const char *target, const char *storage,
        unsigned int what, gboolean allowed, const char *needle)
{
  g_autoptr (GError) err = NULL;
  gboolean ok = vmsnap_guard_check (g, target, storage, what, &err);

  if (ok != allowed)
    g_error ("guard: %s %s by %s: got %s (%s)", what == VMSNAP_GUARD_REMOVE
             ? "remove" : "write", storage, target, ok ? "allowed" : "refused",
             err ? err->message : "");
  if (!ok && needle && strstr (err->message, needle) == NULL)
    g_error ("guard message '%s' lacks '%s'", err->message, needle);
}

static void
test_identity (void)
{
  g_autoptr (vmsnap_domain) dom = domain ();
  g_autofree char *a = g_build_filename (tmpdir, "a.qcow2", NULL);
  g_autofree char *link = g_build_filename (tmpdir, "link.qcow2", NULL);
  g_autofree char *dotted = g_strdup_printf ("%s/./a.qcow2", tmpdir);
  g_autofree char *other = g_build_filename (tmpdir, "b.qcow2", NULL);
  vmsnap_guard *g;

  g_assert_true (g_file_set_contents (a, "x", 1, NULL));
  g_assert_true (g_file_set_contents (other, "x", 1, NULL));
  g_assert_cmpint (symlink (a, link), ==, 0);
  g = vmsnap_guard_new (dom);
  /* Its own active image: never removed, written by its own disk only. */
  expect (g, "vda", a, VMSNAP_GUARD_REMOVE, FALSE, "the active image of disk vda");
  expect (g, "vda", a, VMSNAP_GUARD_WRITE, TRUE, NULL);
  expect (g, "vdb", a, VMSNAP_GUARD_WRITE, FALSE, "disk vda uses it");
  /* Another spelling, a symlink: the same file. */
  expect (g, "vdb", link, VMSNAP_GUARD_REMOVE, FALSE, NULL);
  expect (g, "vdb", dotted, VMSNAP_GUARD_WRITE, FALSE, NULL);
  expect (g, "vda", other, VMSNAP_GUARD_REMOVE, TRUE, NULL);
  /* An LV by either name; an RBD image, also through one of its snapshots. */
  expect (g, "vda", "lvm:vg0/data", VMSNAP_GUARD_REMOVE, FALSE, "disk vdb");
  expect (g, "vda", "/dev/vg0/data", VMSNAP_GUARD_WRITE, FALSE, "disk vdb");
  expect (g, "vdb", "lvm:vg0/data-snap", VMSNAP_GUARD_REMOVE, TRUE, NULL);
  expect (g, "vda", "rbd:pool/img", VMSNAP_GUARD_REMOVE, FALSE, "disk vdc");
  expect (g, "vda", "rbd:pool/img@s1", VMSNAP_GUARD_WRITE, FALSE, "disk vdc");
  expect (g, "vdc", "rbd:pool/img@s1", VMSNAP_GUARD_WRITE, TRUE, NULL);
  expect (g, "vdc", "rbd:pool/img2", VMSNAP_GUARD_REMOVE, TRUE, NULL);
  /* Unknown flags are an error, not a pass. */
  expect (g, "vda", other, 4, FALSE, "unknown flags");
  g_assert_cmpstr (vmsnap_guard_other_user (g, "vda", "rbd:pool/img", &(gboolean) { 0 }), ==, "vdc");
  g_assert_null (vmsnap_guard_other_user (g, "vda", a, &(gboolean) { 0 }));
  vmsnap_guard_free (g);
  g_unlink (link);
  g_unlink (a);
  g_unlink (other);
}

static void
expect_loc (const char *loc, const char *storage, unsigned int what)
{
  unsigned int w = 0;
  g_autofree char *s = vmsnap_guard_locator_storage (loc, &w);

  g_assert_cmpstr (s, ==, storage);
  if (storage)
    g_assert_cmpuint (w, ==, what);
}

static void
test_locators (void)
{
  expect_loc ("qcow2:/i/a.qcow2", "/i/a.qcow2", VMSNAP_GUARD_REMOVE);
  expect_loc ("raw:/i/a.raw", "/i/a.raw", VMSNAP_GUARD_REMOVE);
  expect_loc ("qcow2:/i/a.qcow2#s1", "/i/a.qcow2", VMSNAP_GUARD_WRITE);
  expect_loc ("lvm:vg/lv", "lvm:vg/lv", VMSNAP_GUARD_REMOVE);
  expect_loc ("lvm:vg/old?restore=lv&rev=ab", NULL, 0);
  expect_loc ("rbd:p/i@s", "rbd:p/i", VMSNAP_GUARD_WRITE);
  expect_loc ("rbd:p/ns/i", "rbd:p/ns/i", VMSNAP_GUARD_REMOVE);
  expect_loc ("qcow2:relative", NULL, 0);
}

static void
expect_targets (const char *const *argv, const char *const *want)
{
  g_autoptr (GPtrArray) t = vmsnap_guard_qemu_img_targets (argv);
  guint n = 0;

  while (want[n])
    n++;
  if (t->len != n)
    g_error ("%s %s: %u targets, want %u", argv[0], argv[1], t->len, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpstr (t->pdata[i], ==, want[i]);
}

static void
test_qemu_img (void)
{
  const char *commit[] = { "/usr/bin/qemu-img", "commit", "-p", "-d", "-f", "qcow2",
                           "-b", "/i/base", "--", "/i/top", NULL };
  const char *commit_w[] = { "/i/base", "/i/top", NULL };
  const char *info[] = { "/usr/bin/qemu-img", "info", "-f", "qcow2", "--", "/i/a", NULL };
  const char *none[] = { NULL };
  const char *create[] = { "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-F",
                           "raw", "-b", "/i/base", "--", "/i/new", NULL };
  const char *create_w[] = { "/i/new", NULL };
  const char *create_sz[] = { "/usr/bin/qemu-img", "create", "-f", "raw", "--", "/i/new",
                              "16M", NULL };
  const char *snap[] = { "/usr/bin/qemu-img", "snapshot", "-q", "--image-opts", "-d",
                         "s1", "--", "driver=qcow2,file.driver=file,file.filename=/i/a", NULL };
  const char *snap_w[] = { "/i/a", NULL };
  const char *check_r[] = { "/usr/bin/qemu-img", "check", "-r", "leaks", "-f", "qcow2",
                            "--", "/i/a", NULL };
  const char *check[] = { "/usr/bin/qemu-img", "check", "-f", "qcow2", "--", "/i/a", NULL };
  const char *rebase[] = { "/usr/bin/qemu-img", "rebase", "-u", "-f", "qcow2", "-F",
                           "qcow2", "-b", "/i/base", "--", "/i/top", NULL };
  const char *rebase_w[] = { "/i/top", NULL };
  const char *other[] = { "/sbin/lvcreate", "commit", "/i/a", NULL };

  expect_targets (commit, commit_w);
  expect_targets (info, none);
  expect_targets (create, create_w);
  expect_targets (create_sz, create_w);
  expect_targets (snap, snap_w);
  expect_targets (check_r, snap_w);
  expect_targets (check, none);
  expect_targets (rebase, rebase_w);
  expect_targets (other, none);
}

/* vmsnap_op_run with the guard: a qemu-img that would write vda's image,
 * run for disk vdb, is refused before anything is executed (the program
 * does not exist: running it would fail with another error). */
static void
test_op_run (void)
{
  g_autoptr (vmsnap_domain) dom = domain ();
  g_autofree char *a = g_build_filename (tmpdir, "a.qcow2", NULL);
  g_autoptr (vmsnap_journal) j = vmsnap_journal_new ("/nonexistent/journal");
  g_autoptr (GError) err = NULL;
  vmsnap_op *op;

  g_assert_true (g_file_set_contents (a, "x", 1, NULL));
  op = vmsnap_op_new (j, "vdb", "g", "7d4b0a5e-3f37-4a4a-9d55-0f4bcd1b1a11", FALSE,
                      NULL, tmpdir, NULL);
  op->guard = vmsnap_guard_new (dom);
  {
    const char *argv[] = { "/nonexistent/qemu-img", "commit", "-d", "-f", "qcow2",
                           "-b", a, "--", "/i/top", NULL };
    g_assert_false (vmsnap_op_run (op, argv, NULL, &err));
    g_assert_nonnull (strstr (err->message, "refusing to write"));
    g_clear_error (&err);
    g_assert_false (vmsnap_op_run_progress (op, argv, &err));
    g_assert_nonnull (strstr (err->message, "refusing to write"));
    g_clear_error (&err);
  }
  g_assert_false (vmsnap_op_guard (op, "rbd:pool/img", VMSNAP_GUARD_REMOVE, &err));
  g_assert_nonnull (strstr (err->message, "disk vdc"));
  vmsnap_op_free (op);
  g_unlink (a);
}

int
main (int argc, char **argv)
{
  int r;

  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vmsnap-guard-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/guard/identity", test_identity);
  g_test_add_func ("/guard/locators", test_locators);
  g_test_add_func ("/guard/qemu-img", test_qemu_img);
  g_test_add_func ("/guard/op-run", test_op_run);
  r = g_test_run ();
  g_rmdir (tmpdir);
  g_free (tmpdir);
  return r;
}
