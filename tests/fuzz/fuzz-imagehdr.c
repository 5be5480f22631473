/* Fuzz harness: the image header reader (libvmsnap/imagehdr.c), which runs
 * on untrusted bytes before any qemu-img does (DESIGN.md §10, issue 16
 * item 11).  The input is written as an image file and read as each format
 * that can name other files.  Invariants: no crash, no read outside what
 * the header claims (the sanitizers watch), an error always says why, a
 * name read is a C string of at most QEMU's length, and the check refuses
 * every name that is not a local file. */
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
  return 0;
}
