/* Durable files: write to a temp file (0600), fsync, rename over, fsync the
 * directory.  Used for the catalog, the journal and domain XML files.
 *
 * The state directory (issue 16, item 10; doc/security.md): it must be ours
 * (the effective uid) and private, and so must every directory above it be
 * safe from other users, before vmsnap keeps a lock, a catalog or a journal
 * in it.  Every file in it is opened relative to a directory descriptor,
 * never through a symbolic link (O_NOFOLLOW), and a file vmsnap creates is
 * created, never reused (O_EXCL): a name another user planted is an error,
 * not a target. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* open(2) the directory of PATH; *BASE gets the last component. */
static int
open_parent (const char *path, char **base, GError **err)
{
  g_autofree char *dir = g_path_get_dirname (path);
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot open directory %s: %s",
                 dir, g_strerror (errno));
    return -1;
  }
  *base = g_path_get_basename (path);
  return fd;
}

/* Create a new file next to BASE in directory DFD: a random name, O_EXCL,
 * never through a symbolic link.  *TMP gets its name. */
static int
create_temp (int dfd, const char *base, int mode, char **tmp)
{
  for (int tries = 0; tries < 100; tries++) {
    int fd;
    g_free (*tmp);
    *tmp = g_strdup_printf (".%s.tmp-%08x%08x", base, g_random_int (), g_random_int ());
    fd = openat (dfd, *tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  errno = EEXIST;
  return -1;
}

gboolean
vmsnap_write_atomic_as (const char *path, const char *data, size_t len, int mode,
                        const struct stat *owner, GError **err)
{
  g_autofree char *base = NULL, *tmp = NULL;
  int dfd = open_parent (path, &base, err);
  int fd, e;
  size_t off = 0;
  const char *what = "write";

  if (dfd < 0)
    return FALSE;
  fd = create_temp (dfd, base, mode, &tmp);
  if (fd < 0) {
    e = errno;
    close (dfd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot create a temporary "
                 "file next to %s: %s", path, g_strerror (e));
    return FALSE;
  }
  /* The mode asked for, not what the umask leaves of it; the owner of the
   * file replaced (a domain XML file rewritten by root stays its owner's). */
  if (fchmod (fd, mode) != 0
      || (owner && fchown (fd, owner->st_uid, owner->st_gid) != 0)) {
    what = owner ? "keep the owner and mode of" : "set the mode of";
    goto fail;
  }
  while (off < len) {
    ssize_t n = write (fd, data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      goto fail;
    }
    off += (size_t) n;
  }
  if (fsync (fd) != 0)
    goto fail;
  if (close (fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (renameat (dfd, tmp, dfd, base) != 0) {
    what = "replace";
    goto fail;
  }
  if (fsync (dfd) != 0) {
    e = errno;
    close (dfd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot sync the directory "
                 "of %s: %s", path, g_strerror (e));
    return FALSE;
  }
  close (dfd);
  return TRUE;

 fail:
  e = errno;
  if (fd >= 0)
    close (fd);
  unlinkat (dfd, tmp, 0);
  close (dfd);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot %s %s: %s", what, path,
               g_strerror (e));
  return FALSE;
}

gboolean
vmsnap_write_atomic (const char *path, const char *data, size_t len, int mode,
                     GError **err)
{
  return vmsnap_write_atomic_as (path, data, len, mode, NULL, err);
}

/* Read the state file PATH: a regular file, never through a symbolic
 * link, at most MAX bytes.  FALSE with errno ENOENT (and no error set) if
 * it does not exist. */
gboolean
vmsnap_read_state_file (const char *path, size_t max, char **data, size_t *len,
                        GError **err)
{
  g_autofree char *base = NULL, *dir = g_path_get_dirname (path);
  g_autoptr (GString) buf = NULL;
  struct stat st;
  int dfd, fd, e;

  if (!g_file_test (dir, G_FILE_TEST_EXISTS)) {
    errno = ENOENT;   /* no state directory yet: no file either */
    return FALSE;
  }
  if ((dfd = open_parent (path, &base, err)) < 0)
    return FALSE;
  fd = openat (dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  e = errno;
  close (dfd);
  if (fd < 0 && e == ENOENT) {
    errno = ENOENT;
    return FALSE;
  }
  if (fd < 0 || fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    if (fd >= 0)
      close (fd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "%s is %s: vmsnap only ever writes regular files there, so "
                 "someone else put it there; look at it and remove it", path,
                 fd < 0 && e == ELOOP ? "a symbolic link"
                 : fd < 0 ? g_strerror (e) : "not a regular file");
    errno = EINVAL;
    return FALSE;
  }
  if (st.st_uid != geteuid ()) {
    close (fd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "%s belongs to uid %u, not to this vmsnap (uid %u): vmsnap "
                 "never trusts a state file someone else wrote; look at it and "
                 "remove it", path, (unsigned) st.st_uid, (unsigned) geteuid ());
    errno = EPERM;
    return FALSE;
  }
  if ((size_t) st.st_size > max) {
    close (fd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "%s is larger than %zu bytes: not written by vmsnap", path, max);
    errno = EFBIG;
    return FALSE;
  }
  buf = g_string_sized_new ((gsize) st.st_size + 1);
  for (;;) {
    char chunk[65536];
    ssize_t n = read (fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      e = errno;
      close (fd);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s", path,
                   g_strerror (e));
      errno = e;
      return FALSE;
    }
    if (n == 0)
      break;
    if (buf->len + (size_t) n > max) {
      close (fd);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "%s is larger than %zu bytes: not written by vmsnap", path, max);
      errno = EFBIG;
      return FALSE;
    }
    g_string_append_len (buf, chunk, n);
  }
  close (fd);
  *len = buf->len;
  *data = g_string_free (g_steal_pointer (&buf), FALSE);
  return TRUE;
}

/* Is directory ST safe from other users: ours (or root's, for the
 * directories above the state directory) and writable by nobody else (a
 * sticky directory, like /tmp, is safe for what it holds of ours)? */
static const char *
dir_unsafe (const struct stat *st, gboolean may_be_roots, gboolean may_be_sticky)
{
  if (!S_ISDIR (st->st_mode))
    return "not a directory";
  if (st->st_uid != geteuid () && !(may_be_roots && st->st_uid == 0))
    return "owned by another user";
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(may_be_sticky && (st->st_mode & S_ISVTX)))
    return "writable by other users";
  return NULL;
}

static void
refuse_dir (const char *path, const struct stat *st, const char *why, const char *inside,
            GError **err)
{
  g_autofree char *user = g_strdup_printf ("%u:", (unsigned) geteuid ());
  const char *owner = geteuid () == 0 ? "root:" : user;

  if (inside)
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "state directory %s is inside directory %s, which is %s (owner "
                 "uid %u, mode %04o): another user could replace the state "
                 "directory with their own; make %s root's or yours and not "
                 "writable by others (chown %s %s && chmod go-w %s), or use "
                 "another --state-dir; nothing was changed", inside, path, why,
                 (unsigned) st->st_uid, (unsigned) (st->st_mode & 07777), path,
                 owner, path, path);
  else
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "state directory %s is %s (owner uid %u, mode %04o): another "
                 "user could plant files vmsnap would trust, or replace it; "
                 "make it yours and private (chown %s %s && chmod 0700 %s), or "
                 "use another --state-dir; nothing was changed", path, why,
                 (unsigned) st->st_uid, (unsigned) (st->st_mode & 07777), owner,
                 path, path);
}

