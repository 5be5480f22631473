/* A new qcow2 overlay, written by vmsnap itself (issue 17 item 7): the
 * bytes `qemu-img create -f qcow2 -u -F FMT -b NAME PATH SIZE` writes with
 * QEMU's defaults, without starting qemu-img (about half of an offline
 * external create's time was that one process).
 *
 * The layout (QEMU's docs/interop/qcow2.txt; what QEMU 7.2 produces was
 * read back byte by byte, and tests/unit/test-qcow2new.c compares every
 * file with qemu-img's own):
 *
 *   cluster 0  the header: version 3, 64 KiB clusters, 16-bit refcounts,
 *              zlib compression, no feature bit set; its extensions in
 *              QEMU's order (backing format, feature name table, end);
 *              then the backing file name, not NUL-terminated
 *   cluster 1  the refcount table: one entry, the block in cluster 2
 *   cluster 2  the refcount block: refcount 1 for clusters 0, 1, 2 and
 *              each cluster of the L1 table
 *   cluster 3  the L1 table, one zero entry per 512 MiB of the virtual
 *              size (none for size 0); the file ends with it
 *
 * One refcount block covers 32768 clusters (2 GiB of file), and the
 * largest L1 table qcow2 allows (32 MiB: a 2 PiB disk) is 512 clusters, so
 * every size qemu-img accepts with these defaults fits this layout. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmsnap/backend.h>

#define CLUSTER_BITS 16
#define CLUSTER ((guint64) 1 << CLUSTER_BITS)
#define L2_COVERS (CLUSTER / 8 * CLUSTER)        /* 512 MiB per L1 entry */
#define MAX_L1_ENTRIES ((guint64) 32 * 1024 * 1024 / 8)
#define MAX_SIZE (MAX_L1_ENTRIES * L2_COVERS)    /* 2 PiB */
#define MAX_NAME 1023                            /* QEMU refuses to open longer */
#define HEADER_LENGTH 112                        /* v3 header with compression type */

#define EXT_END 0x00000000u
#define EXT_BACKING_FMT 0xe2792acau
#define EXT_FEATURE_TABLE 0x6803f857u

/* The formats QEMU can open as a backing file (QEMU 7.2's image format
 * drivers).  Anything else is left to qemu-img, which knows its own list. */
static const char *const formats[] = {
  "raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx", "luks",
  "parallels", "bochs", "cloop", "dmg", NULL
};

/* QEMU 7.2's feature name table, in its order: type (0 incompatible,
 * 1 compatible, 2 autoclear), bit, name. */
static const struct {
  guint8 type, bit;
  const char *name;
} features[] = {
  { 0, 0, "dirty bit" },
  { 0, 1, "corrupt bit" },
  { 0, 2, "external data file" },
  { 0, 3, "compression type" },
  { 0, 4, "extended L2 entries" },
  { 1, 0, "lazy refcounts" },
  { 2, 0, "bitmaps" },
  { 2, 1, "raw external data" },
};
#define FEATURE_ENTRY 48

static void
put32 (unsigned char *p, guint32 v)
{
  p[0] = (guint8) (v >> 24);
  p[1] = (guint8) (v >> 16);
  p[2] = (guint8) (v >> 8);
  p[3] = (guint8) v;
}

static void
put64 (unsigned char *p, guint64 v)
{
  put32 (p, v >> 32);
  put32 (p + 4, (guint32) v);
}

static gboolean
known_format (const char *fmt)
{
  for (int i = 0; formats[i]; i++)
    if (strcmp (fmt, formats[i]) == 0)
      return TRUE;
  return FALSE;
}

/* pwrite all of BUF at offset 0; FALSE with errno set. */
static gboolean
write_all (int fd, const unsigned char *buf, size_t len)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = pwrite (fd, buf + done, len - done, (off_t) done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      return FALSE;
    }
    done += (size_t) n;
  }
  return TRUE;
}

