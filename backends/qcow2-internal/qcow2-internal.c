/* qcow2-internal: qcow2's own snapshot table.  Offline through qemu-img
 * snapshot, running VMs through libvirt (full-system internal snapshot, the
 * memory state included).
 *
 * Locators.  "qcow2:" ABSOLUTE-IMAGE-PATH "#" TAG, split at the last '#' (a
 * path may contain '#', a tag never does).  TAG is the vmsnap snapshot name,
 * which is also the snapshot's name in the image's table.
 *
 * Offline (the domain is shut off) the slots change the image with
 * `qemu-img snapshot`.  Running domains: the core takes, reverts and deletes
 * the VM-wide internal snapshot through libvirt (memory included) before it
 * calls a slot, so the online slots only confirm that the image's table
 * agrees, and change nothing.
 *
 * qemu-img is never left to guess a format: `info` gets `-f qcow2`, and
 * `snapshot`, which has no -f option, gets `--image-opts driver=qcow2,...`.
 *
 * Names and IDs.  A qcow2 table entry has a unique ID ("1", "2", ...) and a
 * name that need not be unique.  `qemu-img snapshot -a X` looks X up as an ID
 * first and as a name second, so a vmsnap snapshot named "1" would be
 * confused with the entry whose ID is 1; `-d X` looks X up by name only.
 * So every slot reads the table first (`qemu-img info --output=json -U`),
 * refuses a tag that names more than one entry, reverts with the argument
 * that can only mean our entry (see unambiguous_ref), and checks after a
 * removal that exactly our entry went.
 *
 * Crash safety.  A slot records the tag (vmsnap_op_set) before it changes
 * the image and marks the step done after.  Each step is repeatable or is
 * skipped when the table shows it happened: a create that finds its
 * recorded tag in the table does not take it again (the tag was checked
 * absent before it was recorded, so an entry with that name is ours), a
 * removal that no longer finds the tag is done, and applying a snapshot
 * twice gives the same contents. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include <vmsnap/backend.h>
#include "../backend-util.h"

#define NAME "qcow2-internal"
#define LOC_PREFIX "qcow2:"
/* backend.h: names are at most 200 bytes. */
#define MAX_TAG 200
/* Processes named in an "in use" message. */
#define MAX_HOLDERS 4

/* ================================================================ probe */

static int
qint_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
            vmsnap_probe_result *res, GError **err)
{
  if (d->type != VMSNAP_DISK_TYPE_FILE && d->type != VMSNAP_DISK_TYPE_BLOCK) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "internal snapshots need a local qcow2 image; this is "
                      "a %s disk", d->type_name);
    return 0;
  }
  if (d->format == NULL || strcmp (d->format, "qcow2") != 0) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "internal snapshots need qcow2; %s has no snapshot table",
                      d->format ? d->format : "an undeclared format");
    return 0;
  }
  if (d->n_chain > 0 && d->chain[0]->data_file) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s keeps its data in external data file %s; QEMU "
                      "cannot take internal snapshots of such an image",
                      d->source, d->chain[0]->data_file);
    return 0;
  }
  if (req->memory)
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 80,
                      "qcow2 image: snapshot table entry, memory state kept "
                      "in the image");
  else
    vmsnap_probe_set (res, VMSNAP_FIT_CAN, 40,
                      "qcow2 image: snapshot table entry in the image itself");
  if (d->n_chain > 1)
    vmsnap_probe_add_limit (res, "only the top image %s gets the internal "
                            "snapshot; its %zu backing layer(s) stay as they are",
                            d->source, d->n_chain - 1);
  if (req->online)
    vmsnap_probe_add_limit (res, "QEMU stops the guest's vCPUs while it writes "
                            "the snapshot; revert restarts QEMU");
  if (d->n_chain > 0)
    vmsnap_probe_add_detail (res, "internal_snapshots", "%u",
                             d->chain[0]->n_internal_snapshots);
  return 0;
}

/* ============================================================= locators */

static gboolean
valid_tag (const char *t)
{
  size_t len = strlen (t);

  if (len == 0 || len > MAX_TAG || !g_ascii_isalnum (t[0]))
    return FALSE;
  for (const char *p = t; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr ("._+-", *p) == NULL)
      return FALSE;
  return TRUE;
}

static char *
loc_make (const char *path, const char *tag)
{
  return g_strconcat (LOC_PREFIX, path, "#", tag, NULL);
}

