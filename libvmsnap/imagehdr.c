/* The names an image header gives of other files, read by vmsnap itself
 * before QEMU opens anything (DESIGN.md §10, issue 16 item 11).
 *
 * An image header is untrusted input: whoever wrote the file chose its
 * backing file name, its backing format, a qcow2 external data file and a
 * VMDK descriptor's extent files.  QEMU parses such a name for protocol
 * prefixes ("nbd:", "http://...") and for the "json:{...}" pseudo-protocol,
 * and `qemu-img info` opens a qcow2 data file and every VMDK extent (older
 * QEMU releases do so even with a protocol name).  So the header is read
 * here, with plain reads, and every name must be a local file name: the
 * caller resolves it (relative to the image's directory, as QEMU does) and
 * shows it in the plan.  Anything else is refused with the reason, before
 * the first `qemu-img` run on the image.
 *
 * Formats and what they can name:
 *   qcow2  backing file, backing format (header extension), data file
 *          (header extension)
 *   qcow   backing file (no format: vmsnap's chain walk refuses it)
 *   qed    backing file; its format is raw with QED_F_BACKING_FORMAT_NO_PROBE
 *   vmdk   extent files and parentFileNameHint, in the text descriptor
 *          (a descriptor file, or embedded in a sparse extent)
 *   raw, vdi, vpc, vhdx, luks and the rest: nothing QEMU follows. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <json-glib/json-glib.h>

#include "internal.h"

/* QEMU's own limits: a backing file name is at most 1023 bytes, a VMDK
 * descriptor at most 1 MiB. */
#define MAX_NAME 1023
#define MAX_DESCRIPTOR (1u << 20)
#define MAX_EXT_AREA (2u << 20)    /* qcow2 header extensions: one cluster */

void
vmsnap_hdr_refs_clear (vmsnap_hdr_refs *r)
{
  g_free (r->backing);
  g_free (r->backing_fmt);
  g_free (r->data_file);
  if (r->extents)
    g_ptr_array_unref (r->extents);
  memset (r, 0, sizeof *r);
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

static guint32
le32 (const unsigned char *p)
{
  return (guint32) p[3] << 24 | (guint32) p[2] << 16 | (guint32) p[1] << 8 | p[0];
}

static guint64
le64 (const unsigned char *p)
{
  return (guint64) le32 (p + 4) << 32 | le32 (p);
}

/* Read LEN bytes at OFF; a short read is an error (the header says more
 * than the file holds). */
static gboolean
read_at (int fd, const char *path, void *buf, size_t len, guint64 off,
         GError **err)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = pread (fd, (char *) buf + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    if (n == 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                   "the header of %s names bytes %" G_GUINT64_FORMAT "..%"
                   G_GUINT64_FORMAT " but the file ends before them", path,
                   off, off + len);
      return FALSE;
    }
    done += (size_t) n;
  }
  return TRUE;
}

/* A name stored in the header, LEN bytes at OFF; like QEMU, a NUL ends it. */
static char *
read_name (int fd, const char *path, const char *what, guint64 off, guint64 len,
           GError **err)
{
  g_autofree char *buf = NULL;

  if (len == 0 || len > MAX_NAME) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "the header of %s gives its %s a length of %" G_GUINT64_FORMAT
                 " bytes (1 to %d allowed)", path, what, len, MAX_NAME);
    return NULL;
  }
  buf = g_malloc0 (len + 1);
  if (!read_at (fd, path, buf, len, off, err))
    return NULL;
  return g_strdup (buf);
}

static gboolean
qcow2_refs (int fd, const char *path, vmsnap_hdr_refs *r, GError **err)
{
  unsigned char h[104];
  guint32 version, hlen, cluster_bits;
  guint64 boff, incompat = 0, end;
  guint32 bsize;
  g_autofree unsigned char *ext = NULL;

  memset (h, 0, sizeof h);
  if (!read_at (fd, path, h, 72, 0, err))
    return FALSE;
  version = be32 (h + 4);
  boff = be64 (h + 8);
  bsize = be32 (h + 16);
  cluster_bits = be32 (h + 20);
  if (version == 1) {
    /* qcow (version 1): backing name only; cluster_bits is a byte there.
     * As in QEMU, an offset with a length of 0 is no backing file. */
    if (boff != 0 && bsize != 0
        && !(r->backing = read_name (fd, path, "backing file name", boff,
                                     bsize, err)))
      return FALSE;
    return TRUE;
  }
  if (version != 2 && version != 3) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: qcow2 header version %u is not one QEMU knows (2 or 3)",
                 path, version);
    return FALSE;
  }
  if (cluster_bits < 9 || cluster_bits > 21) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: qcow2 header has cluster_bits %u (9 to 21 allowed)",
                 path, cluster_bits);
    return FALSE;
  }
  hlen = 72;
  if (version == 3) {
    if (!read_at (fd, path, h + 72, 32, 72, err))
      return FALSE;
    incompat = be64 (h + 72);
    hlen = be32 (h + 100);
    if (hlen < 104 || hlen >= (1u << cluster_bits)) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                   "%s: qcow2 header length %u is not valid", path, hlen);
      return FALSE;
    }
  }
  if (boff != 0 && bsize != 0
      && !(r->backing = read_name (fd, path, "backing file name", boff, bsize,
                                   err)))
    return FALSE;

  /* Header extensions: from the end of the header to the end of the first
   * cluster (or the backing file name, whichever comes first). */
  end = 1u << cluster_bits;
  if (boff != 0 && boff < end)
    end = boff;
  if (end > MAX_EXT_AREA)
    end = MAX_EXT_AREA;
  if (end > hlen) {
    ssize_t n;
    size_t len = (size_t) (end - hlen), pos = 0;
    ext = g_malloc0 (len);
    n = pread (fd, ext, len, hlen);
    if (n < 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    len = (size_t) n;
    while (pos + 8 <= len) {
      guint32 type = be32 (ext + pos), elen = be32 (ext + pos + 4);
      if (type == 0)
        break;
      if (elen > len - pos - 8) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                     "%s: qcow2 header extension 0x%08x runs past the first "
                     "cluster", path, type);
        return FALSE;
      }
      if (type == 0xe2792acaU) {          /* backing format */
        g_free (r->backing_fmt);
        r->backing_fmt = g_strndup ((const char *) ext + pos + 8, elen);
      } else if (type == 0x44415441U) {   /* external data file name */
        g_free (r->data_file);
        r->data_file = g_strndup ((const char *) ext + pos + 8, elen);
      }
      pos += 8 + (((size_t) elen + 7) & ~(size_t) 7);
    }
  }
  /* Incompatible feature bit 2: the guest data is in a data file. */
  if ((incompat & 4) && (r->data_file == NULL || *r->data_file == '\0')) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "%s keeps its guest data in an external data file but its "
                 "header does not name it (QEMU would need it given on the "
                 "command line); vmsnap cannot tell which file that is", path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
