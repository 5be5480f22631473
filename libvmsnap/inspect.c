/* Inspection of a disk's storage, before any backend is asked.
 *
 * Files: the declared format is checked against the image's own header
 * (our own sniffing of magic numbers: QEMU is never allowed to probe), then
 * every layer of the backing chain is read once, in process, by
 * vmsnap_image_read (imagehdr.c: bounded reads of the header, its
 * extensions and the qcow2 snapshot table; one `qemu-img info -U -f FORMAT`
 * only for a format it does not read, never one per qcow2 layer), walking
 * the chain ourselves so a missing format, a missing file or a loop is
 * found and named.  The headers stay in the model (vmsnap_layer.image): the
 * planner, the backends and the reports read them from there.
 * Block devices: stat + size.  A problem becomes the disk's inspect_error,
 * never a crash.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <json-glib/json-glib.h>

#include <sys/stat.h>
#include <glib/gstdio.h>

#include "internal.h"

static const char *const known_formats[] = {
  "raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx", "qed", "qcow", "cloop",
  "dmg", "parallels", "bochs", "luks", NULL,
};

const char *
vmsnap_storage_class_name (vmsnap_storage_class c)
{
  switch (c) {
  case VMSNAP_CLASS_UNKNOWN: return "unknown";
  case VMSNAP_CLASS_NONE: return "no-medium";
  case VMSNAP_CLASS_QCOW2_FILE: return "qcow2-file";
  case VMSNAP_CLASS_IMAGE_FILE: return "image-file";
  case VMSNAP_CLASS_LVM_THICK: return "lvm-thick";
  case VMSNAP_CLASS_LVM_THIN: return "lvm-thin";
  case VMSNAP_CLASS_BLOCK_DEVICE: return "block-device";
  case VMSNAP_CLASS_RBD: return "rbd";
  case VMSNAP_CLASS_NETWORK_OTHER: return "network";
  case VMSNAP_CLASS_MISSING: return "missing";
  }
  return "unknown";
}

/* The format an image's header announces; "raw" when there is no magic. */
static const char *
sniff_format (const char *path, char **why)
{
  unsigned char h[512], tail[512];
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  struct stat st;
  const char *fmt = "raw";

  if (fd < 0) {
    *why = g_strdup_printf ("cannot open %s: %s", path, g_strerror (errno));
    return NULL;
  }
  memset (h, 0, sizeof h);
  n = pread (fd, h, sizeof h, 0);
  if (n < 0) {
    *why = g_strdup_printf ("cannot read %s: %s", path, g_strerror (errno));
    close (fd);
    return NULL;
  }
  if (memcmp (h, "QFI\xfb", 4) == 0)
    fmt = (h[7] == 1) ? "qcow" : "qcow2";
  else if (memcmp (h, "QED\0", 4) == 0)
    fmt = "qed";
  else if (memcmp (h, "KDMV", 4) == 0 || memcmp (h, "# Disk DescriptorFile", 21) == 0)
    fmt = "vmdk";
  else if (memcmp (h, "vhdxfile", 8) == 0)
    fmt = "vhdx";
  else if (memcmp (h, "conectix", 8) == 0)
    fmt = "vpc";
  else if (h[0x40] == 0x7f && h[0x41] == 0x10 && h[0x42] == 0xda && h[0x43] == 0xbe)
    fmt = "vdi";
  else if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && st.st_size >= 512
           && pread (fd, tail, sizeof tail, st.st_size - 512) == 512
           && memcmp (tail, "conectix", 8) == 0)
    fmt = "vpc";     /* fixed VHD: footer only at the end */
  close (fd);
  return fmt;
}

static gboolean
is_known_format (const char *f)
{
  return f && g_strv_contains (known_formats, f);
}

/* Append layer PATH (format FMT) to D's chain; IMG (owned by the
 * domain from here on) is its header, or NULL. */
static void
add_layer (vmsnap_domain *dom, vmsnap_disk_priv *d, const char *path,
           const char *fmt, vmsnap_image *img, guint64 vsize)
{
  vmsnap_layer *l = g_new0 (vmsnap_layer, 1);

  l->struct_size = sizeof *l;
  l->path = vmsnap_intern (dom, path);
  l->format = vmsnap_intern (dom, fmt);
  l->virtual_size = vsize;
  if (img) {
    l->virtual_size = img->virtual_size;
    l->n_internal_snapshots = img->snapshots->len;
    l->data_file = vmsnap_intern (dom, img->data_file);
    l->image = img;
    g_ptr_array_add (d->images, img);
  }
  g_ptr_array_add (d->chain, l);
}