/* Split "qcow2:/abs/path#TAG" at the last '#'. */
static gboolean
loc_split (const vmsnap_disk *d, const char *loc, char **path, char **tag,
           GError **err)
{
  g_autofree char *shown = g_strescape (loc ? loc : "(null)", NULL);
  const char *p, *hash;

  if (loc == NULL || !g_str_has_prefix (loc, LOC_PREFIX)) {
    fail (err, VMSNAP_ERR_INVALID_INPUT,
          "disk %s: '%s' is not a %s locator (" LOC_PREFIX
          "/absolute/image/path#TAG); the catalog entry was not written by "
          "this backend", d->target, shown, NAME);
    return FALSE;
  }
  p = loc + strlen (LOC_PREFIX);
  hash = strrchr (p, '#');
  if (hash == NULL) {
    fail (err, VMSNAP_ERR_INVALID_INPUT,
          "disk %s: locator '%s' names no snapshot tag (" LOC_PREFIX
          "/absolute/image/path#TAG)", d->target, shown);
    return FALSE;
  }
  {
    g_autofree char *pth = g_strndup (p, hash - p);
    if (!g_path_is_absolute (pth) || strcmp (pth, "/") == 0) {
      fail (err, VMSNAP_ERR_INVALID_INPUT,
            "disk %s: locator '%s' does not name an image by its absolute "
            "path (" LOC_PREFIX "/absolute/image/path#TAG)", d->target, shown);
      return FALSE;
    }
    if (!valid_tag (hash + 1)) {
      fail (err, VMSNAP_ERR_INVALID_INPUT,
            "disk %s: locator '%s' has an invalid snapshot tag (1 to %d "
            "characters from A-Z a-z 0-9 . _ + -, starting with a letter or "
            "digit)", d->target, shown, MAX_TAG);
      return FALSE;
    }
    *path = g_steal_pointer (&pth);
    *tag = g_strdup (hash + 1);
  }
  return TRUE;
}

/* Same file (by device and inode, or by device number for block devices). */
static gboolean
same_file (const char *a, const char *b)
{
  struct stat sa, sb;

  if (strcmp (a, b) == 0)
    return TRUE;
  if (stat (a, &sa) < 0 || stat (b, &sb) < 0)
    return FALSE;
  if (S_ISBLK (sa.st_mode) && S_ISBLK (sb.st_mode))
    return sa.st_rdev == sb.st_rdev;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* ====================================================== the image's table */

/* An entry of the table: the library's own (id, name, vm_state_size,
 * date_sec), as vmsnap_image_read gives it. */
typedef vmsnap_image_snapshot entry;

/* The snapshot table of the qcow2 image PATH: GPtrArray of entry*.  Read
 * in process (vmsnap_image_read, issue 17: no process, whatever the table's
 * size); like -U, it also works while a QEMU holds the image (online). */
static GPtrArray *
read_table (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            const char *path, GError **err)
{
  g_autoptr (vmsnap_image) img = NULL;
  GError *e = NULL;

  (void) op;
  (void) qemu_img;
  img = vmsnap_image_read (path, "qcow2", &e);
  if (img == NULL) {
    fail_with (err, e, "check that the image exists and is a qcow2 image",
               "disk %s: reading the snapshot table of %s", d->target, path);
    return NULL;
  }
  return g_ptr_array_ref (img->snapshots);
}

/* The entry named TAG and how many entries have that name. */
static entry *
find_tag (GPtrArray *tab, const char *tag, guint *count)
{
  entry *found = NULL;

  *count = 0;
  for (guint i = 0; i < tab->len; i++) {
    entry *e = g_ptr_array_index (tab, i);
    if (strcmp (e->name, tag) == 0) {
      if (found == NULL)
        found = e;
      (*count)++;
    }
  }
  return found;
}

static gboolean
has_id (GPtrArray *tab, const char *id)
{
  for (guint i = 0; i < tab->len; i++)
    if (strcmp (((entry *) g_ptr_array_index (tab, i))->id, id) == 0)
      return TRUE;
  return FALSE;
}

static char *
ids_text (GPtrArray *tab, const char *tag)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < tab->len; i++) {
    entry *e = g_ptr_array_index (tab, i);
    if (strcmp (e->name, tag) == 0)
      g_string_append_printf (s, "%s%s", s->len ? ", " : "", e->id);
  }
  return g_string_free (s, FALSE);
}

/* Exactly one entry named TAG (*out), none (*out = NULL), or an error: the
 * table holds several and vmsnap cannot tell which one is its own. */
static gboolean
find_unique (const vmsnap_disk *d, GPtrArray *tab, const char *path,
             const char *tag, entry **out, GError **err)
{
  guint n;
  entry *e = find_tag (tab, tag, &n);

  if (n > 1) {
    g_autofree char *ids = ids_text (tab, tag);
    fail (err, VMSNAP_ERR_FAILED,
          "disk %s: image %s holds %u internal snapshots named '%s' (IDs %s), "
          "so vmsnap cannot tell which one is its own; remove the one made "
          "outside vmsnap (`qemu-img snapshot -l %s` shows the table; "
          "`qemu-img snapshot -d %s %s` removes the oldest of that name) and "
          "run the command again; nothing was changed", d->target, path, n,
          tag, ids, path, tag, path);
    return FALSE;
  }
  *out = e;
  return TRUE;
}