qed_refs (int fd, const char *path, vmsnap_hdr_refs *r, GError **err)
{
  unsigned char h[68];
  guint64 features;

  if (!read_at (fd, path, h, sizeof h, 0, err))
    return FALSE;
  features = le64 (h + 16);
  if (!(features & 1))            /* QED_F_BACKING_FILE */
    return TRUE;
  if (!(r->backing = read_name (fd, path, "backing file name", le32 (h + 56),
                                le32 (h + 60), err)))
    return FALSE;
  if (features & 4)               /* QED_F_BACKING_FORMAT_NO_PROBE */
    r->backing_fmt = g_strdup ("raw");
  return TRUE;
}

/* The quoted string after KEY= on a descriptor line, or NULL. */
static char *
vmdk_value (const char *line, const char *key)
{
  size_t kl = strlen (key);
  const char *p = line, *q;

  while (*p == ' ' || *p == '\t')
    p++;
  if (strncmp (p, key, kl) != 0)
    return NULL;
  p += kl;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p++ != '=')
    return NULL;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '"')
    return NULL;
  q = strchr (p + 1, '"');
  return q ? g_strndup (p + 1, q - p - 1) : NULL;
}

static gboolean
vmdk_refs (int fd, const char *path, vmsnap_hdr_refs *r, GError **err)
{
  unsigned char h[64];
  g_autofree char *desc = NULL;
  g_auto (GStrv) lines = NULL;
  guint64 off = 0, len = 0;
  ssize_t n;

  memset (h, 0, sizeof h);
  n = pread (fd, h, sizeof h, 0);
  if (n < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  if (memcmp (h, "KDMV", 4) == 0) {
    /* Sparse extent: an embedded descriptor (sectors). */
    off = le64 (h + 28) * 512;
    len = le64 (h + 36) * 512;
    if (off == 0 || len == 0)
      return TRUE;
  } else {
    struct stat st;
    if (fstat (fd, &st) < 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot stat %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    len = (guint64) st.st_size;
  }
  if (len > MAX_DESCRIPTOR)
    len = MAX_DESCRIPTOR;
  desc = g_malloc0 (len + 1);
  n = pread (fd, desc, len, (off_t) off);
  if (n < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  desc[n] = '\0';
  r->extents = g_ptr_array_new_with_free_func (g_free);
  lines = g_strsplit_set (desc, "\r\n", -1);
  for (char **l = lines; *l; l++) {
    const char *p = *l;
    char *v;
    while (*p == ' ' || *p == '\t')
      p++;
    if ((v = vmdk_value (p, "parentFileNameHint"))) {
      g_free (r->backing);
      r->backing = v;
      continue;
    }
    /* ACCESS SECTORS TYPE "NAME" [OFFSET]: every extent but ZERO names one. */
    if (g_str_has_prefix (p, "RW ") || g_str_has_prefix (p, "RDONLY ")
        || g_str_has_prefix (p, "NOACCESS ")) {
      const char *q1 = strchr (p, '"'), *q2 = q1 ? strchr (q1 + 1, '"') : NULL;
      if (q1 && q2)
        g_ptr_array_add (r->extents, g_strndup (q1 + 1, q2 - q1 - 1));
    }
  }
  return TRUE;
}

/* Formats whose header names other files. */
static gboolean
names_files (const char *fmt)
{
  return fmt && (strcmp (fmt, "qcow2") == 0 || strcmp (fmt, "qcow") == 0
                 || strcmp (fmt, "qed") == 0 || strcmp (fmt, "vmdk") == 0);
}

/* The names in the header of PATH, open as FD (left open). */
static gboolean
header_refs_fd (int fd, const char *path, const char *fmt, vmsnap_hdr_refs *r,
                GError **err)
{
  unsigned char magic[4];
  gboolean ok = TRUE;

  memset (r, 0, sizeof *r);
  if (!names_files (fmt))
    return TRUE;
  memset (magic, 0, sizeof magic);
  if (pread (fd, magic, sizeof magic, 0) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  if ((strcmp (fmt, "qcow2") == 0 || strcmp (fmt, "qcow") == 0)
      && memcmp (magic, "QFI\xfb", 4) == 0)
    ok = qcow2_refs (fd, path, r, err);
  else if (strcmp (fmt, "qed") == 0 && memcmp (magic, "QED\0", 4) == 0)
    ok = qed_refs (fd, path, r, err);
  else if (strcmp (fmt, "vmdk") == 0)
    ok = vmdk_refs (fd, path, r, err);
  else {
    /* Declared FMT but without its magic: QEMU refuses to open it, so it
     * follows nothing; `qemu-img info` says what is wrong. */
  }
  if (!ok)
    vmsnap_hdr_refs_clear (r);
  return ok;
}

gboolean
vmsnap_header_refs (const char *path, const char *fmt, vmsnap_hdr_refs *r,
                    GError **err)
{
  int fd;
  gboolean ok;

  memset (r, 0, sizeof *r);
  if (!names_files (fmt))
    return TRUE;   /* formats that name no other file */
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot open %s: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  ok = header_refs_fd (fd, path, fmt, r, err);
  close (fd);
  return ok;
}

char *
vmsnap_ref_not_local (const char *name)
{
  size_t n;

  if (name == NULL || *name == '\0')
    return g_strdup ("an empty name");
  if (g_str_has_prefix (name, "json:"))
    return g_strdup ("a json: pseudo-protocol name (QEMU would read block "
                     "driver options from it, and open whatever they say)");
  /* QEMU's path_has_protocol: a ':' before any '/'. */
  n = strcspn (name, ":/");
  if (name[n] == ':') {
    g_autofree char *proto = g_strndup (name, n);
    return g_strdup_printf ("the protocol prefix '%s:' makes it a network "
                            "or protocol name, not a local file (QEMU would "
                            "open it through that protocol's driver)", proto);
  }
  return NULL;
}

/* NAME as it may be shown: escaped, and cut if long. */
static char *
shown_name (const char *name)
{
  g_autofree char *e = g_strescape (name ? name : "", NULL);

  if (strlen (e) > 160)
    return g_strdup_printf ("%.160s...", e);
  return g_steal_pointer (&e);
}

char *
vmsnap_ref_resolve (const char *image, const char *name)
{
  g_autofree char *dir = NULL;

  if (g_path_is_absolute (name))
    return g_canonicalize_filename (name, "/");
  dir = g_path_get_dirname (image);
  return g_canonicalize_filename (name, dir);
}

char *
vmsnap_ref_resolve_qemu (const char *image, const char *name)
{
  g_autofree char *dir = NULL;

  if (g_path_is_absolute (name))
    return g_strdup (name);
  dir = g_path_get_dirname (image);
  return g_build_filename (dir, name, NULL);
}

static const char *const image_formats[] = {
  "raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx", "qed", "qcow", "cloop",
  "dmg", "parallels", "bochs", "luks", NULL,
};

/* Are the names in R (read from PATH's header) all local files, and the
 * backing format an image format?  R is left as it was. */
static gboolean
refs_check (const char *path, const char *fmt, const vmsnap_hdr_refs *rp,
            GError **err)
{
  const vmsnap_hdr_refs r = *rp;
  g_autofree char *why = NULL;
  const char *what = NULL, *name = NULL;

  if (r.backing && (why = vmsnap_ref_not_local (r.backing))) {
    what = "backing file";
    name = r.backing;
  } else if (r.data_file && (why = vmsnap_ref_not_local (r.data_file))) {
    what = "external data file";
    name = r.data_file;
  } else {
    for (guint i = 0; r.extents && i < r.extents->len; i++)
      if ((why = vmsnap_ref_not_local (r.extents->pdata[i]))) {
        what = "VMDK extent file";
        name = r.extents->pdata[i];
        break;
      }
  }
  if (why) {
    g_autofree char *shown = shown_name (name);
    g_autofree char *fix = strcmp (what, "backing file") == 0
      ? g_strdup_printf ("point the image at a local file (qemu-img rebase -u "
                         "-f %s -F FORMAT -b FILE %s) or convert it to a "
                         "self-contained image", fmt, path)
      : g_strdup_printf ("convert it to a self-contained image (qemu-img "
                         "convert -O qcow2) after checking what that name "
                         "points at");
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "image %s names its %s as '%s': %s; vmsnap follows only "
                 "local files and opens nothing before it has checked every "
                 "name in the header: %s", path, what, shown, why, fix);
    return FALSE;
  }
  if (r.backing && r.backing_fmt && !g_strv_contains (image_formats, r.backing_fmt)) {
    g_autofree char *shown = shown_name (r.backing_fmt);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "image %s names the format of its backing file %s as '%s', "
                 "which is not an image format (known: raw, qcow2, vmdk, vdi, "
                 "vpc, vhdx, qed, ...); vmsnap never lets a header choose a "
                 "protocol driver: record the right format with qemu-img "
                 "rebase -u -f %s -F FORMAT -b %s %s", path, r.backing, shown,
                 fmt, r.backing, path);
    return FALSE;
  }
  return TRUE;
}

gboolean
vmsnap_image_refs_check (const char *path, const char *fmt, GError **err)
{
  vmsnap_hdr_refs r;
  gboolean ok;

  if (!vmsnap_header_refs (path, fmt, &r, err))
    return FALSE;
  ok = refs_check (path, fmt, &r, err);
  vmsnap_hdr_refs_clear (&r);
  return ok;
}

/* ============================================== the image, read once
 * (DESIGN.md §9, issue 17).  What the chain walk, the backends and the
 * reports need of one image: its size, its backing file and format, its
 * data file, encryption, the qcow2 incompatible bits and snapshot table,
 * and whether QEMU can overwrite it in place.  qcow2, qcow, raw, vdi and
 * vmdk are read here with plain bounded reads; the other formats (vpc,
 * vhdx, qed, luks, ...) with one `qemu-img info -U -f FMT`.  The names a
 * header gives were checked by vmsnap_image_refs_check first (the same
 * parser), and are resolved as QEMU resolves them. */

#define QCOW2_MAX_SNAPSHOTS 65536             /* QEMU's QCOW_MAX_SNAPSHOTS */
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024         /* QEMU: QCOW_MAX_SNAPSHOT_EXTRA_DATA */
/* The incompatible feature bits QEMU 7.2 knows: dirty, corrupt, external
 * data file, compression type, extended L2 entries. */
#define QCOW2_INCOMPAT_KNOWN 0x1fULL

static void
image_snapshot_free (gpointer p)
{
  vmsnap_image_snapshot *s = p;

  g_free (s->id);
  g_free (s->name);
  g_free (s);
}

void
vmsnap_image_free (vmsnap_image *img)
{
  if (img == NULL)
    return;
  g_free (img->format);
  g_free (img->backing);
  g_free (img->backing_fmt);
  g_free (img->data_file);
  g_free (img->write_once);
  if (img->snapshots)
    g_ptr_array_unref (img->snapshots);
  g_free (img);
}

static gboolean G_GNUC_PRINTF (3, 4)
img_fail (GError **err, int code, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_propagate_error (err, g_error_new_valist (VMSNAP_ERROR, code, fmt, ap));
  va_end (ap);
  return FALSE;
}

/* A read window over a file read front to back (the snapshot table): one
 * pread per WINDOW_BYTES instead of four per entry (issue 17: a
 * 1000-entry table was 4000 system calls per read). */
#define WINDOW_BYTES (64 * 1024)
typedef struct {
  int fd;
  guint64 start;    /* file offset of buf[0] */
  size_t len;       /* valid bytes in buf */
  unsigned char buf[WINDOW_BYTES];
} read_window;

/* read_at through W: LEN bytes at OFF, the same errors. */
static gboolean
window_read (read_window *w, const char *path, void *dst, size_t len,
             guint64 off, GError **err)
{
  size_t got = 0;

  if (len > WINDOW_BYTES)
    return read_at (w->fd, path, dst, len, off, err);
  if (off >= w->start && off - w->start <= w->len
      && len <= w->len - (off - w->start)) {
    memcpy (dst, w->buf + (off - w->start), len);
    return TRUE;
  }
  /* Refill from OFF: as much as the file has, at least LEN. */
  while (got < WINDOW_BYTES) {
    ssize_t n = pread (w->fd, w->buf + got, WINDOW_BYTES - got, (off_t) (off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      w->len = 0;
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    if (n == 0)
      break;
    got += (size_t) n;
  }
  w->start = off;
  w->len = got;
  if (got < len) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "the header of %s names bytes %" G_GUINT64_FORMAT "..%"
                 G_GUINT64_FORMAT " but the file ends before them", path,
                 off, off + len);
    return FALSE;
  }
  memcpy (dst, w->buf, len);
  return TRUE;
}

/* The qcow2 snapshot table: NB entries at OFF (spec: docs/interop/qcow2.txt,
 * "Snapshots").  Every length is bounded before it is used. */
static gboolean
qcow2_snapshots (int fd, const char *path, guint64 off, guint32 nb,
                 guint64 file_size, GPtrArray *out, GError **err)
{
  g_autofree read_window *w = NULL;

  if (nb == 0)
    return TRUE;
  if (nb > QCOW2_MAX_SNAPSHOTS)
    return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s: its qcow2 header "
                     "says it has %u internal snapshots (QEMU allows at most %d)",
                     path, nb, QCOW2_MAX_SNAPSHOTS);
  if (off == 0 || (off & 7) != 0 || off >= file_size)
    return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s: its qcow2 snapshot "
                     "table offset %" G_GUINT64_FORMAT " is not valid", path, off);
  w = g_new (read_window, 1);
  w->fd = fd;
  w->start = 0;
  w->len = 0;
  for (guint32 i = 0; i < nb; i++) {
    unsigned char h[40], ex[16];
    guint32 id_len, name_len, extra_len, vm_state;
    vmsnap_image_snapshot *s;
    g_autofree char *id = NULL, *name = NULL;

    if (!window_read (w, path, h, sizeof h, off, err))
      return FALSE;
    id_len = (guint32) h[12] << 8 | h[13];
    name_len = (guint32) h[14] << 8 | h[15];
    vm_state = be32 (h + 32);
    extra_len = be32 (h + 36);
    if (extra_len > QCOW2_MAX_SNAPSHOT_EXTRA)
      return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s: qcow2 snapshot "
                       "entry %u has %u bytes of extra data (at most %d)",
                       path, i, extra_len, QCOW2_MAX_SNAPSHOT_EXTRA);
    memset (ex, 0, sizeof ex);
    if (extra_len >= 8
        && !window_read (w, path, ex, MIN (extra_len, (guint32) sizeof ex), off + 40, err))
      return FALSE;
    id = g_malloc0 (id_len + 1);
    name = g_malloc0 (name_len + 1);
    if ((id_len && !window_read (w, path, id, id_len, off + 40 + extra_len, err))
        || (name_len && !window_read (w, path, name, name_len,
                                  off + 40 + extra_len + id_len, err)))
      return FALSE;
    s = g_new0 (vmsnap_image_snapshot, 1);
    s->id = g_strdup (id);        /* like QEMU, a NUL ends a name */
    s->name = g_strdup (name);
    s->vm_state_size = extra_len >= 8 ? be64 (ex) : vm_state;
    s->date_sec = be32 (h + 16);
    g_ptr_array_add (out, s);
    off += 40 + (guint64) extra_len + id_len + name_len;
    off = (off + 7) & ~(guint64) 7;
  }
  return TRUE;
}

