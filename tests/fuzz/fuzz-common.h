/* Shared by the fuzz harnesses (tests/fuzz/fuzz-*.c): the per-process
 * temporary directory, the only place a harness writes to.
 *
 * libFuzzer calls LLVMFuzzerInitialize once, then LLVMFuzzerTestOneInput
 * for every input; the plain regression build (driver.c) does the same for
 * every file of the harness's corpus. */
#ifndef VMSNAP_FUZZ_COMMON_H
#define VMSNAP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The directory made by fuzz_tmpdir_init (absolute). */
static char *fuzz_dir;

static G_GNUC_UNUSED void
fuzz_tmpdir_cleanup (void)
{
  GDir *d;
  const char *name;

  if (fuzz_dir == NULL)
    return;
  d = g_dir_open (fuzz_dir, 0, NULL);
  while (d && (name = g_dir_read_name (d)) != NULL) {
    g_autofree char *p = g_build_filename (fuzz_dir, name, NULL);
    g_unlink (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (fuzz_dir);
  g_clear_pointer (&fuzz_dir, g_free);
}

/* A GLib warning or critical (a g_return_if_fail that caught a NULL, a
 * g_strcompress on a damaged value) is a bug too: make it abort. */
static G_GNUC_UNUSED void
fuzz_fatal_warnings (void)
{
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_WARNING
                          | G_LOG_LEVEL_CRITICAL);
}

/* Make the per-process directory once: $TMPDIR, else /dev/shm (the
 * harnesses fsync), else /tmp; removed at exit. */
static G_GNUC_UNUSED void
fuzz_tmpdir_init (const char *name)
{
  g_autofree char *tmpl = g_strdup_printf ("vmsnap-%s-XXXXXX", name);
  const char *base = g_getenv ("TMPDIR");
  g_autofree char *path = NULL;

  fuzz_fatal_warnings ();
  if (fuzz_dir)
    return;
  if (base == NULL || *base == '\0')
    base = g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR)
           && g_access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  path = g_build_filename (base, tmpl, NULL);
  if (g_mkdtemp_full (path, 0700) == NULL) {
    fprintf (stderr, "fuzz-%s: cannot create a directory in %s\n", name, base);
    abort ();
  }
  fuzz_dir = g_steal_pointer (&path);
  atexit (fuzz_tmpdir_cleanup);
}

/* Write DATA to NAME in the directory; returns the path (g_free). */
static G_GNUC_UNUSED char *
fuzz_write (const char *name, const uint8_t *data, size_t size)
{
  char *p = g_build_filename (fuzz_dir, name, NULL);

  if (!g_file_set_contents (p, (const char *) data, (gssize) size, NULL))
    abort ();
  return p;
}

/* An invariant of the code under test does not hold: a bug. */
#define FUZZ_ASSERT(cond)                                                    \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf (stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,  \
               #cond);                                                       \
      abort ();                                                              \
    }                                                                        \
  } while (0)

#endif
