/* Errors, exit codes, flag checks and running external tools. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gio/gio.h>

#include "internal.h"

G_DEFINE_QUARK (vmsnap-error-quark, vmsnap_error)

/* Exit codes documented in doc/vmsnap.1 (EXIT STATUS). */
int
vmsnap_exit_code (const GError *err)
{
  if (err == NULL)
    return 0;
  if (err->domain != VMSNAP_ERROR)
    return 1;
  switch ((vmsnap_error_code) err->code) {
  case VMSNAP_ERR_USAGE:
    return 2;
  case VMSNAP_ERR_INVALID_INPUT:
    return 3;
  case VMSNAP_ERR_UNSUPPORTED:
  case VMSNAP_ERR_NOT_IMPLEMENTED:
    return 4;
  case VMSNAP_ERR_BUSY:
    return 5;
  case VMSNAP_ERR_FAILED:
  case VMSNAP_ERR_INVALID_FLAGS:
  case VMSNAP_ERR_BACKEND_LOAD:
  default:
    return 1;
  }
}

gboolean
vmsnap_check_flags (const char *backend, const char *slot, unsigned int flags,
                    unsigned int known, GError **err)
{
  if ((flags & ~known) == 0)
    return TRUE;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS,
               "backend %s: %s: unsupported flags 0x%x", backend, slot,
               flags & ~known);
  return FALSE;
}

char *
vmsnap_find_qemu_img (GError **err)
{
  const char *env = g_getenv ("VMSNAP_QEMU_IMG");
  char *path;

  if (env != NULL && *env != '\0') {
    if (g_file_test (env, G_FILE_TEST_IS_EXECUTABLE))
      return g_strdup (env);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "VMSNAP_QEMU_IMG=%s is not an executable file", env);
    return NULL;
  }
  path = g_find_program_in_path (VMSNAP_QEMU_IMG_DEFAULT);
  if (path == NULL)
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "qemu-img not found in PATH: install it (Debian: apt-get "
                 "install qemu-utils) or set VMSNAP_QEMU_IMG");
  return path;
}

/* The tools vmsnap runs (qemu-img commit/convert/rebase...) die with it: a
   vmsnap killed in the middle of a data copy must not leave a qemu-img
   still writing the image while `vmsnap recover` repairs it.  (Found by
   the crash matrix's random SIGKILLs.)  The parent's pid is taken before
   the fork; a parent that died before prctl took effect is caught by
   comparing getppid. */
static pid_t spawn_parent;

static void
die_with_parent (gpointer data)
{
  (void) data;
  if (prctl (PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid () != spawn_parent)
    _exit (127);
}

/* VMSNAP_DEBUG_SPAWNS=FILE: every process vmsnap starts appends one line,
   "BASENAME FIRST-ARGUMENT", to FILE before it is started (so a tool that
   fails to start is counted too).  This is how tests count the processes a
   command starts (tests/integration/read-once.sh: the count must not grow
   with the chain) without strace and without timing: a command's lines are
   all written when it exits.  One open and one write(2) of the whole line
   per process, O_APPEND, so lines from concurrent vmsnap runs do not mix;
   O_CLOEXEC so the tool does not inherit it; 0600 like all our files.
   Every way the library starts a process (vmsnap_run, vmsnap_run_progress)
   calls this right before it, and a new one must too (read-once.sh fails
   on a spawn call outside this file).  Hooks of the exec-hooks plugin are
   the user's programs and are not counted.  Unset or empty: nothing is
   done beyond the getenv. */
void
vmsnap_note_spawn (const char *const *argv)
{
  static gboolean warned;
  const char *path = g_getenv ("VMSNAP_DEBUG_SPAWNS");
  g_autofree char *base = NULL;
  g_autoptr (GString) line = NULL;
  int fd, e = 0;

  if (path == NULL || *path == '\0' || argv == NULL || argv[0] == NULL)
    return;
  base = g_path_get_basename (argv[0]);
  line = g_string_new (base);
  if (argv[1] != NULL) {
    g_string_append_c (line, ' ');
    g_string_append (line, argv[1]);
  }
  /* One process, one line, whatever the argument holds. */
  for (gsize i = 0; i < line->len; i++)
    if ((unsigned char) line->str[i] < 0x20)
      line->str[i] = '?';
  g_string_append_c (line, '\n');

  fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0)
    e = errno;
  else {
    ssize_t n = write (fd, line->str, line->len);
    if (n < 0)
      e = errno;
    else if ((gsize) n != line->len)
      e = EIO;
    if (close (fd) != 0 && e == 0)
      e = errno;
  }
  /* Say it once: a count that silently stays at 0 would pass a test. */
  if (e != 0 && !warned) {
    warned = TRUE;
    g_printerr ("vmsnap: warning: VMSNAP_DEBUG_SPAWNS=%s: cannot append: %s\n",
                path, g_strerror (e));
  }
}

