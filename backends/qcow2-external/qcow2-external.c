/* qcow2-external: the active image is frozen as the snapshot and a new
 * qcow2 overlay (backing format always explicit) goes on top.  Works for any
 * file base (qcow2, raw, vmdk, vdi, vpc, vhdx) and for block devices (the
 * overlay then lives in vmsnap's state directory).
 *
 * This version works on shut-off domains, through qemu-img; running domains
 * (libvirt snapshot/blockcommit/blockpull) come later and are refused with
 * VMSNAP_ERR_UNSUPPORTED.  Network disks are refused too (a locator is
 * "FORMAT:/absolute/path").
 *
 * Locators.  "FORMAT:ABSOLUTE-PATH" (the format up to the first ':', the path
 * may contain ':'): the frozen image file that holds the point in time.  A
 * locator names a file, and a delete or merge that commits a child into its
 * backing file moves the child's point into the backing file's name: that
 * is reported as a rename (DESIGN.md §5, "locators move").
 *
 * The image graph.  Files are nodes, "X is backed by Y" is an edge.  The
 * files of interest for a disk are the active image, every locator the
 * catalog holds for the disk, and the backing chains of all of them; the
 * children (dependents) of an image are the files among these whose backing
 * file is that image (compared by real path).  Every decision (garbage or
 * not, commit or pull) is taken on this graph, read from the image headers
 * with `qemu-img info --output=json -U -f FMT`; QEMU never probes a format.
 *
 * Crash safety, in general.  A slot records what it decided (vmsnap_op_set)
 * before it acts and marks each step done after it; a re-run after a crash
 * skips done steps and repeats the one that was running, so every step is
 * chosen to be repeatable: `qemu-img create` of an overlay nothing refers to
 * yet, `qemu-img commit -d` (the top image is not emptied, so a repeat
 * copies the same data again), `qemu-img rebase -u` (rewrites a header
 * field; for qcow2 done in process by vmsnap_qcow2_set_backing, the same
 * header write without a process: set_backing_u), and a safe `qemu-img
 * rebase` (copies only what differs, and is
 * always preceded by a `rebase -u` back onto the old backing file, because
 * qemu-img may write the new header before the copied clusters' metadata:
 * see plan_run).  Nothing
 * is ever removed here: storage that is no longer needed is returned as
 * garbage and removed by the discard slot once the core has recorded the
 * result, so a crash never leaves the catalog naming a file that is gone. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include <vmsnap/backend.h>
#include "../backend-util.h"

#define NAME "qcow2-external"
/* Hostile-input limits for the image graph. */
#define MAX_NODES 4096
/* "<stem>.vmsnap-" + 8 hex digits */
#define TAG ".vmsnap-"
#define TAG_LEN 8
#define HEX_LEN 8

/* Reasons the probe and the slots share, word for word. */
#define NOT_FILE_OR_BLOCK "backend " NAME " works on file and block disks " \
  "only in this version of vmsnap (this is a %s disk)"
#define DATA_FILE_REFUSED "%s keeps its guest data in the external data " \
  "file %s; " NAME " refuses such images (a delete would commit into the " \
  "data file, which another image may use): convert the image to one " \
  "without a data file (qemu-img convert -O qcow2) to snapshot it"

static const char *const overlay_bases[] = {
  "qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx", NULL,
};

/* Settings ([qcow2-external] in vmsnap.conf, -o qcow2-external.KEY=VALUE). */
static const vmsnap_option_desc qext_options[] = {
  { "luks-iter-time", VMSNAP_OPTION_INT, "2000", NULL, 10, 600000,
    "milliseconds", "VMSNAP_QCOW2_EXTERNAL_LUKS_ITER_TIME",
    "PBKDF time of the key slot of a new encrypted overlay (QEMU's "
    "encrypt.iter-time): the time QEMU spends unlocking it at each open" },
  { NULL },
};

#define KEY_FILE "qcow2-external.secret"

static gboolean disk_encrypted (const vmsnap_disk *d);

/* ================================================================ probe */

static int
qext_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
            vmsnap_probe_result *res, GError **err)
{
  const char *fmt = d->format;

  if (disk_encrypted (d) && (d->type != VMSNAP_DISK_TYPE_FILE
                             && d->type != VMSNAP_DISK_TYPE_BLOCK)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "an encrypted %s disk: %s "
                      "makes encrypted overlays of qcow2 files and block "
                      "devices only", d->type_name, NAME);
    return 0;
  }
  if (disk_encrypted (d) && fmt && strcmp (fmt, "raw") == 0) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "raw disk %s with <encryption format='%s'> is an "
                      "encrypted volume (QEMU opens it with its %s driver): a "
                      "qcow2 overlay would have to open it as an encrypted "
                      "backing file, which %s does not do, and an "
                      "unencrypted overlay would store guest data in the "
                      "clear (snapshot the volume itself, e.g. as an LVM or "
                      "RBD volume)", d->source ? d->source : "(no source)",
                      d->encryption_format, d->encryption_format, NAME);
    return 0;
  }
  if (disk_encrypted (d) && (fmt == NULL || strcmp (fmt, "qcow2") != 0
                             || strcmp (d->encryption_format, "luks") != 0)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s disk with <encryption format='%s'>: %s makes "
                      "LUKS-encrypted overlays of LUKS-encrypted qcow2 images "
                      "only", fmt ? fmt : "format-less", d->encryption_format,
                      NAME);
    return 0;
  }

  switch (d->type) {
  case VMSNAP_DISK_TYPE_FILE:
  case VMSNAP_DISK_TYPE_BLOCK:
    for (size_t i = 0; i < d->n_chain; i++)
      if (d->chain[i]->data_file) {
        /* Refused, not handled: a delete commits into the layer, that is
         * into its data file, which another image or disk may use; and
         * every graph decision here is taken on image files alone. */
        vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, DATA_FILE_REFUSED,
                          d->chain[i]->path, d->chain[i]->data_file);
        return 0;
      }
    if (fmt == NULL || !g_strv_contains (overlay_bases, fmt)) {
      vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                        "format '%s' cannot be the backing image of a qcow2 "
                        "overlay (supported: qcow2, raw, vmdk, vdi, vpc, vhdx)",
                        fmt ? fmt : "none");
      return 0;
    }
    if (d->type == VMSNAP_DISK_TYPE_BLOCK) {
      vmsnap_probe_set (res, VMSNAP_FIT_CAN, 20,
                        "%s block device %s becomes the read-only base of a "
                        "qcow2 overlay file", fmt, d->source);
      vmsnap_probe_add_limit (res, "the device itself is not snapshotted; the "
                              "overlay file lives in vmsnap's state directory");
      return 0;
    }
    if (strcmp (fmt, "qcow2") == 0)
      vmsnap_probe_set (res, VMSNAP_FIT_CAN, 60,
                        "qcow2 image: frozen as the snapshot, a new qcow2 "
                        "overlay on top");
    else
      vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 70,
                        "%s image: frozen as the snapshot's read-only base, a "
                        "qcow2 overlay on top (backing format %s, explicit)",
                        fmt, fmt);
    if (disk_encrypted (d)) {
      vmsnap_probe_add_limit (res, "encrypted (LUKS): every new overlay is "
                              "encrypted with the disk's libvirt secret %s, "
                              "which vmsnap reads from libvirt; a domain XML "
                              "file without a daemon is refused",
                              d->encryption_secret_uuid ? d->encryption_secret_uuid
                              : d->encryption_secret_usage ? d->encryption_secret_usage
                              : "(none named)");
      vmsnap_probe_add_detail (res, "encryption", "%s", d->encryption_format);
    }
    if (d->n_chain > 0 && d->chain[0]->n_internal_snapshots > 0)
      vmsnap_probe_add_limit (res, "%s holds %u internal snapshot(s) made "
                              "outside vmsnap; they stay in the frozen image",
                              d->source, d->chain[0]->n_internal_snapshots);
    if (d->n_chain > 8)
      vmsnap_probe_add_limit (res, "backing chain already %zu layers deep: "
                              "vmsnap merge shortens it", d->n_chain);
    if (req->memory)
      vmsnap_probe_add_limit (res, "memory state goes to an external file "
                              "in vmsnap's state directory");
    vmsnap_probe_add_detail (res, "chain_length", "%zu", d->n_chain);
    return 0;
  case VMSNAP_DISK_TYPE_NETWORK:
    /* What the slots refuse (check_slot), the probe refuses with the same
     * reason: plan and create must agree (issue 16 item 13). */
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, NOT_FILE_OR_BLOCK,
                      d->type_name ? d->type_name : "other");
    return 0;
  default:
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "a %s disk cannot be the base of a qcow2 overlay",
                      d->type_name);
    return 0;
  }
}

/* ============================================================= locators */

static char *
loc_make (const char *fmt, const char *path)
{
  return g_strconcat (fmt, ":", path, NULL);
}

/* Split "FORMAT:/abs/path" (the path may contain ':'). */
static gboolean
loc_split (const vmsnap_disk *d, const char *loc, char **fmt, char **path,
           GError **err)
{
  const char *c = loc ? strchr (loc, ':') : NULL;
  g_autofree char *f = NULL;

  if (c == NULL || c == loc || !g_path_is_absolute (c + 1)) {
    fail (err, VMSNAP_ERR_INVALID_INPUT,
          "disk %s: '%s' is not a %s locator (FORMAT:/absolute/path)",
          d->target, loc ? loc : "(null)", NAME);
    return FALSE;
  }
  f = g_strndup (loc, c - loc);
  if (!g_strv_contains (overlay_bases, f)) {
    fail (err, VMSNAP_ERR_INVALID_INPUT,
          "disk %s: locator '%s' names format '%s', which %s does not handle "
          "(qcow2, raw, vmdk, vdi, vpc, vhdx)", d->target, loc, f, NAME);
    return FALSE;
  }
  *fmt = g_steal_pointer (&f);
  *path = g_strdup (c + 1);
  return TRUE;
}

/* The real path of PATH, or PATH made canonical when it cannot be resolved
 * (a missing file still compares equal to itself). */
static char *
real_or_self (const char *path)
{
  char *r = realpath (path, NULL);

  if (r) {
    char *g = g_strdup (r);
    free (r);
    return g;
  }
  return g_canonicalize_filename (path, "/");
}

/* ======================================================== the image graph */

typedef struct node node;
struct node {
  char *path;        /* as first met (locator, source or backing name) */
  char *real;        /* identity */
  char *fmt;
  char *locator;     /* the catalog's string for this file, or NULL */
  gboolean active;
  gboolean missing;  /* tolerant walks only: could not be read */
  gboolean block;    /* not a regular file (block device) */
  gboolean scanned;  /* list: found by its name, not by the graph */
  char *backing;     /* the backing file as the header names it (full path) */
  char *backing_fmt;
  node *parent;      /* the backing file's node */
  guint64 vsize;
  char *no_write;    /* why QEMU cannot write this image in place, or NULL */
  gboolean encrypted;
};

typedef struct {
  GPtrArray *nodes;  /* node*, first met first */
  node *active;
} graph;

static void
node_free (gpointer p)
{
  node *n = p;

  g_free (n->path);
  g_free (n->real);
  g_free (n->fmt);
  g_free (n->locator);
  g_free (n->backing);
  g_free (n->backing_fmt);
  g_free (n->no_write);
  g_free (n);
}

static void
graph_free (graph *g)
{
  if (g == NULL)
    return;
  g_ptr_array_unref (g->nodes);
  g_free (g);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (graph, graph_free)

static graph *
graph_new (void)
{
  graph *g = g_new0 (graph, 1);

  g->nodes = g_ptr_array_new_with_free_func (node_free);
  return g;
}

static node *
graph_find (const graph *g, const char *path)
{
  g_autofree char *real = real_or_self (path);

  for (guint i = 0; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    if (strcmp (n->real, real) == 0)
      return n;
  }
  return NULL;
}

static guint
graph_index (const graph *g, const node *n)
{
  guint i;

  for (i = 0; i < g->nodes->len; i++)
    if (g_ptr_array_index (g->nodes, i) == n)
      break;
  return i;
}

static node *
graph_add (graph *g, const vmsnap_disk *d, const char *path, const char *fmt,
           GError **err)
{
  node *n = graph_find (g, path);

  if (n) {
    if (strcmp (n->fmt, fmt) != 0) {
      fail (err, VMSNAP_ERR_INVALID_INPUT,
            "disk %s: image %s is named both as %s and as %s (by the catalog "
            "or a backing file header); fix the image header with "
            "`qemu-img rebase -u -F FORMAT` or the catalog", d->target,
            n->path, n->fmt, fmt);
      return NULL;
    }
    return n;
  }
  if (g->nodes->len >= MAX_NODES) {
    fail (err, VMSNAP_ERR_INVALID_INPUT,
          "disk %s: more than %d images in the snapshot graph", d->target,
          MAX_NODES);
    return NULL;
  }
  n = g_new0 (node, 1);
  n->path = g_strdup (path);
  n->real = real_or_self (path);
  n->fmt = g_strdup (fmt);
  g_ptr_array_add (g->nodes, n);
  return n;
}

static gboolean
run_json (vmsnap_op *op, const char *const *argv, JsonParser *p, GError **err)
{
  g_autofree char *out = NULL;

  if (!vmsnap_op_run (op, argv, &out, err))
    return FALSE;
  return json_parser_load_from_data (p, out ? out : "", -1, err);
}

/* Why QEMU cannot write image PATH (format FMT) in place, from its
 * `qemu-img info` object O, or NULL when it can.  Of the formats and
 * subformats qemu-img creates that this backend accepts (raw; qcow2; vmdk
 * monolithicSparse, monolithicFlat, twoGbMaxExtentSparse,
 * twoGbMaxExtentFlat, streamOptimized; vdi dynamic and static; vpc dynamic
 * and fixed; vhdx dynamic and fixed), each tried with `qemu-io -c write`
 * twice over the same range, only vmdk streamOptimized fails: QEMU appends
 * compressed grains and "could not write to allocated cluster" (its
 * extents' headers say "compressed"; other compressed vmdk variants, which
 * qemu-img cannot create, are caught by the same test: vmsnap_image_read's
 * write_once).  A file that cannot be written (mode, read-only file
 * system) is the other case. */
static char *
no_write_reason (const vmsnap_image *img, const char *path)
{
  if (img->write_once)
    return g_strdup (img->write_once);
  if (access (path, W_OK) < 0 && errno != ENOENT)
    return g_strdup_printf ("it cannot be written (%s)", g_strerror (errno));
  return NULL;
}

/* Read N's header: virtual size, backing file and its format.  In process
 * (vmsnap_image_read, issue 17): no process per image.  Headers are
 * untrusted: every name in it was checked before anything follows it. */
static gboolean
node_info (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img, node *n,
           GError **err)
{
  g_autoptr (vmsnap_image) img = NULL;
  g_autoptr (GError) e = NULL;

  (void) op;
  (void) qemu_img;
  img = vmsnap_image_read (n->path, n->fmt, &e);
  if (img == NULL) {
    fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: %s", d->target, e->message);
    return FALSE;
  }
  if (img->data_file) {
    fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: " DATA_FILE_REFUSED,
          d->target, n->path, img->data_file);
    return FALSE;
  }
  n->vsize = img->virtual_size;
  g_free (n->no_write);
  n->no_write = no_write_reason (img, n->path);
  n->encrypted = img->encrypted;
  if (img->backing == NULL)
    return TRUE;
  /* A backing name that is not a local file was refused by
   * vmsnap_image_read (the core's one rule, vmsnap_ref_not_local). */
  n->backing = g_strdup (img->backing);
  n->backing_fmt = g_strdup (img->backing_fmt);
  if (n->backing_fmt == NULL) {
    fail (err, VMSNAP_ERR_UNSUPPORTED,
          "disk %s: image %s names its backing file %s without a format; "
          "vmsnap never lets QEMU guess a format: record it with `qemu-img "
          "rebase -u -f %s -F FORMAT -b %s %s`", d->target, n->path,
          n->backing, n->fmt, n->backing, n->path);
    return FALSE;
  }
  if (!g_strv_contains (overlay_bases, n->backing_fmt)) {
    fail (err, VMSNAP_ERR_UNSUPPORTED,
          "disk %s: image %s is backed by %s in format %s, which %s does not "
          "handle", d->target, n->path, n->backing, n->backing_fmt, NAME);
    return FALSE;
  }
  return TRUE;
}

