/* The window guard's library side (libvmsnap/windowguard.c) with the
 * real program (tools/vmsnap-window-guard) on libvirt's test driver
 * (test:///default, in the guard's own process: no daemon): started, it
 * is ready, holds no descriptor of ours but its stdin and stdout, is in a
 * session of its own (its signals: tests/integration/window-guard.sh), and "done" ends it reaped; a guard that cannot
 * start (missing program, unknown domain, wrong answer) gives an error
 * naming the program and leaves no process; a guard that died before
 * "done" does not turn done into a SIGPIPE.
 *
 * `test-windowguard hold URI UUID` is a stand-in for a vmsnap inside the
 * pause window, for tests/integration/window-guard.sh: it starts the
 * guard, says "started" on stdout and waits to be killed. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "../../libvmsnap/internal.h"

#define TEST_URI "test:///default"
/* The domain "test" of libvirt's test driver. */
#define TEST_UUID "6695eb01-f6a4-8304-79aa-97f2502e193f"

static char *tmpdir;

static gboolean
reaped (GPid pid)
{
  return waitpid (pid, NULL, WNOHANG) < 0 && errno == ECHILD;
}

static void
test_path (void)
{
  g_autofree char *want = g_build_filename (VMSNAP_ABS_BUILDDIR, "tools",
                                            "vmsnap-window-guard", NULL);
  g_autofree char *env = g_strdup (g_getenv ("VMSNAP_WINDOW_GUARD"));
  g_autofree char *p = NULL;

  g_setenv ("VMSNAP_WINDOW_GUARD", "/some/where/guard", TRUE);
  p = vmsnap_window_guard_path ();
  g_assert_cmpstr (p, ==, "/some/where/guard");
  g_free (p);
  /* Run from the build tree: the build tree's program. */
  g_unsetenv ("VMSNAP_WINDOW_GUARD");
  p = vmsnap_window_guard_path ();
  g_assert_cmpstr (p, ==, want);
  if (env)
    g_setenv ("VMSNAP_WINDOW_GUARD", env, TRUE);
}

static void
test_start_done (void)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *canary = g_build_filename (tmpdir, "canary", NULL);
  g_autofree char *fddir = NULL;
  g_autofree char *stat = NULL;
  g_autoptr (GDir) d = NULL;
  vmsnap_window_guard *g;
  const char *e;
  int fd, n = 0;
  GPid pid;

  /* Not close-on-exec: the guard must not get it all the same. */
  fd = open (canary, O_WRONLY | O_CREAT, 0600);
  g_assert_cmpint (fd, >=, 0);
  g = vmsnap_window_guard_start (TEST_URI, TEST_UUID, &err);
  g_assert_no_error (err);
  g_assert_nonnull (g);
  pid = vmsnap_window_guard_pid (g);
  g_assert_cmpint (pid, >, 0);

  fddir = g_strdup_printf ("/proc/%d/fd", (int) pid);
  d = g_dir_open (fddir, 0, &err);
  g_assert_no_error (err);
  while ((e = g_dir_read_name (d)) != NULL) {
    g_autofree char *l = g_strdup_printf ("%s/%s", fddir, e);
    g_autofree char *to = g_file_read_link (l, NULL);
    /* The /dev/null the guard opens for its fd 1 is closed right after
     * the dup2 that ended our read: it may be gone by now. */
    if (to == NULL)
      continue;
    g_assert_cmpstr (to, !=, canary);
    if (!strcmp (e, "0"))
      g_assert_true (g_str_has_prefix (to, "socket:"));
    if (!strcmp (e, "1"))
      g_assert_cmpstr (to, ==, "/dev/null");   /* stdout closed after "ready" */
    n++;
  }
  g_assert_cmpint (n, >=, 3);
  /* Its own session (field 6 of /proc/PID/stat): a kill of vmsnap's
   * process group spares it. */
  {
    g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
    g_auto (GStrv) fields = NULL;
    g_assert_true (g_file_get_contents (path, &stat, NULL, NULL));
    fields = g_strsplit (strrchr (stat, ')') + 2, " ", 0);
    g_assert_cmpint (g_strv_length (fields), >, 4);
    g_assert_cmpint (atoi (fields[3]), ==, pid);   /* session id */
  }
  vmsnap_window_guard_done (g);
  g_assert_true (reaped (pid));
  close (fd);
  vmsnap_window_guard_done (NULL);
}

