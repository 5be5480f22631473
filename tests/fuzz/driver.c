/* The regression build of a fuzz harness (normal, non-fuzzing builds): a
 * main() that feeds every file of the harness's corpus to
 * LLVMFuzzerTestOneInput once, so `make check` (under ASan/UBSan in the
 * sanitizer build, valgrind in check-valgrind) replays the seeds and every
 * reproducer of a bug found by fuzzing.
 *
 *   fuzz-NAME [FILE|DIR]...   default: $srcdir/tests/fuzz/corpus/NAME
 *
 * Fails if a corpus is empty or a file cannot be read; a crash, a leak or a
 * broken invariant (FUZZ_ASSERT) aborts. */
#include <config.h>

#include <string.h>

#include "fuzz-common.h"

static int
run_file (const char *path)
{
  g_autofree char *buf = NULL;
  gsize len = 0;
  g_autoptr (GError) err = NULL;
  uint8_t *copy;

  if (!g_file_get_contents (path, &buf, &len, &err)) {
    fprintf (stderr, "fuzz-%s: %s\n", FUZZ_NAME, err->message);
    return -1;
  }
  /* An exact-size copy, as libFuzzer passes it: ASan sees overreads. */
  copy = g_malloc (len ? len : 1);
  memcpy (copy, buf, len);
  LLVMFuzzerTestOneInput (copy, len);
  g_free (copy);
  return 1;
}

static int
compare (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Files of a directory, sorted (deterministic order), or the file itself. */
static int
run_path (const char *path)
{
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = NULL;
  const char *name;
  int n = 0;

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    return run_file (path);
  d = g_dir_open (path, 0, NULL);
  if (d == NULL) {
    fprintf (stderr, "fuzz-%s: cannot read %s\n", FUZZ_NAME, path);
    return -1;
  }
  while ((name = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (files, g_build_filename (path, name, NULL));
  g_ptr_array_sort (files, compare);
  for (guint i = 0; i < files->len; i++) {
    int r = run_file (files->pdata[i]);
    if (r < 0)
      return -1;
    n += r;
  }
  return n;
}

int
main (int argc, char **argv)
{
  g_autofree char *def = NULL;
  int total = 0;

  LLVMFuzzerInitialize (&argc, &argv);
  if (argc < 2) {
    const char *srcdir = g_getenv ("srcdir");
    def = g_build_filename (srcdir ? srcdir : ".", "tests", "fuzz", "corpus",
                            FUZZ_NAME, NULL);
  }
  for (int i = def ? 0 : 1; i < (def ? 1 : argc); i++) {
    const char *p = def ? def : argv[i];
    int n = run_path (p);
    if (n < 0)
      return 1;
    if (n == 0) {
      fprintf (stderr, "fuzz-%s: no input in %s: nothing was tested\n", FUZZ_NAME, p);
      return 1;
    }
    printf ("fuzz-%s: %d inputs from %s replayed\n", FUZZ_NAME, n, p);
    total += n;
  }
  return total > 0 ? 0 : 1;
}