static void
set_error (vmsnap_domain *dom, vmsnap_disk_priv *d, vmsnap_storage_class cls,
           const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static void
set_error (vmsnap_domain *dom, vmsnap_disk_priv *d, vmsnap_storage_class cls,
           const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  d->pub.inspect_error = vmsnap_intern (dom, msg);
  if (cls != VMSNAP_CLASS_UNKNOWN)
    d->pub.storage_class = cls;
}

/* The domain XML may list a <backingStore> chain (libvirt writes it for
 * running domains); the images are the truth, but a difference is worth
 * saying: libvirt's view of the chain is stale. */
static void
compare_xml_backing (vmsnap_disk_priv *d)
{
  GPtrArray *x = d->xml_backing, *c = d->chain;

  if (!d->xml_backing_given)
    return;
  for (guint i = 0; i < x->len || i + 1 < c->len; i++) {
    const vmsnap_layer *xl = i < x->len ? x->pdata[i] : NULL;
    const vmsnap_layer *cl = i + 1 < c->len ? c->pdata[i + 1] : NULL;
    if (xl && cl && g_strcmp0 (xl->path, cl->path) == 0
        && (xl->format == NULL || g_strcmp0 (xl->format, cl->format) == 0))
      continue;
    g_ptr_array_add (d->warnings, g_strdup_printf (
      "the domain XML's <backingStore> says backing layer %u is %s (%s) but "
      "the image chain has %s (%s); vmsnap follows the images", i + 1,
      xl ? xl->path : "nothing", xl && xl->format ? xl->format : "-",
      cl ? cl->path : "nothing", cl ? cl->format : "-"));
    return;
  }
}

static void
inspect_file (vmsnap_domain *dom, vmsnap_disk_priv *d)
{
  const char *path = d->pub.source, *fmt = d->pub.format, *sniffed;
  g_autofree char *why = NULL;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GError) err = NULL;
  GStatBuf st;

  if (g_stat (path, &st) != 0) {
    set_error (dom, d, VMSNAP_CLASS_MISSING, "source file %s: %s", path,
               g_strerror (errno));
    return;
  }
  if (S_ISDIR (st.st_mode)) {
    set_error (dom, d, VMSNAP_CLASS_MISSING,
               "source %s is a directory, not an image file", path);
    return;
  }
  if (S_ISBLK (st.st_mode))
    d->pub.is_block_device = TRUE;
  else if (!S_ISREG (st.st_mode)) {
    set_error (dom, d, VMSNAP_CLASS_MISSING,
               "source %s is neither a regular file nor a block device", path);
    return;
  }
  sniffed = sniff_format (path, &why);
  if (sniffed == NULL) {
    set_error (dom, d, VMSNAP_CLASS_MISSING, "%s", why);
    return;
  }
  d->pub.detected_format = vmsnap_intern (dom, sniffed);
  d->pub.storage_class = strcmp (sniffed, "qcow2") == 0 ? VMSNAP_CLASS_QCOW2_FILE
                                                        : VMSNAP_CLASS_IMAGE_FILE;
  if (fmt == NULL) {
    /* No advice from the header: a raw disk's first bytes are the guest's,
     * and declaring what they look like is the probing attack. */
    set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
               "no <driver type> for %s: vmsnap never lets QEMU guess a "
               "format; declare the format the image was created in, e.g. "
               "<driver name='qemu' type='raw'/> for a raw disk whatever its "
               "first bytes look like", path);
    return;
  }
  if (!is_known_format (fmt)) {
    set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
               "unknown format '%s' for %s (known: raw, qcow2, vmdk, vdi, "
               "vpc, vhdx, ...)", fmt, path);
    return;
  }
  if (strcmp (fmt, "raw") == 0 && strcmp (sniffed, "raw") != 0) {
    /* A raw disk's bytes are the guest's: a guest can write an image
     * header into its first (or last) sector, and a delete may commit it
     * into the base.  The declared format is the truth (DESIGN.md §10);
     * taking the header's word would be the probing attack itself. */
    g_ptr_array_add (d->warnings, g_strdup_printf (
      "the first bytes of %s look like a %s header, but the domain XML "
      "declares the disk raw: vmsnap trusts the declared format and treats "
      "them as guest data (a guest can write any bytes into its raw disk)",
      path, sniffed));
  } else if (strcmp (fmt, sniffed) != 0) {
    /* Not guest-writable: the header of a non-raw image is the image
     * format's own. */
    set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
               "%s is declared '%s' in the domain XML but it has no %s "
               "header (%s): check what the file is and fix <driver type>; "
               "vmsnap never guesses a format",
               path, fmt, fmt, strcmp (sniffed, "raw") == 0
               ? "no image header vmsnap knows"
               : "it starts like a different image format");
    return;
  }
  d->pub.storage_class = strcmp (fmt, "qcow2") == 0 ? VMSNAP_CLASS_QCOW2_FILE
                                                    : VMSNAP_CLASS_IMAGE_FILE;
  /* Walk the chain one layer at a time, each header read once, in
   * process (vmsnap_image_read: no process per layer). */
  {
    g_autofree char *cur = g_strdup (path);
    g_autofree char *cur_fmt = g_strdup (fmt);
    for (int depth = 0;; depth++) {
      vmsnap_image *img;
      char *real = realpath (cur, NULL);

      if (real == NULL) {
        set_error (dom, d, VMSNAP_CLASS_MISSING,
                   "backing file %s (layer %d of %s's chain) is missing: %s",
                   cur, depth, path, g_strerror (errno));
        return;
      }
      if (g_hash_table_contains (seen, real)) {
        set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
                   "backing chain of %s loops: %s is reached twice", path, real);
        free (real);
        return;
      }
      g_hash_table_add (seen, g_strdup (real));
      free (real);
      if (depth >= VMSNAP_MAX_CHAIN) {
        set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
                   "backing chain of %s is deeper than %d layers", path,
                   VMSNAP_MAX_CHAIN);
        return;
      }
      if (depth > 0) {
        /* The recorded backing format must match the file's header. */
        g_autofree char *w = NULL;
        const char *s = sniff_format (cur, &w);
        if (s == NULL) {
          set_error (dom, d, VMSNAP_CLASS_MISSING, "%s", w);
          return;
        }
        if (strcmp (s, cur_fmt) != 0 && strcmp (cur_fmt, "raw") != 0) {
          set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
                     "backing file %s is recorded as '%s' but its header "
                     "says '%s'", cur, cur_fmt, s);
          return;
        }
      }
      /* Every name in the header is checked before anything follows it. */
      img = vmsnap_image_read (cur, cur_fmt, &err);
      if (img == NULL) {
        if (depth == 0)
          set_error (dom, d, VMSNAP_CLASS_UNKNOWN, "%s", err->message);
        else
          set_error (dom, d, VMSNAP_CLASS_UNKNOWN, "layer %d of %s's chain: %s",
                     depth, path, err->message);
        return;
      }
      add_layer (dom, d, cur, cur_fmt, img, 0);
      if (depth == 0)
        d->pub.virtual_size = img->virtual_size;
      if (img->backing == NULL)
        break;
      if (img->backing_fmt == NULL) {
        set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
                   "%s names backing file %s without a backing format; "
                   "vmsnap never lets QEMU probe one: record it with "
                   "'qemu-img rebase -u -F FORMAT -b %s %s' after checking "
                   "what the backing file is", cur, img->backing, img->backing, cur);
        return;
      }
      /* A name that is not a local file, or a backing format that is not
       * an image format, was refused by vmsnap_image_read already. */
      g_free (cur);
      g_free (cur_fmt);
      cur = g_strdup (img->backing);
      cur_fmt = g_strdup (img->backing_fmt);
    }
  }
  d->pub.inspected = TRUE;
  if (d->chain->len > VMSNAP_CHAIN_WARN)
    g_ptr_array_add (d->warnings, g_strdup_printf (
      "the backing chain of %s is %u images deep: QEMU opens every layer and "
      "a read the top layers miss walks them; consolidate it (vmsnap merge "
      "DOMAIN --disk %s, or delete snapshots), and set vmsnap.max-chain-depth "
      "to make a create refuse beyond a depth", path, d->chain->len,
      d->pub.target));
  compare_xml_backing (d);
}

