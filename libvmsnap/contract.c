/* The core's side of the backend contract: probe results, operation
 * contexts and operation results, filled by backends through setters. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

vmsnap_probe_result *
vmsnap_probe_result_new (void)
{
  vmsnap_probe_result *r = g_new0 (vmsnap_probe_result, 1);

  r->limits = g_ptr_array_new_with_free_func (g_free);
  r->detail_keys = g_ptr_array_new_with_free_func (g_free);
  r->detail_values = g_ptr_array_new_with_free_func (g_free);
  return r;
}

const vmsnap_config *
vmsnap_probe_config (const vmsnap_probe_result *res)
{
  return res ? res->config : NULL;
}

const vmsnap_config *
vmsnap_op_config (const vmsnap_op *op)
{
  return op ? op->config : NULL;
}

void
vmsnap_probe_result_free (vmsnap_probe_result *r)
{
  if (r == NULL)
    return;
  g_free (r->reason);
  g_ptr_array_unref (r->limits);
  g_ptr_array_unref (r->detail_keys);
  g_ptr_array_unref (r->detail_values);
  g_free (r);
}

const char *
vmsnap_fitness_name (vmsnap_fitness f)
{
  switch (f) {
  case VMSNAP_FIT_CANNOT: return "cannot";
  case VMSNAP_FIT_CAN: return "can";
  case VMSNAP_FIT_PREFERRED: return "preferred";
  }
  return "cannot";
}

void
vmsnap_probe_set (vmsnap_probe_result *res, vmsnap_fitness fit, int score,
                  const char *fmt, ...)
{
  va_list ap;

  g_free (res->reason);
  va_start (ap, fmt);
  res->reason = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  res->fit = fit;
  res->score = fit == VMSNAP_FIT_CANNOT ? 0 : CLAMP (score, 0, 100);
  res->set = TRUE;
}

void
vmsnap_probe_set_class (vmsnap_probe_result *res, vmsnap_storage_class cls)
{
  res->cls = cls;
}

void
vmsnap_probe_add_limit (vmsnap_probe_result *res, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_ptr_array_add (res->limits, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

void
vmsnap_probe_add_detail (vmsnap_probe_result *res, const char *key,
                         const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_ptr_array_add (res->detail_keys, g_strdup (key));
  g_ptr_array_add (res->detail_values, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

/* ------------------------------------------------------------- journal */

/* The write-ahead journal of one VM operation: a GKeyFile rewritten
 * atomically (fsync'd) whenever what it holds must be on disk before the
 * next action (doc/architecture.md, "What must be on disk before each
 * step"); in between, records accumulate in memory (vmsnap_journal_put,
 * vmsnap_journal_note) and go out with the next write.  Group "op" holds
 * the operation and its arguments, group "core" the core's steps, group
 * "disk.TARGET" what a backend recorded for that disk (keys "s.KEY", done
 * steps in "done") and the result the core saved ("r.*"). */

static int crash_countdown = -1;   /* VMSNAP_TEST_CRASH_AFTER */

static void
crash_hook (void)
{
  if (crash_countdown < 0) {
    const char *e = g_getenv ("VMSNAP_TEST_CRASH_AFTER");
    crash_countdown = e && *e ? (int) g_ascii_strtoll (e, NULL, 10) : 0;
    if (crash_countdown <= 0)
      crash_countdown = 0;
  }
  if (crash_countdown > 0 && --crash_countdown == 0) {
    /* Test hook: die right after a journaled step, like a kill -9. */
    fprintf (stderr, "vmsnap: VMSNAP_TEST_CRASH_AFTER reached: exiting\n");
    _exit (99);
  }
}

vmsnap_journal *
vmsnap_journal_new (const char *path)
{
  vmsnap_journal *j = g_new0 (vmsnap_journal, 1);

  j->path = g_strdup (path);
  j->kf = g_key_file_new ();
  j->dirty = TRUE;   /* not on disk yet */
  j->strs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return j;
}

/* No value may end in a lone backslash: vmsnap (g_strescape, GKeyFile)
 * never writes one, and GLib reads one with a warning on stderr (its
 * string lists even overwrite their own GError).  Found by
 * tests/fuzz/fuzz-journal. */