static gboolean
qcow2_read (int fd, const char *path, guint64 file_size, vmsnap_image *img,
            GError **err)
{
  unsigned char h[104];
  guint32 version;

  memset (h, 0, sizeof h);
  if (!read_at (fd, path, h, 72, 0, err))
    return FALSE;
  if (memcmp (h, "QFI\xfb", 4) != 0)
    return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s has no %s header",
                     path, img->format);
  version = be32 (h + 4);
  if (version == 1) {              /* qcow: size at 24, no format, no table */
    if (strcmp (img->format, "qcow") != 0)
      return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s is a qcow (version "
                       "1) image, not qcow2", path);
    img->virtual_size = be64 (h + 24);
    img->encrypted = be32 (h + 36) != 0;
    return TRUE;
  }
  if (strcmp (img->format, "qcow2") != 0)
    return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s is a qcow2 image, "
                     "not %s", path, img->format);
  /* version, cluster bits and header length were checked by the names'
   * reader (vmsnap_header_refs) already. */
  img->virtual_size = be64 (h + 24);
  img->encrypted = be32 (h + 32) != 0;
  if (version == 3) {
    if (!read_at (fd, path, h + 72, 8, 72, err))
      return FALSE;
    img->incompatible = be64 (h + 72);
    img->dirty = (img->incompatible & 1) != 0;
    img->corrupt = (img->incompatible & 2) != 0;
    if (img->incompatible & ~QCOW2_INCOMPAT_KNOWN)
      return img_fail (err, VMSNAP_ERR_UNSUPPORTED, "%s uses qcow2 "
                       "incompatible features 0x%" G_GINT64_MODIFIER "x that "
                       "QEMU does not know; it cannot be opened", path,
                       (guint64) (img->incompatible & ~QCOW2_INCOMPAT_KNOWN));
  }
  return qcow2_snapshots (fd, path, be64 (h + 64), be32 (h + 60), file_size,
                          img->snapshots, err);
}

