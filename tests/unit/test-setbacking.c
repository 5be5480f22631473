/* vmsnap_qcow2_set_backing (libvmsnap/imagehdr.c, issue 17): the in-process
 * `qemu-img rebase -u` a delete uses.  For a spread of images (qcow2 v2 and
 * v3, with and without a backing file and its format extension, the
 * feature-name table qemu-img writes in v3, a dirty bitmap, LUKS
 * encryption, an external data file, an unknown extension crafted here,
 * clusters of 512 bytes and 64 KiB, new names short, long and 1023 bytes,
 * relative and absolute, a raw backing format, no backing file at all) the
 * result is compared with `qemu-img rebase -u` run on a twin copy:
 *  - `qemu-img info -f qcow2 --output=json` identical, except "filename"
 *    (the twin's name) and "actual-size" (allocation, not content);
 *  - `qemu-img check -f qcow2` clean on both;
 *  - every byte after the first cluster identical to the image before the
 *    call (data untouched), and to QEMU's twin (except with a bitmap,
 *    which QEMU stores anew when it closes the twin: there the bitmap
 *    directory offset in the header differs, and nothing else);
 *  - the first cluster identical to QEMU's byte for byte: the images are
 *    made by qemu-img, whose order of extensions (backing format first,
 *    unknown ones last) the writer keeps, and the crafted unknown
 *    extension is placed last, where QEMU keeps it.
 * Then every refusal leaves the file byte-identical.  Needs qemu-img and
 * qemu-io: exit 77 without them. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <vmsnap/backend.h>

static char *tmpdir;

static gboolean
run_status (const char *const *argv, char **out, char **errout)
{
  g_autoptr (GError) err = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH
                               | (out ? 0 : G_SPAWN_STDOUT_TO_DEV_NULL),
                               NULL, NULL, out, errout, &status, &err));
  g_assert_no_error (err);
  return g_spawn_check_wait_status (status, NULL);
}

static void
run (const char *const *argv, char **out)
{
  g_autofree char *errout = NULL;

  if (!run_status (argv, out, &errout))
    g_error ("%s %s failed: %s", argv[0], argv[1], errout);
}

static char *
path_of (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

static GBytes *
slurp (const char *path)
{
  g_autoptr (GError) err = NULL;
  char *data = NULL;
  gsize len = 0;

  g_assert_true (g_file_get_contents (path, &data, &len, &err));
  g_assert_no_error (err);
  return g_bytes_new_take (data, len);
}

static void
spit (const char *path, GBytes *b)
{
  gsize len;
  const char *data = g_bytes_get_data (b, &len);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, data, len), ==, (ssize_t) len);
  g_assert_cmpint (close (fd), ==, 0);
}

static void
copy_file (const char *from, const char *to)
{
  g_autoptr (GBytes) b = slurp (from);

  spit (to, b);
}

static guint32
be32 (const unsigned char *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

static guint64
be64 (const unsigned char *p)
{
  return (guint64) be32 (p) << 32 | be32 (p + 4);
}

static void
put_be32 (unsigned char *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

#define SECRET_OBJ "secret,id=k,data=pw"

/* The image words of qemu-img for PATH: "-f qcow2 PATH" or, encrypted,
 * "--object ... --image-opts OPTS".  ARGV gets them appended. */
static void
image_words (GPtrArray *argv, const char *path, gboolean luks)
{
  if (luks) {
    g_ptr_array_add (argv, g_strdup ("--object"));
    g_ptr_array_add (argv, g_strdup (SECRET_OBJ));
    g_ptr_array_add (argv, g_strdup ("--image-opts"));
    g_ptr_array_add (argv, g_strdup_printf ("driver=qcow2,file.filename=%s,"
                                            "encrypt.key-secret=k", path));
  } else {
    g_ptr_array_add (argv, g_strdup ("-f"));
    g_ptr_array_add (argv, g_strdup ("qcow2"));
    g_ptr_array_add (argv, g_strdup ("--"));
    g_ptr_array_add (argv, g_strdup (path));
  }
  g_ptr_array_add (argv, NULL);
}

/* `qemu-img info --output=json` of PATH, without "filename" and
 * "actual-size". */
static char *
info_masked (const char *path)
{
  const char *argv[] = { "qemu-img", "info", "--output=json", "-f", "qcow2",
                         "--", path, NULL };
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonObject *o;

  run (argv, &out);
  g_assert_true (json_parser_load_from_data (p, out, -1, NULL));
  o = json_node_get_object (json_parser_get_root (p));
  g_assert_nonnull (o);
  json_object_remove_member (o, "filename");
  json_object_remove_member (o, "actual-size");
  return json_to_string (json_parser_get_root (p), TRUE);
}

