/* Fuzz harness: the write-ahead journal read by `vmsnap recover` (and by
 * every vmsnap that opens a domain with a journal left behind).
 *
 * Recovery is entangled with acting: run_journal calls the backends (which
 * run qemu-img, lvm, rbd) and libvirt for every disk step not marked done.
 * So this harness runs what recovery does before anything acts, plus the
 * one step that only touches the state directory:
 *   vmsnap_journal_load      the GKeyFile (the input, written as
 *                            STATE/journal in the per-process directory)
 *   vmsnap_journal_check     everything recovery reads, checked
 *   vmsnap_journal_replay_catalog
 *                            the results of the finished disk steps loaded
 *                            and, if every disk step is done, the catalog
 *                            step applied to a fixed catalog (below),
 *                            saved to STATE/catalog.xml
 * and the saved catalog must load again.
 *
 * The input is tried twice.  As it is: a journal vmsnap accepts ends with
 * its end line, whose checksum covers all that precedes it (checked here
 * independently of the loader); anything else, a journal cut short above
 * all, is refused with an error naming the file (issue 16, item 12).  Then
 * with a right end line added, so the checks after it are fuzzed too; that
 * one, cut in half, must be refused. */
#include <config.h>

#include <string.h>

#include "../../libvmsnap/internal.h"
#include "fuzz-common.h"

/* The catalog the seed journals (tests/fuzz/corpus/journal) were written
 * against, as vmsnap left it (domain XML left out): s1 deleted but kept
 * (hidden) for its two children s3 and s4 (current), disks vda vdb vdc. */
static const char base_catalog[] =
  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
  "<vmsnap-catalog version=\"1\" domain-uuid=\"6a0c5c1e-8f3c-4b2d-9d1e-2f7a1b3c4d5e\""
  " domain-name=\"seed\" next-id=\"5\" current=\"4\">\n"
  "  <snapshot id=\"1\" name=\"s1\" created=\"1795330088\" hidden=\"yes\">\n"
  "    <disk target=\"vda\" backend=\"qcow2-external\" locator=\"qcow2:/tmp/fuzz-seed/img/vda.qcow2\"/>\n"
  "    <disk target=\"vdb\" backend=\"qcow2-external\" locator=\"raw:/tmp/fuzz-seed/img/vdb.raw\"/>\n"
  "  </snapshot>\n"
  "  <snapshot id=\"3\" name=\"s3\" parent=\"1\" created=\"1795330092\">\n"
  "    <disk target=\"vda\" backend=\"qcow2-external\" locator=\"qcow2:/tmp/fuzz-seed/img/vda.vmsnap-98365ba0.qcow2\"/>\n"
  "    <disk target=\"vdb\" backend=\"qcow2-external\" locator=\"qcow2:/tmp/fuzz-seed/img/vdb.vmsnap-9d644068.qcow2\"/>\n"
  "    <disk target=\"vdc\" backend=\"qcow2-internal\" locator=\"qcow2:/tmp/fuzz-seed/img/vdc.qcow2#s3\"/>\n"
  "  </snapshot>\n"
  "  <snapshot id=\"4\" name=\"s4\" parent=\"1\" created=\"1795330093\">\n"
  "    <description>second &lt;one&gt; &amp; \"quoted\"</description>\n"
  "    <disk target=\"vda\" backend=\"qcow2-external\" locator=\"qcow2:/tmp/fuzz-seed/img/vda.vmsnap-63edb541.qcow2\"/>\n"
  "    <disk target=\"vdb\" backend=\"qcow2-external\" locator=\"qcow2:/tmp/fuzz-seed/img/vdb.vmsnap-849f0161.qcow2\"/>\n"
  "    <disk target=\"vdc\" backend=\"qcow2-internal\" locator=\"qcow2:/tmp/fuzz-seed/img/vdc.qcow2#s4\"/>\n"
  "  </snapshot>\n"
  "</vmsnap-catalog>\n";

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_tmpdir_init ("fuzz-journal");
  return 0;
}

/* A refusal shows what it refuses, never echoes it: no control character
 * (the journal's path is the fuzzer's own, and has none). */
