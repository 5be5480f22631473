/* vmsnap_qcow2_overlay_write (libvmsnap/qcow2new.c, issue 17 item 7): the
 * overlay vmsnap writes in process must be byte for byte the file
 * `qemu-img create -f qcow2 -u -F FMT -b NAME PATH SIZE` writes.  For a
 * spread of sizes (0, odd sizes, around the 512 MiB one L1 entry covers,
 * up to qcow2's 2 PiB), backing names (relative, absolute, spaces, commas,
 * UTF-8, QEMU's longest) and backing formats, both files are made and
 * compared; `qemu-img check` must find the overlay clean and `qemu-img
 * info` must read back the size, the backing name and format and QEMU's
 * defaults.  Refusals (a name too long, an unknown format, a size beyond
 * qcow2, unknown flags, not a regular file) must leave the file untouched.
 * Needs qemu-img: exit 77 without it. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <vmsnap/backend.h>

#define MiB ((guint64) 1 << 20)
#define GiB ((guint64) 1 << 30)
#define TiB ((guint64) 1 << 40)
#define PiB ((guint64) 1 << 50)

static char *tmpdir;
static int counter;

/* Run ARGV (no shell); its exit status is the result, its output in *OUT. */
static gboolean
run (const char *const *argv, char **out)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *errout = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH,
                               NULL, NULL, out, &errout, &status, &err));
  g_assert_no_error (err);
  if (!g_spawn_check_wait_status (status, NULL)) {
    g_test_message ("%s %s: %s", argv[0], argv[1], errout ? errout : "");
    return FALSE;
  }
  return TRUE;
}

static char *
new_path (const char *what)
{
  return g_strdup_printf ("%s/%s-%d.qcow2", tmpdir, what, counter++);
}

/* Our overlay at a new path, made as vmsnap makes it: O_EXCL, 0600. */
static char *
ours (const char *name, const char *fmt, guint64 size)
{
  g_autoptr (GError) err = NULL;
  char *p = new_path ("ours");
  int fd = open (p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

  g_assert_cmpint (fd, >=, 0);
  g_assert_true (vmsnap_qcow2_overlay_write (fd, name, fmt, size, 0, &err));
  g_assert_no_error (err);
  g_assert_cmpint (close (fd), ==, 0);
  return p;
}

static char *
theirs (const char *name, const char *fmt, guint64 size)
{
  g_autofree char *sz = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  char *p = new_path ("qemu");
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u",
                         "-F", fmt, "-b", name, "--", p, sz, NULL };

  g_assert_true (run (argv, NULL));
  return p;
}

static void
same_bytes (const char *a, const char *b)
{
  g_autofree char *da = NULL, *db = NULL;
  gsize la = 0, lb = 0;

  g_assert_true (g_file_get_contents (a, &da, &la, NULL));
  g_assert_true (g_file_get_contents (b, &db, &lb, NULL));
  for (gsize i = 0; i < MIN (la, lb); i++)
    if (da[i] != db[i])
      g_error ("%s and %s differ first at byte %" G_GSIZE_FORMAT
               " (0x%02x, qemu-img 0x%02x)", a, b, i, (guint8) da[i],
               (guint8) db[i]);
  g_assert_cmpuint (la, ==, lb);
}

/* qemu-img check, the backing file left out ("backing=": QEMU opens no
 * backing file; the names here mostly do not exist), format given. */
static void
check_clean (const char *p)
{
  g_autofree char *opts = g_strdup_printf ("driver=qcow2,file.driver=file,"
                                           "file.filename=%s,backing=", p);
  const char *argv[] = { "qemu-img", "check", "--output=json", "--image-opts",
                         opts, NULL };
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) jp = json_parser_new ();
  JsonObject *o;

  g_assert_null (strchr (p, ','));
  g_assert_true (run (argv, &out));      /* exit 0: no errors, no leaks */
  g_assert_true (json_parser_load_from_data (jp, out, -1, NULL));
  o = json_node_get_object (json_parser_get_root (jp));
  g_assert_cmpint (json_object_get_int_member (o, "check-errors"), ==, 0);
  g_assert_false (json_object_has_member (o, "leaks"));
  g_assert_false (json_object_has_member (o, "corruptions"));
}