/* A guard killed before "done": done neither raises SIGPIPE (it is not
 * ignored here) nor leaves a zombie. */
static void
test_guard_dead (void)
{
  g_autoptr (GError) err = NULL;
  vmsnap_window_guard *g;
  siginfo_t si;
  GPid pid;

  g_assert_true (signal (SIGPIPE, SIG_DFL) != SIG_ERR);
  g = vmsnap_window_guard_start (TEST_URI, TEST_UUID, &err);
  g_assert_no_error (err);
  pid = vmsnap_window_guard_pid (g);
  g_assert_cmpint (kill (pid, SIGKILL), ==, 0);
  /* Dead (its descriptors closed), not reaped yet. */
  memset (&si, 0, sizeof si);
  g_assert_cmpint (waitid (P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), ==, 0);
  g_assert_cmpint (si.si_code, ==, CLD_KILLED);
  vmsnap_window_guard_done (g);
  g_assert_true (reaped (pid));
}

static void
expect_start_error (const char *program, const char *uuid, const char *want)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *env = g_strdup (g_getenv ("VMSNAP_WINDOW_GUARD"));
  g_autofree char *path = NULL;
  vmsnap_window_guard *g;

  if (program)
    g_setenv ("VMSNAP_WINDOW_GUARD", program, TRUE);
  path = vmsnap_window_guard_path ();
  g = vmsnap_window_guard_start (TEST_URI, uuid, &err);
  if (env)
    g_setenv ("VMSNAP_WINDOW_GUARD", env, TRUE);
  else
    g_unsetenv ("VMSNAP_WINDOW_GUARD");
  g_assert_null (g);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED);
  g_test_message ("%s", err->message);
  g_assert_nonnull (strstr (err->message, path));
  g_assert_nonnull (strstr (err->message, want));
  /* Nothing left to reap: every child is gone. */
  g_assert_true (waitpid (-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

static void
test_missing_program (void)
{
  g_autofree char *p = g_build_filename (tmpdir, "no-such-guard", NULL);
  expect_start_error (p, TEST_UUID, "No such file");
}

static void
test_unknown_domain (void)
{
  expect_start_error (NULL, "00000000-0000-0000-0000-000000000001",
                      "closed its output without saying it was ready, and "
                      "exited with status 1");
}

static void
test_wrong_answer (void)
{
  /* echo prints its arguments: the URI, the UUID and our pid. */
  g_autofree char *echo = g_find_program_in_path ("echo");
  g_assert_nonnull (echo);
  expect_start_error (echo, TEST_UUID, "answered '" TEST_URI " " TEST_UUID);
}

/* hold URI UUID: a vmsnap inside its pause window, until killed. */
static int
hold (const char *uri, const char *uuid)
{
  g_autoptr (GError) err = NULL;
  vmsnap_window_guard *g = vmsnap_window_guard_start (uri, uuid, &err);

  if (g == NULL) {
    fprintf (stderr, "test-windowguard hold: %s\n", err->message);
    return 1;
  }
  printf ("started %d\n", (int) vmsnap_window_guard_pid (g));
  fflush (stdout);
  fclose (stdout);
  for (;;)
    pause ();
}

int
main (int argc, char **argv)
{
  int rc;

  if (argc == 4 && !strcmp (argv[1], "hold"))
    return hold (argv[2], argv[3]);
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vmsnap-test-windowguard.XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/windowguard/path", test_path);
  g_test_add_func ("/windowguard/start-done", test_start_done);
  g_test_add_func ("/windowguard/guard-dead", test_guard_dead);
  g_test_add_func ("/windowguard/missing-program", test_missing_program);
  g_test_add_func ("/windowguard/unknown-domain", test_unknown_domain);
  g_test_add_func ("/windowguard/wrong-answer", test_wrong_answer);
  rc = g_test_run ();
  {
    g_autofree char *canary = g_build_filename (tmpdir, "canary", NULL);
    g_unlink (canary);
    g_rmdir (tmpdir);
  }
  return rc;
}