/* Every directory of REAL (resolved) up to its last component (with it if
 * INCLUSIVE): root's or ours, not writable by others unless sticky (a
 * sticky /tmp cannot have our entries renamed by others).  STATE names the
 * state directory in messages. */
static gboolean
check_above (const char *real, gboolean inclusive, const char *state, GError **err)
{
  size_t n = strlen (real);

  for (size_t i = 0; i <= n; i++) {
    g_autofree char *up = NULL;
    const char *why;
    struct stat st;
    if (i < n ? real[i] != '/' : !inclusive)
      continue;
    up = i == 0 ? g_strdup ("/") : g_strndup (real, i);
    if (lstat (up, &st) != 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot check %s: %s", up,
                   g_strerror (errno));
      return FALSE;
    }
    if ((why = dir_unsafe (&st, TRUE, TRUE)) != NULL) {
      refuse_dir (up, &st, why, state, err);
      return FALSE;
    }
  }
  return TRUE;
}

/* Open (making it, mode 0700, if missing) ROOT/UUID, the state directory
 * of one domain, after checking that it and ROOT are ours and private and
 * that no directory above ROOT can be changed by another user (checked
 * before a missing ROOT is made in it).  *DIR gets its path (ROOT
 * resolved), the result is an O_DIRECTORY descriptor. */