/* The argument of `qemu-img snapshot -a` that can only select entry E of
 * TAB: its ID when no other entry is named like that ID (an ID lookup comes
 * first and IDs are unique), else its name when no entry has that name as
 * its ID (then the lookup by ID finds nothing and the one by name finds E,
 * whose name find_unique made unique); NULL if neither is unambiguous. */
static const char *
unambiguous_ref (GPtrArray *tab, const entry *e)
{
  gboolean id_named = FALSE, name_is_id = FALSE;

  for (guint i = 0; i < tab->len; i++) {
    entry *o = g_ptr_array_index (tab, i);
    if (o == e)
      continue;
    id_named = id_named || strcmp (o->name, e->id) == 0;
    name_is_id = name_is_id || strcmp (o->id, e->name) == 0;
  }
  if (!id_named)
    return e->id;
  if (!name_is_id)
    return e->name;
  return NULL;
}

static char *
entry_date (const entry *e)
{
  g_autoptr (GDateTime) dt = e->date_sec > 0 ? g_date_time_new_from_unix_utc (e->date_sec) : NULL;

  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S UTC") : g_strdup ("an unknown date");
}

/* =========================================================== qemu-img */

/* `qemu-img snapshot` has no -f: the format (and the protocol driver) are
 * given as image options instead, commas in the path doubled. */
static char *
image_opts (const char *path)
{
  struct stat st;
  const char *proto = stat (path, &st) == 0 && S_ISBLK (st.st_mode)
                      ? "host_device" : "file";
  GString *s = g_string_new ("driver=qcow2,file.driver=");

  g_string_append (s, proto);
  g_string_append (s, ",file.filename=");
  for (const char *p = path; *p; p++) {
    if (*p == ',')
      g_string_append_c (s, ',');
    g_string_append_c (s, *p);
  }
  return g_string_free (s, FALSE);
}

/* qemu-img snapshot ACTION REF on PATH (ACTION: -c, -a or -d). */
static gboolean
run_snapshot (vmsnap_op *op, const char *qemu_img, const char *action,
              const char *ref, const char *path, GError **err)
{
  g_autofree char *opts = image_opts (path);
  const char *argv[] = { qemu_img, "snapshot", "-q", "--image-opts", action,
                         ref, "--", opts, NULL };

  return vmsnap_op_run (op, argv, NULL, err);
}

/* In recovery, before PATH is used again: a `qemu-img snapshot` killed
 * while it rewrote PATH's snapshot table or L1 copies can leave leaked
 * clusters (counted, used by nothing: `qemu-img check` exits 3; the crash
 * matrix found one after a create killed inside `snapshot -c`).  They hold
 * no data; `qemu-img check -r leaks` only lowers refcounts nothing
 * references, so every image recover leaves is check-clean (issue 16,
 * item 8).  Only when the interrupted run recorded its tag (it records it
 * before it runs qemu-img on PATH), offline (the caller checked that no
 * process holds PATH).  Anything worse than leaks stops the recovery,
 * naming the image. */
static gboolean
repair_leaks (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
              const char *path, GError **err)
{
  g_autofree char *opts = NULL;
  GError *te = NULL;

  if (!vmsnap_op_is_recovering (op) || vmsnap_op_get (op, "tag") == NULL)
    return TRUE;
  opts = image_opts (path);
  {
    const char *argv[] = { qemu_img, "check", "-q", "-r", "leaks",
                           "--image-opts", "--", opts, NULL };
    if (vmsnap_op_run (op, argv, NULL, &te))
      return TRUE;
  }
  fail_with (err, te, "the interrupted operation was not resumed: copy the "
             "image aside, run `qemu-img check -f qcow2` on it, repair what "
             "it reports (`-r all`), then run `vmsnap recover`",
             "disk %s: repairing the clusters an interrupted `qemu-img "
             "snapshot` leaked in %s", d->target, path);
  return FALSE;
}

/* Up to MAX_HOLDERS processes that have PATH open, as "qemu-io (pid 123)",
 * or NULL: /proc/PID/fd of processes we may read (ours, or all as root). */
