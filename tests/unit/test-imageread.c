/* vmsnap_image_read (libvmsnap/imagehdr.c, issue 17): what vmsnap reads of
 * an image in process must be what QEMU reads.  Each format and subformat
 * qemu-img creates is made here and read both ways: `qemu-img info` (the
 * format given) and vmsnap_image_read; the virtual size, backing file and
 * format, encryption, the write-once vmdk subformats and the qcow2
 * snapshot table must agree.  Also: QEMU's image locks seen in process
 * (vmsnap_image_in_use) while a qemu-io holds the image, and hostile
 * headers refused with a reason.  Needs qemu-img (and qemu-io for the
 * lock): exit 77 without them. */
#include <config.h>

#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <vmsnap/backend.h>

static char *tmpdir;

static void
run (const char *const *argv, char **out)
{
  g_autoptr (GError) err = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH
                               | (out ? 0 : G_SPAWN_STDOUT_TO_DEV_NULL),
                               NULL, NULL, out, NULL, &status, &err));
  g_assert_no_error (err);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
}

static char *
path_of (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* Compare vmsnap_image_read with qemu-img info for PATH as FMT. */
static void
same_as_qemu (const char *path, const char *fmt)
{
  const char *argv[] = { "qemu-img", "info", "--output=json", "-U", "-f", fmt,
                         "--", path, NULL };
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_image) img = NULL;
  JsonObject *o;

  run (argv, &out);
  g_assert_true (json_parser_load_from_data (p, out, -1, NULL));
  o = json_node_get_object (json_parser_get_root (p));
  img = vmsnap_image_read (path, fmt, &err);
  g_assert_no_error (err);
  g_assert_nonnull (img);
  g_test_message ("%s (%s): vmsnap %" G_GUINT64_FORMAT ", qemu-img %" G_GINT64_FORMAT
                  " bytes%s", path, fmt, img->virtual_size,
                  json_object_get_int_member (o, "virtual-size"),
                  img->in_process ? "" : " (read by qemu-img)");
  g_assert_cmpuint (img->virtual_size, ==,
                    (guint64) json_object_get_int_member (o, "virtual-size"));
  g_assert_cmpstr (img->backing, ==,
                   json_object_get_string_member_with_default (o, "full-backing-filename", NULL));
  g_assert_cmpstr (img->backing_fmt, ==,
                   json_object_get_string_member_with_default (o, "backing-filename-format", NULL));
  g_assert_cmpint (img->encrypted, ==,
                   json_object_get_boolean_member_with_default (o, "encrypted", FALSE));
  {
    JsonArray *a = json_object_has_member (o, "snapshots")
                   ? json_object_get_array_member (o, "snapshots") : NULL;
    guint n = a ? json_array_get_length (a) : 0;
    g_assert_cmpuint (img->snapshots->len, ==, n);
    for (guint i = 0; i < n; i++) {
      JsonObject *s = json_array_get_object_element (a, i);
      const vmsnap_image_snapshot *is = img->snapshots->pdata[i];
      g_assert_cmpstr (is->id, ==, json_object_get_string_member (s, "id"));
      g_assert_cmpstr (is->name, ==, json_object_get_string_member (s, "name"));
      g_assert_cmpuint (is->vm_state_size, ==,
                        (guint64) json_object_get_int_member (s, "vm-state-size"));
      g_assert_cmpint (is->date_sec, ==, json_object_get_int_member (s, "date-sec"));
    }
  }
}

static void
create (const char *fmt, const char *name, const char *opts, const char *size)
{
  g_autofree char *p = path_of (name);
  const char *argv[] = { "qemu-img", "create", "-q", "-f", fmt, "-o",
                         opts ? opts : "", "--", p, size, NULL };
  if (opts == NULL) {
    argv[5] = "--";
    argv[6] = p;
    argv[7] = size;
    argv[8] = NULL;
  }
  run (argv, NULL);
}