/* Read every node's header and add the backing files until the graph is
 * closed.  TOLERANT (list): files that cannot be read are marked missing
 * instead of failing. */
static gboolean
graph_walk_from (graph *g, guint from, vmsnap_op *op, const vmsnap_disk *d,
                 const char *qemu_img, gboolean tolerant, GError **err)
{
  for (guint i = from; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    struct stat st;
    g_autoptr (GError) e = NULL;

    if (stat (n->path, &st) < 0) {
      int errsv = errno;
      if (tolerant) {
        n->missing = TRUE;
        continue;
      }
      fail (err, VMSNAP_ERR_FAILED, "disk %s: image %s%s%s%s is missing: %s",
            d->target, n->path, n->locator ? " (locator " : "",
            n->locator ? n->locator : "", n->locator ? ")" : "",
            g_strerror (errsv));
      return FALSE;
    }
    n->block = !S_ISREG (st.st_mode);
    if (!node_info (op, d, qemu_img, n, &e)) {
      if (tolerant) {
        n->missing = TRUE;
        continue;
      }
      g_propagate_error (err, g_steal_pointer (&e));
      return FALSE;
    }
    if (n->backing) {
      node *p = graph_add (g, d, n->backing, n->backing_fmt, err);
      if (p == NULL)
        return FALSE;
      n->parent = p;
    }
  }
  /* Loops (a file backed, eventually, by itself) are refused. */
  for (guint i = 0; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    guint steps = 0;
    for (node *m = n; m; m = m->parent)
      if (++steps > g->nodes->len) {
        fail (err, VMSNAP_ERR_INVALID_INPUT,
              "disk %s: the backing chain of %s loops", d->target, n->path);
        return FALSE;
      }
  }
  return TRUE;
}

static gboolean
graph_walk (graph *g, vmsnap_op *op, const vmsnap_disk *d,
            const char *qemu_img, gboolean tolerant, GError **err)
{
  return graph_walk_from (g, 0, op, d, qemu_img, tolerant, err);
}

/* The graph of ACTIVE (path, format) and LOCS (catalog strings). */
static graph *
graph_build (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
             const char *active_path, const char *active_fmt,
             GPtrArray *locs, gboolean tolerant, GError **err)
{
  g_autoptr (graph) g = graph_new ();

  g->active = graph_add (g, d, active_path, active_fmt, err);
  if (g->active == NULL)
    return NULL;
  g->active->active = TRUE;
  for (guint i = 0; locs && i < locs->len; i++) {
    const char *loc = g_ptr_array_index (locs, i);
    g_autofree char *fmt = NULL, *path = NULL;
    node *n;

    if (!loc_split (d, loc, &fmt, &path, err))
      return NULL;
    n = graph_add (g, d, path, fmt, err);
    if (n == NULL)
      return NULL;
    if (n->locator == NULL)
      n->locator = g_strdup (loc);
  }
  if (!graph_walk (g, op, d, qemu_img, tolerant, err))
    return NULL;
  return g_steal_pointer (&g);
}

/* The catalog's locators for the disk, plus EXTRA (the slot's own
 * locator argument) if the catalog list does not hold it. */
static GPtrArray *
op_locators (const vmsnap_op *op, const char *extra)
{
  GPtrArray *a = g_ptr_array_new ();
  size_t n = vmsnap_op_n_locators (op);
  gboolean seen = extra == NULL;

  for (size_t i = 0; i < n; i++) {
    const char *l = vmsnap_op_locator (op, i);
    if (l == NULL)
      continue;
    g_ptr_array_add (a, (gpointer) l);
    seen = seen || strcmp (l, extra) == 0;
  }
  if (!seen)
    g_ptr_array_add (a, (gpointer) extra);
  return a;
}

/* The images whose backing file is N. */
static GPtrArray *
children (const graph *g, const node *n)
{
  GPtrArray *a = g_ptr_array_new ();

  for (guint i = 0; i < g->nodes->len; i++) {
    node *m = g_ptr_array_index (g->nodes, i);
    if (m->parent == n && !m->missing)
      g_ptr_array_add (a, m);
  }
  return a;
}

static char *
node_loc (const node *n)
{
  return n->locator ? g_strdup (n->locator) : loc_make (n->fmt, n->path);
}

static char *
nodes_text (GPtrArray *a)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < a->len; i++) {
    node *n = g_ptr_array_index (a, i);
    g_string_append_printf (s, "%s%s", i ? ", " : "", n->path);
  }
  return g_string_free (s, FALSE);
}

/* ======================================================== encrypted disks */

/* An encrypted disk (<encryption format='luks'> on a qcow2 disk): every new
 * overlay is a LUKS-encrypted qcow2 image with the disk's secret, and every
 * qemu-img call that reads or writes data gives each encrypted image of the
 * chain that secret.  The secret comes from libvirt (the core reads it); it
 * goes to qemu-img through a 0600 file of the domain's private state
 * directory, made when first needed by a slot and removed when the slot
 * returns (a crash leaves it there, 0600 in a 0700 directory, until the
 * next call of any slot on the domain: check_slot removes it); never on a
 * command line. */
#define KEY_ID "vmsnap-key"

typedef struct {
  vmsnap_op *op;
  const vmsnap_disk *d;
  char *path;      /* the secret file, once made */
} keyctx;

static gboolean
disk_encrypted (const vmsnap_disk *d)
{
  return d->struct_size >= G_STRUCT_OFFSET (vmsnap_disk, encryption_secret_usage)
                           + sizeof (const char *)
         && d->encryption_format != NULL;
}

/* *PATH: the secret file for K's disk (NULL when it is not encrypted). */
static gboolean
key_get (keyctx *k, const char **path, GError **err)
{
  const char *sd;
  g_autofree char *p = NULL;
  GBytes *sec;
  const guint8 *data;
  gsize len = 0, off = 0;
  int fd;

  *path = NULL;
  if (!disk_encrypted (k->d))
    return TRUE;
  if (k->path) {
    *path = k->path;
    return TRUE;
  }
  sd = vmsnap_op_state_dir (k->op);
  if (sd == NULL) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: no state directory to pass the "
          "disk's secret to qemu-img through", k->d->target);
    return FALSE;
  }
  sec = vmsnap_op_encryption_secret (k->op, k->d, err);
  if (sec == NULL)
    return FALSE;
  p = g_build_filename (sd, KEY_FILE, NULL);
  if (unlink (p) < 0 && errno != ENOENT) {
    int errsv = errno;
    vmsnap_secret_free (sec);
    fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot remove the old %s: %s",
          k->d->target, p, g_strerror (errsv));
    return FALSE;
  }
  fd = open (p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  data = g_bytes_get_data (sec, &len);
  while (fd >= 0 && off < len) {
    ssize_t w = write (fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      int errsv = errno;
      close (fd);
      unlink (p);
      errno = errsv;
      fd = -1;
      break;
    }
    off += (gsize) w;
  }
  vmsnap_secret_free (sec);
  if (fd < 0 || close (fd) < 0) {
    int errsv = errno;
    unlink (p);
    fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot write the disk's secret "
          "for qemu-img to %s: %s", k->d->target, p, g_strerror (errsv));
    return FALSE;
  }
  k->path = g_steal_pointer (&p);
  *path = k->path;
  return TRUE;
}

static void
key_drop (keyctx *k)
{
  if (k->path) {
    unlink (k->path);
    g_clear_pointer (&k->path, g_free);
  }
}

/* S with every ',' doubled (QEMU option syntax). */
static void
append_opt_value (GString *o, const char *s)
{
  for (; *s; s++) {
    if (*s == ',')
      g_string_append_c (o, ',');
    g_string_append_c (o, *s);
  }
}

/* How qemu-img names an image whose data it reads or writes: "-f FMT" and
 * the path, or, for an encrypted disk, "--object secret,... --image-opts"
 * and an options string that gives the secret to the image and to each
 * encrypted file of its backing chain (from `qemu-img info
 * --backing-chain`, which reads headers only and needs no secret).  CHAIN
 * false: the call opens the image without its backing files (rebase -u),
 * and QEMU refuses options for them. */
typedef struct {
  char *fmt;
  char *object;   /* NULL: plain -f */
  char *name;
} imgref;

static void
imgref_clear (imgref *r)
{
  g_free (r->fmt);
  g_free (r->object);
  g_free (r->name);
}

static gboolean
imgref_make (keyctx *k, const char *qemu_img, const char *fmt,
             const char *path, gboolean chain, imgref *r, GError **err)
{
  const char *key;
  GString *o;
  struct stat st;

  (void) qemu_img;
  memset (r, 0, sizeof *r);
  r->fmt = g_strdup (fmt);
  if (!key_get (k, &key, err))
    return FALSE;
  if (key == NULL) {
    r->name = g_strdup (path);
    return TRUE;
  }
  o = g_string_new ("driver=");
  append_opt_value (o, fmt);
  g_string_append (o, stat (path, &st) == 0 && S_ISBLK (st.st_mode)
                      ? ",file.driver=host_device" : ",file.driver=file");
  g_string_append (o, ",file.filename=");
  append_opt_value (o, path);
  {
    /* Which layers are encrypted: their headers, read in process (one
     * walk, no process per layer). */
    g_autofree char *cur = g_strdup (path), *cur_fmt = g_strdup (fmt);
    for (guint i = 0; cur && i < (chain ? MAX_NODES : 1); i++) {
      g_autoptr (vmsnap_image) img = vmsnap_image_read (cur, cur_fmt, err);
      if (img == NULL) {
        g_string_free (o, TRUE);
        return FALSE;
      }
      if (img->encrypted) {
        g_string_append_c (o, ',');
        for (guint j = 0; j < i; j++)
          g_string_append (o, "backing.");
        g_string_append (o, "encrypt.key-secret=" KEY_ID);
      }
      g_free (cur);
      g_free (cur_fmt);
      cur = g_steal_pointer (&img->backing);
      cur_fmt = g_steal_pointer (&img->backing_fmt);
      if (cur_fmt == NULL)
        g_clear_pointer (&cur, g_free);
    }
  }
  r->name = g_string_free (o, FALSE);
  o = g_string_new ("secret,id=" KEY_ID ",file=");
  append_opt_value (o, key);
  r->object = g_string_free (o, FALSE);
  return TRUE;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (imgref, imgref_clear)

/* argv: QEMU_IMG, the words of PRE (NULL-terminated), the image words of
 * R.  The array holds borrowed strings. */
static GPtrArray *
img_argv (const char *qemu_img, const char *const *pre, const imgref *r)
{
  GPtrArray *a = g_ptr_array_new ();

  g_ptr_array_add (a, (gpointer) qemu_img);
  for (; *pre; pre++)
    g_ptr_array_add (a, (gpointer) *pre);
  if (r->object) {
    g_ptr_array_add (a, (gpointer) "--object");
    g_ptr_array_add (a, r->object);
    g_ptr_array_add (a, (gpointer) "--image-opts");
  } else {
    g_ptr_array_add (a, (gpointer) "-f");
    g_ptr_array_add (a, r->fmt);
  }
  g_ptr_array_add (a, (gpointer) "--");
  g_ptr_array_add (a, r->name);
  g_ptr_array_add (a, NULL);
  return a;
}

/* Point image PATH (format FMT) at backing file NAME of format BFMT
 * without touching its data (`qemu-img rebase -u`): a header write,
 * repeatable.  A qcow2 image's header is rewritten in process
 * (vmsnap_qcow2_set_backing: no process, no key needed for an encrypted
 * image); qemu-img does it when that refuses for a reason other than bad
 * arguments (an image marked dirty, a header that would not fit in the
 * first cluster, one in use: qemu-img then says so itself), and for the
 * other formats.  FALSE with *err: nothing useful was written. */
static gboolean
set_backing_u (vmsnap_op *op, const char *qemu_img, keyctx *k,
               const char *fmt, const char *path, const char *name,
               const char *bfmt, GError **err)
{
  const char *const pre[] = { "rebase", "-u", "-F", bfmt, "-b", name, NULL };
  g_auto (imgref) r = { 0 };
  g_autoptr (GPtrArray) argv = NULL;

  if (strcmp (fmt, "qcow2") == 0) {
    GError *e = NULL;
    if (vmsnap_qcow2_set_backing (path, name, bfmt, &e))
      return TRUE;
    if (g_error_matches (e, VMSNAP_ERROR, VMSNAP_ERR_USAGE)) {
      g_propagate_error (err, e);
      return FALSE;
    }
    g_debug ("%s: header not rewritten in process (%s): qemu-img rebase -u",
             path, e->message);
    g_error_free (e);
  }
  if (!imgref_make (k, qemu_img, fmt, path, FALSE, &r, err))
    return FALSE;
  argv = img_argv (qemu_img, pre, &r);
  return vmsnap_op_run (op, (const char *const *) argv->pdata, NULL, err);
}

/* Is the (header of the) image PATH encrypted? */
static gboolean
image_encrypted (vmsnap_op *op, const char *qemu_img, const char *fmt,
                 const char *path)
{
  g_autoptr (vmsnap_image) img = vmsnap_image_read (path, fmt, NULL);

  (void) op;
  (void) qemu_img;
  return img != NULL && img->encrypted;
}

/* ====================================================== measuring, space */

/* One extent of `qemu-img map --output=json` of an image seen through its
 * backing chain: [start, end), the layer that holds it (depth 0: the
 * image itself, 1: its backing file, ...), whether that layer holds data
 * there ("data") and whether the range reads as zeros ("zero": a zero
 * cluster, a hole, or a range no layer holds). */
typedef struct {
  guint64 start, end;
  gint64 depth;
  gboolean data, zero;
} extent;

static gint
extent_cmp (gconstpointer a, gconstpointer b)
{
  const extent *x = a, *y = b;

  return x->start < y->start ? -1 : x->start > y->start;
}

/* The map of image PATH (format FMT) through its backing chain, from one
 * `qemu-img map`: extents sorted by start and not overlapping (the tool's
 * output is, but it is parsed as untrusted: overlaps are cut, nonsense
 * dropped). */
static GArray *
map_read (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
          keyctx *k, const char *fmt, const char *path, GError **err)
{
  static const char *const pre[] = { "map", "--output=json", "-U", NULL };
  g_auto (imgref) r = { 0 };
  g_autoptr (GPtrArray) argv = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GArray) m = g_array_new (FALSE, FALSE, sizeof (extent));
  JsonNode *root;
  JsonArray *a;
  guint64 end = 0;
  guint n = 0;

  if (!imgref_make (k, qemu_img, fmt, path, TRUE, &r, err))
    return NULL;
  argv = img_argv (qemu_img, pre, &r);
  if (!run_json (op, (const char *const *) argv->pdata, p, err))
    return NULL;
  root = json_parser_get_root (p);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root)) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: qemu-img map %s: unexpected "
          "output", d->target, path);
    return NULL;
  }
  a = json_node_get_array (root);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    JsonObject *o = json_array_get_object_element (a, i);
    gint64 start, len;
    extent e;
    if (o == NULL)
      continue;
    start = json_object_get_int_member_with_default (o, "start", -1);
    len = json_object_get_int_member_with_default (o, "length", 0);
    if (start < 0 || len <= 0 || (guint64) len > G_MAXUINT64 - (guint64) start)
      continue;
    e.start = start;
    e.end = (guint64) start + (guint64) len;
    e.depth = json_object_get_int_member_with_default (o, "depth", 0);
    e.data = json_object_get_boolean_member_with_default (o, "data", FALSE);
    /* Unknown: not zeros (a copy would have to write it). */
    e.zero = json_object_get_boolean_member_with_default (o, "zero", FALSE);
    g_array_append_val (m, e);
  }
  g_array_sort (m, extent_cmp);
  for (guint i = 0; i < m->len; i++) {
    extent e = g_array_index (m, extent, i);
    if (e.start < end)
      e.start = end;
    if (e.start >= e.end)
      continue;
    end = e.end;
    g_array_index (m, extent, n++) = e;
  }
  g_array_set_size (m, n);
  return g_steal_pointer (&m);
}