static gboolean
values_complete (GKeyFile *kf, GError **err)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (char **g = groups; g && *g; g++) {
    g_auto (GStrv) keys = g_key_file_get_keys (kf, *g, NULL, NULL);
    for (char **k = keys; k && *k; k++) {
      g_autofree char *v = g_key_file_get_value (kf, *g, *k, NULL);
      size_t n = v ? strlen (v) : 0, bs = 0;
      while (bs < n && v[n - 1 - bs] == '\\')
        bs++;
      if (bs % 2 == 1) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "[%s] %s ends in a lone backslash (damaged)", *g, *k);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* The last line of every journal vmsnap writes: a checksum of all that
 * precedes it.  A journal cut short (a full disk, a file system that lost
 * its tail, a copy) or edited has none or a wrong one, and is refused:
 * replaying half an operation "recovered" into a catalog that no longer
 * matched the storage (issue 16, item 12). */
#define JOURNAL_END VMSNAP_JOURNAL_END
#define JOURNAL_MAX (64u * 1024 * 1024)

static gboolean G_GNUC_PRINTF (4, 5)
bad_journal_line (const char *path, guint line, GError **err, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "journal %s, line %u: %s; nothing was replayed. Check the "
               "domain's disks by hand (vmsnap check), then move the journal "
               "away", path, line, why);
  return FALSE;
}

/* The journal text DATA (LEN bytes): its end line present and right, every
 * line a group, a key=value, a comment or empty.  *BODY_LEN gets the length
 * without the end line. */
static gboolean
journal_text_ok (const char *path, const char *data, size_t len, size_t *body_len,
                 GError **err)
{
  guint lines = 0, line = 1;
  const char *end, *p;
  g_autofree char *sum = NULL;

  if (memchr (data, '\0', len))
    return bad_journal_line (path, 1, err, "it holds NUL bytes: not a vmsnap journal");
  for (size_t i = 0; i < len; i++)
    if (data[i] == '\n')
      lines++;
  if (len == 0 || data[len - 1] != '\n')
    return bad_journal_line (path, lines + 1, err, "the journal ends in the middle "
                             "of a line: it was cut short (a full disk, a crash of "
                             "the file system, a copy) or not written by vmsnap");
  end = g_strrstr_len (data, (gssize) len - 1, "\n");
  end = end ? end + 1 : data;
  if (!g_str_has_prefix (end, JOURNAL_END))
    return bad_journal_line (path, lines, err, "the journal does not end with "
                             "vmsnap's end line: it was cut short (a full disk, "
                             "a crash of the file system, a copy) or not written "
                             "by vmsnap");
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) data,
                                     (gsize) (end - data));
  if (strlen (end) != strlen (JOURNAL_END) + strlen (sum) + 1
      || strncmp (end + strlen (JOURNAL_END), sum, strlen (sum)) != 0)
    return bad_journal_line (path, lines, err, "the checksum on the end line does "
                             "not match the journal: it was damaged or edited");
  for (p = data; p < end; line++) {
    const char *nl = memchr (p, '\n', (size_t) (end - p));
    size_t n = (size_t) (nl - p);
    const char *eq = memchr (p, '=', n);
    if (!(n == 0 || *p == '#' || (*p == '[' && p[n - 1] == ']') || (eq && eq > p))) {
      g_autofree char *raw = g_strndup (p, MIN (n, 60));
      g_autofree char *shown = vmsnap_printable (raw);
      return bad_journal_line (path, line, err, "'%s%s' is not a group, a key=value "
                               "or a comment", shown, n > 60 ? "..." : "");
    }
    p = nl + 1;
  }
  *body_len = (size_t) (end - data);
  return TRUE;
}

vmsnap_journal *
vmsnap_journal_load (const char *path, GError **err)
{
  vmsnap_journal *j;
  g_autoptr (GError) local = NULL;
  g_autofree char *data = NULL;
  size_t len = 0, body = 0;

  if (!vmsnap_read_state_file (path, JOURNAL_MAX, &data, &len, err))
    return NULL;
  if (!journal_text_ok (path, data, len, &body, err))
    return NULL;
  j = vmsnap_journal_new (path);
  if (!g_key_file_load_from_data (j->kf, data, body, G_KEY_FILE_NONE, &local)
      || !values_complete (j->kf, &local)) {
    g_autofree char *shown = vmsnap_printable (local->message);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "journal %s is unreadable: %s; nothing was replayed. Check the "
                 "domain's disks by hand (vmsnap check), then move the journal "
                 "away", path, shown);
    vmsnap_journal_free (j);
    return NULL;
  }
  j->recovering = TRUE;
  j->dirty = FALSE;
  return j;
}