static char *
holders_of (const char *path)
{
  struct stat img;
  GDir *proc;
  const char *pid;
  GString *s = g_string_new (NULL);
  guint n = 0, more = 0;

  if (stat (path, &img) < 0 || (proc = g_dir_open ("/proc", 0, NULL)) == NULL)
    return g_string_free (s, TRUE);
  while ((pid = g_dir_read_name (proc))) {
    g_autofree char *fddir = NULL;
    GDir *fds;
    const char *fd;
    gboolean holds = FALSE;

    if (strspn (pid, "0123456789") != strlen (pid)
        || (pid_t) g_ascii_strtoll (pid, NULL, 10) == getpid ())
      continue;
    fddir = g_strconcat ("/proc/", pid, "/fd", NULL);
    if ((fds = g_dir_open (fddir, 0, NULL)) == NULL)
      continue;
    while (!holds && (fd = g_dir_read_name (fds))) {
      g_autofree char *fp = g_strconcat (fddir, "/", fd, NULL);
      struct stat st;
      if (stat (fp, &st) < 0)
        continue;
      holds = S_ISBLK (img.st_mode)
              ? S_ISBLK (st.st_mode) && st.st_rdev == img.st_rdev
              : st.st_dev == img.st_dev && st.st_ino == img.st_ino;
    }
    g_dir_close (fds);
    if (!holds)
      continue;
    if (n++ < MAX_HOLDERS) {
      g_autofree char *commf = g_strconcat ("/proc/", pid, "/comm", NULL);
      g_autofree char *comm = NULL;
      if (g_file_get_contents (commf, &comm, NULL, NULL))
        g_strstrip (comm);
      g_string_append_printf (s, "%s%s (pid %s)", s->len ? ", " : "",
                              comm && *comm ? comm : "?", pid);
    } else
      more++;
  }
  g_dir_close (proc);
  if (more)
    g_string_append_printf (s, " and %u more", more);
  return g_string_free (s, n == 0);
}

/* Offline slots change the image: refuse when another process (a QEMU the
 * domain's state does not show, a qemu-io, a qemu-nbd) holds it.  QEMU's
 * image locks, tested in process (vmsnap_image_in_use), are exactly the
 * check. */
static gboolean
not_in_use (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            const char *path, GError **err)
{
  g_autoptr (GError) local = NULL;
  g_autofree char *who = NULL;
  int used = vmsnap_image_in_use (path, &local);

  (void) op;
  (void) qemu_img;
  if (used == 0)
    return TRUE;
  if (used < 0) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: %s; check that the image exists "
          "and is a qcow2 image", d->target, local->message);
    return FALSE;
  }
  who = holders_of (path);
  fail (err, VMSNAP_ERR_FAILED,
        "disk %s: image %s is in use by another process: %s (it holds QEMU's "
        "image locks); stop it first: vmsnap changes the images of a "
        "shut-off domain only, and nothing was changed", d->target, path,
        who ? who : "no process of this user has it open, so probably a QEMU "
                    "(qemu-system, qemu-nbd, qemu-io) of another user");
  return FALSE;
}

/* ================================================================ common */

static int
check_slot (vmsnap_op *op, const vmsnap_disk *d, const char *slot,
            unsigned int flags, GError **err)
{
  if (!vmsnap_check_flags (NAME, slot, flags, 0, err))
    return -1;
  if (op == NULL || d == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: %s called without an "
                 "operation context or disk (internal error)", NAME, slot);
  if (d->type != VMSNAP_DISK_TYPE_FILE && d->type != VMSNAP_DISK_TYPE_BLOCK)
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s with backend %s needs a local qcow2 image "
                 "(this is a %s disk)", d->target, slot, NAME,
                 d->type_name ? d->type_name : "other");
  if (d->source == NULL || !g_path_is_absolute (d->source))
    return fail (err, VMSNAP_ERR_INVALID_INPUT,
                 "disk %s: the source '%s' is not an absolute path; give "
                 "the image's absolute path in the domain XML", d->target,
                 d->source ? d->source : "(none)");
  if (d->format == NULL || strcmp (d->format, "qcow2") != 0)
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s with backend %s needs a qcow2 image; %s is "
                 "declared as %s, which has no snapshot table", d->target,
                 slot, NAME, d->source, d->format ? d->format : "no format");
  {
    /* The image's header, before any qemu-img opens it. */
    g_autoptr (GError) e = NULL;
    if (!vmsnap_image_refs_check (d->source, "qcow2", &e))
      return fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: %s", d->target,
                   e->message);
  }
  if (d->n_chain > 0 && d->chain[0]->data_file)
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: %s keeps its data in external data file %s; QEMU "
                 "cannot take or apply internal snapshots of such an image",
                 d->target, d->source, d->chain[0]->data_file);
  return 0;
}

/* Record KEY=VALUE unless the journal holds it already (a re-run). */
static gboolean
op_set_once (vmsnap_op *op, const char *key, const char *value, GError **err)
{
  const char *old = vmsnap_op_get (op, key);

  if (old && strcmp (old, value) == 0)
    return TRUE;
  return vmsnap_op_set (op, key, value, err);
}

/* Record TAG before qemu-img touches the image; the first time, also
 * mark step "tagged": the point where the image may be about to change,
 * all the journal knows of a run killed inside `qemu-img snapshot`
 * (qcow2-internal-offline.sh stops there to test repair_leaks). */
static gboolean
record_tag (vmsnap_op *op, const char *tag, GError **err)
{
  if (vmsnap_op_get (op, "tag") != NULL)
    return op_set_once (op, "tag", tag, err);
  return vmsnap_op_set (op, "tag", tag, err)
         && vmsnap_op_mark_done (op, "tagged", err);
}

