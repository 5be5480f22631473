/* exec-hooks: the user's executables before and after each operation.
 *
 * Every regular, executable file in vmsnap.hooks-dir (default
 * $(sysconfdir)/vmsnap/hooks.d) whose name is [A-Za-z0-9_.-] and does not
 * end in "~", ".dpkg-*" or ".disabled" is run, in name order, for the
 * "before" and "after" phase of create, revert, delete and merge:
 *
 *   HOOK PHASE OPERATION DOMAIN SNAPSHOT      (SNAPSHOT "" for merge)
 *
 * exec'd directly (no shell), in its own process group, with the
 * operation's JSON description on stdin, stdout and stderr captured, no
 * other file descriptor inherited (vmsnap's lock stays ours), and killed
 * (the whole group) after vmsnap.hook-timeout seconds.  A failing or
 * killed "before" hook aborts the operation before anything changed; an
 * "after" hook's failure is a warning.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmsnap/plugin.h>

#define OUTPUT_MAX 65536

static gboolean
hook_name_ok (const char *n)
{
  if (n[0] == '.' || g_str_has_suffix (n, "~") || strstr (n, ".dpkg-")
      || g_str_has_suffix (n, ".disabled"))
    return FALSE;
  for (const char *p = n; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-' && *p != '.')
      return FALSE;
  return TRUE;
}

static gint
cmp_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
child_setup (gpointer data G_GNUC_UNUSED)
{
  setpgid (0, 0);
}

/* The last line of OUT that says something (for messages). */
static char *
tail_line (const char *out)
{
  g_auto (GStrv) lines = g_strsplit (out ? out : "", "\n", -1);
  for (int i = (int) g_strv_length (lines) - 1; i >= 0; i--) {
    g_strstrip (lines[i]);
    if (*lines[i])
      return g_strdup (lines[i]);
  }
  return g_strdup ("(no output)");
}

/* Run one hook; 0 or -1 with *err. */
static int
run_hook (const char *path, const vmsnap_hook_event *ev, const char *phase,
          gint64 timeout_s, GError **err)
{
  const char *argv[] = { path, phase, ev->operation, ev->domain,
                         ev->snapshot ? ev->snapshot : "", NULL };
  GPid pid;
  int in_fd = -1, out_fd = -1, err_fd = -1, status = 0;
  GError *e = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GString) errout = g_string_new (NULL);
  gint64 deadline = g_get_monotonic_time () + timeout_s * G_USEC_PER_SEC;
  const char *json = ev->json ? ev->json : "{}";
  size_t json_len = strlen (json), written = 0;
  gboolean killed = FALSE;
  sigset_t pipe_set, old_set;

  if (!g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                 G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL,
                                 &pid, &in_fd, &out_fd, &err_fd, &e)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "hook %s (%s %s): cannot run it: %s", path, phase, ev->operation,
                 e->message);
    g_error_free (e);
    return -1;
  }
  fcntl (in_fd, F_SETFL, fcntl (in_fd, F_GETFL) | O_NONBLOCK);
  /* A hook that exits without reading its stdin must not kill us with
   * SIGPIPE: block it while we write, drop a pending one afterwards. */
  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old_set);
  for (;;) {
    struct pollfd p[3];
    int n = 0, rc;
    gint64 left = deadline - g_get_monotonic_time ();
    if (left <= 0) {
      kill (-pid, SIGKILL);
      kill (pid, SIGKILL);
      killed = TRUE;
      break;
    }
    if (out_fd >= 0)
      p[n++] = (struct pollfd) { .fd = out_fd, .events = POLLIN };
    if (err_fd >= 0)
      p[n++] = (struct pollfd) { .fd = err_fd, .events = POLLIN };
    if (in_fd >= 0)
      p[n++] = (struct pollfd) { .fd = in_fd, .events = POLLOUT };
    if (n == 0)
      break;
    rc = poll (p, n, (int) MIN (left / 1000 + 1, 1000));
    if (rc < 0 && errno != EINTR)
      break;
    for (int i = 0; i < n; i++) {
      if (p[i].fd == in_fd && (p[i].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t w = write (in_fd, json + written, json_len - written);
        if (w > 0)
          written += (size_t) w;
        if (w < 0 && errno != EAGAIN && errno != EINTR)
          written = json_len;   /* the hook closed its stdin: fine */
        if (written >= json_len) {
          close (in_fd);
          in_fd = -1;
        }
      } else if ((p[i].fd == out_fd || p[i].fd == err_fd)
                 && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[4096];
        int *fdp = p[i].fd == out_fd ? &out_fd : &err_fd;
        GString *to = p[i].fd == out_fd ? out : errout;
        ssize_t r = read (*fdp, buf, sizeof buf);
        if (r > 0) {
          if (to->len < OUTPUT_MAX)
            g_string_append_len (to, buf, MIN ((gsize) r, OUTPUT_MAX - to->len));
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          close (*fdp);
          *fdp = -1;
        }
      }
    }
  }
  if (in_fd >= 0)
    close (in_fd);
  {
    struct timespec zero = { 0, 0 };
    sigset_t pending;
    sigpending (&pending);
    if (sigismember (&pending, SIGPIPE) && !sigismember (&old_set, SIGPIPE))
      sigtimedwait (&pipe_set, NULL, &zero);
    pthread_sigmask (SIG_SETMASK, &old_set, NULL);
  }
  if (out_fd >= 0)
    close (out_fd);
  if (err_fd >= 0)
    close (err_fd);
  /* The output is closed: wait for the process within what is left. */
  while (!killed) {
    pid_t w = waitpid (pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (g_get_monotonic_time () >= deadline) {
      kill (-pid, SIGKILL);
      kill (pid, SIGKILL);
      killed = TRUE;
      break;
    }
    g_usleep (10000);
  }
  if (killed)
    waitpid (pid, &status, 0);
  g_spawn_close_pid (pid);
  if (killed) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "hook %s (%s %s) did not finish within %" G_GINT64_FORMAT
                 " s (vmsnap.hook-timeout) and was killed", path, phase,
                 ev->operation, timeout_s);
    return -1;
  }
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    g_autofree char *last = tail_line (errout->len ? errout->str : out->str);
    g_autofree char *how = WIFEXITED (status)
      ? g_strdup_printf ("exited %d", WEXITSTATUS (status))
      : g_strdup_printf ("was killed by signal %d", WIFSIGNALED (status) ? WTERMSIG (status) : 0);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "hook %s (%s %s) %s: %s", path, phase, ev->operation, how, last);
    return -1;
  }
  return 0;
}