/* Bytes of M's extents at DEPTH that hold data (DATA) or, with DATA
 * false, that read as non-zero (whatever the layer holds). */
static guint64
extents_bytes (const GArray *m, gint64 depth, gboolean data)
{
  guint64 sum = 0;

  for (guint i = 0; i < m->len; i++) {
    const extent *e = &g_array_index (m, extent, i);
    if (e->depth == depth && (data ? e->data : !e->zero))
      sum += e->end - e->start;
  }
  return sum;
}

/* Bytes where an extent of A at depth DEPTH that reads as zeros meets an
 * extent of B (any depth) that does not.  A and B as map_read returns
 * them (sorted, not overlapping): one pass over both. */
static guint64
extents_zero_over_data (const GArray *a, gint64 depth, const GArray *b)
{
  guint64 sum = 0;
  guint i = 0, j = 0;

  while (i < a->len && j < b->len) {
    const extent *x = &g_array_index (a, extent, i);
    const extent *y = &g_array_index (b, extent, j);
    guint64 lo = MAX (x->start, y->start), hi = MIN (x->end, y->end);

    if (lo < hi && x->depth == depth && x->zero && !y->zero)
      sum += hi - lo;
    if (x->end <= y->end)
      i++;
    else
      j++;
  }
  return sum;
}

/* Bytes allocated in the image itself (not in its backing files): the
 * extents of `qemu-img map` with data and depth 0 (raw: with data). */
static gboolean
alloc_bytes (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
             keyctx *k, const char *fmt, const char *path, guint64 *bytes,
             GError **err)
{
  g_autoptr (GArray) m = map_read (op, d, qemu_img, k, fmt, path, err);

  if (m == NULL)
    return FALSE;
  *bytes = extents_bytes (m, 0, TRUE);
  return TRUE;
}

/* The data each direction of taking U out from under its only dependent
 * C writes (metadata aside), from C's map through the chain, one
 * `qemu-img map` (plus one of U's backing file B in the one case that
 * needs it):
 *  commit (`qemu-img commit`, or QEMU's commit job): every cluster C holds
 *   itself (depth 0) is written into U.  C's zero clusters become zero
 *   clusters of U (the job writes zeroes, which is metadata): only C's
 *   data counts.
 *  pull (a safe `qemu-img rebase` of C onto B): where C holds nothing
 *   itself and U does (depth 1 in C's map: U's part that C does not
 *   shadow; the clusters C holds, data or zeros, stay as they are), C gets
 *   what it read through U wherever that differs from what B reads.  U's
 *   data counts (taken as differing from B: comparing contents would mean
 *   reading them).  U's zero clusters count where B reads data (qemu-img
 *   7.2 writes those zeros as data) and not where B reads zeros or U has
 *   no backing file: that needs B's map, read only when U has such
 *   clusters that C does not shadow.  Online, QEMU's stream job writes
 *   zeros as zero clusters (ONLINE_PULL): U's zero clusters cost nothing.
 * Both maps are read with their chains (a map of C alone could not say
 * which of C's unallocated ranges U holds). */
static gboolean
plan_costs (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            keyctx *k, const node *u, const node *c, gboolean online_pull,
            guint64 *commit, guint64 *pull, GError **err)
{
  g_autoptr (GArray) cm = map_read (op, d, qemu_img, k, c->fmt, c->path, err);
  g_autoptr (GArray) bm = NULL;
  guint64 zeros;

  if (cm == NULL)
    return FALSE;
  *commit = extents_bytes (cm, 0, TRUE);
  *pull = extents_bytes (cm, 1, FALSE);
  zeros = 0;
  for (guint i = 0; i < cm->len; i++) {
    const extent *e = &g_array_index (cm, extent, i);
    if (e->depth == 1 && e->zero)
      zeros += e->end - e->start;
  }
  if (zeros == 0 || online_pull || u->backing == NULL || u->backing_fmt == NULL)
    return TRUE;
  bm = map_read (op, d, qemu_img, k, u->backing_fmt, u->backing, err);
  if (bm == NULL)
    return FALSE;
  *pull += extents_zero_over_data (cm, 1, bm);
  return TRUE;
}

/* Free bytes on the file system holding PATH (G_MAXUINT64: unknown, or a
 * block device, which needs no new space). */
static guint64
free_bytes (const char *path, gboolean block)
{
  g_autofree char *dir = g_path_get_dirname (path);
  struct statvfs sv;

  if (block || statvfs (dir, &sv) < 0)
    return G_MAXUINT64;
  return (guint64) sv.f_bavail * sv.f_frsize;
}

/* ================================================================ common */

/* Offline operations freeze, discard or rewrite the active image: refuse
 * when another process (a QEMU the domain's state does not show, a qemu-io,
 * a qemu-nbd) holds it: QEMU's image locks, tested in process
 * (vmsnap_image_in_use), are exactly the check. */
static gboolean
active_not_in_use (vmsnap_op *op, const vmsnap_disk *d, GError **err)
{
  g_autoptr (GError) local = NULL;
  int used = vmsnap_image_in_use (d->source, &local);

  (void) op;
  if (used == 0)
    return TRUE;
  if (used > 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s: image %s is in use by another process (it holds "
                 "QEMU's image locks); is a QEMU still running it? Stop it "
                 "first: vmsnap changes images of a shut-off domain only",
                 d->target, d->source);
    return FALSE;
  }
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "disk %s: %s",
               d->target, local->message);
  return FALSE;
}

static int
check_slot (vmsnap_op *op, const vmsnap_disk *d, const char *slot,
            unsigned int flags, gboolean offline_only, GError **err)
{
  if (!vmsnap_check_flags (NAME, slot, flags, 0, err))
    return -1;
  if (op == NULL || d == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: %s called without an "
                 "operation context or disk (internal error)", NAME, slot);
  /* A secret file a killed slot left behind (see key_get) goes now. */
  if (vmsnap_op_state_dir (op)) {
    g_autofree char *stale = g_build_filename (vmsnap_op_state_dir (op),
                                               KEY_FILE, NULL);
    unlink (stale);
  }
  if (offline_only && vmsnap_op_is_online (op))
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s with backend %s on a running or paused domain "
                 "is not supported yet in this version of vmsnap; shut the "
                 "domain off and run it again", d->target, slot, NAME);
  if (d->type != VMSNAP_DISK_TYPE_FILE && d->type != VMSNAP_DISK_TYPE_BLOCK)
    return fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: %s: " NOT_FILE_OR_BLOCK,
                 d->target, slot, d->type_name ? d->type_name : "other");
  if (d->source == NULL || !g_path_is_absolute (d->source))
    return fail (err, VMSNAP_ERR_INVALID_INPUT,
                 "disk %s: the source '%s' is not an absolute path; give "
                 "the image's absolute path in the domain XML", d->target,
                 d->source ? d->source : "(none)");
  if (d->format == NULL || !g_strv_contains (overlay_bases, d->format))
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: format '%s' cannot be the backing image of a qcow2 "
                 "overlay (supported: qcow2, raw, vmdk, vdi, vpc, vhdx)",
                 d->target, d->format ? d->format : "none");
  {
    /* The active image's header, before any qemu-img opens it. */
    g_autoptr (GError) e = NULL;
    if (!vmsnap_image_refs_check (d->source, d->format, &e))
      return fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: %s", d->target,
                   e->message);
  }
  if (strcmp (slot, "list") != 0 && strcmp (slot, "discard") != 0
      && !vmsnap_op_is_online (op) && !active_not_in_use (op, d, err))
    return -1;
  return 0;
}

/* Record KEY=VALUE unless the journal holds it already (a re-run). */
static gboolean
op_set_once (vmsnap_op *op, const char *key, const char *value, GError **err)
{
  const char *old = vmsnap_op_get (op, key);

  if (old && strcmp (old, value) == 0)
    return TRUE;
  return vmsnap_op_set (op, key, value, err);
}

/* Overlay names: "<stem>.vmsnap-<disk>-<8 hex>.qcow2".  The disk part (the
 * target, vda) keeps two disks whose images share a stem (p.qcow2 and
 * p.raw in one directory; two block devices named alike, whose overlays
 * both go to the state directory) from ever sharing a name pattern.  Names
 * only say that vmsnap made a file; which disk a file belongs to comes from
 * the catalog and the backing graph (qext_list). */

/* TARGET as it appears in a file name: [A-Za-z0-9_], anything else '_'. */
static char *
name_part (const char *target)
{
  char *t = g_strdup (target);

  for (char *c = t; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '_')
      *c = '_';
  return t;
}

/* The mark vmsnap gives D's overlays: ".vmsnap-vda-". */
static char *
disk_mark (const vmsnap_disk *d)
{
  g_autofree char *t = name_part (d->target);

  return g_strconcat (TAG, t, "-", NULL);
}

/* Is BASE (a file name) one of D's overlay names, or (OLD_TOO) an overlay
 * name of an earlier vmsnap ("<stem>.vmsnap-<8 hex>.qcow2", no disk part)? */
static gboolean
our_name (const vmsnap_disk *d, const char *base, gboolean old_too)
{
  g_autofree char *mark = disk_mark (d);
  const char *m, *tag;
  size_t len = strlen (base);

  if (!g_str_has_suffix (base, ".qcow2"))
    return FALSE;
  len -= strlen (".qcow2");
  if ((m = g_strrstr (base, mark)) != NULL
      && (size_t) (m - base) + strlen (mark) + HEX_LEN == len) {
    for (const char *c = m + strlen (mark); c < base + len; c++)
      if (!g_ascii_isxdigit (*c))
        return FALSE;
    return TRUE;
  }
  if (!old_too || (tag = g_strrstr (base, TAG)) == NULL
      || (size_t) (tag - base) + TAG_LEN + HEX_LEN != len)
    return FALSE;
  for (const char *c = tag + TAG_LEN; c < base + len; c++)
    if (!g_ascii_isxdigit (*c))
      return FALSE;
  return TRUE;
}

/* The stem of an image name: "p.vmsnap-vda-0123abcd.qcow2" -> "p" (also
 * the older "p.vmsnap-0123abcd.qcow2"), "disk.raw" -> "disk"; cut to at
 * most MAX bytes (at a character boundary of a UTF-8 name) so that the
 * overlay name fits the file system's NAME_MAX. */
static char *
overlay_stem (const char *path, size_t max)
{
  char *base = g_path_get_basename (path);
  char *dot = strrchr (base, '.');
  char *tag;

  if (dot && dot != base)
    *dot = '\0';
  if ((tag = g_strrstr (base, TAG)) != NULL && tag != base
      && strchr (tag + 1, '.') == NULL)
    *tag = '\0';
  if (strlen (base) > max) {
    char *end = base + max;
    if (g_utf8_validate (base, -1, NULL))
      while (end > base && (*end & 0xC0) == 0x80)
        end--;
    *end = '\0';
  }
  return base;
}

/* Overlays go next to the active image; next to a block device they cannot,
 * so they go to vmsnap's state directory for the domain. */
static char *
overlay_dir (vmsnap_op *op, const vmsnap_disk *d)
{
  struct stat st;

  if (stat (d->source, &st) == 0 && !S_ISREG (st.st_mode)) {
    const char *sd = vmsnap_op_state_dir (op);
    return sd ? g_strdup (sd) : NULL;
  }
  return g_path_get_dirname (d->source);
}