void
vmsnap_journal_free (vmsnap_journal *j)
{
  if (j == NULL)
    return;
  g_key_file_unref (j->kf);
  g_hash_table_unref (j->strs);
  g_free (j->path);
  g_free (j);
}

gboolean
vmsnap_journal_save (vmsnap_journal *j, GError **err)
{
  gsize len = 0;
  g_autofree char *data = g_key_file_to_data (j->kf, &len, NULL);
  GString *all = g_string_new_len (data, (gssize) len);
  g_autofree char *sum = NULL;
  gboolean ok;

  if (all->len > 0 && all->str[all->len - 1] != '\n')
    g_string_append_c (all, '\n');
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) all->str, all->len);
  g_string_append_printf (all, "%s%s\n", JOURNAL_END, sum);
  ok = vmsnap_write_atomic (j->path, all->str, all->len, 0600, err);
  g_string_free (all, TRUE);
  if (ok)
    j->dirty = FALSE;
  return ok;
}

/* Write what was recorded in memory since the last write, if anything. */
gboolean
vmsnap_journal_flush (vmsnap_journal *j, GError **err)
{
  return !j->dirty || vmsnap_journal_save (j, err);
}

/* The journal's end.  The removal is made durable (the directory synced):
 * a journal that came back after a power loss would replay steps whose
 * marks were never written (vmsnap_journal_note) over whatever changed
 * since.  One sync of a directory, no file written. */
gboolean
vmsnap_journal_remove (vmsnap_journal *j, GError **err)
{
  g_autofree char *dir = NULL;
  int fd;

  if (unlink (j->path) != 0) {
    if (errno == ENOENT)
      return TRUE;
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot remove journal %s: %s",
                 j->path, g_strerror (errno));
    return FALSE;
  }
  dir = g_path_get_dirname (j->path);
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync (fd) != 0) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot sync directory %s "
                 "after removing the journal: %s", dir, g_strerror (e));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

const char *
vmsnap_journal_get (vmsnap_journal *j, const char *group, const char *key)
{
  /* Values are stored raw; the key file owns them until the next change. */
  g_autofree char *v = g_key_file_get_value (j->kf, group, key, NULL);
  char *unesc;
  size_t n = v ? strlen (v) : 0, bs = 0;

  if (v == NULL)
    return NULL;
  /* A value ending in a lone backslash was not written by
   * vmsnap_journal_set (g_strescape): a damaged journal.  g_strcompress
   * would print a GLib warning for it; it reads as missing instead
   * (found by tests/fuzz/fuzz-journal). */
  while (bs < n && v[n - 1 - bs] == '\\')
    bs++;
  if (bs % 2 == 1)
    return NULL;
  unesc = g_strcompress (v);
  /* Keep the string alive as long as the journal, in the journal.  (It was
   * interned: every value read stayed in the process for good, which the
   * fuzzer's leak check caught as GLib's leaked quark tables; a program
   * using libvmsnap for long would grow with every journal it read.) */
  {
    char *r = g_hash_table_lookup (j->strs, unesc);
    if (r) {
      g_free (unesc);
      return r;
    }
    g_hash_table_add (j->strs, unesc);
    return unesc;
  }
}

/* KEY=VALUE in memory only: written with the next write. */
void
vmsnap_journal_put (vmsnap_journal *j, const char *group, const char *key,
                    const char *value)
{
  g_autofree char *esc = g_strescape (value ? value : "", NULL);

  g_key_file_set_value (j->kf, group, key, esc);
  j->dirty = TRUE;
}

gboolean
vmsnap_journal_set (vmsnap_journal *j, const char *group, const char *key,
                    const char *value, GError **err)
{
  vmsnap_journal_put (j, group, key, value);
  return vmsnap_journal_save (j, err);
}

gboolean
vmsnap_journal_done (vmsnap_journal *j, const char *group, const char *step)
{
  g_auto (GStrv) done = g_key_file_get_string_list (j->kf, group, "done", NULL, NULL);

  return done && g_strv_contains ((const char *const *) done, step);
}

