/* The window guard, library side (doc/architecture.md "The window guard").
 *
 * A vmsnap killed while it holds a running VM paused (the pause window of
 * a create) used to leave the VM paused until `vmsnap recover`.  Around
 * the window libvmsnap now runs tools/vmsnap-window-guard, a small process
 * that is not tied to ours (no parent-death signal, signals ignored, its
 * own session): it connects to libvirt, says "ready", and waits on its
 * stdin.  Our end of that stdin is a socket only this process holds
 * (close-on-exec), so the guard sees its EOF when we end, however we end.
 * "done\n" before the EOF means the window closed normally; an EOF without
 * it means we died inside the window, and the guard resumes the VM.
 *
 * stdin is a socket rather than a pipe so that "done" can be sent with
 * MSG_NOSIGNAL: a guard that died (someone SIGKILLed it) must not turn
 * our write into a SIGPIPE that kills vmsnap right after the window. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "internal.h"

#define WINDOW_GUARD_PROGRAM "vmsnap-window-guard"
/* The guard connects to libvirt before it says ready: a loaded host may
 * take a while, a guard that never answers is a bug (or the wrong
 * program in VMSNAP_WINDOW_GUARD). */
#define WINDOW_GUARD_READY_MS 10000

struct vmsnap_window_guard {
  GPid pid;
  int fd;   /* our end of the guard's stdin (a socket) */
};

/* $VMSNAP_WINDOW_GUARD; else, for a program run from the build tree (as
 * the loader does for modules: the benches and demos run vmsnap there),
 * the build tree's guard; else the installed one. */
char *
vmsnap_window_guard_path (void)
{
  const char *env = g_getenv ("VMSNAP_WINDOW_GUARD");
  g_autofree char *exe = NULL;

  if (env != NULL && *env != '\0')
    return g_strdup (env);
  exe = g_file_read_link ("/proc/self/exe", NULL);
  if (exe != NULL && g_str_has_prefix (exe, VMSNAP_ABS_BUILDDIR "/")) {
    char *built = g_build_filename (VMSNAP_ABS_BUILDDIR, "tools",
                                    WINDOW_GUARD_PROGRAM, NULL);
    if (g_file_test (built, G_FILE_TEST_IS_EXECUTABLE))
      return built;
    g_free (built);
  }
  return g_build_filename (VMSNAP_WINDOW_GUARD_DIR, WINDOW_GUARD_PROGRAM, NULL);
}

GPid
vmsnap_window_guard_pid (const vmsnap_window_guard *g)
{
  return g ? g->pid : 0;
}