/* make_overlay's other way: `qemu-img create` (an encrypted overlay, or
 * what vmsnap_qcow2_overlay_write refuses).  VSIZE: the backing file's
 * virtual size, 0 if unknown.  On failure PATH is removed. */
static int
overlay_by_qemu_img (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
                     const char *key, const char *bfmt, const char *bpath,
                     const char *path, guint64 vsize, GError **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *size = NULL;
  GError *e = NULL;

  if (vsize > 0)
    size = g_strdup_printf ("%" G_GUINT64_FORMAT, vsize);
  g_ptr_array_add (argv, g_strdup (qemu_img));
  g_ptr_array_add (argv, g_strdup ("create"));
  g_ptr_array_add (argv, g_strdup ("-q"));
  g_ptr_array_add (argv, g_strdup ("-f"));
  g_ptr_array_add (argv, g_strdup ("qcow2"));
  if (key) {
    GString *o = g_string_new ("secret,id=" KEY_ID ",file=");
    append_opt_value (o, key);
    g_ptr_array_add (argv, g_strdup ("--object"));
    g_ptr_array_add (argv, g_string_free (o, FALSE));
    g_ptr_array_add (argv, g_strdup ("-o"));
    gint64 ms = vmsnap_option_get_int (vmsnap_op_config (op),
                                       NAME ".luks-iter-time");
    g_ptr_array_add (argv, g_strdup_printf (
      "encrypt.format=luks,encrypt.key-secret=" KEY_ID ",encrypt.iter-time=%"
      G_GINT64_FORMAT, ms > 0 ? ms : 2000));
  }
  g_ptr_array_add (argv, g_strdup ("-F"));
  g_ptr_array_add (argv, g_strdup (bfmt));
  g_ptr_array_add (argv, g_strdup ("-b"));
  g_ptr_array_add (argv, g_strdup (bpath));
  /* -u with the size read in process: qemu-img does not open the
   * backing chain.  An image whose size vmsnap cannot tell (0) lets
   * qemu-img open it, format given. */
  if (size)
    g_ptr_array_add (argv, g_strdup ("-u"));
  g_ptr_array_add (argv, g_strdup ("--"));
  g_ptr_array_add (argv, g_strdup (path));
  if (size)
    g_ptr_array_add (argv, g_strdup (size));
  g_ptr_array_add (argv, NULL);
  /* QEMU 7.2's LUKS benchmark (qcrypto_pbkdf2_count_iters, as Debian
   * ships it) fails now and then with "Unable to get accurate CPU usage"
   * when getrusage has not caught up yet (a known QEMU bug, fixed
   * upstream in 2025): nothing was written, so try again, twice. */
  for (int tries = 0;; tries++) {
    gboolean ok = vmsnap_op_run (op, (const char *const *) argv->pdata, NULL, &e);
    if (ok || !key || tries >= 2 || strstr (e->message, "accurate CPU usage") == NULL)
      break;
    g_clear_error (&e);
  }
  if (e) {
    unlink (path);
    return fail_with (err, e, "nothing was changed; fix the cause and "
                      "run the command again",
                      "disk %s: creating overlay %s on %s (%s)", d->target,
                      path, bpath, bfmt);
  }
  return 0;
}

/* Create a new qcow2 overlay backed by BPATH (format BFMT); *OUT: its path.
 *
 * Order (journal key "overlay"):
 *  1. choose a free name and record it: a re-run after a crash reuses that
 *     name, so at most one overlay file ever exists for this operation and
 *     a rollback by the core knows which file to remove;
 *  2. reserve it (O_EXCL, mode 0600 from the start: no window where another
 *     user could open it), write it (in process, or `qemu-img create` for
 *     an encrypted overlay and what the in-process writer refuses), chmod
 *     0600, and make it durable (fdatasync of the file, fsync of its
 *     directory) before the core records the disk's result.
 * No step is marked done: nothing refers to the overlay until the core has
 * written the disk's result (before the domain's definition or QEMU is
 * switched to it: doc/architecture.md), and until then a re-run may simply
 * create it again over itself.  (A journal of an older vmsnap may hold the
 * step "overlay-created"; it is still honoured.)  On failure the file is
 * removed: nothing half-created remains. */
static int
make_overlay (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
              keyctx *k, const char *bfmt, const char *bpath, char **out,
              GError **err)
{
  const char *rec = vmsnap_op_get (op, "overlay");
  g_autofree char *path = NULL;
  GError *e = NULL;
  int fd;

  if (rec) {
    path = g_strdup (rec);
    if (vmsnap_op_step_done (op, "overlay-created")
        && g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
      *out = g_steal_pointer (&path);
      return 0;
    }
  } else {
    g_autofree char *dir = overlay_dir (op, d);
    g_autofree char *mark = disk_mark (d);
    g_autofree char *stem = NULL;
    struct stat st;
    int last = 0;

    if (dir == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: no directory for the "
                   "overlay of %s (no state directory)", d->target, d->source);
    if (strlen (mark) + HEX_LEN + strlen (".qcow2") + 1 > NAME_MAX)
      return fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: its target name "
                   "is too long for an overlay file name", d->target);
    stem = overlay_stem (d->source, NAME_MAX - strlen (mark) - HEX_LEN
                                    - strlen (".qcow2"));
    for (int tries = 0; tries < 64 && path == NULL; tries++) {
      g_autofree char *cand = g_strdup_printf ("%s/%s%s%08x.qcow2", dir, stem,
                                               mark, g_random_int ());
      if (lstat (cand, &st) == 0)
        continue;
      last = errno;
      if (last == ENOENT)
        path = g_steal_pointer (&cand);
      else
        break;
    }
    if (path == NULL && last != 0 && last != ENOENT)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot name an overlay "
                   "in %s: %s; nothing was changed", d->target, dir,
                   g_strerror (last));
    if (path == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot find a free "
                   "overlay name in %s (64 random names were taken)",
                   d->target, dir);
    if (!vmsnap_op_set (op, "overlay", path, err))
      return -1;
  }

  /* O_EXCL unless this file is ours from an interrupted run of this very
   * operation (its name was recorded before it was created). */
  fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW
                   | (rec ? 0 : O_EXCL), 0600);
  if (fd < 0) {
    int errsv = errno;
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot create overlay "
                 "%s: %s", d->target, path, g_strerror (errsv));
  }
  {
    /* An encrypted disk's overlay is encrypted with the disk's secret:
     * the guest's writes land in it. */
    const char *key = NULL;
    guint64 vsize = 0;
    gboolean written = FALSE;

    if (!key_get (k, &key, err)) {
      close (fd);
      unlink (path);
      return -1;
    }
    /* The size read in process (issue 17 item 7): nothing opens the
     * backing chain again, which the inventory has read and checked
     * (every name local, every format given). */
    {
      g_autoptr (vmsnap_image) bimg = vmsnap_image_read (bpath, bfmt, &e);
      if (bimg == NULL) {
        close (fd);
        unlink (path);
        return fail_with (err, e, "nothing was changed",
                          "disk %s: reading %s (%s) before creating its "
                          "overlay", d->target, bpath, bfmt);
      }
      vsize = bimg->virtual_size;
    }
    /* Unencrypted, size known: vmsnap writes the overlay itself, the same
     * bytes `qemu-img create -u` would (libvmsnap/qcow2new.c), and starts
     * no process.  What it refuses (a name or a size beyond it) goes to
     * qemu-img below. */
    if (key == NULL && vsize > 0) {
      if (vmsnap_qcow2_overlay_write (fd, bpath, bfmt, vsize, 0, &e))
        written = TRUE;
      else if (g_error_matches (e, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED))
        g_clear_error (&e);
      else {
        close (fd);
        unlink (path);
        return fail_with (err, e, "nothing was changed; fix the cause and "
                          "run the command again",
                          "disk %s: writing overlay %s on %s (%s)", d->target,
                          path, bpath, bfmt);
      }
    }
    /* Durable before the core records the disk's result and then lets the
     * definition name the overlay (doc/architecture.md, "What must be on
     * disk before each step"): its bytes here, qemu-img flushes its own. */
    if (written && fdatasync (fd) != 0) {
      int errsv = errno;
      close (fd);
      unlink (path);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot sync overlay %s: "
                   "%s; nothing was changed", d->target, path,
                   g_strerror (errsv));
    }
    close (fd);
    if (!written && overlay_by_qemu_img (op, d, qemu_img, key, bfmt, bpath,
                                         path, vsize, err) < 0)
      return -1;
  }
  if (chmod (path, 0600) < 0) {
    int errsv = errno;
    unlink (path);
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: chmod 0600 %s: %s",
                 d->target, path, g_strerror (errsv));
  }
  /* Its name durable too: fsync(2) of a new file does not promise the
   * directory entry. */
  {
    g_autofree char *dir = g_path_get_dirname (path);
    int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync (dfd) != 0) {
      int errsv = errno;
      if (dfd >= 0)
        close (dfd);
      unlink (path);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot sync directory "
                   "%s after creating overlay %s: %s; nothing was changed",
                   d->target, dir, path, g_strerror (errsv));
    }
    close (dfd);
  }
  *out = g_steal_pointer (&path);
  return 0;
}

/* ================================================================ create */

/* The active image becomes the snapshot (its locator), a new overlay on
 * top becomes the active source.  The active image is not modified at all:
 * freezing it is just "nobody writes it any more", which the core makes
 * true by switching the domain to the overlay when it records the result.
 * A crash before that leaves an unreferenced overlay that the re-run reuses
 * (or the core's rollback removes). */
static int
create_1 (vmsnap_op *op, const vmsnap_disk *d, keyctx *k, const char *name,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  const char *key = NULL;
  g_autofree char *qemu_img = NULL;
  g_autofree char *overlay = NULL;
  g_autofree char *loc = NULL, *undo = NULL;

  if (check_slot (op, d, "create", flags, FALSE, err) < 0)
    return -1;
  if (!g_file_test (d->source, G_FILE_TEST_EXISTS))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: active image %s does not "
                 "exist", d->target, d->source);
  qemu_img = vmsnap_op_qemu_img (op, err);
  if (qemu_img == NULL)
    return -1;
  /* The secret first: without it nothing is recorded or made. */
  if (!key_get (k, &key, err))
    return -1;
  if (make_overlay (op, d, qemu_img, k, d->format, d->source, &overlay, err) < 0)
    return -1;
  if (res == NULL)
    return 0;   /* prepare: the overlay only */
  loc = loc_make (d->format, d->source);
  undo = loc_make ("qcow2", overlay);
  vmsnap_result_set_locator (res, loc);
  vmsnap_result_set_new_source (res, overlay, "qcow2");
  /* If the VM operation is rolled back (another disk failed), the core
   * discards the overlay: the active image was never touched. */
  vmsnap_result_add_undo (res, undo);
  vmsnap_result_set_note (res, "%s frozen as snapshot '%s'; new active "
                          "overlay %s", d->source, name ? name : "", overlay);
  return 0;
}

/* ================================================================ revert */

/* A new overlay on the snapshot's image becomes the active source; the
 * snapshot's image is only read (it is the overlay's backing file), so it
 * can be reverted to again.  The old active image is garbage unless it is a
 * snapshot's image itself or something is backed by it; that decision is
 * recorded ("discard-old-active") before the overlay is made, and the image
 * is removed by the core only after the domain points to the new overlay. */
static int
revert_1 (vmsnap_op *op, const vmsnap_disk *d, keyctx *k, const char *locator,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  const char *key = NULL;
  g_autofree char *qemu_img = NULL;
  g_autofree char *fmt = NULL, *path = NULL, *overlay = NULL;
  g_autofree char *real_t = NULL, *real_a = NULL;
  const char *rec;
  gboolean garbage;

  if (check_slot (op, d, "revert", flags, TRUE, err) < 0)
    return -1;
  if (!loc_split (d, locator, &fmt, &path, err))
    return -1;
  real_t = real_or_self (path);
  real_a = real_or_self (d->source);
  if (strcmp (real_t, real_a) == 0)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot locator %s is the "
                 "active image itself (internal error: the catalog and the "
                 "domain disagree)", d->target, locator);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: the snapshot's image %s "
                 "is missing; it cannot be reverted to", d->target, path);
  qemu_img = vmsnap_op_qemu_img (op, err);
  if (qemu_img == NULL)
    return -1;
  /* The secret first: without it nothing is recorded or made. */
  if (!key_get (k, &key, err))
    return -1;

  rec = vmsnap_op_get (op, "discard-old-active");
  if (rec)
    garbage = strcmp (rec, "yes") == 0;
  else {
    g_autoptr (GPtrArray) locs = op_locators (op, locator);
    g_autoptr (graph) g = graph_build (op, d, qemu_img, d->source, d->format,
                                       locs, FALSE, err);
    g_autoptr (GPtrArray) ch = NULL;

    if (g == NULL)
      return -1;
    ch = children (g, g->active);
    garbage = g->active->locator == NULL && ch->len == 0;
    if (!vmsnap_op_set (op, "discard-old-active", garbage ? "yes" : "no", err))
      return -1;
  }
  if (make_overlay (op, d, qemu_img, k, fmt, path, &overlay, err) < 0)
    return -1;
  vmsnap_result_set_new_source (res, overlay, "qcow2");
  {
    g_autofree char *undo = loc_make ("qcow2", overlay);
    vmsnap_result_add_undo (res, undo);
  }
  if (garbage) {
    g_autofree char *old = loc_make (d->format, d->source);
    vmsnap_result_add_garbage (res, old);
  }
  vmsnap_result_set_note (res, "new active overlay %s on %s; previous active "
                          "image %s %s", overlay, path, d->source,
                          garbage ? "discarded"
                                  : "kept (a snapshot's image or a backing file)");
  return 0;
}

/* A failed create or revert is rolled back by the core, which knows only
 * the undo storage of the disks that finished: an overlay recorded by an
 * earlier, interrupted run of this slot (and not finished now) is removed
 * here, so that nothing this slot made remains. */
static void
drop_recorded_overlay (vmsnap_op *op)
{
  const char *rec = op ? vmsnap_op_get (op, "overlay") : NULL;
  struct stat st;

  if (rec && lstat (rec, &st) == 0 && S_ISREG (st.st_mode))
    unlink (rec);
}

/* The pause window of a running VM (doc/consistency.md): the overlay is
 * written before the pause (nothing refers to it until the core's switch,
 * which comes after the captures); the create inside the window only
 * reports it.  Step "prepared" marks the overlay complete and durable. */