/* A re-run must act on the tag the interrupted run recorded. */
static gboolean
same_as_recorded (vmsnap_op *op, const vmsnap_disk *d, const char *tag,
                  GError **err)
{
  const char *rec = vmsnap_op_get (op, "tag");

  if (rec == NULL || strcmp (rec, tag) == 0)
    return TRUE;
  fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal of the interrupted "
        "operation records snapshot tag '%s', not '%s' (internal error); "
        "it cannot be resumed", d->target, rec, tag);
  return FALSE;
}

/* Allocated bytes of PATH (regular files; G_MAXUINT64 when unknown). */
static guint64
allocated (const char *path)
{
  struct stat st;

  if (stat (path, &st) < 0 || !S_ISREG (st.st_mode))
    return G_MAXUINT64;
  return (guint64) st.st_blocks * 512;
}

/* Remove the entry named TAG from PATH's table (offline), checking that
 * exactly it went.  *GONE: whether there was one to remove; *INFO: a
 * description of the removed entry ("id 3, taken ...").  Idempotent. */
static gboolean
remove_tag (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
            const char *path, const char *tag, gboolean *gone, char **info,
            GError **err)
{
  g_autoptr (GPtrArray) before = NULL, after = NULL;
  g_autofree char *id = NULL;
  entry *e;
  GError *te = NULL;

  *gone = FALSE;
  if ((before = read_table (op, d, qemu_img, path, err)) == NULL
      || !find_unique (d, before, path, tag, &e, err))
    return FALSE;
  if (e == NULL)
    return TRUE;
  id = g_strdup (e->id);
  if (info) {
    g_autofree char *date = entry_date (e);
    *info = g_strdup_printf ("id %s, taken %s%s", e->id, date,
                             e->vm_state_size ? ", with the VM's memory state" : "");
  }
  /* -d looks the argument up by name (find_unique made it unique). */
  if (!run_snapshot (op, qemu_img, "-d", tag, path, &te)) {
    fail_with (err, te, "fix the cause and run the command again",
               "disk %s: removing internal snapshot '%s' (id %s) from %s",
               d->target, tag, id, path);
    return FALSE;
  }
  if ((after = read_table (op, d, qemu_img, path, err)) == NULL)
    return FALSE;
  for (guint i = 0; i < before->len; i++) {
    entry *b = g_ptr_array_index (before, i);
    if (has_id (after, b->id) != (b != e)) {
      fail (err, VMSNAP_ERR_FAILED,
            "disk %s: `qemu-img snapshot -d %s` on %s %s entry %s ('%s') of "
            "the snapshot table instead of only entry %s; check the table "
            "with `qemu-img snapshot -l %s`", d->target, tag, path,
            b == e ? "kept" : "removed", b->id, b->name, id, path);
      return FALSE;
    }
  }
  *gone = TRUE;
  return TRUE;
}

/* ================================================================ create */

static int
create_online (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
               const char *name, vmsnap_result *res, GError **err)
{
  g_autoptr (GPtrArray) tab = read_table (op, d, qemu_img, d->source, err);
  g_autofree char *loc = NULL;
  entry *e;

  if (tab == NULL || !find_unique (d, tab, d->source, name, &e, err))
    return -1;
  if (e == NULL)
    return fail (err, VMSNAP_ERR_FAILED,
                 "disk %s: libvirt's internal snapshot did not reach image %s "
                 "(its table has no snapshot named '%s'); is the disk "
                 "excluded from the domain's snapshots (snapshot='no' or "
                 "'external' in the domain XML)?", d->target, d->source, name);
  loc = loc_make (d->source, name);
  vmsnap_result_set_locator (res, loc);
  vmsnap_result_set_note (res, "internal snapshot '%s' (id %s) taken by "
                          "libvirt in %s%s", name, e->id, d->source,
                          e->vm_state_size ? ", with the VM's memory state" : "");
  return 0;
}