static gboolean
vdi_read (int fd, const char *path, vmsnap_image *img, GError **err)
{
  unsigned char h[0x178];

  if (!read_at (fd, path, h, sizeof h, 0, err))
    return FALSE;
  if (!(h[0x40] == 0x7f && h[0x41] == 0x10 && h[0x42] == 0xda && h[0x43] == 0xbe))
    return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s has no vdi header", path);
  img->virtual_size = le64 (h + 0x170);
  return TRUE;
}

/* KDMV header flags bit 16: the grains are compressed (QEMU appends them
 * and cannot overwrite them in place). */
static gboolean
vmdk_sparse_compressed (int fd)
{
  unsigned char h[12];

  return pread (fd, h, sizeof h, 0) == (ssize_t) sizeof h
         && memcmp (h, "KDMV", 4) == 0 && (le32 (h + 8) & (1u << 16)) != 0;
}

static gboolean
vmdk_read (int fd, const char *path, vmsnap_image *img, GError **err)
{
  unsigned char h[64];
  g_autofree char *desc = NULL;
  g_auto (GStrv) lines = NULL;
  guint64 off = 0, len = 0, sectors = 0;
  gboolean compressed = FALSE, stream = FALSE, sparse_file = FALSE;
  ssize_t n;

  memset (h, 0, sizeof h);
  if ((n = pread (fd, h, sizeof h, 0)) < 0)
    return img_fail (err, VMSNAP_ERR_FAILED, "cannot read %s: %s", path,
                     g_strerror (errno));
  if (memcmp (h, "KDMV", 4) == 0) {
    sparse_file = TRUE;
    compressed = vmdk_sparse_compressed (fd);
    off = le64 (h + 28) * 512;
    len = le64 (h + 36) * 512;
    if (off == 0 || len == 0) {   /* no embedded descriptor: one extent */
      img->virtual_size = le64 (h + 12) * 512;
      goto done;
    }
  } else {
    struct stat st;
    if (fstat (fd, &st) < 0)
      return img_fail (err, VMSNAP_ERR_FAILED, "cannot stat %s: %s", path,
                       g_strerror (errno));
    len = (guint64) st.st_size;
  }
  if (len > MAX_DESCRIPTOR)
    len = MAX_DESCRIPTOR;
  desc = g_malloc0 (len + 1);
  if ((n = pread (fd, desc, len, (off_t) off)) < 0)
    return img_fail (err, VMSNAP_ERR_FAILED, "cannot read %s: %s", path,
                     g_strerror (errno));
  desc[n] = '\0';
  lines = g_strsplit_set (desc, "\r\n", -1);
  for (char **l = lines; *l; l++) {
    const char *p = *l;
    g_autofree char *ct = NULL;
    while (*p == ' ' || *p == '\t')
      p++;
    if ((ct = vmdk_value (p, "createType"))) {
      stream = strcmp (ct, "streamOptimized") == 0;
      continue;
    }
    if (g_str_has_prefix (p, "RW ") || g_str_has_prefix (p, "RDONLY ")
        || g_str_has_prefix (p, "NOACCESS ")) {
      const char *q = strchr (p, ' ');
      char *end = NULL;
      guint64 s = g_ascii_strtoull (q + 1, &end, 10);
      const char *q1 = strchr (p, '"'), *q2 = q1 ? strchr (q1 + 1, '"') : NULL;
      if (end == q + 1 || s > (G_MAXUINT64 >> 9) - sectors)
        return img_fail (err, VMSNAP_ERR_INVALID_INPUT, "%s: vmdk extent line "
                         "'%.80s' has no valid size", path, p);
      sectors += s;
      /* ACCESS SECTORS TYPE "NAME": a separate sparse extent file says
       * itself whether it is compressed (its name was checked local). */
      {
        const char *t = end;
        while (*t == ' ' || *t == '\t')
          t++;
        if (!sparse_file && q1 && q2 && g_str_has_prefix (t, "SPARSE")) {
          g_autofree char *name = g_strndup (q1 + 1, q2 - q1 - 1);
          g_autofree char *ep = vmsnap_ref_resolve_qemu (path, name);
          int efd = open (ep, O_RDONLY | O_CLOEXEC | O_NOCTTY);
          if (efd >= 0) {
            compressed = compressed || vmdk_sparse_compressed (efd);
            close (efd);
          }
        }
      }
    }
  }
  img->virtual_size = sectors * 512;
done:
  if (stream || compressed)
    img->write_once = g_strdup_printf ("it is a vmdk %s image, which QEMU "
                                       "writes once and cannot overwrite in "
                                       "place", stream ? "streamOptimized"
                                                       : "compressed");
  return TRUE;
}