static void
add_done (vmsnap_journal *j, const char *group, const char *step)
{
  g_auto (GStrv) done = g_key_file_get_string_list (j->kf, group, "done", NULL, NULL);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();

  for (char **d = done; d && *d; d++)
    g_ptr_array_add (list, *d);
  g_ptr_array_add (list, (gpointer) step);
  g_key_file_set_string_list (j->kf, group, "done", (const char *const *) list->pdata,
                              list->len);
  j->dirty = TRUE;
}

/* Step STEP done, in memory only: a step whose mark need not be on disk
 * before the next action, because redoing the step is harmless (see
 * doc/architecture.md).  The crash test hook counts it like a written
 * mark, so the crash tests also stop where such a mark is lost. */
void
vmsnap_journal_note (vmsnap_journal *j, const char *group, const char *step)
{
  add_done (j, group, step);
  crash_hook ();
}

gboolean
vmsnap_journal_mark (vmsnap_journal *j, const char *group, const char *step,
                     GError **err)
{
  add_done (j, group, step);
  if (!vmsnap_journal_save (j, err))
    return FALSE;
  crash_hook ();
  return TRUE;
}

/* ----------------------------------------------------------- op context */

vmsnap_op *
vmsnap_op_new (vmsnap_journal *j, const char *target, const char *domain_name,
               const char *domain_uuid, bool online, void *conn,
               const char *state_dir, GPtrArray *locators)
{
  vmsnap_op *op = g_new0 (vmsnap_op, 1);

  op->j = j;
  op->group = g_strdup_printf ("disk.%s", target);
  op->domain_name = g_strdup (domain_name);
  op->domain_uuid = g_strdup (domain_uuid);
  op->online = online;
  op->conn = conn;
  op->state_dir = g_strdup (state_dir);
  op->locators = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; locators && i < locators->len; i++)
    g_ptr_array_add (op->locators, g_strdup (locators->pdata[i]));
  return op;
}

void
vmsnap_op_free (vmsnap_op *op)
{
  if (op == NULL)
    return;
  vmsnap_guard_free (op->guard);
  g_free (op->group);
  g_free (op->domain_name);
  g_free (op->domain_uuid);
  g_free (op->state_dir);
  g_ptr_array_unref (op->locators);
  g_free (op);
}

const char *
vmsnap_op_domain_name (const vmsnap_op *op)
{
  return op->domain_name;
}

const char *
vmsnap_op_domain_uuid (const vmsnap_op *op)
{
  return op->domain_uuid;
}

bool
vmsnap_op_is_online (const vmsnap_op *op)
{
  return op->online;
}

void *
vmsnap_op_libvirt_conn (const vmsnap_op *op)
{
  return op->conn;
}

const char *
vmsnap_op_state_dir (const vmsnap_op *op)
{
  return op->state_dir;
}

size_t
vmsnap_op_n_locators (const vmsnap_op *op)
{
  return op->locators->len;
}

const char *
vmsnap_op_locator (const vmsnap_op *op, size_t i)
{
  return i < op->locators->len ? op->locators->pdata[i] : NULL;
}

void
vmsnap_op_progress (vmsnap_op *op, uint64_t done, uint64_t total)
{
  if (total == 0 || op->quiet || !isatty (STDERR_FILENO))
    return;
  /* The line is erased once the work is complete, so that what is printed
   * next (a message, the shell prompt) starts on a clean line. */
  if (done >= total)
    fprintf (stderr, "\r\033[K");
  else
    fprintf (stderr, "\r  %s: %3u%%", op->group + 5,
             (unsigned) (done * 100 / total));
}

static gboolean
valid_key (const char *k)
{
  if (k == NULL || *k == '\0')
    return FALSE;
  for (const char *p = k; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '_' && *p != '-')
      return FALSE;
  return TRUE;
}

/* The journal is shared by the threads of a pause window (every disk's
 * create at once): the backends reach it only through these functions. */
static GMutex op_lock;

const char *
vmsnap_op_get (const vmsnap_op *op, const char *key)
{
  g_autofree char *k = g_strconcat ("s.", key, NULL);
  const char *v;

  g_mutex_lock (&op_lock);
  v = vmsnap_journal_get (op->j, op->group, k);
  g_mutex_unlock (&op_lock);
  return v;
}