static void
no_controls (const char *msg)
{
  for (const char *p = msg; *p; p++)
    FUZZ_ASSERT ((unsigned char) *p >= 0x20 && (unsigned char) *p != 0x7f);
}

/* Does DATA end with a right end line (as vmsnap_journal_save writes)? */
static gboolean
has_end_line (const uint8_t *data, size_t size)
{
  const char *d = (const char *) data, *last;
  g_autofree char *sum = NULL, *want = NULL;

  if (size == 0 || d[size - 1] != '\n')
    return FALSE;
  last = g_strrstr_len (d, (gssize) size - 1, "\n");
  last = last ? last + 1 : d;
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, (gsize) (last - d));
  want = g_strdup_printf ("%s%s\n", VMSNAP_JOURNAL_END, sum);
  return (size_t) (d + size - last) == strlen (want) && memcmp (last, want, strlen (want)) == 0;
}

/* DATA with a right end line added. */
static GByteArray *
with_end_line (const uint8_t *data, size_t size)
{
  GByteArray *b = g_byte_array_new ();
  g_autofree char *sum = NULL, *line = NULL;

  g_byte_array_append (b, data, (guint) size);
  if (size > 0 && data[size - 1] != '\n')
    g_byte_array_append (b, (const guint8 *) "\n", 1);
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, b->data, b->len);
  line = g_strdup_printf ("%s%s\n", VMSNAP_JOURNAL_END, sum);
  g_byte_array_append (b, (const guint8 *) line, (guint) strlen (line));
  return b;
}

static void replay (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GByteArray) whole = NULL;

  {
    g_autofree char *jpath = fuzz_write ("journal", data, size);
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_journal) j = vmsnap_journal_load (jpath, &err);
    if (j == NULL) {
      FUZZ_ASSERT (err != NULL && strstr (err->message, jpath) != NULL);
      no_controls (err->message);
    } else
      FUZZ_ASSERT (has_end_line (data, size));
  }
  whole = with_end_line (data, size);
  if (size > 0) {
    /* cut short: refused */
    g_autofree char *jpath = fuzz_write ("journal", whole->data, whole->len / 2);
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_journal) j = vmsnap_journal_load (jpath, &err);
    FUZZ_ASSERT (j == NULL && err != NULL);
  }
  replay (whole->data, whole->len);
  return 0;
}

static void
replay (const uint8_t *data, size_t size)
{
  g_autofree char *cpath = fuzz_write ("catalog.xml", (const uint8_t *) base_catalog,
                                       sizeof base_catalog - 1);
  g_autofree char *jpath = fuzz_write ("journal", data, size);
  g_autoptr (GError) err = NULL;
  g_autoptr (catalog) c = vmsnap_catalog_load (cpath, "6a0c5c1e-8f3c-4b2d-9d1e-2f7a1b3c4d5e", "fuzz", &err);
  g_autoptr (vmsnap_journal) j = NULL;
  g_autoptr (catalog) again = NULL;

  FUZZ_ASSERT (c != NULL && c->snaps->len == 3);
  j = vmsnap_journal_load (jpath, &err);
  if (j == NULL) {
    FUZZ_ASSERT (err != NULL);
    return;
  }
  FUZZ_ASSERT (j->recovering);
  if (!vmsnap_journal_replay_catalog (c, j, &err)) {
    FUZZ_ASSERT (err != NULL && strstr (err->message, jpath) != NULL);
    no_controls (err->message);
    return;
  }
  /* Whatever the journal did to the catalog, vmsnap can read it again and
   * `vmsnap list` can walk it. */
  again = vmsnap_catalog_load (cpath, "6a0c5c1e-8f3c-4b2d-9d1e-2f7a1b3c4d5e", "fuzz", &err);
  FUZZ_ASSERT (again != NULL);
  FUZZ_ASSERT (again->snaps->len == c->snaps->len);
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    FUZZ_ASSERT (s->id && s->name);
    if (s->parent)
      vmsnap_catalog_visible (c, s->parent);
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      g_autoptr (GPtrArray) locs = NULL;
      FUZZ_ASSERT (d->target && d->backend && d->locator);
      locs = vmsnap_catalog_locators (c, d->target);
    }
  }
  if (c->current)
    vmsnap_catalog_visible (c, c->current);
}