static int
reap (GPid pid)
{
  int status = 0;

  while (waitpid (pid, &status, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  return status;
}

/* poll FD for EVENTS until DEADLINE: TRUE if they came. */
static gboolean
poll_until (int fd, short events, gint64 deadline)
{
  for (;;) {
    gint64 left = (deadline - g_get_monotonic_time ()) / 1000;
    struct pollfd p = { .fd = fd, .events = events };
    int r;

    if (left <= 0)
      return FALSE;
    r = poll (&p, 1, (int) MIN (left + 1, G_MAXINT));
    if (r < 0 && errno == EINTR)
      continue;
    return r > 0;
  }
}

/* Does the guard, which closed its stdout, exit before DEADLINE?  Its
 * stdin (the socket SOCK's peer) closing says it has no descriptor left:
 * it is exiting, and waitpid returns soon.  (A program that closed both
 * and went on would block that waitpid: not the guard.) */
static gboolean
exits_before (int sock, gint64 deadline)
{
  return poll_until (sock, POLLIN | POLLHUP | POLLRDHUP, deadline);
}

/* End a guard that did not say ready, and say how it ended: "exited with
 * status 1" (a guard that gave up says why on stderr and exits: given
 * until DEADLINE), "was killed" (by us).  No zombie is left. */
static char *
end_and_describe (GPid pid, int sock, gint64 deadline)
{
  gboolean killed = FALSE;
  int status;

  if (!exits_before (sock, deadline)) {
    kill (pid, SIGKILL);
    killed = TRUE;
  }
  status = reap (pid);
  if (status < 0)
    return g_strdup ("could not be waited for");
  if (WIFEXITED (status))
    return g_strdup_printf ("exited with status %d", WEXITSTATUS (status));
  if (WIFSIGNALED (status) && killed && WTERMSIG (status) == SIGKILL)
    return g_strdup ("was killed");
  if (WIFSIGNALED (status))
    return g_strdup_printf ("was killed by signal %d", WTERMSIG (status));
  return g_strdup_printf ("ended with wait status %d", status);
}

/* Read the guard's stdout (FD) to EOF (*EOF set) within DEADLINE: it
 * must be exactly "ready\n".  NULL when it is, else what went wrong. */
static char *
wait_ready (int fd, gint64 deadline, gboolean *eof)
{
  static const char ready[] = "ready\n";
  char buf[64];
  size_t got = 0;

  for (;;) {
    gint64 left = (deadline - g_get_monotonic_time ()) / 1000;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t n;
    int r;

    if (left <= 0)
      return g_strdup_printf ("did not say it was ready within %d s",
                              WINDOW_GUARD_READY_MS / 1000);
    r = poll (&p, 1, (int) MIN (left + 1, G_MAXINT));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return g_strdup_printf ("poll: %s", g_strerror (errno));
    if (r == 0)
      continue;
    n = read (fd, buf + got, sizeof buf - got);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return g_strdup_printf ("cannot read its output: %s", g_strerror (errno));
    if (n == 0) {
      *eof = TRUE;
      break;
    }
    got += (size_t) n;
    if (got == sizeof buf)
      break;
  }
  if (got == sizeof ready - 1 && memcmp (buf, ready, got) == 0)
    return NULL;
  if (got == 0)
    return g_strdup ("closed its output without saying it was ready");
  {
    g_autofree char *said = g_strndup (buf, got);
    g_autofree char *shown = vmsnap_printable (g_strchomp (said));
    return g_strdup_printf ("answered '%s'%s instead of 'ready'", shown,
                            got == sizeof buf ? "..." : "");
  }
}

vmsnap_window_guard *
vmsnap_window_guard_start (const char *uri, const char *uuid, GError **err)
{
  g_autofree char *path = vmsnap_window_guard_path ();
  g_autofree char *why = NULL;
  char ppid[32];
  const char *argv[5];
  int sv[2], out[2];
  vmsnap_window_guard *g;
  gint64 deadline;
  gboolean eof = FALSE;
  GPid pid;

  g_return_val_if_fail (uri != NULL && uuid != NULL, NULL);
  g_snprintf (ppid, sizeof ppid, "%ld", (long) getpid ());
  argv[0] = path;
  argv[1] = uri;
  argv[2] = uuid;
  argv[3] = ppid;
  argv[4] = NULL;

  /* Close-on-exec from the start: another thread's child must not keep
   * the guard's stdin open after we die. */
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot start the window guard %s: socketpair: %s", path,
                 g_strerror (errno));
    return NULL;
  }
  if (pipe2 (out, O_CLOEXEC) != 0) {
    int e = errno;
    close (sv[0]);
    close (sv[1]);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot start the window guard %s: pipe: %s", path,
                 g_strerror (e));
    return NULL;
  }
  {
    g_autoptr (GError) local = NULL;
    pid = vmsnap_spawn_untied (argv, sv[1], out[1], &local);
    close (sv[1]);
    close (out[1]);
    if (pid < 0) {
      close (sv[0]);
      close (out[0]);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "cannot start the window guard (it resumes the VM if "
                   "vmsnap dies while the VM is paused): %s (set "
                   "VMSNAP_WINDOW_GUARD to its path if it is elsewhere)",
                   local->message);
      return NULL;
    }
  }
  deadline = g_get_monotonic_time () + WINDOW_GUARD_READY_MS * G_GINT64_CONSTANT (1000);
  why = wait_ready (out[0], deadline, &eof);
  close (out[0]);
  if (why != NULL) {
    /* Its output ended: it is exiting, give it until the deadline to
     * say how.  Still talking, or silent: end it now. */
    g_autofree char *end = end_and_describe (pid, sv[0], eof ? deadline : 0);
    close (sv[0]);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "the window guard %s (it resumes the VM if vmsnap dies "
                 "while the VM is paused) %s, and %s (its own message, if "
                 "any, is above)", path, why, end);
    return NULL;
  }
  g = g_new0 (vmsnap_window_guard, 1);
  g->pid = pid;
  g->fd = sv[0];
  return g;
}

void
vmsnap_window_guard_done (vmsnap_window_guard *g)
{
  static const char done[] = "done\n";

  if (g == NULL)
    return;
  /* 5 bytes into an empty socket buffer: one send.  If the guard is gone
   * (killed by someone), there is nothing left to tell it. */
  while (send (g->fd, done, sizeof done - 1, MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
  /* The EOF now, even if a child another thread is starting still holds
   * a copy of the descriptor until its exec. */
  shutdown (g->fd, SHUT_WR);
  close (g->fd);
  reap (g->pid);
  g_free (g);
}

void
vmsnap_window_guard_abandon (vmsnap_window_guard *g)
{
  if (g == NULL)
    return;
  /* No "done": the guard resumes the VM if it is still paused. */
  shutdown (g->fd, SHUT_WR);
  close (g->fd);
  reap (g->pid);
  g_free (g);
}