static int
qext_prepare (vmsnap_op *op, const vmsnap_disk *d, const char *name,
              unsigned int flags, GError **err)
{
  keyctx k = { op, d, NULL };
  int r;

  if (!vmsnap_check_flags (NAME, "prepare", flags, 0, err))
    return -1;
  r = create_1 (op, d, &k, name, flags, NULL, err);
  key_drop (&k);
  if (r == 0 && vmsnap_op_mark_done (op, "prepared", err))
    return 0;
  drop_recorded_overlay (op);
  return -1;
}

/* The pause never came: the overlay goes (nothing refers to it). */
static int
qext_abort (vmsnap_op *op, const vmsnap_disk *d, const char *name,
            unsigned int flags, GError **err)
{
  (void) d;
  (void) name;
  if (!vmsnap_check_flags (NAME, "abort", flags, 0, err))
    return -1;
  if (op == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: abort called without "
                 "an operation context (internal error)", NAME);
  drop_recorded_overlay (op);
  return 0;
}

static int
qext_create (vmsnap_op *op, const vmsnap_disk *d, const char *name,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  keyctx k = { op, d, NULL };
  const char *rec = op ? vmsnap_op_get (op, "overlay") : NULL;
  int r;

  if (!vmsnap_check_flags (NAME, "create", flags, 0, err))
    return -1;
  if (rec && vmsnap_op_step_done (op, "prepared")
      && g_file_test (rec, G_FILE_TEST_IS_REGULAR)) {
    /* Prepared: inside the window, possibly in a thread of its own. */
    g_autofree char *loc = loc_make (d->format, d->source);
    g_autofree char *undo = loc_make ("qcow2", rec);
    vmsnap_result_set_locator (res, loc);
    vmsnap_result_set_new_source (res, rec, "qcow2");
    vmsnap_result_add_undo (res, undo);
    vmsnap_result_set_note (res, "%s frozen as snapshot '%s'; new active "
                            "overlay %s", d->source, name ? name : "", rec);
    return 0;
  }
  r = create_1 (op, d, &k, name, flags, res, err);
  key_drop (&k);
  if (r == 0)
    return 0;
  drop_recorded_overlay (op);
  return -1;
}

static int
qext_revert (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  keyctx k = { op, d, NULL };
  int r;

  if (!vmsnap_check_flags (NAME, "revert", flags, 0, err))
    return -1;
  r = revert_1 (op, d, &k, locator, flags, res, err);
  key_drop (&k);
  if (r == 0)
    return 0;
  drop_recorded_overlay (op);
  return -1;
}

/* ========================================================= consolidation */

/* Taking image U out of the graph (delete, merge).
 *
 *  drop    U has no dependents: nothing to copy, U is garbage.
 *  commit  U's only dependent C is committed into U (`qemu-img commit -d`,
 *          C unchanged), C's own dependents are rebased (-u) onto U, and
 *          U's file now holds C's point: C's locator is renamed to U's (or
 *          U becomes the active source when C was active); C is garbage.
 *  pull    U's data is pulled into C (safe `qemu-img rebase` of C onto U's
 *          backing file); U is garbage.  No locator moves.
 *  spread  (merge with max_depth) U has several dependents: each is pulled
 *          like above; U is garbage.
 *
 * The plan is recorded as one JSON value (key "<prefix>plan") with the
 * byte counts ("<prefix>commit_bytes", "<prefix>pull_bytes"), then the
 * direction ("<prefix>direction") last: the direction is the commit point
 * of the decision, a re-run that finds it replays this plan exactly and
 * never re-reads a graph the interrupted steps may have half-changed. */
typedef struct {
  char *direction;
  char *u_fmt, *u_path, *u_loc;
  char *c_fmt, *c_path, *c_loc, *c_backing;   /* commit / pull */
  gboolean c_active;
  gboolean c_held;       /* online: C is in the running VM's chain */
  char *held_active;     /* spread online: the dependent the VM runs on */
  GPtrArray *deps;       /* char* "fmt:path": commit: C's children;
                            spread: U's dependents */
  char *b_fmt, *b_path;  /* U's backing file, NULL when U has none */
  guint64 commit_bytes, pull_bytes;
  char *why;             /* why the direction is not the cheaper one */
} plan;

static void
plan_free (plan *p)
{
  if (p == NULL)
    return;
  g_free (p->direction);
  g_free (p->u_fmt);
  g_free (p->u_path);
  g_free (p->u_loc);
  g_free (p->c_fmt);
  g_free (p->c_path);
  g_free (p->c_loc);
  g_free (p->c_backing);
  g_free (p->held_active);
  if (p->deps)
    g_ptr_array_unref (p->deps);
  g_free (p->b_fmt);
  g_free (p->b_path);
  g_free (p->why);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (plan, plan_free)

static plan *
plan_new (const char *direction, const node *u)
{
  plan *p = g_new0 (plan, 1);

  p->direction = g_strdup (direction);
  p->u_fmt = g_strdup (u->fmt);
  p->u_path = g_strdup (u->path);
  p->u_loc = node_loc (u);
  p->deps = g_ptr_array_new_with_free_func (g_free);
  if (u->parent) {
    p->b_fmt = g_strdup (u->backing_fmt);
    p->b_path = g_strdup (u->backing);
  }
  return p;
}

static void
json_add_str (JsonBuilder *b, const char *k, const char *v)
{
  json_builder_set_member_name (b, k);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static char *
plan_to_json (const plan *p)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_add_str (b, "direction", p->direction);
  json_add_str (b, "u_fmt", p->u_fmt);
  json_add_str (b, "u_path", p->u_path);
  json_add_str (b, "u_loc", p->u_loc);
  json_add_str (b, "c_fmt", p->c_fmt);
  json_add_str (b, "c_path", p->c_path);
  json_add_str (b, "c_loc", p->c_loc);
  json_add_str (b, "c_backing", p->c_backing);
  json_builder_set_member_name (b, "c_active");
  json_builder_add_boolean_value (b, p->c_active);
  json_builder_set_member_name (b, "c_held");
  json_builder_add_boolean_value (b, p->c_held);
  json_add_str (b, "held_active", p->held_active);
  json_builder_set_member_name (b, "deps");
  json_builder_begin_array (b);
  for (guint i = 0; i < p->deps->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (p->deps, i));
  json_builder_end_array (b);
  json_add_str (b, "b_fmt", p->b_fmt);
  json_add_str (b, "b_path", p->b_path);
  json_builder_set_member_name (b, "commit_bytes");
  json_builder_add_int_value (b, (gint64) p->commit_bytes);
  json_builder_set_member_name (b, "pull_bytes");
  json_builder_add_int_value (b, (gint64) p->pull_bytes);
  json_add_str (b, "why", p->why);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static char *
json_str (JsonObject *o, const char *k)
{
  JsonNode *n = json_object_get_member (o, k);

  if (n == NULL || JSON_NODE_HOLDS_NULL (n)
      || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return g_strdup (json_node_get_string (n));
}

static plan *
plan_load (vmsnap_op *op, const vmsnap_disk *d, const char *prefix,
           GError **err)
{
  g_autofree char *kp = g_strconcat (prefix, "plan", NULL);
  const char *s = vmsnap_op_get (op, kp);
  g_autoptr (JsonParser) jp = json_parser_new ();
  g_autoptr (plan) p = g_new0 (plan, 1);
  JsonNode *root;
  JsonObject *o;
  JsonArray *a;

  if (s == NULL || !json_parser_load_from_data (jp, s, -1, NULL)
      || (root = json_parser_get_root (jp)) == NULL
      || !JSON_NODE_HOLDS_OBJECT (root)) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal of the interrupted "
          "operation has no readable '%s' record; it cannot be resumed",
          d->target, kp);
    return NULL;
  }
  o = json_node_get_object (root);
  p->direction = json_str (o, "direction");
  p->u_fmt = json_str (o, "u_fmt");
  p->u_path = json_str (o, "u_path");
  p->u_loc = json_str (o, "u_loc");
  p->c_fmt = json_str (o, "c_fmt");
  p->c_path = json_str (o, "c_path");
  p->c_loc = json_str (o, "c_loc");
  p->c_backing = json_str (o, "c_backing");
  p->c_active = json_object_get_boolean_member_with_default (o, "c_active", FALSE);
  p->c_held = json_object_get_boolean_member_with_default (o, "c_held", FALSE);
  p->held_active = json_str (o, "held_active");
  p->deps = g_ptr_array_new_with_free_func (g_free);
  a = json_object_has_member (o, "deps")
      ? json_object_get_array_member (o, "deps") : NULL;
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    g_ptr_array_add (p->deps, g_strdup (json_array_get_string_element (a, i)));
  p->b_fmt = json_str (o, "b_fmt");
  p->b_path = json_str (o, "b_path");
  p->commit_bytes = json_object_get_int_member_with_default (o, "commit_bytes", 0);
  p->pull_bytes = json_object_get_int_member_with_default (o, "pull_bytes", 0);
  p->why = json_str (o, "why");
  if (p->direction == NULL || p->u_fmt == NULL || p->u_path == NULL
      || p->u_loc == NULL
      || ((!strcmp (p->direction, "commit") || !strcmp (p->direction, "pull"))
          && (p->c_fmt == NULL || p->c_path == NULL || p->c_backing == NULL))) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal record '%s' of the "
          "interrupted operation is incomplete; it cannot be resumed",
          d->target, kp);
    return NULL;
  }
  return g_steal_pointer (&p);
}

/* Record P: byte counts and plan first, the direction last. */
static gboolean
plan_record (vmsnap_op *op, const char *prefix, const plan *p, GError **err)
{
  g_autofree char *kc = g_strconcat (prefix, "commit_bytes", NULL);
  g_autofree char *kl = g_strconcat (prefix, "pull_bytes", NULL);
  g_autofree char *kp = g_strconcat (prefix, "plan", NULL);
  g_autofree char *kd = g_strconcat (prefix, "direction", NULL);
  g_autofree char *vc = g_strdup_printf ("%" G_GUINT64_FORMAT, p->commit_bytes);
  g_autofree char *vl = g_strdup_printf ("%" G_GUINT64_FORMAT, p->pull_bytes);
  g_autofree char *vp = plan_to_json (p);
  g_autofree char *ks = g_strconcat (prefix, "planned", NULL);

  /* Step "<prefix>planned": the point where the plan is recorded and no
   * data has moved yet, all the journal knows of a run killed inside the
   * qemu-img that moves it (engine-crash.sh stops there to test
   * repair_leaks). */
  return op_set_once (op, kc, vc, err) && op_set_once (op, kl, vl, err)
         && op_set_once (op, kp, vp, err)
         && op_set_once (op, kd, p->direction, err)
         && vmsnap_op_mark_done (op, ks, err);
}

static gboolean chain_has (const node *leaf, const node *x);

/* Decide how to take U out of the graph given its only dependent C:
 * the direction that writes less data (plan_costs; ties: commit). */
static plan *
plan_decide (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
             keyctx *k, const graph *g, const node *u, const node *c,
             GError **err)
{
  g_autoptr (plan) p = NULL;
  g_autoptr (GPtrArray) gc = children (g, c);
  guint64 cb, pb, cfree, pfree;

  if (c->vsize != u->vsize)
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s (%" G_GUINT64_FORMAT " bytes) and the image "
                 "backed by it, %s (%" G_GUINT64_FORMAT " bytes), have "
                 "different virtual sizes; merging across a resize is not "
                 "supported: nothing was changed", d->target, u->path,
                 u->vsize, c->path, c->vsize), NULL;
  if (strcmp (c->fmt, "qcow2") != 0)
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s is a %s image backed by %s; %s commits and "
                 "rebases qcow2 images only: nothing was changed", d->target,
                 c->path, c->fmt, u->path, NAME), NULL;
  for (guint i = 0; i < gc->len; i++) {
    node *x = g_ptr_array_index (gc, i);
    if (strcmp (x->fmt, "qcow2") != 0)
      return fail (err, VMSNAP_ERR_UNSUPPORTED,
                   "disk %s: %s is a %s image backed by %s; %s rebases "
                   "qcow2 images only: nothing was changed", d->target,
                   x->path, x->fmt, c->path, NAME), NULL;
  }
  if (!plan_costs (op, d, qemu_img, k, u, c,
                   vmsnap_op_is_online (op) && c->active && g->active
                   && chain_has (g->active, c), &cb, &pb, err))
    return NULL;
  /* The image a running QEMU writes: its metadata on disk lags behind
   * QEMU's cache (qemu-img map -U can show nothing of what the guest just
   * wrote), but the file's allocated size does not.  Beyond what qcow2's
   * own metadata explains (well under 1 MiB for these sizes), trust the
   * file. */
  if (vmsnap_op_is_online (op) && c->active && !c->block) {
    struct stat st;
    if (stat (c->path, &st) == 0 && (guint64) st.st_blocks * 512 > cb + (1 << 20))
      cb = MIN ((guint64) st.st_blocks * 512, c->vsize);
  }

  p = plan_new (cb <= pb ? "commit" : "pull", u);
  p->commit_bytes = cb;
  p->pull_bytes = pb;
  p->c_fmt = g_strdup (c->fmt);
  p->c_path = g_strdup (c->path);
  p->c_loc = c->locator ? g_strdup (c->locator) : NULL;
  p->c_backing = g_strdup (c->backing);
  p->c_active = c->active;
  for (guint i = 0; i < gc->len; i++)
    g_ptr_array_add (p->deps, node_loc (g_ptr_array_index (gc, i)));

  /* Space: commit writes into U's file, pull into C's.  When the cheaper
   * direction clearly does not fit and the other does, take the other: a
   * commit that runs out of space has already overwritten part of U. */
  cfree = free_bytes (u->path, u->block);
  pfree = free_bytes (c->path, c->block);
  if (!strcmp (p->direction, "commit") && cb > cfree && pb <= pfree) {
    g_free (p->direction);
    p->direction = g_strdup ("pull");
  } else if (!strcmp (p->direction, "pull") && pb > pfree && cb <= cfree
             && u->no_write == NULL) {
    g_free (p->direction);
    p->direction = g_strdup ("commit");
  }
  /* Running VM: images in its chain change only through QEMU's block
   * jobs.  libvirt pulls only into the active image, so an inner layer of
   * the running chain is committed (the note says so). */
  if (vmsnap_op_is_online (op) && g->active && chain_has (g->active, c)) {
    p->c_held = TRUE;
    if (!c->active && !strcmp (p->direction, "pull")) {
      g_free (p->direction);
      p->direction = g_strdup ("commit");
    }
  }
  /* qemu-img cannot give a new backing file a secret: an offline pull
   * onto an encrypted backing file cannot be done, so commit. */
  if (!strcmp (p->direction, "pull") && u->parent && u->parent->encrypted
      && !(p->c_held && vmsnap_op_is_online (op))) {
    g_free (p->direction);
    p->direction = g_strdup ("commit");
    p->why = g_strdup_printf ("commit forced: %s is encrypted, and qemu-img "
                              "cannot open a new encrypted backing file for a "
                              "pull", u->parent->path);
    if (u->no_write)
      return fail (err, VMSNAP_ERR_UNSUPPORTED,
                   "disk %s: %s cannot take a commit of %s (%s), and %s "
                   "cannot be pulled into it offline (its backing file %s is "
                   "encrypted, and qemu-img cannot give a new backing file a "
                   "secret): nothing was changed", d->target, u->path,
                   c->path, u->no_write, u->path, u->parent->path), NULL;
  }
  /* A commit writes into U in place: never into an image QEMU cannot
   * write that way (it would fail part way, U half-written).  Pull
   * instead; where that is impossible too, refuse before any write. */
  if (u->no_write && !strcmp (p->direction, "commit")) {
    if (p->c_held && !c->active)
      return fail (err, VMSNAP_ERR_UNSUPPORTED,
                   "disk %s: %s cannot take a commit of %s (%s), and the "
                   "running VM reads %s, which libvirt cannot pull into: "
                   "nothing was changed; shut the domain off and run the "
                   "command again (vmsnap then copies %s into %s instead)",
                   d->target, u->path, c->path, u->no_write, c->path,
                   u->path, c->path), NULL;
    g_free (p->direction);
    p->direction = g_strdup ("pull");
    p->why = g_strdup_printf ("pull forced: %s cannot take a commit: %s",
                              u->path, u->no_write);
  }
  return g_steal_pointer (&p);
}