/* The image gets a new entry in its table; it stays the active source. */
static int
create_1 (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img,
          const char *name, vmsnap_result *res, GError **err)
{
  const char *rec = vmsnap_op_get (op, "tag");
  g_autoptr (GPtrArray) tab = NULL;
  g_autofree char *loc = NULL;
  entry *e = NULL;
  GError *te = NULL;

  if (!same_as_recorded (op, d, name, err))
    return -1;
  if (!g_file_test (d->source, G_FILE_TEST_EXISTS))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: image %s does not exist",
                 d->target, d->source);
  if (!not_in_use (op, d, qemu_img, d->source, err)
      || !repair_leaks (op, d, qemu_img, d->source, err))
    return -1;
  if ((tab = read_table (op, d, qemu_img, d->source, err)) == NULL)
    return -1;
  if (rec == NULL) {
    guint n;
    if ((e = find_tag (tab, name, &n)) != NULL) {
      g_autofree char *date = entry_date (e);
      g_autofree char *ids = ids_text (tab, name);
      return fail (err, VMSNAP_ERR_INVALID_INPUT,
                   "disk %s: image %s already holds %s named '%s' (%s %s, "
                   "taken %s%s) that vmsnap did not make, and vmsnap does not "
                   "adopt %s: choose another snapshot name, or remove %s "
                   "(`qemu-img snapshot -d %s %s`) if not needed; nothing "
                   "was changed", d->target, d->source,
                   n > 1 ? "internal snapshots" : "an internal snapshot",
                   name, n > 1 ? "IDs" : "id", ids, n > 1 ? "the first " : "",
                   date, n > 1 ? "them" : "it", n > 1 ? "them" : "it", name,
                   d->source);
    }
    if (!record_tag (op, name, err))
      return -1;
  } else if (!find_unique (d, tab, d->source, name, &e, err))
    return -1;
  /* Re-run: the tag was absent when it was recorded, so an entry with that
   * name now is the one the interrupted run took. */
  if (e == NULL) {
    if (vmsnap_op_step_done (op, "created"))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: internal snapshot '%s' "
                   "was taken in %s but is no longer in its table; was it "
                   "removed by hand?", d->target, name, d->source);
    if (!run_snapshot (op, qemu_img, "-c", name, d->source, &te))
      return fail_with (err, te, "fix the cause and run the command again",
                        "disk %s: taking internal snapshot '%s' of %s",
                        d->target, name, d->source);
    g_clear_pointer (&tab, g_ptr_array_unref);
    if ((tab = read_table (op, d, qemu_img, d->source, err)) == NULL
        || !find_unique (d, tab, d->source, name, &e, err))
      return -1;
    if (e == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: `qemu-img snapshot -c "
                   "%s` succeeded but %s has no snapshot named '%s'",
                   d->target, name, d->source, name);
  }
  if (!vmsnap_op_step_done (op, "created")
      && !vmsnap_op_mark_done (op, "created", err))
    return -1;
  loc = loc_make (d->source, name);
  vmsnap_result_set_locator (res, loc);
  /* If the VM operation is rolled back (another disk failed), the core
   * discards the entry through the discard slot. */
  vmsnap_result_add_undo (res, loc);
  vmsnap_result_set_note (res, "internal snapshot '%s' (id %s) added to the "
                          "snapshot table of %s, which stays the active image",
                          name, e->id, d->source);
  return 0;
}

/* A failed create is rolled back by the core, which knows only the undo
 * storage of the disks that finished: an entry this slot (or an
 * interrupted earlier run of it) took is removed here.  A recorded tag was
 * checked absent before it was recorded, so an entry with that name is
 * ours.  Best effort: the error already reported is the one that matters. */
static void
drop_recorded_tag (vmsnap_op *op, const vmsnap_disk *d, const char *qemu_img)
{
  const char *rec = vmsnap_op_get (op, "tag");
  gboolean gone;

  if (rec == NULL || !not_in_use (op, d, qemu_img, d->source, NULL))
    return;
  remove_tag (op, d, qemu_img, d->source, rec, &gone, NULL, NULL);
}

static int
qint_create (vmsnap_op *op, const vmsnap_disk *d, const char *name,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *qemu_img = NULL;

  if (check_slot (op, d, "create", flags, err) < 0)
    return -1;
  if (name == NULL || !valid_tag (name))
    return fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: '%s' cannot be an "
                 "internal snapshot name (1 to %d characters from A-Z a-z 0-9 "
                 ". _ + -, starting with a letter or digit)", d->target,
                 name ? name : "(null)", MAX_TAG);
  if ((qemu_img = vmsnap_op_qemu_img (op, err)) == NULL)
    return -1;
  if (vmsnap_op_is_online (op))
    return create_online (op, d, qemu_img, name, res, err);
  if (create_1 (op, d, qemu_img, name, res, err) == 0)
    return 0;
  drop_recorded_tag (op, d, qemu_img);
  return -1;
}

/* ================================================================ revert */

/* Applying a snapshot rewrites the image's current state: only the disk's
 * active image may be rewritten (an image below it, e.g. the backing file
 * of an overlay another backend made, is read by the images above it). */