static void
test_formats (void)
{
  static const struct { const char *fmt, *name, *opts, *size; } imgs[] = {
    { "raw", "a.raw", NULL, "1000000" },          /* not a whole sector */
    { "qcow2", "a.qcow2", NULL, "65M" },
    { "qcow2", "v2.qcow2", "compat=0.10", "3G" },
    { "qcow2", "big.qcow2", "cluster_size=2M,extended_l2=on", "16T" },
    { "vmdk", "ms.vmdk", "subformat=monolithicSparse", "100M" },
    { "vmdk", "mf.vmdk", "subformat=monolithicFlat", "10M" },
    { "vmdk", "ts.vmdk", "subformat=twoGbMaxExtentSparse", "5G" },
    { "vmdk", "tf.vmdk", "subformat=twoGbMaxExtentFlat", "3G" },
    { "vmdk", "so.vmdk", "subformat=streamOptimized", "33M" },
    { "vdi", "d.vdi", NULL, "20M" },
    { "vdi", "s.vdi", "static=on", "2M" },
    { "vpc", "d.vpc", NULL, "30M" },
    { "vpc", "f.vpc", "subformat=fixed", "30M" },
    { "vhdx", "d.vhdx", NULL, "70M" },
    { "qed", "q.qed", NULL, "10M" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (imgs); i++) {
    g_autofree char *p = path_of (imgs[i].name);
    g_autoptr (vmsnap_image) img = NULL;
    create (imgs[i].fmt, imgs[i].name, imgs[i].opts, imgs[i].size);
    same_as_qemu (p, imgs[i].fmt);
    img = vmsnap_image_read (p, imgs[i].fmt, NULL);
    /* Only streamOptimized is written once. */
    g_assert_cmpint (img->write_once != NULL, ==,
                     strcmp (imgs[i].name, "so.vmdk") == 0);
    /* The formats vmsnap's backends stack overlays on are read in process. */
    if (g_strv_contains ((const char *const[]) { "raw", "qcow2", "vmdk", "vdi", NULL },
                         imgs[i].fmt))
      g_assert_true (img->in_process);
  }
}

static void
test_chain_and_table (void)
{
  g_autofree char *base = path_of ("base.raw");
  g_autofree char *mid = path_of ("mid.qcow2");
  g_autofree char *top = path_of ("top.qcow2");

  create ("raw", "base.raw", NULL, "8M");
  {
    const char *a1[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                         "-b", "base.raw", "--", mid, NULL };   /* relative */
    const char *a2[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                         "-b", mid, "--", top, NULL };
    run (a1, NULL);
    run (a2, NULL);
  }
  for (int i = 0; i < 40; i++) {
    g_autofree char *tag = g_strdup_printf ("s%d-%s", i, i % 2 ? "x" : "longer name");
    const char *a[] = { "qemu-img", "snapshot", "-c", tag, "--", top, NULL };
    run (a, NULL);
  }
  same_as_qemu (mid, "qcow2");
  same_as_qemu (top, "qcow2");
}

static void
test_encrypted (void)
{
  g_autofree char *p = path_of ("enc.qcow2");
  const char *a[] = { "qemu-img", "create", "-q", "-f", "qcow2", "--object",
                      "secret,id=k,data=pw", "-o",
                      "encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10",
                      "--", p, "16M", NULL };
  g_autoptr (vmsnap_image) img = NULL;

  /* QEMU 7.2's LUKS benchmark fails now and then with "Unable to get
   * accurate CPU usage" (a known QEMU bug): only that is tried again. */
  for (int tries = 0;; tries++) {
    g_autofree char *errout = NULL;
    int status = 0;
    g_assert_true (g_spawn_sync (NULL, (char **) a, NULL, G_SPAWN_SEARCH_PATH,
                                 NULL, NULL, NULL, &errout, &status, NULL));
    if (g_spawn_check_wait_status (status, NULL))
      break;
    g_assert_nonnull (strstr (errout, "accurate CPU usage"));
    g_assert_cmpint (tries, <, 2);
  }
  same_as_qemu (p, "qcow2");
  img = vmsnap_image_read (p, "qcow2", NULL);
  g_assert_true (img->encrypted);
}

/* Hostile headers: refused with a reason, never read past what they say. */
static void
test_hostile (void)
{
  g_autofree char *p = path_of ("bad.qcow2");
  unsigned char h[512];
  int fd;

  create ("qcow2", "bad.qcow2", NULL, "1M");
  fd = open (p, O_RDWR);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pread (fd, h, sizeof h, 0), ==, sizeof h);
  /* 70000 snapshots at an odd offset */
  h[60] = 0; h[61] = 1; h[62] = 0x11; h[63] = 0x70;
  g_assert_cmpint (pwrite (fd, h, sizeof h, 0), ==, sizeof h);
  {
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_image) img = vmsnap_image_read (p, "qcow2", &err);
    g_assert_null (img);
    g_assert_nonnull (strstr (err->message, "internal snapshots"));
  }
  /* a table beyond the end of the file */
  h[60] = 0; h[61] = 0; h[62] = 0; h[63] = 2;
  memset (h + 64, 0, 8);
  h[69] = 0x10;                         /* 1 TiB */
  g_assert_cmpint (pwrite (fd, h, sizeof h, 0), ==, sizeof h);
  {
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_image) img = vmsnap_image_read (p, "qcow2", &err);
    g_assert_null (img);
    g_assert_nonnull (strstr (err->message, "snapshot table"));
  }
  /* an incompatible feature QEMU does not know */
  memset (h + 60, 0, 12);
  h[72 + 7] |= 0x80;
  g_assert_cmpint (pwrite (fd, h, sizeof h, 0), ==, sizeof h);
  {
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_image) img = vmsnap_image_read (p, "qcow2", &err);
    g_assert_null (img);
    g_assert_nonnull (strstr (err->message, "incompatible features"));
  }
  close (fd);
  {
    /* declared qcow2, but raw bytes */
    g_autofree char *r = path_of ("a.raw");
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_image) img = vmsnap_image_read (r, "qcow2", &err);
    g_assert_null (img);
    g_assert_nonnull (err);
  }
}