/* Does image PATH (format FMT) name TARGET as its backing file already? */
static gboolean
backing_is (vmsnap_op *op, const char *qemu_img, const char *fmt,
            const char *path, const char *target)
{
  g_autoptr (vmsnap_image) img = vmsnap_image_read (path, fmt, NULL);
  g_autofree char *rb = NULL, *rt = NULL;

  (void) op;
  (void) qemu_img;
  if (img == NULL || img->backing == NULL)
    return FALSE;
  rb = real_or_self (img->backing);
  rt = real_or_self (target);
  return strcmp (rb, rt) == 0;
}

/* Before a step that writes PATH with qemu-img runs again in recovery: a
 * qemu-img killed while it wrote PATH (commit into U, rebase into C) can
 * leave leaked clusters there (allocated, counted, used by nothing:
 * `qemu-img check` exits 3), which no later step frees.  They hold no data,
 * so repairing them (`qemu-img check -r leaks`, which only lowers refcounts
 * nothing references) cannot lose any, and every image recover leaves is
 * check-clean.  Only qcow2, only in recovery, and only where the step
 * itself runs qemu-img on PATH: an image the running QEMU holds is written
 * by QEMU's block job, which a kill of vmsnap does not stop, and is never
 * touched here.  Anything worse than leaks stops the recovery, naming the
 * image: writing into a corrupt image would spread the damage. */
static gboolean
repair_leaks (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
              const char *fmt, const char *path, GError **err)
{
  GError *e = NULL;
  const char *argv[] = { qemu_img, "check", "-q", "-r", "leaks", "-f", fmt,
                         "--", path, NULL };

  /* An encrypted image opens only with its secret; its leaks hold no
   * data and are left (qemu-img check reports them). */
  if (!vmsnap_op_is_recovering (op) || strcmp (fmt, "qcow2") != 0
      || disk_encrypted (d))
    return TRUE;
  if (!vmsnap_op_run (op, argv, NULL, &e)) {
    fail_with (err, e, "the step was not run again: copy the image "
                      "aside, run `qemu-img check -f qcow2` on it, repair "
                      "what it reports (`-r all`), then run `vmsnap recover`",
                      "disk %s: repairing the clusters an interrupted "
                      "qemu-img leaked in %s", d->target, path);
    return FALSE;
  }
  return TRUE;
}

/* Run the plan's storage steps, skipping those marked done.
 *
 * Why each order is safe (a crash or a tool failure at any point):
 *
 *  commit, step "<prefix>commit": `qemu-img commit -d -b U C` writes C's
 *   own clusters into U and leaves C unchanged.  C reads its own clusters
 *   from itself and the rest from U, where commit wrote nothing, so C's
 *   contents, and those of everything backed by C (the active image or
 *   later snapshots), stay the same while U is half-written.  Only U's
 *   own point is being lost, and that is the point being deleted.  U has no
 *   other dependent (that is why this direction was allowed), so nothing
 *   else reads U.  A repeat copies the same clusters again.
 *  commit, step "<prefix>rebase-children": only once the commit is done
 *   (U now reads exactly like C), C's dependents are pointed at U with
 *   `rebase -u` (a header write, repeatable); before and after it they read
 *   the same data.  C stays intact until the core has recorded the rename
 *   and discards it.
 *  pull, step "<prefix>pull" (and spread "<prefix>pull-N"): a safe rebase
 *   copies into C the clusters where U's chain differs from the new backing
 *   file, then rewrites C's header.  Every cluster it writes holds what C
 *   read there through U anyway, and U is not modified at all, so U's own
 *   point is intact until the core removes it.
 *   BUT qemu-img (7.2) writes C's new header while the L2 table entries of
 *   the copied clusters may still sit in its metadata cache (they reach the
 *   file when it closes the image): killed in that window, C names the new
 *   backing file without all of the copied data, and reads wrong (seen in
 *   testing with kill -9).  So every run of the step first points C back at
 *   U with `rebase -u` (a header write): whatever C holds is its own data
 *   or a copy of what it read through U, so on U it reads right again,
 *   whether the previous run stopped before, inside or after that window;
 *   then the safe rebase runs from the start.  On a fresh run the header
 *   already names U and the extra call changes nothing. */
/* Does the tool error E say the file system (or device) is full? */
static gboolean
is_no_space (const GError *e)
{
  return e && (strstr (e->message, "No space left on device") != NULL
               || strstr (e->message, "ENOSPC") != NULL);
}

/* Why image PATH (format FMT) cannot be written in place now, or NULL
 * (also when it cannot be read: then the tool that writes it says why). */
static char *
image_no_write (vmsnap_op *op, const char *qemu_img, const char *fmt,
                const char *path)
{
  g_autoptr (vmsnap_image) img = vmsnap_image_read (path, fmt, NULL);

  (void) op;
  (void) qemu_img;
  return img ? no_write_reason (img, path) : NULL;
}

/* The commit of plan P cannot be done (WHY): record that the plan pulls
 * instead.  Safe at any point of the commit: `commit -d` never changes C,
 * and C reads from U only clusters C does not hold, which the commit did
 * not write; so C still reads its own point through U, and pulling U's
 * chain into C gives C that point without U.  U's point (the one being
 * taken out) is what a half-done commit spoiled, and pull discards U. */
static gboolean
fall_back_to_pull (vmsnap_op *op, const char *prefix, plan *p,
                   const char *why, GError **err)
{
  g_autofree char *kp = g_strconcat (prefix, "plan", NULL);
  g_autofree char *kd = g_strconcat (prefix, "direction", NULL);
  g_autofree char *vp = NULL;

  g_free (p->direction);
  p->direction = g_strdup ("pull");
  g_free (p->why);
  p->why = g_strdup (why);
  vp = plan_to_json (p);
  return vmsnap_op_set (op, kp, vp, err) && vmsnap_op_set (op, kd, "pull", err);
}

/* The commit direction's steps (see plan_run).  May turn P into a pull
 * (fall_back_to_pull) instead of failing, when U cannot take the commit. */
static int
run_commit (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            keyctx *k, const char *prefix, plan *p, GError **err)
{
  g_autofree char *s1 = g_strconcat (prefix, "commit", NULL);
  g_autofree char *s2 = g_strconcat (prefix, "rebase-children", NULL);
  GError *e = NULL;

  if (!vmsnap_op_step_done (op, s1)) {
    /* libvirt pulls only into the active image: an inner layer of the
     * running chain can only be committed while the VM runs. */
    gboolean online_job = p->c_held && vmsnap_op_is_online (op);
    gboolean can_pull = !(online_job && !p->c_active)
                        && (online_job || !disk_encrypted (d) || p->b_path == NULL
                            || !image_encrypted (op, qemu_img, p->b_fmt, p->b_path));
    g_autofree char *nw = image_no_write (op, qemu_img, p->u_fmt, p->u_path);
    g_autofree char *size = fmt_size (p->commit_bytes);
    gboolean ok;

    if (nw) {
      /* Decided before the image became unwritable, or by an older
       * vmsnap: never start (or repeat) a commit that cannot work. */
      g_autofree char *why = g_strdup_printf ("pull forced: %s cannot take a "
                                              "commit: %s", p->u_path, nw);
      if (!can_pull)
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: %s cannot take the "
                     "commit of %s (%s), and the running VM reads %s, which "
                     "libvirt cannot pull into; %s and every other snapshot "
                     "are unchanged: shut the domain off and run `vmsnap "
                     "recover`, which then copies %s into %s instead",
                     d->target, p->u_path, p->c_path, nw, p->c_path,
                     p->c_path, p->u_path, p->c_path);
      return fall_back_to_pull (op, prefix, p, why, err) ? 0 : -1;
    }
    if (online_job)
      /* QEMU commits; an active commit ends with the VM switched (pivot)
       * to U, an inner one with QEMU pointing C's overlay at U. */
      ok = vmsnap_op_block_job (op, p->c_active ? VMSNAP_BLOCK_ACTIVE_COMMIT
                                                : VMSNAP_BLOCK_COMMIT,
                                p->c_path, p->u_path, &e);
    else {
      const char *const pre[] = { "commit", "-p", "-d", "-b", p->c_backing, NULL };
      /* With --image-opts qemu-img cannot match -b against the chain (it
       * resolves it against the options string), and without -b it
       * commits into C's own backing file, which is U (C's header is
       * unchanged until this step is done). */
      const char *const pre_o[] = { "commit", "-p", "-d", NULL };
      g_auto (imgref) r = { 0 };
      g_autoptr (GPtrArray) argv = NULL;
      /* A commit killed midway may have leaked clusters in U: repaired
       * before it runs again (recovery only; see repair_leaks). */
      if (!repair_leaks (op, d, qemu_img, p->u_fmt, p->u_path, err))
        return -1;
      if (!imgref_make (k, qemu_img, p->c_fmt, p->c_path, TRUE, &r, err))
        return -1;
      argv = img_argv (qemu_img, r.object ? pre_o : pre, &r);
      ok = vmsnap_op_run_progress (op, (const char *const *) argv->pdata, &e);
    }
    if (!ok && is_no_space (e)) {
      g_autofree char *hint = g_strdup_printf (
        "%s and every other snapshot are unchanged, but %s was partly "
        "overwritten: the point being removed (%s) is no longer valid and "
        "the operation must be finished, not undone: make room for about "
        "%s on the file system of %s, then run `vmsnap recover` (or the "
        "same command again)", p->c_path, p->u_path, p->u_loc, size,
        p->u_path);
      return fail_with (err, e, hint, "disk %s: committing %s into %s",
                        d->target, p->c_path, p->u_path);
    }
    if (!ok && !can_pull) {
      g_autofree char *hint = g_strdup_printf (
        "%s and every other snapshot are unchanged; %s may be partly "
        "overwritten (it held only the point being removed, %s). Fix the "
        "cause above and run `vmsnap recover`; or shut the domain off and "
        "run `vmsnap recover`: it then copies %s into %s instead of "
        "committing", p->c_path, p->u_path, p->u_loc, p->u_path, p->c_path);
      return fail_with (err, e, hint, "disk %s: committing %s into %s",
                        d->target, p->c_path, p->u_path);
    }
    if (!ok) {
      /* Not a lack of space: repeating the commit would fail the same
       * way, so the operation goes on in the other direction. */
      g_autofree char *why = g_strdup_printf ("pull after the commit into %s "
                                              "failed (%s)", p->u_path,
                                              e->message);
      g_error_free (e);
      return fall_back_to_pull (op, prefix, p, why, err) ? 0 : -1;
    }
    if (!vmsnap_op_mark_done (op, s1, err))
      return -1;
  }
  if (!vmsnap_op_step_done (op, s2)) {
    for (guint i = 0; i < p->deps->len; i++) {
      g_autofree char *f = NULL, *path = NULL;
      if (!loc_split (d, g_ptr_array_index (p->deps, i), &f, &path, err))
        return -1;
      /* The overlay in a running chain was pointed at U by QEMU. */
      if (backing_is (op, qemu_img, f, path, p->u_path))
        continue;
      if (!set_backing_u (op, qemu_img, k, f, path, p->u_path, p->u_fmt, &e))
        return fail_with (err, e, "no data was lost (the image reads the "
                          "same through either backing file); fix the "
                          "cause and run `vmsnap recover`",
                          "disk %s: pointing %s at %s", d->target, path,
                          p->u_path);
    }
    if (!vmsnap_op_mark_done (op, s2, err))
      return -1;
  }
  return 0;
}

