/* vmsnap-window-guard URI DOMAIN_UUID PARENT_PID
 *
 * The window guard (doc/architecture.md "The window guard"): libvmsnap
 * starts it right before it pauses a running VM for a snapshot and tells
 * it "done" right after it resumed the VM.  If vmsnap dies in between
 * (SIGKILL, a crash, a Ctrl-C), its end of our stdin closes without
 * "done": we resume the VM, so that a killed vmsnap does not leave the
 * guest frozen until `vmsnap recover` (which still has its journal to
 * finish or roll back).
 *
 * Protocol (libvmsnap/windowguard.c): connect to URI, look the domain up,
 * write "ready\n" and close stdout; read stdin to EOF; exactly "done\n"
 * means nothing to do.  Exit 0: done, resumed or not paused; 1: failure
 * (message on stderr); 2: usage.
 *
 * Deliberately tiny: no GLib, only libvirt, linked directly. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define PROG "vmsnap-window-guard"
/* How often a resume that timed out on libvirt's state change lock is
 * tried again: a job the dead vmsnap started (a memory state being saved)
 * may hold it for a while; libvirt waits ~30 s per attempt. */
#define RESUME_ATTEMPTS 10

static const char *parent_pid;

/* libvirt's default handler prints every error; we print ours once. */
static void
silent_virerror (void *opaque, virErrorPtr e)
{
  (void) opaque;
  (void) e;
}

static const char *
virt_message (void)
{
  const char *m = virGetLastErrorMessage ();
  return m && *m ? m : "unknown libvirt error";
}

static int
usage (const char *why)
{
  fprintf (stderr, PROG ": %s\n"
           "usage: " PROG " URI DOMAIN_UUID PARENT_PID\n"
           "(started by libvmsnap around a running VM's pause window; not "
           "meant to be run by hand)\n", why);
  return 2;
}

static int
valid_uuid (const char *s)
{
  size_t i;

  if (strlen (s) != VIR_UUID_STRING_BUFLEN - 1)
    return 0;
  for (i = 0; s[i]; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return 0;
    } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')
                 || (s[i] >= 'A' && s[i] <= 'F')))
      return 0;
  }
  return 1;
}

static int
valid_pid (const char *s)
{
  char *end;
  long v;

  if (*s < '1' || *s > '9')
    return 0;
  errno = 0;
  v = strtol (s, &end, 10);
  return errno == 0 && *end == '\0' && v > 0 && v <= 0x7fffffff;
}

static int
write_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t) n;
  }
  return 0;
}

/* Read stdin to its end: 1 if it held exactly "done\n", else 0 (EOF
 * without it: vmsnap died; a read error counts the same). */