static void
check_clean (const char *path, gboolean luks)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *out = NULL, *errout = NULL;

  g_ptr_array_add (argv, g_strdup ("qemu-img"));
  g_ptr_array_add (argv, g_strdup ("check"));
  image_words (argv, path, luks);
  if (!run_status ((const char *const *) argv->pdata, &out, &errout))
    g_error ("qemu-img check %s: %s%s", path, out, errout);
}

/* Insert an unknown extension (type 0x7a7a0001, 5 bytes) last, before the
 * end marker, moving the backing file name after it. */
static void
craft_unknown_ext (const char *path)
{
  g_autoptr (GBytes) b = slurp (path);
  gsize len;
  const unsigned char *d = g_bytes_get_data (b, &len);
  guint32 cs = 1u << be32 (d + 20), hlen = be32 (d + 4) == 3 ? be32 (d + 100) : 72;
  guint64 boff = be64 (d + 8);
  guint32 bsize = be32 (d + 16);
  g_autofree unsigned char *c = g_malloc0 (len);
  guint32 pos = hlen, out;

  while (be32 (d + pos) != 0)
    pos += 8 + ((be32 (d + pos + 4) + 7) & ~7u);
  memcpy (c, d, len);
  memset (c + pos, 0, cs - pos);
  put_be32 (c + pos, 0x7a7a0001);
  put_be32 (c + pos + 4, 5);
  memcpy (c + pos + 8, "hello", 5);
  out = pos + 16 + 8;
  if (boff) {
    memcpy (c + out, d + boff, bsize);
    c[8] = c[9] = c[10] = c[11] = 0;
    put_be32 (c + 12, out);
  }
  {
    g_autoptr (GBytes) nb = g_bytes_new (c, len);
    spit (path, nb);
  }
}

typedef struct {
  const char *name;
  const char *opts;        /* qemu-img create -o */
  gboolean backing;        /* created on base.qcow2 */
  gboolean luks, bitmap, unknown;
  int new_name;            /* see new_name() */
  const char *new_fmt;
} setcase;

enum { NB_SHORT, NB_LONG, NB_MAX, NB_ABS, NB_ABS_MAX, NB_NONE, NB_RAW };

/* The backing file name to set: every one names an existing file. */
static char *
new_name (int kind)
{
  GString *s;
  size_t want = 0;
  const char *leaf = kind == NB_RAW ? "nb.raw" : "nb.qcow2";

  switch (kind) {
  case NB_SHORT:
  case NB_RAW:
    return g_strdup (leaf);
  case NB_NONE:
    return NULL;
  case NB_ABS:
    return path_of (leaf);
  case NB_LONG:
    want = 300;
    break;
  case NB_MAX:
  case NB_ABS_MAX:
    want = 1023;
    break;
  }
  /* "./////nb.qcow2" or "/tmp/x/////nb.qcow2": padded with slashes. */
  s = g_string_new (kind == NB_ABS_MAX ? tmpdir : ".");
  while (s->len + 1 + strlen (leaf) < want)
    g_string_append_c (s, '/');
  g_string_append_c (s, '/');
  g_string_append (s, leaf);
  g_assert_cmpuint (s->len, ==, want);
  return g_string_free (s, FALSE);
}