static void
info_agrees (const char *p, const char *name, const char *fmt, guint64 size)
{
  const char *argv[] = { "qemu-img", "info", "-f", "qcow2", "--output=json",
                         "--", p, NULL };
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) jp = json_parser_new ();
  JsonObject *o, *d;

  g_assert_true (run (argv, &out));
  g_assert_true (json_parser_load_from_data (jp, out, -1, NULL));
  o = json_node_get_object (json_parser_get_root (jp));
  g_assert_cmpstr (json_object_get_string_member (o, "format"), ==, "qcow2");
  g_assert_cmpint (json_object_get_int_member (o, "virtual-size"), ==,
                   (gint64) ((size + 511) & ~(guint64) 511));
  g_assert_cmpint (json_object_get_int_member (o, "cluster-size"), ==, 65536);
  g_assert_cmpstr (json_object_get_string_member (o, "backing-filename"), ==, name);
  g_assert_cmpstr (json_object_get_string_member (o, "backing-filename-format"), ==, fmt);
  g_assert_false (json_object_get_boolean_member (o, "dirty-flag"));
  d = json_object_get_object_member (json_object_get_object_member (o, "format-specific"),
                                     "data");
  g_assert_cmpstr (json_object_get_string_member (d, "compat"), ==, "1.1");
  g_assert_cmpstr (json_object_get_string_member (d, "compression-type"), ==, "zlib");
  g_assert_cmpint (json_object_get_int_member (d, "refcount-bits"), ==, 16);
  g_assert_false (json_object_get_boolean_member (d, "lazy-refcounts"));
  g_assert_false (json_object_get_boolean_member (d, "corrupt"));
  g_assert_false (json_object_get_boolean_member (d, "extended-l2"));
}