static int
qint_revert (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *qemu_img = NULL, *path = NULL, *tag = NULL, *date = NULL;
  g_autoptr (GPtrArray) tab = NULL;
  entry *e;
  gboolean online;

  if (check_slot (op, d, "revert", flags, err) < 0
      || !loc_split (d, locator, &path, &tag, err))
    return -1;
  online = vmsnap_op_is_online (op);
  if (!same_file (path, d->source))
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: snapshot '%s' lives in image %s, but the disk's "
                 "active image is now %s; %s reverts only the active image "
                 "(rewriting another one would change what the images above "
                 "it read).  Point the disk back to %s to revert it",
                 d->target, tag, path, d->source, NAME, path);
  if ((qemu_img = vmsnap_op_qemu_img (op, err)) == NULL)
    return -1;
  if (!online && (!same_as_recorded (op, d, tag, err)
                  || !not_in_use (op, d, qemu_img, path, err)
                  || !repair_leaks (op, d, qemu_img, path, err)))
    return -1;
  if ((tab = read_table (op, d, qemu_img, path, err)) == NULL
      || !find_unique (d, tab, path, tag, &e, err))
    return -1;
  if (e == NULL)
    return fail (err, VMSNAP_ERR_FAILED,
                 "disk %s: internal snapshot '%s' is missing from image %s "
                 "(`qemu-img snapshot -l %s` shows its table), so the disk "
                 "cannot be reverted to it%s; `vmsnap delete` removes the "
                 "snapshot from vmsnap's catalog", d->target, tag, path, path,
                 online ? "" : "; nothing was changed");
  date = entry_date (e);
  if (online) {
    vmsnap_result_set_note (res, "reverted by libvirt with the VM's memory "
                            "state (internal snapshot '%s', id %s, taken %s, "
                            "in %s)", tag, e->id, date, path);
    return 0;
  }

  if (!vmsnap_op_step_done (op, "applied")) {
    const char *ref = unambiguous_ref (tab, e);
    GError *te = NULL;

    if (ref == NULL)
      return fail (err, VMSNAP_ERR_FAILED,
                   "disk %s: in image %s, internal snapshot '%s' has id %s, "
                   "another entry has the ID '%s' and another is named '%s': "
                   "qemu-img cannot be told which one to apply; rename or "
                   "remove the entries made outside vmsnap; nothing was "
                   "changed", d->target, path, tag, e->id, tag, e->id);
    if (!record_tag (op, tag, err))
      return -1;
    if (!run_snapshot (op, qemu_img, "-a", ref, path, &te))
      return fail_with (err, te, "fix the cause and run the command again",
                        "disk %s: applying internal snapshot '%s' (id %s) to %s",
                        d->target, tag, e->id, path);
    if (!vmsnap_op_mark_done (op, "applied", err))
      return -1;
  }
  vmsnap_result_set_note (res, "%s reverted to internal snapshot '%s' (id %s, "
                          "taken %s), which stays in its table%s", path, tag,
                          e->id, date,
                          e->vm_state_size
                          ? "; the snapshot's memory state is not restored on "
                            "a shut-off domain: the guest boots from the "
                            "disk state"
                          : "");
  return 0;
}

/* ================================================================ delete */

static int
qint_delete (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *qemu_img = NULL, *path = NULL, *tag = NULL, *info = NULL;
  guint64 before, after;
  gboolean gone;
  struct stat st;

  if (check_slot (op, d, "delete", flags, err) < 0
      || !loc_split (d, locator, &path, &tag, err))
    return -1;
  if ((qemu_img = vmsnap_op_qemu_img (op, err)) == NULL)
    return -1;

  if (vmsnap_op_is_online (op)) {
    g_autoptr (GPtrArray) tab = read_table (op, d, qemu_img, path, err);
    guint n;
    if (tab == NULL)
      return -1;
    if (find_tag (tab, tag, &n) != NULL) {
      g_autofree char *ids = ids_text (tab, tag);
      return fail (err, VMSNAP_ERR_FAILED,
                   "disk %s: image %s still holds internal snapshot '%s' "
                   "(id %s) after libvirt deleted the VM's snapshot; check "
                   "`virsh snapshot-list` and `qemu-img snapshot -l -U %s`, "
                   "then run the command again", d->target, path, tag, ids,
                   path);
    }
    vmsnap_result_set_note (res, "internal snapshot '%s' removed from %s by "
                            "libvirt", tag, path);
    return 0;
  }

  if (!same_as_recorded (op, d, tag, err))
    return -1;
  if (lstat (path, &st) < 0 && errno == ENOENT) {
    vmsnap_result_set_note (res, "image %s no longer exists: internal "
                            "snapshot '%s' went with it", path, tag);
    return 0;
  }
  if (!not_in_use (op, d, qemu_img, path, err)
      || !repair_leaks (op, d, qemu_img, path, err))
    return -1;
  /* Refusals (several entries of that name) come before anything is
   * recorded: the core then abandons the operation, nothing changed. */
  {
    g_autoptr (GPtrArray) tab = read_table (op, d, qemu_img, path, err);
    entry *e;
    if (tab == NULL || !find_unique (d, tab, path, tag, &e, err))
      return -1;
    if (e == NULL && !vmsnap_op_get (op, "tag")) {
      vmsnap_result_set_note (res, "internal snapshot '%s' was already gone "
                              "from %s", tag, path);
      return 0;
    }
  }
  if (!record_tag (op, tag, err))
    return -1;
  before = allocated (path);
  if (!remove_tag (op, d, qemu_img, path, tag, &gone, &info, err))
    return -1;
  if (!vmsnap_op_step_done (op, "deleted")
      && !vmsnap_op_mark_done (op, "deleted", err))
    return -1;
  after = allocated (path);
  if (!gone)
    vmsnap_result_set_note (res, "internal snapshot '%s' was already gone from "
                            "%s", tag, path);
  else if (before != G_MAXUINT64 && after != G_MAXUINT64 && after < before) {
    g_autofree char *freed = g_format_size_full (before - after,
                                                 G_FORMAT_SIZE_IEC_UNITS);
    vmsnap_result_set_note (res, "internal snapshot '%s' (%s) removed from %s; "
                            "%s freed (clusters only it used)", tag, info,
                            path, freed);
  } else
    vmsnap_result_set_note (res, "internal snapshot '%s' (%s) removed from %s; "
                            "no space freed (the current state or other "
                            "snapshots still share its clusters)", tag, info,
                            path);
  return 0;
}