static int
exec_hooks_hook (const vmsnap_hook_event *ev, GError **err)
{
  const char *phase;
  const char *dir = vmsnap_option_get (ev->config, "vmsnap.hooks-dir");
  gint64 timeout = vmsnap_option_get_int (ev->config, "vmsnap.hook-timeout");
  g_autoptr (GDir) d = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *ent;

  if (ev->phase == VMSNAP_HOOK_BEFORE)
    phase = "before";
  else if (ev->phase == VMSNAP_HOOK_AFTER)
    phase = "after";
  else
    return 0;
  if (dir == NULL || *dir == '\0' || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    return 0;
  d = g_dir_open (dir, 0, NULL);
  while (d && (ent = g_dir_read_name (d)) != NULL)
    if (hook_name_ok (ent))
      g_ptr_array_add (names, g_strdup (ent));
  g_ptr_array_sort (names, cmp_names);
  for (guint i = 0; i < names->len; i++) {
    g_autofree char *path = g_build_filename (dir, names->pdata[i], NULL);
    struct stat st;
    if (stat (path, &st) != 0 || !S_ISREG (st.st_mode) || access (path, X_OK) != 0)
      continue;
    if (run_hook (path, ev, phase, timeout > 0 ? timeout : 30, err) != 0) {
      if (ev->phase == VMSNAP_HOOK_BEFORE)
        g_prefix_error (err, "exec-hooks: ");
      return -1;
    }
    if (ev->messages)
      g_ptr_array_add (ev->messages, g_strdup_printf ("hook %s (%s %s): ok", path, phase,
                                                      ev->operation));
  }
  return 0;
}

static vmsnap_plugin exec_hooks = {
  .name = "exec-hooks",
  .version = PACKAGE_VERSION,
  .description = "the user's executables in vmsnap.hooks-dir before and after each operation",
  .hook = exec_hooks_hook,
};

VMSNAP_REGISTER_PLUGIN (exec_hooks)