/* Formats not read here: one `qemu-img info`. */
static gboolean
info_by_qemu_img (const char *path, vmsnap_image *img, GError **err)
{
  g_autofree char *qemu_img = vmsnap_find_qemu_img (err);
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonNode *root;
  JsonObject *o;

  if (qemu_img == NULL)
    return FALSE;
  {
    const char *argv[] = { qemu_img, "info", "--output=json", "-U", "-f",
                           img->format, "--", path, NULL };
    if (!vmsnap_run (argv, &out, err))
      return FALSE;
  }
  if (!json_parser_load_from_data (p, out ? out : "", -1, err))
    return FALSE;
  root = json_parser_get_root (p);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return img_fail (err, VMSNAP_ERR_FAILED, "qemu-img info %s: unexpected "
                     "output", path);
  o = json_node_get_object (root);
  img->virtual_size = json_object_get_int_member_with_default (o, "virtual-size", 0);
  img->encrypted = json_object_get_boolean_member_with_default (o, "encrypted", FALSE);
  img->in_process = FALSE;
  return TRUE;
}

vmsnap_image *
vmsnap_image_read (const char *path, const char *fmt, GError **err)
{
  g_autoptr (vmsnap_image) img = NULL;
  vmsnap_hdr_refs r;
  struct stat st;
  int fd;
  gboolean ok;

  if (path == NULL || fmt == NULL) {
    img_fail (err, VMSNAP_ERR_USAGE, "vmsnap_image_read: no %s given",
              path ? "format" : "path");
    return NULL;
  }
  /* One open for everything (issue 17: each layer of a chain is opened
   * once per command). */
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    img_fail (err, VMSNAP_ERR_FAILED, "cannot open %s: %s", path,
              g_strerror (errno));
    return NULL;
  }
  /* The names first, with the same reader: a name that is not a local
   * file is refused before anything follows it. */
  if (!header_refs_fd (fd, path, fmt, &r, err)) {
    close (fd);
    return NULL;
  }
  if (!refs_check (path, fmt, &r, err)) {
    vmsnap_hdr_refs_clear (&r);
    close (fd);
    return NULL;
  }
  img = g_new0 (vmsnap_image, 1);
  img->struct_size = sizeof *img;
  img->format = g_strdup (fmt);
  img->snapshots = g_ptr_array_new_with_free_func (image_snapshot_free);
  img->in_process = TRUE;
  if (r.backing && *r.backing)
    img->backing = vmsnap_ref_resolve_qemu (path, r.backing);
  img->backing_fmt = g_steal_pointer (&r.backing_fmt);
  if (r.data_file && *r.data_file)
    img->data_file = vmsnap_ref_resolve (path, r.data_file);
  vmsnap_hdr_refs_clear (&r);

  if (fstat (fd, &st) < 0) {
    img_fail (err, VMSNAP_ERR_FAILED, "cannot stat %s: %s", path,
              g_strerror (errno));
    close (fd);
    return NULL;
  }
  {
    guint64 size = (guint64) st.st_size;
    if (S_ISBLK (st.st_mode) && ioctl (fd, BLKGETSIZE64, &size) < 0)
      size = 0;
    if (strcmp (fmt, "qcow2") == 0 || strcmp (fmt, "qcow") == 0)
      ok = qcow2_read (fd, path, size, img, err);
    else if (strcmp (fmt, "raw") == 0) {
      /* QEMU counts whole sectors. */
      img->virtual_size = (size + 511) & ~(guint64) 511;
      ok = TRUE;
    } else if (strcmp (fmt, "vdi") == 0)
      ok = vdi_read (fd, path, img, err);
    else if (strcmp (fmt, "vmdk") == 0)
      ok = vmdk_read (fd, path, img, err);
    else {
      close (fd);
      fd = -1;
      ok = info_by_qemu_img (path, img, err);
    }
  }
  if (fd >= 0)
    close (fd);
  if (!ok)
    return NULL;
  return g_steal_pointer (&img);
}