gboolean
vmsnap_op_set (vmsnap_op *op, const char *key, const char *value, GError **err)
{
  g_autofree char *k = NULL;
  gboolean ok = TRUE;

  if (!valid_key (key)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "backend bug: invalid journal key '%s'", key ? key : "(null)");
    return FALSE;
  }
  k = g_strconcat ("s.", key, NULL);
  g_mutex_lock (&op_lock);
  if (op->in_window)
    vmsnap_journal_put (op->j, op->group, k, value);
  else
    ok = vmsnap_journal_set (op->j, op->group, k, value, err);
  g_mutex_unlock (&op_lock);
  return ok;
}

bool
vmsnap_op_step_done (const vmsnap_op *op, const char *step)
{
  bool done;

  g_mutex_lock (&op_lock);
  done = vmsnap_journal_done (op->j, op->group, step);
  g_mutex_unlock (&op_lock);
  return done;
}

gboolean
vmsnap_op_mark_done (vmsnap_op *op, const char *step, GError **err)
{
  gboolean ok;

  if (!valid_key (step)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "backend bug: invalid step name '%s'", step ? step : "(null)");
    return FALSE;
  }
  g_mutex_lock (&op_lock);
  if (op->in_window) {
    /* Counted by the crash hook like a written mark: a crash test that
     * stops here loses the window's records, as a kill would. */
    vmsnap_journal_note (op->j, op->group, step);
    g_mutex_unlock (&op_lock);
    return TRUE;
  }
  ok = vmsnap_journal_mark (op->j, op->group, step, err);
  g_mutex_unlock (&op_lock);
  return ok;
}

bool
vmsnap_op_is_recovering (const vmsnap_op *op)
{
  return op->j->recovering;
}

gboolean
vmsnap_op_guard (vmsnap_op *op, const char *storage, unsigned int what,
                 GError **err)
{
  if (op == NULL)
    return TRUE;
  return vmsnap_guard_check (op->guard, op->group + strlen ("disk."), storage,
                             what, err);
}

/* The guard over a tool the core runs for a backend: every image a
 * qemu-img command line writes. */
static gboolean
guard_argv (vmsnap_op *op, const char *const *argv, GError **err)
{
  g_autoptr (GPtrArray) targets = NULL;

  if (op == NULL || op->guard == NULL)
    return TRUE;
  targets = vmsnap_guard_qemu_img_targets (argv);
  for (guint i = 0; i < targets->len; i++)
    if (!vmsnap_op_guard (op, targets->pdata[i], VMSNAP_GUARD_WRITE, err))
      return FALSE;
  return TRUE;
}

gboolean
vmsnap_op_run (vmsnap_op *op, const char *const *argv, char **out, GError **err)
{
  if (!guard_argv (op, argv, err))
    return FALSE;
  /* Tools that write die with vmsnap; a read (qemu-img info) is started
   * the cheaper way. */
  if (vmsnap_argv_reads_only (argv))
    return vmsnap_run_short (argv, out, err);
  return vmsnap_run (argv, out, err);
}

gboolean
vmsnap_op_run_progress (vmsnap_op *op, const char *const *argv, GError **err)
{
  if (!guard_argv (op, argv, err))
    return FALSE;
  return vmsnap_run_progress (argv, isatty (STDERR_FILENO) && !op->quiet, err);
}

char *
vmsnap_op_qemu_img (vmsnap_op *op, GError **err)
{
  return vmsnap_find_qemu_img (err);
}

/* -------------------------------------------------------------- results */

vmsnap_result *
vmsnap_result_new (void)
{
  vmsnap_result *r = g_new0 (vmsnap_result, 1);

  r->renames = g_ptr_array_new_with_free_func (g_free);
  r->removed = g_ptr_array_new_with_free_func (g_free);
  r->garbage = g_ptr_array_new_with_free_func (g_free);
  r->undo = g_ptr_array_new_with_free_func (g_free);
  return r;
}

void
vmsnap_result_free (vmsnap_result *r)
{
  if (r == NULL)
    return;
  g_free (r->locator);
  g_free (r->new_source);
  g_free (r->new_format);
  g_free (r->note);
  g_ptr_array_unref (r->renames);
  g_ptr_array_unref (r->removed);
  g_ptr_array_unref (r->garbage);
  g_ptr_array_unref (r->undo);
  g_free (r);
}

void
vmsnap_result_set_locator (vmsnap_result *res, const char *locator)
{
  g_free (res->locator);
  res->locator = g_strdup (locator);
}