static gboolean
run_sync (const char *const *argv, gboolean tied, char **out, GError **err)
{
  g_autofree char *sout = NULL;
  g_autofree char *serr = NULL;
  g_autoptr (GError) local = NULL;
  int status = 0;

  /* No shell: argv is exec'd directly.  LC_ALL=C keeps messages parseable. */
  g_auto (GStrv) envp = g_get_environ ();
  envp = g_environ_setenv (envp, "LC_ALL", "C", TRUE);
  spawn_parent = getpid ();
  vmsnap_note_spawn (argv);
  if (!g_spawn_sync (NULL, (char **) argv, envp, G_SPAWN_DEFAULT,
                     tied ? die_with_parent : NULL, NULL, &sout, &serr,
                     &status, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot run %s: %s",
                 argv[0], local->message);
    return FALSE;
  }
  if (!g_spawn_check_wait_status (status, &local)) {
    g_strstrip (serr);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s failed: %s",
                 argv[0], *serr ? serr : local->message);
    return FALSE;
  }
  if (out)
    *out = g_steal_pointer (&sout);
  return TRUE;
}

gboolean
vmsnap_run (const char *const *argv, char **out, GError **err)
{
  return run_sync (argv, TRUE, out, err);
}

/* A short tool that only reads (qemu-img info): no child-setup hook, so
 * GLib can start it without running code of ours between fork and exec
 * (posix_spawn where it can), which is cheaper for a large parent.  Such
 * a tool outliving a killed vmsnap writes nothing. */
gboolean
vmsnap_run_short (const char *const *argv, char **out, GError **err)
{
  return run_sync (argv, FALSE, out, err);
}

/* Is ARGV `qemu-img info ...` (which opens images read-only, -U or not)? */
gboolean
vmsnap_argv_reads_only (const char *const *argv)
{
  g_autofree char *base = NULL;

  if (argv == NULL || argv[0] == NULL || argv[1] == NULL)
    return FALSE;
  base = g_path_get_basename (argv[0]);
  return strcmp (base, "qemu-img") == 0 && strcmp (argv[1], "info") == 0;
}

/* A helper that must outlive a killed vmsnap (the window guard,
 * windowguard.c): no die_with_parent.  Its stdin and stdout are STDIN_FD
 * and STDOUT_FD (the caller closes its copies), stderr is ours, and GLib
 * closes every other descriptor in the child.  G_SPAWN_DO_NOT_REAP_CHILD:
 * the caller reaps the pid it gets with waitpid. */
GPid
vmsnap_spawn_untied (const char *const *argv, int stdin_fd, int stdout_fd,
                     GError **err)
{
  g_autoptr (GError) local = NULL;
  GPid pid = 0;

  vmsnap_note_spawn (argv);
  if (!g_spawn_async_with_fds (NULL, (char **) argv, NULL,
                               G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid,
                               stdin_fd, stdout_fd, -1, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot run %s: %s",
                 argv[0], local->message);
    return -1;
  }
  return pid;
}

gboolean
vmsnap_run_progress (const char *const *argv, gboolean show, GError **err)
{
  g_autoptr (GSubprocessLauncher) l =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_PIPE
                               | (show ? 0 : G_SUBPROCESS_FLAGS_STDOUT_SILENCE));
  g_autoptr (GSubprocess) p = NULL;
  g_autoptr (GError) local = NULL;
  g_autofree char *serr = NULL;

  g_subprocess_launcher_setenv (l, "LC_ALL", "C", TRUE);
  spawn_parent = getpid ();
  g_subprocess_launcher_set_child_setup (l, die_with_parent, NULL, NULL);
  if (show) {
    /* The tool's progress (stdout) goes to our stderr: stdout may be JSON. */
    int fd = dup (STDERR_FILENO);
    if (fd >= 0)
      g_subprocess_launcher_take_stdout_fd (l, fd);
  }
  vmsnap_note_spawn (argv);
  p = g_subprocess_launcher_spawnv (l, argv, &local);
  if (p == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot run %s: %s",
                 argv[0], local->message);
    return FALSE;
  }
  if (!g_subprocess_communicate_utf8 (p, NULL, NULL, NULL, &serr, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s: %s", argv[0],
                 local->message);
    return FALSE;
  }
  if (show)
    fputc ('\n', stderr);
  if (!g_subprocess_get_successful (p)) {
    if (serr)
      g_strstrip (serr);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s failed: %s", argv[0],
                 serr && *serr ? serr : "no message (exit status)");
    return FALSE;
  }
  return TRUE;
}