static void
test_case (gconstpointer data)
{
  const setcase *c = data;
  g_autofree char *img = path_of ("img.qcow2"), *twin = path_of ("twin.qcow2");
  g_autofree char *before = path_of ("before.qcow2");
  g_autofree char *name = new_name (c->new_name);
  const char *fmt = c->new_name == NB_NONE ? NULL : c->new_fmt;
  g_autoptr (GError) err = NULL;
  g_autoptr (GBytes) a = NULL, b = NULL, o = NULL;
  g_autofree char *ia = NULL, *ib = NULL;
  gsize la, lb, lo, cs;
  const unsigned char *da, *db, *dor;

  g_unlink (img);
  {
    g_autoptr (GPtrArray) argv = g_ptr_array_new ();
    g_autofree char *opts = g_strjoin (",", c->opts ? c->opts : "compat=1.1",
                                       c->luks ? "encrypt.format=luks,"
                                       "encrypt.key-secret=k,encrypt.iter-time=10"
                                       : NULL, NULL);
    g_ptr_array_add (argv, "qemu-img");
    g_ptr_array_add (argv, "create");
    g_ptr_array_add (argv, "-q");
    g_ptr_array_add (argv, "-f");
    g_ptr_array_add (argv, "qcow2");
    if (c->luks) {
      g_ptr_array_add (argv, "--object");
      g_ptr_array_add (argv, SECRET_OBJ);
    }
    g_ptr_array_add (argv, "-o");
    g_ptr_array_add (argv, opts);
    if (c->backing) {
      g_ptr_array_add (argv, "-b");
      g_ptr_array_add (argv, "base.qcow2");
      g_ptr_array_add (argv, "-F");
      g_ptr_array_add (argv, "qcow2");
    }
    g_ptr_array_add (argv, "--");
    g_ptr_array_add (argv, img);
    g_ptr_array_add (argv, "16M");
    g_ptr_array_add (argv, NULL);
    /* QEMU 7.2's LUKS benchmark fails now and then with "Unable to get
     * accurate CPU usage" (a QEMU bug): only that is tried again. */
    for (int tries = 0;; tries++) {
      g_autofree char *errout = NULL;
      if (run_status ((const char *const *) argv->pdata, NULL, &errout))
        break;
      g_assert_nonnull (strstr (errout, "accurate CPU usage"));
      g_assert_cmpint (tries, <, 2);
    }
  }
  {
    /* Data in the image, past the first cluster. */
    g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
    g_ptr_array_add (argv, g_strdup ("qemu-io"));
    g_ptr_array_add (argv, g_strdup ("-c"));
    g_ptr_array_add (argv, g_strdup ("write -P 0x5a 64k 192k"));
    image_words (argv, img, c->luks);
    if (!c->luks) {
      /* qemu-io takes no "--" */
      g_ptr_array_remove_index (argv, argv->len - 3);
    }
    run ((const char *const *) argv->pdata, NULL);
  }
  if (c->bitmap) {
    const char *argv[] = { "qemu-img", "bitmap", "--add", "-f", "qcow2",
                           "--", img, "b0", NULL };
    run (argv, NULL);
  }
  if (c->unknown)
    craft_unknown_ext (img);
  copy_file (img, twin);
  copy_file (img, before);

  /* Ours, then QEMU's. */
  g_assert_true (vmsnap_qcow2_set_backing (img, name, fmt, &err));
  g_assert_no_error (err);
  {
    g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
    g_ptr_array_add (argv, g_strdup ("qemu-img"));
    g_ptr_array_add (argv, g_strdup ("rebase"));
    g_ptr_array_add (argv, g_strdup ("-u"));
    if (fmt) {
      g_ptr_array_add (argv, g_strdup ("-F"));
      g_ptr_array_add (argv, g_strdup (fmt));
    }
    g_ptr_array_add (argv, g_strdup ("-b"));
    g_ptr_array_add (argv, g_strdup (name ? name : ""));
    image_words (argv, twin, c->luks);
    run ((const char *const *) argv->pdata, NULL);
  }

  ia = info_masked (img);
  ib = info_masked (twin);
  g_assert_cmpstr (ia, ==, ib);
  check_clean (img, c->luks);
  check_clean (twin, c->luks);
  {
    g_autoptr (vmsnap_image) r = vmsnap_image_read (img, "qcow2", &err);
    g_assert_no_error (err);
    if (name) {
      g_autofree char *want = g_path_is_absolute (name) ? g_strdup (name)
                                                        : path_of (name);
      g_assert_cmpstr (r->backing, ==, want);
      g_assert_cmpstr (r->backing_fmt, ==, fmt);
    } else {
      g_assert_null (r->backing);
      g_assert_null (r->backing_fmt);
    }
    g_assert_cmpint (r->encrypted, ==, c->luks);
  }

  a = slurp (img);
  b = slurp (twin);
  o = slurp (before);
  da = g_bytes_get_data (a, &la);
  db = g_bytes_get_data (b, &lb);
  dor = g_bytes_get_data (o, &lo);
  cs = (gsize) 1 << be32 (dor + 20);
  g_assert_cmpuint (la, ==, lo);
  g_assert_cmpuint (la, >, cs);
  /* Data untouched. */
  g_assert_true (memcmp (da + cs, dor + cs, la - cs) == 0);
  /* QEMU's twin too, except with a bitmap: QEMU opens the image for
   * writing, so it stores the bitmap directory anew on close (in a new
   * cluster, at the end of the file), and its header extension points
   * there: those 8 bytes are left out of the header comparison. */
  if (!c->bitmap) {
    g_assert_cmpuint (lb, ==, lo);
    g_assert_true (memcmp (db + cs, dor + cs, lb - cs) == 0);
  }
  /* The header area as QEMU writes it. */
  gsize skip_from = cs, skip_to = cs;
  if (c->bitmap) {
    gsize pos = be32 (da + 100);
    while (pos + 8 <= cs && be32 (da + pos) != 0 && be32 (da + pos) != 0x23852875)
      pos += 8 + ((be32 (da + pos + 4) + 7) & ~7u);
    g_assert_cmpuint (be32 (da + pos), ==, 0x23852875);
    skip_from = pos + 8 + 16;
    skip_to = skip_from + 8;
  }
  for (gsize i = 0; i < cs; i++)
    if (da[i] != db[i] && !(i >= skip_from && i < skip_to))
      g_error ("%s: first cluster differs from qemu-img rebase -u's at byte "
               "%zu (0x%02x, QEMU 0x%02x)", c->name, i, da[i], db[i]);

  /* Again: nothing to change, nothing written. */
  g_assert_true (vmsnap_qcow2_set_backing (img, name, fmt, &err));
  g_assert_no_error (err);
  {
    g_autoptr (GBytes) a2 = slurp (img);
    g_assert_true (g_bytes_equal (a, a2));
  }
}