static int
plan_run (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
          keyctx *k, const char *prefix, plan *p, GError **err)
{
  GError *e = NULL;

  if (!strcmp (p->direction, "commit")) {
    if (run_commit (op, d, qemu_img, k, prefix, p, err) < 0)
      return -1;
    if (!strcmp (p->direction, "commit"))
      return 0;
    /* else: it fell back to a pull, done below */
  }

  if (!strcmp (p->direction, "pull") || !strcmp (p->direction, "spread")) {
    gboolean spread = !strcmp (p->direction, "spread");
    guint n = spread ? p->deps->len : 1;

    for (guint i = 0; i < n; i++) {
      g_autofree char *step = spread
        ? g_strdup_printf ("%spull-%u", prefix, i)
        : g_strconcat (prefix, "pull", NULL);
      g_autofree char *f = NULL, *path = NULL;
      g_autofree char *size = fmt_size (p->pull_bytes);
      g_autofree char *hint = NULL;

      if (vmsnap_op_step_done (op, step))
        continue;
      if (spread) {
        if (!loc_split (d, g_ptr_array_index (p->deps, i), &f, &path, err))
          return -1;
      } else {
        f = g_strdup (p->c_fmt);
        path = g_strdup (p->c_path);
      }
      hint = g_strdup_printf ("nothing was lost: %s still reads through %s, "
                              "which is unchanged; make room for about %s on "
                              "the file system of %s and run `vmsnap "
                              "recover`", path, p->u_path, size, path);
      if (vmsnap_op_is_online (op)
          && ((!spread && p->c_held)
              || (spread && p->held_active && !strcmp (p->held_active, path)))) {
        /* The VM runs on PATH: QEMU pulls into it. */
        if (!vmsnap_op_block_job (op, VMSNAP_BLOCK_PULL, path, p->b_path, err)
            || !vmsnap_op_mark_done (op, step, err))
          return -1;
        continue;
      }
      if (!repair_leaks (op, d, qemu_img, f, path, err))
        return -1;
      if (!set_backing_u (op, qemu_img, k, f, path,
                          !spread && p->c_backing ? p->c_backing : p->u_path,
                          p->u_fmt, &e))
        return fail_with (err, e, "nothing was changed; fix the cause and "
                          "run `vmsnap recover`",
                          "disk %s: pointing %s at %s before pulling",
                          d->target, path, p->u_path);
      {
        const char *const pre_b[] = { "rebase", "-p", "-F", p->b_fmt, "-b",
                                      p->b_path, NULL };
        const char *const pre_n[] = { "rebase", "-p", "-b", "", NULL };
        g_auto (imgref) r = { 0 };
        g_autoptr (GPtrArray) argv = NULL;
        if (!imgref_make (k, qemu_img, f, path, TRUE, &r, err))
          return -1;
        argv = img_argv (qemu_img, p->b_path ? pre_b : pre_n, &r);
        if (!vmsnap_op_run_progress (op, (const char *const *) argv->pdata, &e)) {
          if (!is_no_space (e)) {
            g_free (hint);
            hint = g_strdup_printf ("nothing was lost: %s still reads "
                                    "through %s, which is unchanged; fix the "
                                    "cause above and run `vmsnap recover`",
                                    path, p->u_path);
          }
          return fail_with (err, e, hint, "disk %s: pulling %s into %s",
                            d->target, p->u_path, path);
        }
      }
      if (!vmsnap_op_mark_done (op, step, err))
        return -1;
    }
    return 0;
  }
  if (!strcmp (p->direction, "drop"))
    return 0;
  return fail (err, VMSNAP_ERR_FAILED, "disk %s: unknown direction '%s' in "
               "the journal", d->target, p->direction);
}

static const char *
plan_other_bytes_text (const plan *p, char **buf)
{
  g_autofree char *c = fmt_size (p->commit_bytes);
  g_autofree char *l = fmt_size (p->pull_bytes);

  *buf = g_strdup_printf ("%s: commit would copy %s, pull %s%s%s%s",
                          !strcmp (p->direction, "commit") ? "commit chosen"
                          : "pull chosen", c, l,
                          p->c_held && !p->c_active && !strcmp (p->direction, "commit")
                          && p->pull_bytes < p->commit_bytes
                          ? " (commit forced: the running VM reads this layer, "
                            "and libvirt pulls only into the active image)" : "",
                          p->why ? "; " : "", p->why ? p->why : "");
  return *buf;
}

/* ================================================================ delete */

static int
delete_1 (vmsnap_op *op, const vmsnap_disk *d, keyctx *k, const char *locator,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *qemu_img = NULL;
  g_autofree char *fmt = NULL, *path = NULL, *both = NULL;
  g_autoptr (plan) p = NULL;
  g_autoptr (graph) g = NULL;
  g_autoptr (GPtrArray) ch = NULL;
  g_autoptr (GPtrArray) locs = NULL;
  node *u;

  if (check_slot (op, d, "delete", flags, FALSE, err) < 0)
    return -1;
  if (!loc_split (d, locator, &fmt, &path, err))
    return -1;
  qemu_img = vmsnap_op_qemu_img (op, err);
  if (qemu_img == NULL)
    return -1;

  /* Resuming: replay the recorded plan; the graph on storage may be half
   * way between before and after and is not read again. */
  if (vmsnap_op_get (op, "direction")) {
    p = plan_load (op, d, "", err);
    if (p == NULL)
      return -1;
  } else {
    locs = op_locators (op, locator);
    g = graph_build (op, d, qemu_img, d->source, d->format, locs, FALSE, err);
    if (g == NULL)
      return -1;
    u = graph_find (g, path);
    g_assert (u != NULL);
    if (u->active)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot locator %s is "
                   "the active image (internal error: the catalog and the "
                   "domain disagree); nothing was changed", d->target, locator);
    ch = children (g, u);
    if (ch->len == 0) {
      /* Nothing reads U: removing it changes nobody's contents. */
      vmsnap_result_add_garbage (res, locator);
      vmsnap_result_set_note (res, "%s was the backing file of no other "
                              "image: removed without copying data", path);
      return 0;
    }
    if (ch->len > 1) {
      g_autofree char *list = nodes_text (ch);
      vmsnap_result_set_kept (res, true);
      vmsnap_result_set_note (res, "%s is still the backing file of %u images "
                              "(%s): its data stays as an unnamed point until "
                              "`vmsnap merge` can consolidate it", path,
                              ch->len, list);
      return 0;
    }
    p = plan_decide (op, d, qemu_img, k, g, u, g_ptr_array_index (ch, 0), err);
    if (p == NULL)
      return -1;
    g_free (p->u_loc);
    p->u_loc = g_strdup (locator);   /* the catalog's exact string */
    if (!plan_record (op, "", p, err))
      return -1;
  }

  if (plan_run (op, d, qemu_img, k, "", p, err) < 0)
    return -1;

  plan_other_bytes_text (p, &both);
  if (!strcmp (p->direction, "commit")) {
    g_autofree char *cg = p->c_loc ? g_strdup (p->c_loc)
                                    : loc_make (p->c_fmt, p->c_path);
    /* U's file now holds C's point in time. */
    if (p->c_active)
      vmsnap_result_set_new_source (res, p->u_path, p->u_fmt);
    else if (p->c_loc)
      vmsnap_result_add_rename (res, p->c_loc, p->u_loc);
    vmsnap_result_add_garbage (res, cg);
    vmsnap_result_add_bytes_copied (res, p->commit_bytes);
    vmsnap_result_set_note (res, "committed %s into %s, which now holds %s; "
                            "%s", p->c_path, p->u_path,
                            p->c_active ? "the disk's current contents (it "
                                          "is the new active image)"
                                        : "the later point in time", both);
  } else {
    vmsnap_result_add_garbage (res, p->u_loc);
    vmsnap_result_add_bytes_copied (res, p->pull_bytes);
    vmsnap_result_set_note (res, "pulled %s into %s (now backed by %s); %s",
                            p->u_path, p->c_path,
                            p->b_path ? p->b_path : "nothing", both);
  }
  return 0;
}

static int
qext_delete (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  keyctx k = { op, d, NULL };
  int r = delete_1 (op, d, &k, locator, flags, res, err);

  key_drop (&k);
  return r;
}

/* ================================================================= merge */

/* The merge's view of the catalog while it works: where each point lives
 * now, which are gone, and what the active image is. */
typedef struct {
  char *orig;       /* the catalog's locator when the merge started */
  char *cur;        /* where the point lives now */
  gboolean named;
  gboolean removed;
} mpoint;

typedef struct {
  GPtrArray *points;        /* mpoint* */
  char *active_path, *active_fmt;
  gboolean active_moved;
  GPtrArray *garbage;       /* char* locators */
  guint64 copied;
  GString *log;
  GHashTable *skip;         /* points (cur) that cannot be consolidated */
  GString *skipped;         /* why, for the note */
} mstate;

static void
mpoint_free (gpointer x)
{
  mpoint *m = x;

  g_free (m->orig);
  g_free (m->cur);
  g_free (m);
}

static void
mstate_clear (mstate *s)
{
  g_ptr_array_unref (s->points);
  g_free (s->active_path);
  g_free (s->active_fmt);
  g_ptr_array_unref (s->garbage);
  g_string_free (s->log, TRUE);
  g_hash_table_unref (s->skip);
  g_string_free (s->skipped, TRUE);
}

static mpoint *
mstate_find (mstate *s, const char *cur)
{
  for (guint i = 0; i < s->points->len; i++) {
    mpoint *m = g_ptr_array_index (s->points, i);
    if (!m->removed && strcmp (m->cur, cur) == 0)
      return m;
  }
  return NULL;
}

/* The catalog-level effect of a plan whose storage steps are done. */
static void
mstate_apply (mstate *s, const plan *p)
{
  mpoint *mu = mstate_find (s, p->u_loc);
  g_autofree char *both = NULL;

  if (mu)
    mu->removed = TRUE;
  if (s->log->len)
    g_string_append (s->log, "; ");
  if (!strcmp (p->direction, "commit")) {
    mpoint *mc = p->c_loc ? mstate_find (s, p->c_loc) : NULL;
    if (p->c_active) {
      g_free (s->active_path);
      g_free (s->active_fmt);
      s->active_path = g_strdup (p->u_path);
      s->active_fmt = g_strdup (p->u_fmt);
      s->active_moved = TRUE;
    } else if (mc) {
      g_free (mc->cur);
      mc->cur = g_strdup (p->u_loc);
    }
    g_ptr_array_add (s->garbage, p->c_loc ? g_strdup (p->c_loc)
                                          : loc_make (p->c_fmt, p->c_path));
    s->copied += p->commit_bytes;
    g_string_append_printf (s->log, "committed %s into %s (%s)", p->c_path,
                            p->u_path, plan_other_bytes_text (p, &both));
  } else if (!strcmp (p->direction, "pull")) {
    g_ptr_array_add (s->garbage, g_strdup (p->u_loc));
    s->copied += p->pull_bytes;
    g_string_append_printf (s->log, "pulled %s into %s (%s)", p->u_path,
                            p->c_path, plan_other_bytes_text (p, &both));
  } else if (!strcmp (p->direction, "spread")) {
    g_ptr_array_add (s->garbage, g_strdup (p->u_loc));
    s->copied += p->pull_bytes * p->deps->len;
    g_string_append_printf (s->log, "copied %s into its %u dependents",
                            p->u_path, p->deps->len);
  } else {
    g_ptr_array_add (s->garbage, g_strdup (p->u_loc));
    g_string_append_printf (s->log, "dropped %s (nothing depended on it)",
                            p->u_path);
  }
}

static GPtrArray *
mstate_locs (mstate *s)
{
  GPtrArray *a = g_ptr_array_new ();

  for (guint i = 0; i < s->points->len; i++) {
    mpoint *m = g_ptr_array_index (s->points, i);
    if (!m->removed)
      g_ptr_array_add (a, m->cur);
  }
  return a;
}

/* Layers from N down to its root (N counts). */
static guint
chain_depth (const node *n)
{
  guint k = 0;

  for (; n; n = n->parent)
    k++;
  return k;
}

static gboolean
chain_has (const node *leaf, const node *x)
{
  for (const node *n = leaf; n; n = n->parent)
    if (n == x)
      return TRUE;
  return FALSE;
}

/* Is some chain (from a leaf: an image nothing is backed by) through U
 * deeper than MAX? */
static gboolean
too_deep_through (const graph *g, const node *u, guint max)
{
  for (guint i = 0; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    g_autoptr (GPtrArray) ch = NULL;
    if (n->missing)
      continue;
    ch = children (g, n);
    if (ch->len == 0 && chain_depth (n) > max && chain_has (n, u))
      return TRUE;
  }
  return FALSE;
}

static gboolean
is_kept (const vmsnap_merge_spec *spec, const char *loc)
{
  for (size_t i = 0; spec->keep && i < spec->n_keep; i++)
    if (spec->keep[i] && strcmp (spec->keep[i], loc) == 0)
      return TRUE;
  return FALSE;
}

/* A point whose consolidation is refused (different virtual sizes, a
 * dependent that is not qcow2) is left as it is and named in the note: merge
 * does what it can, and a refusal is not a reason to stop the rest.  The
 * refusal is a pure function of the images, so a re-run after a crash skips
 * the same points. */
static gboolean
merge_skip (const vmsnap_disk *d, mstate *s, const char *cur, GError **e)
{
  g_autofree char *pre = g_strdup_printf ("disk %s: ", d->target);
  const char *msg;

  if (*e == NULL || (*e)->domain != VMSNAP_ERROR
      || (*e)->code != VMSNAP_ERR_UNSUPPORTED)
    return FALSE;
  msg = g_str_has_prefix ((*e)->message, pre)
        ? (*e)->message + strlen (pre) : (*e)->message;
  g_hash_table_add (s->skip, g_strdup (cur));
  g_string_append_printf (s->skipped, "%s%s", s->skipped->len ? "; " : "",
                          msg);
  g_clear_error (e);
  return TRUE;
}

/* Decide the next consolidation on the current graph, or NULL (and no
 * error) when there is nothing more to do. */
static plan *
merge_next (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            keyctx *k, mstate *s, const vmsnap_merge_spec *spec, GError **err)
{
  g_autoptr (GPtrArray) locs = mstate_locs (s);
  g_autoptr (graph) g = graph_build (op, d, qemu_img, s->active_path,
                                     s->active_fmt, locs, FALSE, err);

  if (g == NULL)
    return NULL;
  for (guint i = 0; i < s->points->len; i++) {
    mpoint *m = g_ptr_array_index (s->points, i);
    g_autofree char *f = NULL, *path = NULL;
    g_autoptr (GPtrArray) ch = NULL;
    node *u;

    if (m->removed || m->named || g_hash_table_contains (s->skip, m->cur))
      continue;
    if (!loc_split (d, m->cur, &f, &path, err))
      return NULL;
    u = graph_find (g, path);
    if (u == NULL || u->active)
      continue;
    ch = children (g, u);
    if (ch->len == 0)
      return plan_new ("drop", u);
    if (ch->len == 1) {
      GError *e = NULL;
      plan *p = plan_decide (op, d, qemu_img, k, g, u, g_ptr_array_index (ch, 0), &e);
      if (p || !merge_skip (d, s, m->cur, &e)) {
        if (e)
          g_propagate_error (err, e);
        return p;
      }
      continue;
    }
    if (spec->max_depth > 0 && too_deep_through (g, u, spec->max_depth)) {
      plan *p = plan_new ("spread", u);
      gboolean refused = FALSE;
      for (guint j = 0; j < ch->len && !refused; j++) {
        node *c = g_ptr_array_index (ch, j);
        if (vmsnap_op_is_online (op) && g->active && chain_has (g->active, c)) {
          if (c->active)
            p->held_active = g_strdup (c->path);
          else {
            GError *e = NULL;
            fail (&e, VMSNAP_ERR_UNSUPPORTED, "%s cannot be copied into %s "
                  "while the VM runs on it (libvirt pulls only into the "
                  "active image; merge with the VM shut off)", u->path, c->path);
            merge_skip (d, s, m->cur, &e);
            refused = TRUE;
            continue;
          }
        }
        if (u->parent && u->parent->encrypted && !vmsnap_op_is_online (op)) {
          GError *e = NULL;
          fail (&e, VMSNAP_ERR_UNSUPPORTED, "%s cannot be copied into its "
                "dependents offline: their new backing file %s is encrypted, "
                "and qemu-img cannot give a new backing file a secret",
                u->path, u->parent->path);
          merge_skip (d, s, m->cur, &e);
          refused = TRUE;
        } else if (c->vsize != u->vsize || strcmp (c->fmt, "qcow2") != 0) {
          GError *e = NULL;
          fail (&e, VMSNAP_ERR_UNSUPPORTED, "%s cannot be copied into %s "
                "(a %s image of %" G_GUINT64_FORMAT " bytes; %s has %"
                G_GUINT64_FORMAT ")", u->path, c->path, c->fmt, c->vsize,
                u->path, u->vsize);
          merge_skip (d, s, m->cur, &e);
          refused = TRUE;
        } else
          g_ptr_array_add (p->deps, node_loc (c));
      }
      if (refused) {
        plan_free (p);
        continue;
      }
      if (!alloc_bytes (op, d, qemu_img, k, u->fmt, u->path, &p->pull_bytes, err)) {
        plan_free (p);
        return NULL;
      }
      return p;
    }
  }
  return NULL;
}