/* =============================================================== discard */

/* Remove the entry of LOCATOR (an undo of a rolled-back create).  Already
 * gone, or the image gone: success. */
static int
qint_discard (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
              unsigned int flags, GError **err)
{
  g_autofree char *qemu_img = NULL, *path = NULL, *tag = NULL;
  gboolean gone;
  struct stat st;

  if (check_slot (op, d, "discard", flags, err) < 0
      || !loc_split (d, locator, &path, &tag, err))
    return -1;
  if (vmsnap_op_is_online (op))
    return fail (err, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: cannot remove internal snapshot '%s' from %s: "
                 "image in use by the running domain; remove the domain's "
                 "snapshot with `virsh snapshot-delete`, or shut the domain "
                 "off and run `qemu-img snapshot -d %s %s`", d->target, tag,
                 path, tag, path);
  if (lstat (path, &st) < 0 && errno == ENOENT)
    return 0;
  if ((qemu_img = vmsnap_op_qemu_img (op, err)) == NULL
      || !not_in_use (op, d, qemu_img, path, err)
      || !repair_leaks (op, d, qemu_img, path, err)
      || !remove_tag (op, d, qemu_img, path, tag, &gone, NULL, err))
    return -1;
  return 0;
}

/* ================================================================== list */

/* Every entry of the active image's table, plus those of other images the
 * catalog names for this disk (an image below an overlay made later);
 * images that cannot be read there are left out (drift for the core to
 * see). */
static int
qint_list (vmsnap_op *op, const vmsnap_disk *d, GPtrArray **points,
           GError **err)
{
  g_autofree char *qemu_img = NULL;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) vmsnap_point_free);
  g_autoptr (GPtrArray) images = g_ptr_array_new_with_free_func (g_free);

  if (check_slot (op, d, "list", 0, err) < 0)
    return -1;
  if ((qemu_img = vmsnap_op_qemu_img (op, err)) == NULL)
    return -1;
  g_ptr_array_add (images, g_strdup (d->source));
  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    g_autofree char *path = NULL, *tag = NULL;
    gboolean seen = FALSE;
    if (!loc_split (d, vmsnap_op_locator (op, i), &path, &tag, NULL))
      continue;
    for (guint k = 0; k < images->len && !seen; k++)
      seen = same_file (g_ptr_array_index (images, k), path);
    if (!seen)
      g_ptr_array_add (images, g_steal_pointer (&path));
  }
  for (guint k = 0; k < images->len; k++) {
    const char *img = g_ptr_array_index (images, k);
    g_autoptr (GPtrArray) tab = read_table (op, d, qemu_img, img,
                                            k == 0 ? err : NULL);
    if (tab == NULL) {
      if (k == 0)
        return -1;
      continue;
    }
    for (guint i = 0; i < tab->len; i++) {
      entry *e = g_ptr_array_index (tab, i);
      vmsnap_point *pt = g_new0 (vmsnap_point, 1);
      pt->locator = loc_make (img, e->name);
      pt->name = g_strdup (e->name);
      pt->owner = NULL;   /* the table has no room for an ownership mark */
      g_ptr_array_add (out, pt);
    }
  }
  *points = g_steal_pointer (&out);
  return 0;
}

/* No merge slot: internal snapshots share clusters by refcount, there is
 * no chain to consolidate. */
static vmsnap_backend qcow2_internal = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "qcow2 internal snapshots (snapshot table), memory state included",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_REVERT_ONLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_MEMORY | VMSNAP_CAP_VM_INTERNAL,
  .probe = qint_probe,
  .create = qint_create,
  .revert = qint_revert,
  .delete = qint_delete,
  .list = qint_list,
  .discard = qint_discard,
};

VMSNAP_REGISTER_BACKEND (qcow2_internal)