static void
one (const char *name, const char *fmt, guint64 size)
{
  g_autofree char *a = ours (name, fmt, size);
  g_autofree char *b = theirs (name, fmt, size);
  struct stat st;

  g_test_message ("size %" G_GUINT64_FORMAT ", %s, backing %.40s%s",
                  size, fmt, name, strlen (name) > 40 ? "..." : "");
  same_bytes (a, b);
  check_clean (a);
  info_agrees (a, name, fmt, size);
  g_assert_cmpint (stat (a, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_cmpint (g_unlink (a), ==, 0);
  g_assert_cmpint (g_unlink (b), ==, 0);
}

static char *
longest_name (void)
{
  GString *s = g_string_new ("/");

  while (s->len < 1023)
    g_string_append (s, s->len % 200 == 199 ? "/" : "n");
  g_assert_cmpuint (s->len, ==, 1023);
  return g_string_free (s, FALSE);
}

static const char *const formats[] = {
  "qcow2", "raw", "vmdk", "qed", "vdi", "vpc", "vhdx", "luks", "qcow",
  "parallels", "bochs", "cloop", "dmg", NULL
};

static void
test_sizes (void)
{
  const guint64 sizes[] = {
    0, 1, 511, 512, 513, 65535, 65536, 12345679, 64 * MiB,
    512 * MiB - 1, 512 * MiB, 512 * MiB + 1, GiB, 100 * GiB,
    4 * TiB + 1, 16 * TiB, 16 * TiB + 512 * MiB, PiB + 3,
    2 * PiB - 1, 2 * PiB
  };
  g_autofree char *longest = longest_name ();
  const char *names[] = {
    "base.qcow2", "/var/lib/libvirt/images/base.img",
    "dir with spaces/b a s e.img", "a,b=c:d", "\303\274n\303\257c\303\270d\303\251",
    "../up/one.vmdk", longest, NULL
  };
  guint n_names = g_strv_length ((char **) names);
  guint n_fmts = g_strv_length ((char **) formats);

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    one (names[i % n_names], formats[i % n_fmts], sizes[i]);
}

static void
test_names_and_formats (void)
{
  g_autofree char *longest = longest_name ();

  for (guint i = 0; formats[i]; i++)
    one ("base", formats[i], 64 * MiB);
  one (longest, "qcow2", GiB + 1);
  one ("x", "raw", 1);
  one ("/", "raw", 100 * GiB);
}

/* A file that held something (an interrupted earlier run) is replaced. */
static void
test_rewrite (void)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *p = new_path ("rewrite");
  g_autofree char *q = theirs ("base.raw", "raw", GiB);
  g_autofree char *junk = g_malloc (4 * MiB);
  int fd;

  memset (junk, 0xa5, 4 * MiB);
  g_assert_true (g_file_set_contents (p, junk, 4 * MiB, NULL));
  fd = open (p, O_WRONLY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  g_assert_true (vmsnap_qcow2_overlay_write (fd, "base.raw", "raw", GiB, 0, &err));
  g_assert_no_error (err);
  close (fd);
  same_bytes (p, q);
}

/* With a backing file that exists, QEMU opens the chain and finds it
 * clean, and reads the overlay as the backing file's data. */
static void
test_real_backing (void)
{
  g_autofree char *base = g_build_filename (tmpdir, "real-base.raw", NULL);
  g_autofree char *p = NULL;
  g_autofree char *qemu_io = g_find_program_in_path ("qemu-io");
  const char *mk[] = { "qemu-img", "create", "-q", "-f", "raw", "--", base, "3M", NULL };
  const char *io[] = { "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", "--", base, NULL };

  g_assert_true (run (mk, NULL));
  if (qemu_io)
    g_assert_true (run (io, NULL));
  p = ours ("real-base.raw", "raw", 3 * MiB);
  {
    const char *check[] = { "qemu-img", "check", "-q", "-f", "qcow2", "--", p, NULL };
    const char *cmp[] = { "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw",
                          "--", p, base, NULL };
    g_assert_true (run (check, NULL));
    g_assert_true (run (cmp, NULL));
  }
}

/* Each refusal: FALSE, the error, and the file exactly as it was. */
static void
refused (const char *name, const char *fmt, guint64 size, unsigned int flags,
         int code)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *p = new_path ("refused");
  g_autofree char *back = NULL;
  gsize len = 0;
  int fd;

  g_assert_true (g_file_set_contents (p, "keep", 4, NULL));
  fd = open (p, O_WRONLY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  g_assert_false (vmsnap_qcow2_overlay_write (fd, name, fmt, size, flags, &err));
  g_assert_error (err, VMSNAP_ERROR, code);
  g_test_message ("refused: %s", err->message);
  close (fd);
  g_assert_true (g_file_get_contents (p, &back, &len, NULL));
  g_assert_cmpuint (len, ==, 4);
  g_assert_cmpmem (back, 4, "keep", 4);
}

static void
test_refusals (void)
{
  g_autofree char *longest = longest_name ();
  g_autofree char *too_long = g_strconcat (longest, "x", NULL);
  g_autoptr (GError) err = NULL;

  refused (too_long, "raw", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("", "raw", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused (NULL, "raw", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", NULL, GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "nosuchformat", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "file", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "QCOW2", GiB, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "raw", 2 * PiB + 1, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "raw", G_MAXUINT64, 0, VMSNAP_ERR_UNSUPPORTED);
  refused ("base", "raw", GiB, 1, VMSNAP_ERR_INVALID_FLAGS);
  /* The size limit is QEMU's: qemu-img refuses one sector more too. */
  {
    g_autofree char *p = new_path ("qemu-too-big");
    g_autofree char *sz = g_strdup_printf ("%" G_GUINT64_FORMAT, 2 * PiB + 512);
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u",
                           "-F", "raw", "-b", "base", "--", p, sz, NULL };
    g_assert_false (run (argv, NULL));
  }
  /* Not a regular file: a directory (read-only descriptor) and a pipe. */
  {
    int dfd = open (tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int pfd[2];

    g_assert_cmpint (dfd, >=, 0);
    g_assert_false (vmsnap_qcow2_overlay_write (dfd, "base", "raw", GiB, 0, &err));
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED);
    g_clear_error (&err);
    close (dfd);
    g_assert_cmpint (pipe (pfd), ==, 0);
    g_assert_false (vmsnap_qcow2_overlay_write (pfd[1], "base", "raw", GiB, 0, &err));
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED);
    g_clear_error (&err);
    close (pfd[0]);
    close (pfd[1]);
  }
  /* A descriptor open read-only: the write fails, with the reason. */
  {
    g_autofree char *p = new_path ("readonly");
    int fd;

    g_assert_true (g_file_set_contents (p, "", 0, NULL));
    fd = open (p, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint (fd, >=, 0);
    g_assert_false (vmsnap_qcow2_overlay_write (fd, "base", "raw", GiB, 0, &err));
    g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED);
    close (fd);
  }
}

int
main (int argc, char **argv)
{
  g_autofree char *qemu_img = g_find_program_in_path ("qemu-img");
  int rc;

  g_test_init (&argc, &argv, NULL);
  if (qemu_img == NULL) {
    g_print ("SKIP: no qemu-img\n");
    return 77;
  }
  tmpdir = g_dir_make_tmp ("vmsnap-qcow2new-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/qcow2new/sizes", test_sizes);
  g_test_add_func ("/qcow2new/names-and-formats", test_names_and_formats);
  g_test_add_func ("/qcow2new/rewrite", test_rewrite);
  g_test_add_func ("/qcow2new/real-backing", test_real_backing);
  g_test_add_func ("/qcow2new/refusals", test_refusals);
  rc = g_test_run ();
  {
    const char *argv2[] = { "rm", "-rf", "--", tmpdir, NULL };
    g_spawn_sync (NULL, (char **) argv2, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                  NULL, NULL, NULL, NULL);
  }
  return rc;
}