/* QEMU's image locks (block/file-posix.c): OFD read locks on byte 100 + n
 * for each permission it holds and 200 + n for each it does not share. */
#define QEMU_LOCK_FIRST 100
#define QEMU_LOCK_END   264

int
vmsnap_image_in_use (const char *path, GError **err)
{
  struct flock fl;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

  if (fd < 0) {
    img_fail (err, VMSNAP_ERR_FAILED, "cannot open %s: %s", path,
              g_strerror (errno));
    return -1;
  }
  memset (&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;            /* conflicts with any lock there */
  fl.l_whence = SEEK_SET;
  fl.l_start = QEMU_LOCK_FIRST;
  fl.l_len = QEMU_LOCK_END - QEMU_LOCK_FIRST;
  if (fcntl (fd, F_OFD_GETLK, &fl) < 0) {
    int errsv = errno;
    close (fd);
    img_fail (err, VMSNAP_ERR_FAILED, "cannot test the image locks of %s: %s",
              path, g_strerror (errsv));
    return -1;
  }
  close (fd);
  return fl.l_type != F_UNLCK;
}

/* ================================ rewriting a qcow2 image's backing file
 * (issue 17: a delete's `qemu-img rebase -u`, done in process).
 *
 * What QEMU's qcow2_change_backing_file + qcow2_update_header write
 * (docs/interop/qcow2.txt "Header", "Header extensions"): the fixed header,
 * then the extensions -- the backing format first, every other one in
 * place -- the end marker, then the backing file name, all in the first
 * cluster.  Here the fixed header and its unknown trailing fields are kept
 * byte for byte (only backing_file_offset/size change, and, in v3, the
 * autoclear bits QEMU does not know are cleared as QEMU does on a write);
 * every extension but the backing format is kept byte for byte and in its
 * order; nothing past the old and new header area is touched.  One pwrite,
 * then fdatasync.  The rest of the image is never read or written. */

#define QCOW2_EXT_BACKING_FMT 0xe2792acaU
#define QCOW2_EXT_CRYPTO      0x0537be77U
#define QCOW2_EXT_BITMAPS     0x23852875U
#define QCOW2_AUTOCLEAR_KNOWN 0x3ULL          /* bitmaps, raw external data */
#define QCOW2_MAX_FMT 15                      /* QEMU: char backing_format[16] */

static void
put_be32 (unsigned char *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static void
put_be64 (unsigned char *p, guint64 v)
{
  put_be32 (p, v >> 32);
  put_be32 (p + 4, (guint32) v);
}

/* Refuse: the header is left as it was.  CODE: VMSNAP_ERR_USAGE for bad
 * arguments, VMSNAP_ERR_BUSY for an image in use, VMSNAP_ERR_UNSUPPORTED
 * (or INVALID_INPUT, FAILED) for an image this writer does not rewrite. */
#define refuse(code, ...) img_fail (err, code, __VA_ARGS__)

/* Table [OFF, OFF + LEN) of an image with clusters of CS bytes: does it
 * lie (partly) in the first cluster? */
static gboolean
in_first_cluster (guint64 off, guint64 len, guint64 cs)
{
  return len != 0 && off < cs;
}

gboolean
vmsnap_qcow2_set_backing (const char *path, const char *backing_name,
                          const char *backing_fmt, GError **err)
{
  unsigned char h[112];
  g_autofree unsigned char *old = NULL, *buf = NULL;
  guint32 version, cluster_bits, hlen, bsize, crypt;
  guint64 cs, boff, incompat = 0, autoclear = 0, ext_end, old_end, pos, out;
  size_t name_len = backing_name ? strlen (backing_name) : 0;
  size_t fmt_len = backing_fmt ? strlen (backing_fmt) : 0;
  gboolean found_end = FALSE;
  struct flock fl;
  struct stat st;
  ssize_t n;
  int fd = -1;
  gboolean ok = FALSE;

  if (path == NULL)
    return refuse (VMSNAP_ERR_USAGE, "vmsnap_qcow2_set_backing: no path");
  if (name_len > MAX_NAME)
    return refuse (VMSNAP_ERR_USAGE, "%s: a backing file name of %zu bytes "
                   "is longer than QEMU allows (%d)", path, name_len, MAX_NAME);
  if (name_len && backing_fmt && (fmt_len == 0 || fmt_len > QCOW2_MAX_FMT))
    return refuse (VMSNAP_ERR_USAGE, "%s: backing format '%s' is not a format "
                   "name (1 to %d bytes)", path, backing_fmt, QCOW2_MAX_FMT);
  if (name_len == 0)
    fmt_len = 0;           /* no backing file: no backing format either */

  fd = open (path, O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return refuse (VMSNAP_ERR_FAILED, "cannot open %s: %s", path,
                   g_strerror (errno));
  if (fstat (fd, &st) < 0 || !(S_ISREG (st.st_mode) || S_ISBLK (st.st_mode))) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s is not a regular file or a block "
            "device", path);
    goto out;
  }
  /* QEMU's image locks (vmsnap_image_in_use), held while the header is
   * rewritten: a QEMU that has the image open keeps us out, and one that
   * starts meanwhile cannot take its locks.  Released by close(). */
  memset (&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = QEMU_LOCK_FIRST;
  fl.l_len = QEMU_LOCK_END - QEMU_LOCK_FIRST;
  if (fcntl (fd, F_OFD_SETLK, &fl) < 0) {
    if (errno == EAGAIN || errno == EACCES)
      refuse (VMSNAP_ERR_BUSY, "%s is in use (a QEMU process holds its image "
              "locks): its header is not rewritten under it", path);
    else
      refuse (VMSNAP_ERR_FAILED, "cannot lock %s: %s", path, g_strerror (errno));
    goto out;
  }

  memset (h, 0, sizeof h);
  n = pread (fd, h, sizeof h, 0);
  if (n < 0) {
    refuse (VMSNAP_ERR_FAILED, "cannot read %s: %s", path, g_strerror (errno));
    goto out;
  }
  if (n < 4 || memcmp (h, "QFI\xfb", 4) != 0) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s has no qcow2 header", path);
    goto out;
  }
  if (n < 72) {
    refuse (VMSNAP_ERR_INVALID_INPUT, "%s ends inside its qcow2 header "
            "(%zd bytes)", path, n);
    goto out;
  }
  version = be32 (h + 4);
  boff = be64 (h + 8);
  bsize = be32 (h + 16);
  cluster_bits = be32 (h + 20);
  crypt = be32 (h + 32);
  if (version != 2 && version != 3) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s: qcow2 header version %u (the "
            "backing file is rewritten in versions 2 and 3 only)", path, version);
    goto out;
  }
  if (cluster_bits < 9 || cluster_bits > 21) {
    refuse (VMSNAP_ERR_INVALID_INPUT, "%s: qcow2 header has cluster_bits %u "
            "(9 to 21 allowed)", path, cluster_bits);
    goto out;
  }
  cs = (guint64) 1 << cluster_bits;
  hlen = 72;
  if (version == 3) {
    if (n < 104) {
      refuse (VMSNAP_ERR_INVALID_INPUT, "%s: short qcow2 v3 header", path);
      goto out;
    }
    incompat = be64 (h + 72);
    autoclear = be64 (h + 88);
    hlen = be32 (h + 100);
    if (hlen < 104 || hlen >= cs || (hlen & 7) != 0) {
      refuse (VMSNAP_ERR_INVALID_INPUT, "%s: qcow2 header length %u is not "
              "valid", path, hlen);
      goto out;
    }
    if (incompat & 3) {
      refuse (VMSNAP_ERR_UNSUPPORTED, "%s is marked %s: QEMU must open it "
              "(and repair it) before its header is rewritten", path,
              incompat & 2 ? "corrupt" : "dirty (its refcounts may be stale)");
      goto out;
    }
    if (incompat & ~QCOW2_INCOMPAT_KNOWN) {
      refuse (VMSNAP_ERR_UNSUPPORTED, "%s uses qcow2 incompatible features "
              "0x%" G_GINT64_MODIFIER "x that vmsnap does not know", path,
              (guint64) (incompat & ~QCOW2_INCOMPAT_KNOWN));
      goto out;
    }
  }
  if (crypt > 2) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s: unknown qcow2 encryption method %u",
            path, crypt);
    goto out;
  }
  /* QEMU: the name lies in the first cluster and is at most 1023 bytes. */
  if (boff != 0 && bsize != 0 && (bsize > MAX_NAME || boff < hlen
                                  || boff > cs || bsize > cs - boff)) {
    refuse (VMSNAP_ERR_INVALID_INPUT, "%s: its backing file name (%u bytes "
            "at %" G_GUINT64_FORMAT ") is not inside the first cluster", path,
            bsize, boff);
    goto out;
  }
  /* The tables must lie past the first cluster (they do in every image
   * QEMU writes: it allocates cluster 0 to the header). */
  if (in_first_cluster (be64 (h + 40), be32 (h + 36), cs)
      || in_first_cluster (be64 (h + 48), be32 (h + 56), cs)
      || in_first_cluster (be64 (h + 64), be32 (h + 60), cs)) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s: a qcow2 table lies in the first "
            "cluster, where the header is written", path);
    goto out;
  }

  /* The first cluster as it is (zeros past the end of a short file). */
  old = g_malloc0 (cs);
  buf = g_malloc0 (cs);
  n = pread (fd, old, cs, 0);
  if (n < 0) {
    refuse (VMSNAP_ERR_FAILED, "cannot read %s: %s", path, g_strerror (errno));
    goto out;
  }

  /* The new header: the fixed part as it is... */
  memcpy (buf, old, hlen);
  if (version == 3)
    put_be64 (buf + 88, autoclear & QCOW2_AUTOCLEAR_KNOWN);
  out = hlen;
  /* ... the backing format first (QEMU's order) ... */
  if (fmt_len) {
    if (8 + ((fmt_len + 7) & ~(size_t) 7) + 8 > cs - out) {
      refuse (VMSNAP_ERR_UNSUPPORTED, "%s: the new qcow2 header does not "
              "fit in the first cluster (%" G_GUINT64_FORMAT " bytes)", path, cs);
      goto out;
    }
    put_be32 (buf + out, QCOW2_EXT_BACKING_FMT);
    put_be32 (buf + out + 4, (guint32) fmt_len);
    memcpy (buf + out + 8, backing_fmt, fmt_len);
    out += 8 + ((fmt_len + 7) & ~(size_t) 7);
  }
  /* ... every other extension as it is, in its order (QEMU's reader:
   * they end at the end marker, at the backing file name or at the end of
   * the first cluster) ... */
  ext_end = boff != 0 ? MIN (boff, cs) : cs;
  pos = hlen;
  while (pos + 8 <= ext_end) {
    guint32 type = be32 (old + pos), elen = be32 (old + pos + 4);
    guint64 total = 8 + (((guint64) elen + 7) & ~(guint64) 7);
    if (type == 0) {
      found_end = TRUE;
      break;
    }
    if (total > ext_end - pos) {
      refuse (VMSNAP_ERR_INVALID_INPUT, "%s: qcow2 header extension 0x%08x "
              "runs past the header area", path, type);
      goto out;
    }
    if (type == QCOW2_EXT_CRYPTO || type == QCOW2_EXT_BITMAPS) {
      /* crypto: offset, length; bitmaps: nb, reserved, size, offset */
      guint64 toff = type == QCOW2_EXT_CRYPTO ? (elen >= 16 ? be64 (old + pos + 8) : 0)
                                              : (elen >= 24 ? be64 (old + pos + 24) : 0);
      guint64 tlen = type == QCOW2_EXT_CRYPTO ? (elen >= 16 ? be64 (old + pos + 16) : 0)
                                              : (elen >= 24 ? be64 (old + pos + 16) : 0);
      if (in_first_cluster (toff, tlen, cs)) {
        refuse (VMSNAP_ERR_UNSUPPORTED, "%s: the table of header extension "
                "0x%08x lies in the first cluster, where the header is "
                "written", path, type);
        goto out;
      }
    }
    if (type != QCOW2_EXT_BACKING_FMT) {
      if (total > cs - out) {
        refuse (VMSNAP_ERR_UNSUPPORTED, "%s: the new qcow2 header does not "
                "fit in the first cluster (%" G_GUINT64_FORMAT " bytes)",
                path, cs);
        goto out;
      }
      memcpy (buf + out, old + pos, total);
      out += total;
    }
    pos += total;
  }
  if (!found_end) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s: its qcow2 header extensions have "
            "no end marker before the %s", path,
            boff ? "backing file name" : "end of the first cluster");
    goto out;
  }
  old_end = pos + 8;
  if (boff != 0 && bsize != 0)
    old_end = MAX (old_end, boff + bsize);
  /* ... the end marker (zeros) and the name. */
  if (out + 8 + name_len > cs) {
    refuse (VMSNAP_ERR_UNSUPPORTED, "%s: the new qcow2 header (%"
            G_GUINT64_FORMAT " bytes with a backing file name of %zu) does "
            "not fit in the first cluster (%" G_GUINT64_FORMAT " bytes)",
            path, out + 8 + name_len, name_len, cs);
    goto out;
  }
  out += 8;
  if (name_len) {
    memcpy (buf + out, backing_name, name_len);
    put_be64 (buf + 8, out);
    put_be32 (buf + 16, (guint32) name_len);
    out += name_len;
  } else {
    put_be64 (buf + 8, 0);
    put_be32 (buf + 16, 0);
  }

  /* One write over the old and the new header area (zeros where the old
   * one was longer), skipped when nothing changes. */
  {
    size_t len = (size_t) MAX (out, old_end), done = 0;
    if (memcmp (buf, old, len) == 0) {
      ok = TRUE;
      goto out;
    }
    while (done < len) {
      ssize_t w = pwrite (fd, buf + done, len - done, (off_t) done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        refuse (VMSNAP_ERR_FAILED, "cannot write the header of %s: %s", path,
                w < 0 ? g_strerror (errno) : "short write");
        goto out;
      }
      done += (size_t) w;
    }
    if (fdatasync (fd) < 0) {
      refuse (VMSNAP_ERR_FAILED, "cannot sync the header of %s: %s", path,
              g_strerror (errno));
      goto out;
    }
  }
  ok = TRUE;
out:
  if (fd >= 0)
    close (fd);
  return ok;
}