void
vmsnap_result_set_new_source (vmsnap_result *res, const char *source,
                              const char *format)
{
  g_free (res->new_source);
  g_free (res->new_format);
  res->new_source = g_strdup (source);
  res->new_format = g_strdup (format);
}

void
vmsnap_result_add_rename (vmsnap_result *res, const char *old_locator,
                          const char *new_locator)
{
  g_ptr_array_add (res->renames, g_strdup (old_locator));
  g_ptr_array_add (res->renames, g_strdup (new_locator));
}

void
vmsnap_result_add_bytes_copied (vmsnap_result *res, uint64_t bytes)
{
  res->bytes_copied += bytes;
}

void
vmsnap_result_set_note (vmsnap_result *res, const char *fmt, ...)
{
  va_list ap;

  g_free (res->note);
  va_start (ap, fmt);
  res->note = g_strdup_vprintf (fmt, ap);
  va_end (ap);
}

void
vmsnap_result_set_kept (vmsnap_result *res, bool kept)
{
  res->kept = kept;
}

void
vmsnap_result_add_removed (vmsnap_result *res, const char *locator)
{
  g_ptr_array_add (res->removed, g_strdup (locator));
}

void
vmsnap_result_add_garbage (vmsnap_result *res, const char *locator)
{
  g_ptr_array_add (res->garbage, g_strdup (locator));
}

void
vmsnap_result_add_undo (vmsnap_result *res, const char *locator)
{
  g_ptr_array_add (res->undo, g_strdup (locator));
}

/* Save a result into the journal group of its disk (in memory: it is
 * written with the disk step's mark, vmsnap_journal_flush), and load it
 * back. */
static void
save_list (GKeyFile *kf, const char *group, const char *key, GPtrArray *a)
{
  g_key_file_set_string_list (kf, group, key, (const char *const *) a->pdata, a->len);
}

gboolean
vmsnap_result_save (const vmsnap_result *r, vmsnap_journal *j,
                    const char *group, GError **err)
{
  GKeyFile *kf = j->kf;

  if (r->locator)
    g_key_file_set_string (kf, group, "r.locator", r->locator);
  if (r->new_source) {
    g_key_file_set_string (kf, group, "r.new_source", r->new_source);
    g_key_file_set_string (kf, group, "r.new_format", r->new_format ? r->new_format : "raw");
  }
  if (r->note)
    g_key_file_set_string (kf, group, "r.note", r->note);
  g_key_file_set_uint64 (kf, group, "r.bytes", r->bytes_copied);
  g_key_file_set_boolean (kf, group, "r.kept", r->kept);
  save_list (kf, group, "r.renames", r->renames);
  save_list (kf, group, "r.removed", r->removed);
  save_list (kf, group, "r.garbage", r->garbage);
  save_list (kf, group, "r.undo", r->undo);
  j->dirty = TRUE;   /* written with the disk step's mark */
  (void) err;
  return TRUE;
}

static void
load_list (GKeyFile *kf, const char *group, const char *key, GPtrArray *a)
{
  g_auto (GStrv) v = g_key_file_get_string_list (kf, group, key, NULL, NULL);

  for (char **p = v; p && *p; p++)
    g_ptr_array_add (a, g_strdup (*p));
}

vmsnap_result *
vmsnap_result_load (vmsnap_journal *j, const char *group)
{
  GKeyFile *kf = j->kf;
  vmsnap_result *r = vmsnap_result_new ();

  r->locator = g_key_file_get_string (kf, group, "r.locator", NULL);
  r->new_source = g_key_file_get_string (kf, group, "r.new_source", NULL);
  r->new_format = g_key_file_get_string (kf, group, "r.new_format", NULL);
  r->note = g_key_file_get_string (kf, group, "r.note", NULL);
  r->bytes_copied = g_key_file_get_uint64 (kf, group, "r.bytes", NULL);
  r->kept = g_key_file_get_boolean (kf, group, "r.kept", NULL);
  load_list (kf, group, "r.renames", r->renames);
  load_list (kf, group, "r.removed", r->removed);
  load_list (kf, group, "r.garbage", r->garbage);
  load_list (kf, group, "r.undo", r->undo);
  return r;
}

void
vmsnap_point_free (vmsnap_point *p)
{
  if (p == NULL)
    return;
  g_free (p->locator);
  g_free (p->name);
  g_free (p->owner);
  g_free (p);
}