static const setcase cases[] = {
  { "v3-add-fmt",       NULL, FALSE, FALSE, FALSE, FALSE, NB_SHORT, "qcow2" },
  { "v3-replace-long",  NULL, TRUE,  FALSE, FALSE, FALSE, NB_LONG, "qcow2" },
  { "v3-max-relative",  NULL, TRUE,  FALSE, FALSE, FALSE, NB_MAX, "qcow2" },
  { "v3-max-absolute",  NULL, TRUE,  FALSE, FALSE, FALSE, NB_ABS_MAX, "qcow2" },
  { "v3-raw-fmt",       NULL, TRUE,  FALSE, FALSE, FALSE, NB_RAW, "raw" },
  { "v3-remove",        NULL, TRUE,  FALSE, FALSE, FALSE, NB_NONE, NULL },
  { "v2-add-absolute",  "compat=0.10", FALSE, FALSE, FALSE, FALSE, NB_ABS, "qcow2" },
  { "v2-replace-max",   "compat=0.10", TRUE, FALSE, FALSE, FALSE, NB_MAX, "qcow2" },
  { "v2-remove",        "compat=0.10", TRUE, FALSE, FALSE, FALSE, NB_NONE, NULL },
  { "v3-bitmap",        NULL, TRUE,  FALSE, TRUE,  FALSE, NB_SHORT, "qcow2" },
  { "v3-luks",          NULL, TRUE,  TRUE,  FALSE, FALSE, NB_ABS, "qcow2" },
  { "v3-luks-max",      NULL, FALSE, TRUE,  FALSE, FALSE, NB_MAX, "qcow2" },
  { "v3-unknown-ext",   NULL, TRUE,  FALSE, FALSE, TRUE,  NB_LONG, "qcow2" },
  { "v2-unknown-ext",   "compat=0.10", TRUE, FALSE, FALSE, TRUE, NB_SHORT, "qcow2" },
  { "v3-data-file",     "compat=1.1,data_file=data.raw", TRUE, FALSE, FALSE, FALSE, NB_LONG, "qcow2" },
  { "v3-cluster-512",   "compat=1.1,cluster_size=512", TRUE, FALSE, FALSE, FALSE, NB_SHORT, "qcow2" },
  { "v3-extended-l2",   "compat=1.1,extended_l2=on", TRUE, FALSE, TRUE, FALSE, NB_ABS, "qcow2" },
};

/* Refusals: an error of CODE, and PATH byte for byte as it was. */
static void
refused (const char *path, const char *name, const char *fmt, int code)
{
  g_autoptr (GBytes) was = slurp (path), now = NULL;
  g_autoptr (GError) err = NULL;

  g_assert_false (vmsnap_qcow2_set_backing (path, name, fmt, &err));
  g_assert_error (err, VMSNAP_ERROR, code);
  g_test_message ("refused: %s", err->message);
  now = slurp (path);
  g_assert_true (g_bytes_equal (was, now));
}

/* Patch byte OFF of PATH: OR it with BITS (or set it to VALUE). */
static void
patch (const char *path, gsize off, guint8 bits, gboolean set)
{
  g_autoptr (GBytes) b = slurp (path);
  gsize len = g_bytes_get_size (b);
  g_autofree unsigned char *d = g_memdup2 (g_bytes_get_data (b, NULL), len);
  g_autoptr (GBytes) nb = NULL;

  d[off] = set ? bits : (d[off] | bits);
  nb = g_bytes_new (d, len);
  spit (path, nb);
}

