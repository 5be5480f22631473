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
#include <sys/stat.h>
#include <unistd.h>

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

gboolean
vmsnap_header_refs (const char *path, const char *fmt, vmsnap_hdr_refs *r,
                    GError **err)
{
  unsigned char magic[4];
  int fd;
  gboolean ok = TRUE;

  memset (r, 0, sizeof *r);
  if (fmt == NULL || !(strcmp (fmt, "qcow2") == 0 || strcmp (fmt, "qcow") == 0
                       || strcmp (fmt, "qed") == 0 || strcmp (fmt, "vmdk") == 0))
    return TRUE;   /* formats that name no other file */
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot open %s: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  memset (magic, 0, sizeof magic);
  if (pread (fd, magic, sizeof magic, 0) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 path, g_strerror (errno));
    close (fd);
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
  close (fd);
  if (!ok)
    vmsnap_hdr_refs_clear (r);
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

static const char *const image_formats[] = {
  "raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx", "qed", "qcow", "cloop",
  "dmg", "parallels", "bochs", "luks", NULL,
};

gboolean
vmsnap_image_refs_check (const char *path, const char *fmt, GError **err)
{
  vmsnap_hdr_refs r;
  g_autofree char *why = NULL;
  const char *what = NULL, *name = NULL;

  if (!vmsnap_header_refs (path, fmt, &r, err))
    return FALSE;
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
    vmsnap_hdr_refs_clear (&r);
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
    vmsnap_hdr_refs_clear (&r);
    return FALSE;
  }
  vmsnap_hdr_refs_clear (&r);
  return TRUE;
}
