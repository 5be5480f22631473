/* Fuzz harness: the image header reader (libvmsnap/imagehdr.c), which runs
 * on untrusted bytes before any qemu-img does (DESIGN.md §10, issue 16
 * item 11).  The input is written as an image file and read as each format
 * that can name other files.  Invariants: no crash, no read outside what
 * the header claims (the sanitizers watch), an error always says why, a
 * name read is a C string of at most QEMU's length, and the check refuses
 * every name that is not a local file.  Then the backing file rewrite
 * (vmsnap_qcow2_set_backing) runs on the same bytes. */
#include <config.h>

#include <string.h>

#include "../../libvmsnap/internal.h"
#include "fuzz-common.h"

static const char *const formats[] = { "qcow2", "qcow", "qed", "vmdk", "raw", NULL };
/* vmsnap_image_read's in-process readers (the rest go to qemu-img). */
static const char *const read_formats[] = { "qcow2", "qcow", "vmdk", "vdi", "raw", NULL };

static void
check_name (const char *name)
{
  g_autofree char *why = NULL;

  if (name == NULL)
    return;
  why = vmsnap_ref_not_local (name);
  /* json: and protocol prefixes are never local. */
  if (g_str_has_prefix (name, "json:") || name[strcspn (name, ":/")] == ':')
    FUZZ_ASSERT (why != NULL);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_tmpdir_init ("fuzz-imagehdr");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("image", data, size);

  for (const char *const *f = formats; *f; f++) {
    vmsnap_hdr_refs r;
    g_autoptr (GError) err = NULL;
    gboolean ok = vmsnap_header_refs (path, *f, &r, &err);
    gboolean checked;
    g_autoptr (GError) err2 = NULL;

    if (!ok) {
      FUZZ_ASSERT (err != NULL && err->message != NULL);
      continue;
    }
    FUZZ_ASSERT (err == NULL);
    FUZZ_ASSERT (r.backing == NULL || strlen (r.backing) <= 1023 || strcmp (*f, "vmdk") == 0);
    check_name (r.backing);
    check_name (r.data_file);
    for (guint i = 0; r.extents && i < r.extents->len; i++)
      check_name (r.extents->pdata[i]);
    checked = vmsnap_image_refs_check (path, *f, &err2);
    FUZZ_ASSERT (checked == (err2 == NULL));
    if (checked) {
      /* Accepted: every name it read is local. */
      g_autofree char *w1 = r.backing ? vmsnap_ref_not_local (r.backing) : NULL;
      g_autofree char *w2 = r.data_file ? vmsnap_ref_not_local (r.data_file) : NULL;
      FUZZ_ASSERT (w1 == NULL && w2 == NULL);
      for (guint i = 0; r.extents && i < r.extents->len; i++) {
        g_autofree char *w = vmsnap_ref_not_local (r.extents->pdata[i]);
        FUZZ_ASSERT (w == NULL);
      }
    }
    if (strcmp (*f, "raw") == 0)
      FUZZ_ASSERT (r.backing == NULL && r.data_file == NULL && r.extents == NULL);
    vmsnap_hdr_refs_clear (&r);
  }
  /* The whole header read (issue 17): bounded, and consistent with the
   * names' reader: what it accepts names only local files. */
  for (const char *const *f = read_formats; *f; f++) {
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_image) img = vmsnap_image_read (path, *f, &err);

    if (img == NULL) {
      FUZZ_ASSERT (err != NULL && err->message != NULL);
      continue;
    }
    FUZZ_ASSERT (err == NULL && img->in_process && img->snapshots != NULL);
    FUZZ_ASSERT (img->snapshots->len <= 65536);
    FUZZ_ASSERT (vmsnap_image_refs_check (path, *f, NULL));
    if (img->backing)
      FUZZ_ASSERT (g_path_is_absolute (img->backing));
    if (strcmp (*f, "raw") == 0)
      FUZZ_ASSERT (img->backing == NULL && img->snapshots->len == 0
                   && img->virtual_size == ((size + 511) & ~(size_t) 511));
    for (guint i = 0; i < img->snapshots->len; i++) {
      const vmsnap_image_snapshot *s = img->snapshots->pdata[i];
      FUZZ_ASSERT (s->id != NULL && s->name != NULL);
    }
  }
  /* The backing file rewrite (vmsnap_qcow2_set_backing, issue 17): a
   * refusal leaves the file as it was; a success changes only the first
   * cluster, names what it was given, and a repeat changes nothing. */
  {
    g_autoptr (GError) err = NULL;
    g_autofree char *after = NULL;
    gsize alen = 0;
    vmsnap_hdr_refs r0;
    /* Readable before (vmsnap_header_refs): readable after, with the new
     * names. */
    gboolean readable = vmsnap_header_refs (path, "qcow2", &r0, NULL);
    gboolean ok;

    if (readable)
      vmsnap_hdr_refs_clear (&r0);
    ok = vmsnap_qcow2_set_backing (path, "nb.qcow2", "qcow2", &err);

    FUZZ_ASSERT (g_file_get_contents (path, &after, &alen, NULL));
    FUZZ_ASSERT (ok == (err == NULL));
    if (!ok) {
      FUZZ_ASSERT (err->message != NULL);
      FUZZ_ASSERT (alen == size && memcmp (after, data, size) == 0);
    } else {
      vmsnap_hdr_refs r;
      gsize cs = (gsize) 1 << data[23];    /* cluster_bits 9..21, checked */
      g_autofree char *again = NULL;
      gsize glen = 0;

      FUZZ_ASSERT (size >= 72 && data[23] >= 9 && data[23] <= 21);
      /* Only the first cluster is written (a short file may grow into
       * it); the rest stays byte for byte. */
      FUZZ_ASSERT (alen >= size && alen <= MAX (size, cs));
      if (size > cs)
        FUZZ_ASSERT (alen == size && memcmp (after + cs, data + cs, size - cs) == 0);
      if (readable) {
        FUZZ_ASSERT (vmsnap_header_refs (path, "qcow2", &r, NULL));
        FUZZ_ASSERT (g_strcmp0 (r.backing, "nb.qcow2") == 0);
        FUZZ_ASSERT (g_strcmp0 (r.backing_fmt, "qcow2") == 0);
        vmsnap_hdr_refs_clear (&r);
      }
      FUZZ_ASSERT (vmsnap_qcow2_set_backing (path, "nb.qcow2", "qcow2", NULL));
      FUZZ_ASSERT (g_file_get_contents (path, &again, &glen, NULL));
      FUZZ_ASSERT (glen == alen && memcmp (again, after, alen) == 0);
      FUZZ_ASSERT (vmsnap_qcow2_set_backing (path, NULL, NULL, NULL));
      if (readable) {
        FUZZ_ASSERT (vmsnap_header_refs (path, "qcow2", &r, NULL));
        FUZZ_ASSERT (r.backing == NULL && r.backing_fmt == NULL);
        vmsnap_hdr_refs_clear (&r);
      }
    }
  }
  return 0;
}
