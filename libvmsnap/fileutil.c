/* Durable files: write to a temp file (0600), fsync, rename over, fsync the
 * directory.  Used for the catalog, the journal and domain XML files. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static gboolean
fsync_dir (const char *path, GError **err)
{
  g_autofree char *dir = g_path_get_dirname (path);
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0 || fsync (fd) != 0) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot sync directory %s: %s",
                 dir, g_strerror (e));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

gboolean
vmsnap_write_atomic (const char *path, const char *data, size_t len, int mode,
                     GError **err)
{
  g_autofree char *tmp = g_strdup_printf ("%s.tmp.%d", path, (int) getpid ());
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  size_t off = 0;

  if (fd < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot create %s: %s",
                 tmp, g_strerror (errno));
    return FALSE;
  }
  fchmod (fd, mode);
  while (off < len) {
    ssize_t n = write (fd, data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close (fd);
      unlink (tmp);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot write %s: %s",
                   tmp, g_strerror (e));
      return FALSE;
    }
    off += (size_t) n;
  }
  if (fsync (fd) != 0 || close (fd) != 0) {
    int e = errno;
    unlink (tmp);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot write %s: %s",
                 tmp, g_strerror (e));
    return FALSE;
  }
  if (rename (tmp, path) != 0) {
    int e = errno;
    unlink (tmp);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot rename %s to %s: %s",
                 tmp, path, g_strerror (e));
    return FALSE;
  }
  return fsync_dir (path, err);
}

gboolean
vmsnap_mkdir_private (const char *path, GError **err)
{
  if (g_mkdir_with_parents (path, 0700) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot create state directory %s: %s (use --state-dir or "
                 "VMSNAP_STATE_DIR)", path, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}