static int
read_done (void)
{
  static const char want[] = "done\n";
  char buf[64];
  size_t total = 0;
  int same = 1;

  for (;;) {
    ssize_t n = read (STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return 0;
    if (n == 0)
      break;
    for (ssize_t i = 0; i < n; i++, total++)
      if (total >= sizeof want - 1 || buf[i] != want[total])
        same = 0;
  }
  return same && total == sizeof want - 1;
}

static virDomainPtr
connect_domain (const char *uri, const char *uuid, virConnectPtr *conn)
{
  virDomainPtr dom;

  *conn = virConnectOpen (uri);
  if (*conn == NULL) {
    fprintf (stderr, PROG ": cannot connect to libvirt at %s: %s\n", uri,
             virt_message ());
    return NULL;
  }
  dom = virDomainLookupByUUIDString (*conn, uuid);
  if (dom == NULL) {
    fprintf (stderr, PROG ": no domain %s on %s: %s\n", uuid, uri,
             virt_message ());
    virConnectClose (*conn);
    *conn = NULL;
  }
  return dom;
}

/* vmsnap ended without "done": resume DOM if it is paused.  The
 * connection may have gone stale while we waited (libvirtd restarted):
 * then connect once more. */
static int
resume (const char *uri, const char *uuid, virConnectPtr conn, virDomainPtr dom,
        const char *name)
{
  int st = 0, reason = 0, attempt;

  if (virDomainGetState (dom, &st, &reason, 0) < 0) {
    virDomainFree (dom);
    virConnectClose (conn);
    dom = connect_domain (uri, uuid, &conn);
    if (dom == NULL || virDomainGetState (dom, &st, &reason, 0) < 0) {
      fprintf (stderr, PROG ": vmsnap (pid %s) ended inside the pause window "
               "of domain %s: cannot read its state: %s; check it with "
               "'virsh domstate %s' and run 'vmsnap recover %s'\n", parent_pid,
               name, dom ? virt_message () : "no connection", name, name);
      if (dom) {
        virDomainFree (dom);
        virConnectClose (conn);
      }
      return 1;
    }
  }
  if (st != VIR_DOMAIN_PAUSED) {
    fprintf (stderr, PROG ": vmsnap (pid %s) ended inside the pause window "
             "of domain %s: the VM was not paused; run 'vmsnap recover %s'\n",
             parent_pid, name, name);
    virDomainFree (dom);
    virConnectClose (conn);
    return 0;
  }
  for (attempt = 1;; attempt++) {
    virErrorPtr e;
    if (virDomainResume (dom) == 0) {
      fprintf (stderr, PROG ": vmsnap (pid %s) ended inside the pause window "
               "of domain %s: resumed the VM; run 'vmsnap recover %s'\n",
               parent_pid, name, name);
      virDomainFree (dom);
      virConnectClose (conn);
      return 0;
    }
    e = virGetLastError ();
    if (attempt >= RESUME_ATTEMPTS || e == NULL
        || e->code != VIR_ERR_OPERATION_TIMEOUT)
      break;
  }
  fprintf (stderr, PROG ": vmsnap (pid %s) ended inside the pause window of "
           "domain %s: resuming the VM failed: %s; run 'virsh resume %s' and "
           "'vmsnap recover %s'\n", parent_pid, name, virt_message (), name,
           name);
  virDomainFree (dom);
  virConnectClose (conn);
  return 1;
}

int
main (int argc, char **argv)
{
  static const int ignored[] = { SIGINT, SIGHUP, SIGTERM, SIGQUIT, SIGPIPE };
  struct sigaction sa;
  virConnectPtr conn = NULL;
  virDomainPtr dom;
  const char *name;
  char *name_copy;
  int null_fd, rc;

  if (argc != 4)
    return usage ("expects 3 arguments");
  if (*argv[1] == '\0')
    return usage ("empty URI");
  if (!valid_uuid (argv[2]))
    return usage ("DOMAIN_UUID is not a UUID");
  if (!valid_pid (argv[3]))
    return usage ("PARENT_PID is not a process id");
  parent_pid = argv[3];

  /* A Ctrl-C (or a hang-up) that ends vmsnap's process group, or a kill
   * of the whole group, must leave the guard running: that is when it is
   * needed.  Only SIGKILL ends it (and the EOF of stdin). */
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigemptyset (&sa.sa_mask);
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
    if (sigaction (ignored[i], &sa, NULL) != 0) {
      fprintf (stderr, PROG ": sigaction: %s\n", strerror (errno));
      return 1;
    }
  (void) setsid ();   /* out of vmsnap's process group (kill -- -PGID) */

  virSetErrorFunc (NULL, silent_virerror);
  dom = connect_domain (argv[1], argv[2], &conn);
  if (dom == NULL)
    return 1;
  name = virDomainGetName (dom);
  name_copy = strdup (name ? name : argv[2]);
  if (name_copy == NULL) {
    fprintf (stderr, PROG ": out of memory\n");
    return 1;
  }

  /* "ready", then stdout closed: the parent reads to EOF.  /dev/null
   * takes fd 1 so that nothing opened later lands there. */
  if (write_all (STDOUT_FILENO, "ready\n", 6) != 0) {
    /* The parent is gone already: what follows is an EOF on stdin. */
  }
  null_fd = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2 (null_fd, STDOUT_FILENO) < 0)
    close (STDOUT_FILENO);
  if (null_fd > STDOUT_FILENO)
    close (null_fd);

  if (read_done ()) {
    virDomainFree (dom);
    virConnectClose (conn);
    free (name_copy);
    return 0;
  }
  rc = resume (argv[1], argv[2], conn, dom, name_copy);
  free (name_copy);
  return rc;
}