/* What is left that merge could not (or may not) shorten, for the note. */
static char *
merge_leftover (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
                mstate *s, const vmsnap_merge_spec *spec)
{
  g_autoptr (GPtrArray) locs = mstate_locs (s);
  g_autoptr (graph) g = graph_build (op, d, qemu_img, s->active_path,
                                     s->active_fmt, locs, TRUE, NULL);
  GString *out = g_string_new (NULL);
  g_autoptr (GPtrArray) named = g_ptr_array_new ();
  gboolean deep = FALSE;

  if (g == NULL)
    return g_string_free (out, FALSE);
  for (guint i = 0; i < s->points->len; i++) {
    mpoint *m = g_ptr_array_index (s->points, i);
    g_autofree char *f = NULL, *path = NULL;
    g_autoptr (GPtrArray) ch = NULL;
    node *u;

    if (m->removed || m->named || g_hash_table_contains (s->skip, m->cur)
        || !loc_split (d, m->cur, &f, &path, NULL))
      continue;
    if ((u = graph_find (g, path)) == NULL)
      continue;
    ch = children (g, u);
    g_string_append_printf (out, "%sunnamed point %s kept: shared by %u "
                            "images%s", out->len ? "; " : "", path, ch->len,
                            spec->max_depth ? ""
                            : " (a depth limit would copy it into each)");
  }
  if (s->skipped->len)
    g_string_append_printf (out, "%sleft as is: %s", out->len ? "; " : "",
                            s->skipped->str);
  if (spec->max_depth == 0)
    return g_string_free (out, FALSE);
  for (guint i = 0; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    g_autoptr (GPtrArray) ch = NULL;
    if (n->missing)
      continue;
    ch = children (g, n);
    if (ch->len || chain_depth (n) <= spec->max_depth)
      continue;
    deep = TRUE;
    for (node *x = n->parent; x; x = x->parent)
      if (x->locator && !g_ptr_array_find (named, x, NULL)
          && mstate_find (s, x->locator) && mstate_find (s, x->locator)->named)
        g_ptr_array_add (named, x);
  }
  if (deep && named->len) {
    g_string_append_printf (out, "%schains stay deeper than %u layer(s): they "
                            "cannot get shorter without losing a named "
                            "snapshot", out->len ? "; " : "", spec->max_depth);
    for (guint i = 0; i < named->len; i++)
      g_string_append_printf (out, "%s%s", i ? ", " : " (",
                              ((node *) g_ptr_array_index (named, i))->locator);
    g_string_append (out, ")");
  } else if (deep)
    g_string_append_printf (out, "%schains stay deeper than %u layer(s): "
                            "their other layers are base images vmsnap did "
                            "not make or points left as they are",
                            out->len ? "; " : "", spec->max_depth);
  return g_string_free (out, FALSE);
}

/* Merge: take every unnamed point out that can go without losing a named
 * one.  Each consolidation is recorded as plan number K under the prefix
 * "aK-" (keys aK-commit_bytes, aK-pull_bytes, aK-plan, aK-direction; steps
 * aK-commit, aK-rebase-children, aK-pull, aK-pull-J) before it runs; a
 * re-run replays the recorded plans in order (skipping their done steps),
 * which rebuilds the same catalog view, then goes on deciding from the
 * graph on storage, which by then is exactly the view's graph. */
static int
merge_1 (vmsnap_op *op, const vmsnap_disk *d, keyctx *kc,
         const vmsnap_merge_spec *spec, unsigned int flags, vmsnap_result *res,
         GError **err)
{
  g_autofree char *qemu_img = NULL;
  g_autofree char *left = NULL;
  mstate s = { 0 };
  guint k = 0, removed = 0;
  int ret = -1;

  if (check_slot (op, d, "merge", flags, FALSE, err) < 0)
    return -1;
  if (spec == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: merge without a spec "
                 "(internal error)", d->target);
  qemu_img = vmsnap_op_qemu_img (op, err);
  if (qemu_img == NULL)
    return -1;

  s.points = g_ptr_array_new_with_free_func (mpoint_free);
  s.garbage = g_ptr_array_new_with_free_func (g_free);
  s.log = g_string_new (NULL);
  s.skip = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  s.skipped = g_string_new (NULL);
  s.active_path = g_strdup (d->source);
  s.active_fmt = g_strdup (d->format);
  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    mpoint *m = g_new0 (mpoint, 1);
    m->orig = g_strdup (vmsnap_op_locator (op, i));
    m->cur = g_strdup (m->orig);
    m->named = is_kept (spec, m->orig);
    g_ptr_array_add (s.points, m);
  }

  for (;; k++) {
    g_autofree char *prefix = g_strdup_printf ("a%u-", k);
    g_autofree char *kd = g_strconcat (prefix, "direction", NULL);
    g_autoptr (plan) p = NULL;
    GError *e = NULL;

    if (k >= 10000) {
      fail (err, VMSNAP_ERR_FAILED, "disk %s: merge does not converge "
            "(internal error)", d->target);
      goto out;
    }
    if (vmsnap_op_get (op, kd)) {
      p = plan_load (op, d, prefix, err);     /* replay */
      if (p == NULL)
        goto out;
    } else {
      p = merge_next (op, d, qemu_img, kc, &s, spec, &e);
      if (p == NULL && e) {
        g_propagate_error (err, e);
        goto out;
      }
      if (p == NULL)
        break;
      if (!plan_record (op, prefix, p, err))
        goto out;
    }
    if (plan_run (op, d, qemu_img, kc, prefix, p, err) < 0)
      goto out;
    mstate_apply (&s, p);
  }

  for (guint i = 0; i < s.points->len; i++) {
    mpoint *m = g_ptr_array_index (s.points, i);
    if (m->removed) {
      vmsnap_result_add_removed (res, m->orig);
      removed++;
    } else if (strcmp (m->orig, m->cur) != 0)
      vmsnap_result_add_rename (res, m->orig, m->cur);
  }
  if (s.active_moved)
    vmsnap_result_set_new_source (res, s.active_path, s.active_fmt);
  for (guint i = 0; i < s.garbage->len; i++)
    vmsnap_result_add_garbage (res, g_ptr_array_index (s.garbage, i));
  vmsnap_result_add_bytes_copied (res, s.copied);
  left = merge_leftover (op, d, qemu_img, &s, spec);
  {
    g_autofree char *size = fmt_size (s.copied);
    if (removed)
      vmsnap_result_set_note (res, "consolidated %u unnamed point(s), %s "
                              "copied: %s%s%s", removed, size, s.log->str,
                              *left ? "; " : "", left);
    else
      vmsnap_result_set_note (res, "nothing to consolidate%s%s",
                              *left ? ": " : "", left);
  }
  ret = 0;
out:
  mstate_clear (&s);
  return ret;
}

static int
qext_merge (vmsnap_op *op, const vmsnap_disk *d, const vmsnap_merge_spec *spec,
            unsigned int flags, vmsnap_result *res, GError **err)
{
  keyctx k = { op, d, NULL };
  int r = merge_1 (op, d, &k, spec, flags, res, err);

  key_drop (&k);
  return r;
}

/* ================================================================== list */

/* The files of the disk's graph (active chain, the catalog's locators and
 * their chains) plus overlays named like ours next to the active image
 * (an interrupted create, a lost catalog), each as a point. */
static int
qext_list (vmsnap_op *op, const vmsnap_disk *d, GPtrArray **points,
           GError **err)
{
  g_autofree char *qemu_img = NULL;
  g_autoptr (GPtrArray) locs = NULL;
  g_autoptr (graph) g = NULL;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) vmsnap_point_free);
  g_autofree char *dir = NULL;
  GDir *dh;
  guint home;

  if (check_slot (op, d, "list", 0, FALSE, err) < 0)
    return -1;
  qemu_img = vmsnap_op_qemu_img (op, err);
  if (qemu_img == NULL)
    return -1;
  locs = op_locators (op, NULL);
  g = graph_new ();
  g->active = graph_add (g, d, d->source, d->format, err);
  if (g->active == NULL)
    return -1;
  g->active->active = TRUE;
  for (guint i = 0; i < locs->len; i++) {
    g_autofree char *f = NULL, *path = NULL;
    node *n;
    if (!loc_split (d, g_ptr_array_index (locs, i), &f, &path, err)
        || (n = graph_add (g, d, path, f, err)) == NULL)
      return -1;
    if (n->locator == NULL)
      n->locator = g_strdup (g_ptr_array_index (locs, i));
  }
  if (!graph_walk (g, op, d, qemu_img, TRUE, err))
    return -1;
  /* The chain the VM runs on must open: a layer of it gone is the one
   * thing a check must never call clean. */
  for (node *n = g->active; n; n = n->parent)
    if (n->missing)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: its active chain does "
                   "not open: %s%s%s%s is missing or unreadable", d->target,
                   n->path, n == g->active ? "" : " (below ",
                   n == g->active ? "" : d->source, n == g->active ? "" : ")");
  /* The disk's graph ends here: the active chain and the catalog's points
   * with theirs.  Overlays of this disk's name that nothing refers to (an
   * interrupted create, a lost catalog) join it only if their backing
   * chain leads into it: a name never makes a file this disk's. */
  home = g->nodes->len;
  dir = overlay_dir (op, d);
  if (dir && (dh = g_dir_open (dir, 0, NULL))) {
    const char *e;
    while ((e = g_dir_read_name (dh))) {
      g_autofree char *full = NULL;
      node *n;
      if (!our_name (d, e, FALSE))
        continue;
      full = g_build_filename (dir, e, NULL);
      if (graph_find (g, full) == NULL
          && (n = graph_add (g, d, full, "qcow2", NULL)) != NULL)
        n->scanned = TRUE;
    }
    g_dir_close (dh);
  }
  if (g->nodes->len > home && !graph_walk_from (g, home, op, d, qemu_img, TRUE, err))
    return -1;
  for (guint i = 0; i < g->nodes->len; i++) {
    node *n = g_ptr_array_index (g->nodes, i);
    vmsnap_point *pt;
    g_autofree char *base = NULL;
    gboolean found = FALSE;
    if (n->missing)
      continue;
    if (i >= home) {
      /* Only a scanned overlay whose chain reaches the disk's graph. */
      guint steps = 0;
      if (!n->scanned)
        continue;
      for (node *m = n->parent; m && !found && steps++ <= g->nodes->len; m = m->parent)
        found = graph_index (g, m) < home;
      if (!found)
        continue;
    }
    pt = g_new0 (vmsnap_point, 1);
    base = g_path_get_basename (n->path);
    pt->locator = node_loc (n);
    /* vmsnap's: a catalog point, a scanned overlay proved to be this
     * disk's, or a layer of the disk's own graph named as vmsnap names
     * them. */
    pt->owner = n->locator || found || our_name (d, base, TRUE)
                ? g_strdup ("vmsnap") : NULL;
    g_ptr_array_add (out, pt);
  }
  *points = g_steal_pointer (&out);
  return 0;
}

/* =============================================================== discard */

/* Remove a file the core no longer references.  Never the active image or
 * a file of its backing chain; block devices are never removed (the
 * device is the user's storage, there is no space to reclaim by unlinking
 * its node).  Already gone: success. */
static int
qext_discard (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
              unsigned int flags, GError **err)
{
  g_autofree char *fmt = NULL, *path = NULL, *real = NULL;
  struct stat st;

  if (check_slot (op, d, "discard", flags, FALSE, err) < 0)
    return -1;
  if (!loc_split (d, locator, &fmt, &path, err))
    return -1;
  real = real_or_self (path);
  for (size_t i = 0; i <= d->n_chain; i++) {
    const char *c = i == 0 ? d->source : d->chain[i - 1]->path;
    g_autofree char *rc = NULL;
    if (c == NULL || (i > 0 && d->chain[i - 1]->is_network))
      continue;
    rc = real_or_self (c);
    if (strcmp (rc, real) == 0)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: refusing to discard %s: "
                   "it is the disk's active image or in its backing chain "
                   "(internal error)", d->target, path);
  }
  if (lstat (path, &st) < 0) {
    int errsv = errno;
    if (errsv == ENOENT)
      return 0;
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: discarding %s: %s",
                 d->target, path, g_strerror (errsv));
  }
  if (!S_ISREG (st.st_mode))
    return 0;
  if (unlink (path) < 0 && errno != ENOENT) {
    int errsv = errno;
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: discarding %s: %s",
                 d->target, path, g_strerror (errsv));
  }
  return 0;
}

static vmsnap_backend qcow2_external = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "qcow2 overlay on any image file, block or network disk",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_REVERT_ONLINE
        | VMSNAP_CAP_MERGE_OFFLINE | VMSNAP_CAP_MERGE_ONLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_REVERT_NEEDS_SHUTOFF | VMSNAP_CAP_ONE_TRANSACTION
        | VMSNAP_CAP_CREATE_ADDS_LAYER,
  .options = qext_options,
  .probe = qext_probe,
  .create = qext_create,
  .prepare = qext_prepare,
  .abort = qext_abort,
  .revert = qext_revert,
  .merge = qext_merge,
  .delete = qext_delete,
  .list = qext_list,
  .discard = qext_discard,
};

VMSNAP_REGISTER_BACKEND (qcow2_external)