static void
fresh (const char *name, const char *opts)
{
  g_autofree char *p = path_of (name);
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-o", opts,
                         "-b", "base.qcow2", "-F", "qcow2", "--", p, "16M", NULL };
  g_unlink (p);
  run (argv, NULL);
}

static void
test_refusals (void)
{
  g_autofree char *p = path_of ("r.qcow2"), *raw = path_of ("r.raw");
  g_autofree char *max = new_name (NB_MAX);
  g_autofree char *over = g_strconcat (max, "x", NULL);

  /* Bad arguments. */
  fresh ("r.qcow2", "compat=1.1");
  refused (p, over, "qcow2", VMSNAP_ERR_USAGE);
  refused (p, "nb.qcow2", "0123456789abcdef", VMSNAP_ERR_USAGE);
  refused (p, "nb.qcow2", "", VMSNAP_ERR_USAGE);
  /* Not qcow2. */
  {
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "raw", "--", raw,
                           "1M", NULL };
    run (argv, NULL);
    refused (raw, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  }
  /* Dirty, corrupt, an unknown incompatible feature (bit 10), version 4. */
  patch (p, 79, 1, FALSE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  fresh ("r.qcow2", "compat=1.1");
  patch (p, 79, 2, FALSE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  fresh ("r.qcow2", "compat=1.1");
  patch (p, 78, 4, FALSE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  fresh ("r.qcow2", "compat=1.1");
  patch (p, 7, 4, TRUE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  /* Does not fit: a 1023-byte name in a 512-byte cluster. */
  fresh ("r.qcow2", "compat=1.1,cluster_size=512");
  refused (p, max, "qcow2", VMSNAP_ERR_UNSUPPORTED);
  /* An extension that runs past the header area (the feature table, the
   * one after the backing format, given 64 KiB). */
  fresh ("r.qcow2", "compat=1.1");
  patch (p, 112 + 16 + 5, 1, TRUE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_INVALID_INPUT);
  /* The L1 table said to lie in the first cluster. */
  fresh ("r.qcow2", "compat=1.1");
  for (int i = 40; i < 48; i++)
    patch (p, i, 0, TRUE);
  refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_UNSUPPORTED);
  /* In use: a lock as QEMU takes it (an OFD read lock on byte 100 + n),
   * held here on another open file description. */
  fresh ("r.qcow2", "compat=1.1");
  {
    struct flock fl;
    int fd = open (p, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint (fd, >=, 0);
    memset (&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 101;
    fl.l_len = 1;
    g_assert_cmpint (fcntl (fd, F_OFD_SETLK, &fl), ==, 0);
    refused (p, "nb.qcow2", "qcow2", VMSNAP_ERR_BUSY);
    close (fd);
  }
  /* ... and once it is released, the same call works. */
  {
    g_autoptr (GError) err = NULL;
    g_assert_true (vmsnap_qcow2_set_backing (p, "nb.qcow2", "qcow2", &err));
    g_assert_no_error (err);
  }
}

int
main (int argc, char **argv)
{
  g_autofree char *qemu_img = g_find_program_in_path ("qemu-img");
  g_autofree char *qemu_io = g_find_program_in_path ("qemu-io");
  int rc;

  g_test_init (&argc, &argv, NULL);
  if (qemu_img == NULL || qemu_io == NULL) {
    g_print ("SKIP: no qemu-img or qemu-io\n");
    return 77;
  }
  tmpdir = g_dir_make_tmp ("vmsnap-setbacking-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  {
    g_autofree char *base = path_of ("base.qcow2"), *nb = path_of ("nb.qcow2");
    g_autofree char *nbr = path_of ("nb.raw");
    const char *a1[] = { "qemu-img", "create", "-q", "-f", "qcow2", "--", base, "16M", NULL };
    const char *a2[] = { "qemu-img", "create", "-q", "-f", "qcow2", "--", nb, "16M", NULL };
    const char *a3[] = { "qemu-img", "create", "-q", "-f", "raw", "--", nbr, "16M", NULL };
    run (a1, NULL);
    run (a2, NULL);
    run (a3, NULL);
  }
  /* Relative names resolve against the image's directory. */
  g_assert_cmpint (chdir (tmpdir), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *tp = g_strdup_printf ("/setbacking/%s", cases[i].name);
    g_test_add_data_func (tp, &cases[i], test_case);
  }
  g_test_add_func ("/setbacking/refusals", test_refusals);
  rc = g_test_run ();
  {
    const char *argv2[] = { "rm", "-rf", "--", tmpdir, NULL };
    g_spawn_sync (NULL, (char **) argv2, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                  NULL, NULL, NULL, NULL);
  }
  return rc;
}