/* QEMU's OFD image locks, tested in process. */
static void
test_in_use (void)
{
  g_autofree char *p = path_of ("lock.qcow2");
  g_autofree char *fifo = path_of ("no-such-image");
  g_autoptr (GError) err = NULL;
  GPid pid;
  int in_fd, out_fd, status;

  {
    g_autofree char *qemu_io = g_find_program_in_path ("qemu-io");
    if (qemu_io == NULL) {
      g_test_skip ("no qemu-io");
      return;
    }
  }
  create ("qcow2", "lock.qcow2", NULL, "1M");
  g_assert_cmpint (vmsnap_image_in_use (p, &err), ==, 0);
  g_assert_no_error (err);
  {
    /* qemu-io holds the image open (read-write) until its stdin closes. */
    const char *argv[] = { "qemu-io", "-f", "qcow2", p, NULL };
    g_assert_true (g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                             G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                             NULL, NULL, &pid, &in_fd, &out_fd, NULL, &err));
  }
  /* It has the image open once it answers a command: ask for the length
   * and wait for the answer line (no sleep, and nothing that competes for
   * the image's locks while qemu-io takes them: polling with qemu-img
   * info could make qemu-io's own open fail). */
  {
    GString *line = g_string_new (NULL);
    char c;
    g_assert_cmpint (write (in_fd, "length\n", 7), ==, 7);
    while (read (out_fd, &c, 1) == 1 && c != '\n')
      g_string_append_c (line, c);
    if (c != '\n')
      g_error ("qemu-io exited before it answered (it could not open %s?): %s", p,
               line->str);
    g_string_free (line, TRUE);
  }
  {
    /* qemu-img itself sees the lock ... */
    const char *argv[] = { "qemu-img", "info", "-f", "qcow2", "--", p, NULL };
    int st = 0;
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH
                                 | G_SPAWN_STDOUT_TO_DEV_NULL
                                 | G_SPAWN_STDERR_TO_DEV_NULL,
                                 NULL, NULL, NULL, NULL, &st, NULL));
    g_assert_false (g_spawn_check_wait_status (st, NULL));
  }
  g_assert_cmpint (vmsnap_image_in_use (p, &err), ==, 1);   /* ... and so do we */
  close (in_fd);
  close (out_fd);
  waitpid (pid, &status, 0);
  g_spawn_close_pid (pid);
  g_assert_cmpint (vmsnap_image_in_use (p, NULL), ==, 0);
  g_assert_cmpint (vmsnap_image_in_use (fifo, &err), ==, -1);
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
  tmpdir = g_dir_make_tmp ("vmsnap-imageread-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/imageread/formats", test_formats);
  g_test_add_func ("/imageread/chain-and-table", test_chain_and_table);
  g_test_add_func ("/imageread/encrypted", test_encrypted);
  g_test_add_func ("/imageread/hostile", test_hostile);
  g_test_add_func ("/imageread/in-use", test_in_use);
  rc = g_test_run ();
  {
    const char *argv2[] = { "rm", "-rf", "--", tmpdir, NULL };
    g_spawn_sync (NULL, (char **) argv2, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                  NULL, NULL, NULL, NULL);
  }
  return rc;
}