static void
inspect_block (vmsnap_domain *dom, vmsnap_disk_priv *d)
{
  const char *path = d->pub.source;
  GStatBuf st;
  int fd;
  guint64 size = 0;

  if (g_stat (path, &st) != 0) {
    set_error (dom, d, VMSNAP_CLASS_MISSING, "block device %s: %s", path,
               g_strerror (errno));
    return;
  }
  if (!S_ISBLK (st.st_mode)) {
    set_error (dom, d, VMSNAP_CLASS_MISSING, "%s is not a block device", path);
    return;
  }
  d->pub.is_block_device = TRUE;
  d->pub.storage_class = VMSNAP_CLASS_BLOCK_DEVICE;
  if (d->pub.format && strcmp (d->pub.format, "raw") != 0) {
    /* An image format on a device names files like any image. */
    g_autoptr (GError) err = NULL;
    if (!vmsnap_image_refs_check (path, d->pub.format, &err)) {
      set_error (dom, d, VMSNAP_CLASS_UNKNOWN, "%s", err->message);
      return;
    }
  }
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (ioctl (fd, BLKGETSIZE64, &size) == 0)
      d->pub.virtual_size = size;
    close (fd);
  }
  add_layer (dom, d, path, d->pub.format ? d->pub.format : "raw", NULL, size);
  d->pub.inspected = TRUE;
}