gboolean
vmsnap_qcow2_overlay_write (int fd, const char *backing_name,
                            const char *backing_fmt, guint64 virtual_size,
                            unsigned int flags, GError **err)
{
  g_autofree unsigned char *buf = NULL;
  guint64 size, l1_entries, l1_clusters, file_size;
  size_t name_len, fmt_len, off;
  struct stat st;

  /* Everything is checked before the first byte is written: a refusal
   * leaves FD as it was, and the caller may still run qemu-img. */
  if (flags != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS,
                 "vmsnap_qcow2_overlay_write: unknown flags 0x%x", flags);
    return FALSE;
  }
  if (backing_name == NULL || backing_fmt == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "a qcow2 overlay "
                 "is written here only with a backing file and its format");
    return FALSE;
  }
  name_len = strlen (backing_name);
  if (name_len == 0 || name_len > MAX_NAME) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "the backing file "
                 "name is %zu bytes long (a qcow2 overlay holds 1 to %d)",
                 name_len, MAX_NAME);
    return FALSE;
  }
  if (!known_format (backing_fmt)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "backing format "
                 "'%s' is not one vmsnap writes into a qcow2 overlay",
                 backing_fmt);
    return FALSE;
  }
  if (virtual_size > MAX_SIZE) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "a virtual size of "
                 "%" G_GUINT64_FORMAT " bytes is beyond qcow2's %" G_GUINT64_FORMAT
                 " with 64 KiB clusters", virtual_size, MAX_SIZE);
    return FALSE;
  }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "a qcow2 overlay "
                 "is written here only into a regular file");
    return FALSE;
  }

  /* qemu-img rounds the size up to whole 512-byte sectors. */
  size = (virtual_size + 511) & ~(guint64) 511;
  l1_entries = (size + L2_COVERS - 1) / L2_COVERS;
  l1_clusters = (l1_entries * 8 + CLUSTER - 1) / CLUSTER;
  file_size = 3 * CLUSTER + l1_entries * 8;
  fmt_len = strlen (backing_fmt);

  buf = g_malloc0 (3 * CLUSTER);
  /* The header. */
  memcpy (buf, "QFI\xfb", 4);
  put32 (buf + 4, 3);                             /* version */
  put32 (buf + 16, (guint32) name_len);           /* backing_file_size */
  put32 (buf + 20, CLUSTER_BITS);
  put64 (buf + 24, size);
  put32 (buf + 36, (guint32) l1_entries);         /* l1_size */
  put64 (buf + 40, l1_entries ? 3 * CLUSTER : 0); /* l1_table_offset */
  put64 (buf + 48, CLUSTER);                      /* refcount_table_offset */
  put32 (buf + 56, 1);                            /* refcount_table_clusters */
  put32 (buf + 96, 4);                            /* refcount_order: 16 bits */
  put32 (buf + 100, HEADER_LENGTH);
  /* buf[104]: compression type 0, zlib; 7 bytes of padding. */
  off = HEADER_LENGTH;
  put32 (buf + off, EXT_BACKING_FMT);
  put32 (buf + off + 4, (guint32) fmt_len);
  memcpy (buf + off + 8, backing_fmt, fmt_len);
  off += 8 + ((fmt_len + 7) & ~(size_t) 7);
  put32 (buf + off, EXT_FEATURE_TABLE);
  put32 (buf + off + 4, G_N_ELEMENTS (features) * FEATURE_ENTRY);
  off += 8;
  for (size_t i = 0; i < G_N_ELEMENTS (features); i++, off += FEATURE_ENTRY) {
    buf[off] = features[i].type;
    buf[off + 1] = features[i].bit;
    memcpy (buf + off + 2, features[i].name, strlen (features[i].name));
  }
  put32 (buf + off, EXT_END);
  off += 8;
  put64 (buf + 8, off);                           /* backing_file_offset */
  memcpy (buf + off, backing_name, name_len);
  g_assert (off + name_len <= CLUSTER);
  /* The refcount table and its one block. */
  put64 (buf + CLUSTER, 2 * CLUSTER);
  for (guint64 c = 0; c < 3 + l1_clusters; c++) {
    buf[2 * CLUSTER + 2 * c] = 0;
    buf[2 * CLUSTER + 2 * c + 1] = 1;
  }

  /* The L1 table is all zeros: the file's end, past the three clusters
   * written, reads as zeros (a hole), as qemu-img's written zeros do. */
  if (ftruncate (fd, 0) != 0 || !write_all (fd, buf, 3 * CLUSTER)
      || ftruncate (fd, (off_t) file_size) != 0) {
    int e = errno;
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot write the "
                 "qcow2 overlay: %s", g_strerror (e));
    return FALSE;
  }
  return TRUE;
}