int
vmsnap_state_dir_open (const char *root, const char *uuid, char **dir, GError **err)
{
  g_autofree char *real = NULL;
  struct stat st;
  int rfd, fd;

  if (!g_file_test (root, G_FILE_TEST_EXISTS)) {
    g_autofree char *up = g_canonicalize_filename (root, NULL);
    g_autofree char *real_up = NULL;
    do {
      char *next = g_path_get_dirname (up);
      g_free (up);
      up = next;
    } while (!g_file_test (up, G_FILE_TEST_EXISTS) && strcmp (up, "/") != 0);
    real_up = realpath (up, NULL);
    if (real_up && !check_above (real_up, TRUE, root, err))
      return -1;
  }
  if (g_mkdir_with_parents (root, 0700) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot create state directory %s: %s (use --state-dir or "
                 "VMSNAP_STATE_DIR)", root, g_strerror (errno));
    return -1;
  }
  real = realpath (root, NULL);
  if (real == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot resolve state "
                 "directory %s: %s", root, g_strerror (errno));
    return -1;
  }
  if (!check_above (real, FALSE, real, err))
    return -1;
  rfd = open (real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (rfd < 0 || fstat (rfd, &st) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot open state "
                 "directory %s: %s", real, g_strerror (errno));
    if (rfd >= 0)
      close (rfd);
    return -1;
  }
  if (dir_unsafe (&st, FALSE, FALSE)) {
    refuse_dir (real, &st, dir_unsafe (&st, FALSE, FALSE), NULL, err);
    close (rfd);
    return -1;
  }
  *dir = g_build_filename (real, uuid, NULL);
  if (mkdirat (rfd, uuid, 0700) != 0 && errno != EEXIST) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot create state "
                 "directory %s: %s", *dir, g_strerror (errno));
    close (rfd);
    return -1;
  }
  fd = openat (rfd, uuid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  close (rfd);
  if (fd < 0 || fstat (fd, &st) != 0) {
    int e = errno;
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "cannot open state "
                 "directory %s: %s%s", *dir, g_strerror (e),
                 e == ELOOP || e == ENOTDIR ? " (it is not a directory: someone "
                 "else put it there; look at it and remove it)" : "");
    if (fd >= 0)
      close (fd);
    return -1;
  }
  if (dir_unsafe (&st, FALSE, FALSE)) {
    refuse_dir (*dir, &st, dir_unsafe (&st, FALSE, FALSE), NULL, err);
    close (fd);
    return -1;
  }
  return fd;
}

/* S as it can be shown in a message: valid UTF-8, every control character
 * as \xNN.  A damaged journal or catalog is shown, never echoed raw to a
 * terminal. */
char *
vmsnap_printable (const char *s)
{
  g_autofree char *valid = g_utf8_make_valid (s ? s : "", -1);
  GString *out = g_string_new (NULL);

  for (const char *p = valid; *p; p = g_utf8_next_char (p)) {
    gunichar ch = g_utf8_get_char (p);
    if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && ch < 0xa0))
      g_string_append_printf (out, "\\x%02x", (unsigned) ch);
    else
      g_string_append_unichar (out, ch);
  }
  return g_string_free (out, FALSE);
}