void
vmsnap_inspect_disk (vmsnap_domain *dom, vmsnap_disk_priv *d)
{
  d->pub.storage_class = VMSNAP_CLASS_UNKNOWN;
  switch (d->pub.type) {
  case VMSNAP_DISK_TYPE_FILE:
  case VMSNAP_DISK_TYPE_BLOCK:
    if (d->pub.source == NULL) {
      if (d->pub.device == VMSNAP_DEVICE_CDROM || d->pub.device == VMSNAP_DEVICE_FLOPPY)
        d->pub.storage_class = VMSNAP_CLASS_NONE;
      else
        set_error (dom, d, VMSNAP_CLASS_MISSING, "disk %s has no <source>",
                   d->pub.target);
      return;
    }
    if (!g_path_is_absolute (d->pub.source)) {
      /* Every backend needs it (qemu-img and QEMU resolve a relative name
       * against their own working directories): refused here, so plan and
       * create say the same. */
      set_error (dom, d, VMSNAP_CLASS_MISSING,
                 "the source '%s' is not an absolute path; give the image's "
                 "absolute path in the domain XML", d->pub.source);
      return;
    }
    if (d->pub.type == VMSNAP_DISK_TYPE_FILE)
      inspect_file (dom, d);
    else
      inspect_block (dom, d);
    return;
  case VMSNAP_DISK_TYPE_NETWORK:
    d->pub.storage_class = d->pub.protocol && strcmp (d->pub.protocol, "rbd") == 0
      ? VMSNAP_CLASS_RBD : VMSNAP_CLASS_NETWORK_OTHER;
    if (d->pub.source == NULL && d->pub.storage_class == VMSNAP_CLASS_RBD)
      set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
                 "rbd disk %s has no source name='pool/image'", d->pub.target);
    return;
  case VMSNAP_DISK_TYPE_VOLUME:
    set_error (dom, d, VMSNAP_CLASS_UNKNOWN,
               "volume disk %s (pool %s, volume %s) could not be resolved: it "
               "needs a libvirt connection with that pool defined and active",
               d->pub.target, d->pub.pool ? d->pub.pool : "?",
               d->pub.volume ? d->pub.volume : "?");
    return;
  case VMSNAP_DISK_TYPE_DIR:
  case VMSNAP_DISK_TYPE_NVME:
  case VMSNAP_DISK_TYPE_VHOSTUSER:
  case VMSNAP_DISK_TYPE_VHOSTVDPA:
  case VMSNAP_DISK_TYPE_UNKNOWN:
    return;
  }
}

gboolean
vmsnap_image_info (const char *path, const char *fmt, guint64 *vsize,
                   char **backing, char **backing_fmt, GError **err)
{
  g_autoptr (vmsnap_image) img = vmsnap_image_read (path, fmt, err);

  if (img == NULL)
    return FALSE;
  if (vsize)
    *vsize = img->virtual_size;
  if (backing)
    *backing = g_steal_pointer (&img->backing);
  if (backing_fmt)
    *backing_fmt = g_steal_pointer (&img->backing_fmt);
  return TRUE;
}
