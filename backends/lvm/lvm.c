/* lvm: native LVM snapshots through liblvm2cmd, in process (no fork of the
 * lvm binary: lvm2_run() runs the command inside vmsnap, its report output
 * arrives through the log callback and is parsed from --reportformat json;
 * a failure carries LVM's own messages).
 *
 * The disk's LV is found from its device: the device-mapper uuid in sysfs
 * ("LVM-" + VG uuid + LV uuid) names the LV whatever path the domain uses.
 *
 * Thin LVs.  create: a thin snapshot in the same pool (refused when the
 * pool is fuller than lvm.thin-max-percent, default 90).  revert: the
 * disk's LV is renamed away and a new thin snapshot of the snapshot takes
 * its name, so the domain's device path does not change and the snapshot
 * stays as it was (revertable again); the old LV is garbage.  Thin
 * snapshots do not depend on each other: delete is an lvremove, merge has
 * nothing to consolidate.
 *
 * Thick LVs.  create: a classic COW snapshot of the disk's LV, sized by
 * lvm.snapshot-size (a percentage of the LV, default 20%, or a size such
 * as 512M), refused when the VG lacks the space.  revert: lvconvert
 * --merge of the snapshot into the LV (the merge needs the LV closed: the
 * domain is shut off), then the snapshot is created again under the same
 * name and tags, so it stays revertable.  A merge LVM defers (the LV was
 * open) is detected and reported; an invalidated (overflowed) snapshot is
 * reported and never used for a revert.  Other snapshots of the LV receive
 * a copy of every block the merge rewrites: they are extended first when
 * they would not hold it.
 *
 * Locators: "lvm:VG/LV", the snapshot's LV.  They never move (a revert
 * keeps the snapshot's name).  Undo of a thin revert is
 * "lvm:VG/OLD?restore=LV&rev=HEX" (see lvm_discard).
 *
 * Tags.  Every LV vmsnap creates carries vmsnap_dom_<domain uuid> and,
 * for snapshots, vmsnap_disk_<target> and vmsnap_snap_<name>; a revert's
 * new thin LV carries vmsnap_rev_<hex> (so its undo removes only it).  The
 * list slot returns the snapshots by these tags.
 *
 * Crash safety.  Each state-changing slot records its whole plan (one
 * JSON value, key "plan") before it acts, then marks each step done; a
 * re-run skips the done steps and finds the effect of an interrupted step
 * on storage (an LV of the recorded name with the recorded tags, a rename
 * already made, a merge under way), so every step is repeatable.  Nothing
 * a catalog entry or the domain names is removed here: removals go through
 * the garbage list and the discard slot. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <libdevmapper.h>
#include <lvm2cmd.h>

#include <vmsnap/backend.h>
#include "../backend-util.h"

#define NAME "lvm"

#define TAG_DOM "vmsnap_dom_"
#define TAG_DISK "vmsnap_disk_"
#define TAG_SNAP "vmsnap_snap_"
#define TAG_REV "vmsnap_rev_"
/* A disk's LV renamed away by a thin revert: "<name>.vmsnap-old-<hex>". */
#define OLD_MARK ".vmsnap-old-"

#define DEFAULT_SNAPSHOT_SIZE "20%"
#define DEFAULT_THIN_MAX_PERCENT "90"

/* ========================================================== sizes */

/* "16.0 MiB", short (backend-util.h's fmt_size adds the byte count), with
 * a plain space where GLib puts a no-break one: it reads and greps better
 * in messages. */
static char *
size_text (guint64 bytes)
{
  g_autofree char *s = g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS);
  GString *o = g_string_new (NULL);

  for (const char *p = s; *p; p++) {
    if ((unsigned char) p[0] == 0xc2 && (unsigned char) p[1] == 0xa0) {
      g_string_append_c (o, ' ');
      p++;
    } else
      g_string_append_c (o, *p);
  }
  return g_string_free (o, FALSE);
}

/* ============================================================ liblvm2cmd */

static GMutex lvm_lock;
static void *lvm_handle;
static GString *lvm_out;      /* LVM2_LOG_PRINT lines of the running command */
static GString *lvm_errors;   /* its error messages */

static void
lvm_log (int level, const char *file, int line, int dm_errno, const char *msg)
{
  (void) file;
  (void) line;
  (void) dm_errno;
  if (level == LVM2_LOG_PRINT && lvm_out)
    g_string_append_printf (lvm_out, "%s\n", msg);
  else if (level <= LVM2_LOG_ERROR && level > LVM2_LOG_SUPPRESS && lvm_errors)
    g_string_append_printf (lvm_errors, "%s%s", lvm_errors->len ? "; " : "", msg);
}

/* Characters LVM allows in VG and LV names (lvm2_run() splits its command
 * line on blanks and treats '#' as a comment, so nothing else may reach
 * it). */
static gboolean
name_chars_ok (const char *s)
{
  if (s == NULL || *s == '\0')
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("+_.-", *p))
      return FALSE;
  return TRUE;
}

/* Run one LVM command line.  *out (may be NULL): what it printed.  On
 * failure *err says "`CMD`: LVM's messages". */
static gboolean lvm_run (char **out, GError **err, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

static gboolean
lvm_run (char **out, GError **err, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *cmd = NULL;
  g_autofree char *printed = NULL, *errors = NULL;
  int rc;

  va_start (ap, fmt);
  cmd = g_strdup_vprintf (fmt, ap);
  va_end (ap);

  g_mutex_lock (&lvm_lock);
  if (lvm_handle == NULL) {
    /* Monitoring (dmeventd) follows lvm.conf, as for the lvm tool: that
     * is what auto-extends snapshots and pools above their thresholds. */
    lvm2_log_fn (lvm_log);
    lvm_handle = lvm2_init ();
  }
  if (lvm_handle == NULL) {
    g_mutex_unlock (&lvm_lock);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "liblvm2cmd: lvm2_init failed (is lvm2 installed and "
                 "/etc/lvm/lvm.conf readable?)");
    return FALSE;
  }
  lvm_out = g_string_new (NULL);
  lvm_errors = g_string_new (NULL);
  lvm2_log_level (lvm_handle, LVM2_LOG_PRINT);
  rc = lvm2_run (lvm_handle, cmd);
  printed = g_string_free (lvm_out, FALSE);
  errors = g_string_free (lvm_errors, FALSE);
  lvm_out = lvm_errors = NULL;
  g_mutex_unlock (&lvm_lock);

  if (rc != LVM2_COMMAND_SUCCEEDED) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "`%s` failed: %s", cmd,
                 *errors ? errors : *printed ? g_strstrip (printed)
                                             : "no message from LVM");
    return FALSE;
  }
  if (out)
    *out = g_steal_pointer (&printed);
  return TRUE;
}

/* ================================================================ lvs */

typedef struct {
  char *vg, *name, *attr, *origin, *pool, *segtype, *tags, *uuid;
  guint64 size, vg_free, extent;
  double snap, data, meta;          /* percent; -1 when LVM reports none */
  gboolean open, active, merging, invalid, hidden;
} lvinfo;

#define LV_FIELDS "vg_name,lv_name,lv_attr,origin,pool_lv,segtype,lv_size," \
  "vg_free,vg_extent_size,snap_percent,data_percent,metadata_percent,"      \
  "lv_tags,lv_uuid,lv_device_open,lv_active,lv_merging,lv_snapshot_invalid"

static void
lvinfo_free (gpointer p)
{
  lvinfo *l = p;

  g_free (l->vg);
  g_free (l->name);
  g_free (l->attr);
  g_free (l->origin);
  g_free (l->pool);
  g_free (l->segtype);
  g_free (l->tags);
  g_free (l->uuid);
  g_free (l);
}

static const char *
jfield (JsonObject *o, const char *k)
{
  const char *v = json_object_get_string_member_with_default (o, k, "");
  return v ? v : "";
}

static double
jpercent (JsonObject *o, const char *k)
{
  const char *v = jfield (o, k);
  char *end;
  double d;

  if (*v == '\0')
    return -1;
  d = g_ascii_strtod (v, &end);
  return end == v ? -1 : d;
}

/* The number in field K (*SET, if not NULL: whether there was one). */
static guint64
jnum (JsonObject *o, const char *k, gboolean *set)
{
  const char *v = jfield (o, k);
  char *end;
  guint64 n = g_ascii_strtoull (v, &end, 10);

  if (set)
    *set = end != v;
  return n;
}

/* `lvs -a` of WHAT (a VG name or a selection), one lvinfo per LV. */
/* The LV objects of `lvs -a --reportformat json ... TAIL` (JsonObject,
 * referenced). */
static GPtrArray *
lvs_objects (const char *tail, GError **err)
{
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GPtrArray) objs = g_ptr_array_new_with_free_func ((GDestroyNotify) json_object_unref);
  const char *start, *end;
  g_autofree char *json = NULL;
  JsonNode *root;
  JsonArray *reports;

  if (!lvm_run (&out, err, "lvs -a --reportformat json %s", tail))
    return NULL;
  /* Warnings may come around the report: take the JSON document itself. */
  start = strstr (out, "{\n");
  if (start == NULL && out[0] == '{')
    start = out;
  end = strrchr (out, '}');
  if (start == NULL || end == NULL || end < start) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "`lvs %s` printed no JSON report: %s", tail, out);
    return NULL;
  }
  /* LVM may log a warning in the middle of the report (seen: recovering a
   * merge a kill interrupted): keep the lines that are JSON. */
  {
    g_autofree char *block = g_strndup (start, end - start + 1);
    g_auto (GStrv) lines = g_strsplit (block, "\n", -1);
    GString *keep = g_string_new (NULL);
    for (char **l = lines; *l; l++) {
      const char *t = *l + strspn (*l, " \t");
      if (*t == '{' || *t == '}' || *t == '[' || *t == ']' || *t == '"')
        g_string_append_printf (keep, "%s\n", *l);
    }
    json = g_string_free (keep, FALSE);
  }
  if (!json_parser_load_from_data (p, json, -1, err))
    return NULL;
  root = json_parser_get_root (p);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)
      || !(reports = json_object_get_array_member (json_node_get_object (root), "report"))) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "`lvs %s`: unexpected report: %s", tail, json);
    return NULL;
  }
  for (guint r = 0; r < json_array_get_length (reports); r++) {
    JsonObject *ro = json_array_get_object_element (reports, r);
    JsonArray *lvs = ro && json_object_has_member (ro, "lv")
                     ? json_object_get_array_member (ro, "lv") : NULL;
    for (guint i = 0; lvs && i < json_array_get_length (lvs); i++) {
      JsonObject *o = json_array_get_object_element (lvs, i);
      if (o)
        g_ptr_array_add (objs, json_object_ref (o));
    }
  }
  return g_steal_pointer (&objs);
}

/* "[name]" (a hidden LV in a report) -> "name". */
static char *
unhide (const char *n)
{
  size_t len = strlen (n);
  return n[0] == '[' && len >= 2 ? g_strndup (n + 1, len - 2) : g_strdup (n);
}

static GPtrArray *
lvs_rows (const char *what, GError **err)
{
  g_autofree char *tail = g_strdup_printf ("--units b --nosuffix -o " LV_FIELDS
                                           " %s", what);
  g_autoptr (GPtrArray) objs = lvs_objects (tail, err);
  g_autoptr (GPtrArray) rows = NULL;

  if (objs == NULL)
    return NULL;
  rows = g_ptr_array_new_with_free_func (lvinfo_free);
  for (guint i = 0; i < objs->len; i++) {
    JsonObject *o = g_ptr_array_index (objs, i);
    lvinfo *l = g_new0 (lvinfo, 1);
    l->hidden = jfield (o, "lv_name")[0] == '[';
    l->name = unhide (jfield (o, "lv_name"));
    l->vg = g_strdup (jfield (o, "vg_name"));
    l->attr = g_strdup (jfield (o, "lv_attr"));
    l->origin = unhide (jfield (o, "origin"));    /* a hidden origin: "[name]" */
    l->pool = g_strdup (jfield (o, "pool_lv"));
    l->segtype = g_strdup (jfield (o, "segtype"));
    l->tags = g_strdup (jfield (o, "lv_tags"));
    l->uuid = g_strdup (jfield (o, "lv_uuid"));
    l->size = jnum (o, "lv_size", NULL);
    l->vg_free = jnum (o, "vg_free", NULL);
    l->extent = jnum (o, "vg_extent_size", NULL);
    l->snap = jpercent (o, "snap_percent");
    l->data = jpercent (o, "data_percent");
    l->meta = jpercent (o, "metadata_percent");
    l->open = strcmp (jfield (o, "lv_device_open"), "open") == 0;
    l->active = strcmp (jfield (o, "lv_active"), "active") == 0;
    l->merging = strcmp (jfield (o, "lv_merging"), "merging") == 0;
    l->invalid = strstr (jfield (o, "lv_snapshot_invalid"), "invalid") != NULL
                 || (strlen (l->attr) > 4 && l->attr[4] == 'I');
    g_ptr_array_add (rows, l);
  }
  return g_steal_pointer (&rows);
}

static lvinfo *
find_lv (GPtrArray *rows, const char *name)
{
  for (guint i = 0; rows && i < rows->len; i++) {
    lvinfo *l = g_ptr_array_index (rows, i);
    if (strcmp (l->name, name) == 0)
      return l;
  }
  return NULL;
}

static gboolean
has_tag (const lvinfo *l, const char *tag)
{
  g_auto (GStrv) tags = g_strsplit (l->tags, ",", -1);
  return g_strv_contains ((const char *const *) tags, tag);
}

/* The value of the first tag starting with PREFIX, or NULL. */
static char *
tag_value (const lvinfo *l, const char *prefix)
{
  g_auto (GStrv) tags = g_strsplit (l->tags, ",", -1);
  for (char **t = tags; *t; t++)
    if (g_str_has_prefix (*t, prefix))
      return g_strdup (*t + strlen (prefix));
  return NULL;
}

static gboolean
is_thin (const lvinfo *l)
{
  return strcmp (l->segtype, "thin") == 0;
}

/* A classic (COW) snapshot; 'S' while it merges. */
static gboolean
is_cow (const lvinfo *l)
{
  return l->attr[0] == 's' || l->attr[0] == 'S';
}

/* The classic snapshot merging into ORIGIN, or NULL. */
static lvinfo *
merging_into (GPtrArray *rows, const lvinfo *origin)
{
  for (guint i = 0; i < rows->len; i++) {
    lvinfo *l = g_ptr_array_index (rows, i);
    if (is_cow (l) && l->merging && strcmp (l->origin, origin->name) == 0)
      return l;
  }
  return NULL;
}

/* "12.50% of 16.0 MiB COW space used" / "INVALID: overflowed its 16.0 MiB
 * of COW space". */
static char *
cow_usage (const lvinfo *l)
{
  g_autofree char *size = size_text (l->size);

  if (l->invalid)
    return g_strdup_printf ("INVALID: overflowed its %s of COW space", size);
  return g_strdup_printf ("%.2f%% of %s COW space used", l->snap < 0 ? 0 : l->snap,
                          size);
}

/* ============================================================ the disk */

/* The disks this backend can take at all: read by the core from this
 * file without loading the module (and liblvm2cmd), and the first check
 * of disk_lv, so both say the same. */
#define NOT_AN_LV "not a block device, so not an LVM logical volume"
VMSNAP_BACKEND_DISK_FILTER (lvm_disk_filter, "block", "", NOT_AN_LV);

/* Find the disk's LV from its device (sysfs dm uuid -> lv_uuid).  Returns
 * FALSE with *why (a verdict for probe: not an LV) or *err (LVM failed). */
static gboolean
disk_lv (const vmsnap_disk *d, char **vg, char **lv, char **why, GError **err)
{
  struct stat st;
  g_autofree char *sys = NULL, *uuid = NULL, *sel = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  const char *u;
  lvinfo *l;

  if ((*why = vmsnap_disk_filter_refuses (lvm_disk_filter, d)) != NULL)
    return FALSE;
  if (d->source == NULL) {
    *why = g_strdup (NOT_AN_LV);
    return FALSE;
  }
  if (stat (d->source, &st) != 0) {
    int errsv = errno;
    *why = g_strdup_printf ("%s: %s", d->source, g_strerror (errsv));
    return FALSE;
  }
  if (!S_ISBLK (st.st_mode)) {
    *why = g_strdup_printf ("%s is not a block device", d->source);
    return FALSE;
  }
  sys = g_strdup_printf ("/sys/dev/block/%u:%u/dm/uuid", major (st.st_rdev),
                         minor (st.st_rdev));
  if (!g_file_get_contents (sys, &uuid, NULL, NULL)) {
    *why = g_strdup_printf ("%s is not a device-mapper device, so not an LVM "
                            "logical volume (left to other backends)", d->source);
    return FALSE;
  }
  g_strstrip (uuid);
  if (!g_str_has_prefix (uuid, "LVM-")) {
    *why = g_strdup_printf ("%s is a device-mapper device not owned by LVM "
                            "(uuid %s)", d->source, uuid);
    return FALSE;
  }
  if (strlen (uuid) != 4 + 64) {
    *why = g_strdup_printf ("%s is an LVM-internal device (uuid %s), not a "
                            "usable LV", d->source, uuid);
    return FALSE;
  }
  for (const char *p = uuid + 4; *p; p++)
    if (!g_ascii_isalnum (*p)) {
      *why = g_strdup_printf ("%s: unexpected device-mapper uuid %s", d->source, uuid);
      return FALSE;
    }
  /* LVM shows uuids as 6-4-4-4-4-4-6. */
  u = uuid + 4 + 32;
  sel = g_strdup_printf ("-S lv_uuid=%.6s-%.4s-%.4s-%.4s-%.4s-%.4s-%.6s", u,
                         u + 6, u + 10, u + 14, u + 18, u + 22, u + 26);
  rows = lvs_rows (sel, err);
  if (rows == NULL)
    return FALSE;
  l = rows->len ? g_ptr_array_index (rows, 0) : NULL;
  if (l == NULL || !name_chars_ok (l->vg) || !name_chars_ok (l->name)) {
    *why = g_strdup_printf ("%s (device-mapper uuid %s): LVM knows no such LV",
                            d->source, uuid);
    return FALSE;
  }
  *vg = g_strdup (l->vg);
  *lv = g_strdup (l->name);
  return TRUE;
}

/* disk_lv for the state-changing slots: every failure is an error. */
static gboolean
disk_lv_or_fail (const vmsnap_disk *d, char **vg, char **lv, GError **err)
{
  g_autofree char *why = NULL;
  GError *e = NULL;

  if (disk_lv (d, vg, lv, &why, &e))
    return TRUE;
  if (e)
    fail_with (err, e, NULL, "disk %s: finding the LV of %s", d->target,
               d->source ? d->source : "(no source)");
  else
    fail (err, VMSNAP_ERR_FAILED, "disk %s: %s", d->target, why);
  return FALSE;
}

/* ============================================================ policies */

/* Settings ([lvm] in vmsnap.conf, -o lvm.KEY=VALUE; the environment
 * variables are the older way to set them and still work). */
static const vmsnap_option_desc lvm_options[] = {
  { "snapshot-size", VMSNAP_OPTION_SIZE_OR_PERCENT, DEFAULT_SNAPSHOT_SIZE,
    NULL, 0, 0, NULL, "VMSNAP_LVM_SNAPSHOT_SIZE",
    "COW space of a thick LV's snapshot: a percentage of the LV or a size" },
  { "thin-max-percent", VMSNAP_OPTION_INT, DEFAULT_THIN_MAX_PERCENT, NULL,
    0, 100, "%", "VMSNAP_LVM_THIN_MAX_PERCENT",
    "refuse a thin snapshot while the pool's data or metadata is fuller than this" },
  { NULL },
};

/* lvm.thin-max-percent: the pool fullness above which a create is
 * refused.  *origin: where the value came from, for messages. */
static double
thin_limit (const vmsnap_config *cfg, const char **origin)
{
  const char *o = vmsnap_option_origin (cfg, "lvm.thin-max-percent");

  *origin = o ? o : "lvm.thin-max-percent, the default";
  if (cfg == NULL)
    return g_ascii_strtod (DEFAULT_THIN_MAX_PERCENT, NULL);
  return (double) vmsnap_option_get_int (cfg, "lvm.thin-max-percent");
}

static guint64
round_up (guint64 v, guint64 unit)
{
  return unit ? (v + unit - 1) / unit * unit : v;
}

/* ceil() for the non-negative values here, without libm. */
static guint64
ceil_u64 (double x)
{
  guint64 r = (guint64) x;
  return (double) r < x ? r + 1 : r;
}

/* The size of a new COW snapshot of O: lvm.snapshot-size (default 20%):
 * "N%" of O's size, or a size ("512M", "2G", "1073741824"; binary units;
 * the core validated it).  Rounded up to whole extents, at least one;
 * never more than O can use (its size plus the exception tables), as LVM
 * itself caps it.  *policy says how it was chosen, for messages. */
static void
snapshot_size (const vmsnap_config *cfg, const lvinfo *o, guint64 *bytes,
               char **policy)
{
  const char *v = vmsnap_option_get (cfg, "lvm.snapshot-size");
  const char *origin = vmsnap_option_origin (cfg, "lvm.snapshot-size");
  bool pct = TRUE;
  guint64 want, cap;

  if (v == NULL) {              /* no configuration: no context (tests) */
    v = DEFAULT_SNAPSHOT_SIZE;
    want = ceil_u64 ((double) o->size * 20 / 100.0);
  } else
    want = vmsnap_option_get_size (cfg, "lvm.snapshot-size", o->size, &pct);
  if (pct)
    *policy = g_strdup_printf ("%s of the LV", v);
  else
    *policy = g_strdup_printf ("%s=%s", origin && g_str_has_prefix (origin, "VMSNAP_")
                               ? origin : "lvm.snapshot-size", v);
  want = MAX (round_up (want, o->extent), o->extent);
  cap = round_up (o->size + o->size / 64, o->extent);
  *bytes = MIN (want, cap);
}

/* ============================================================= names */

static const char *const reserved_parts[] = {
  "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mimage",
  "_mlog", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_imeta",
  "_iorig", "_pmspare", "_vorigin", NULL,
};

static size_t
count_char (const char *s, char c)
{
  size_t n = 0;
  for (; *s; s++)
    n += *s == c;
  return n;
}

/* Would LVM accept N as a new LV name in VG (charset, reserved names, and
 * the device-mapper name "VG-LV-cow" within its 128 bytes)? */
static gboolean
lv_name_ok (const char *vg, const char *n)
{
  size_t len = strlen (n);

  if (!name_chars_ok (n) || n[0] == '-' || len > 120 || !strcmp (n, ".")
      || !strcmp (n, "..") || g_str_has_prefix (n, "snapshot")
      || g_str_has_prefix (n, "pvmove"))
    return FALSE;
  for (const char *const *r = reserved_parts; *r; r++)
    if (strstr (n, *r))
      return FALSE;
  return strlen (vg) + count_char (vg, '-') + 1 + len + count_char (n, '-') + 6 <= 127;
}

/* A free LV name in VG for a new LV derived from BASE: "BASE.HINT" when
 * HINT is given and that is free and valid, else "BASE.MARK<8 hex>" (BASE
 * shortened as needed). */
static char *
pick_name (GPtrArray *rows, const char *vg, const char *base, const char *hint,
           const char *mark)
{
  if (hint) {
    g_autofree char *c = g_strconcat (base, ".", hint, NULL);
    if (lv_name_ok (vg, c) && find_lv (rows, c) == NULL)
      return g_steal_pointer (&c);
  }
  for (int tries = 0; tries < 64; tries++) {
    size_t keep = strlen (base);
    for (;;) {
      g_autofree char *c = g_strdup_printf ("%.*s%s%08x", (int) keep, base, mark,
                                            g_random_int ());
      if (lv_name_ok (vg, c)) {
        if (find_lv (rows, c) == NULL)
          return g_steal_pointer (&c);
        break;
      }
      if (keep == 0)
        break;
      keep = keep > 8 ? keep - 8 : 0;
    }
  }
  return NULL;
}

/* ============================================================ locators */

/* "lvm:VG/LV[?restore=NAME&rev=HEX]" */
static gboolean
loc_parse (const vmsnap_disk *d, const char *loc, char **vg, char **lv,
           char **restore, char **rev, GError **err)
{
  g_autofree char *s = NULL;
  char *q, *slash;

  if (loc == NULL || !g_str_has_prefix (loc, NAME ":"))
    goto bad;
  s = g_strdup (loc + strlen (NAME ":"));
  q = strchr (s, '?');
  if (q) {
    g_auto (GStrv) kv = g_strsplit (q + 1, "&", -1);
    *q = '\0';
    for (char **p = kv; *p; p++) {
      if (g_str_has_prefix (*p, "restore=") && restore && name_chars_ok (*p + 8))
        *restore = g_strdup (*p + 8);
      else if (g_str_has_prefix (*p, "rev=") && rev && name_chars_ok (*p + 4))
        *rev = g_strdup (*p + 4);
      else
        goto bad;
    }
  }
  slash = strchr (s, '/');
  if (slash == NULL)
    goto bad;
  *slash = '\0';
  if (!name_chars_ok (s) || !name_chars_ok (slash + 1))
    goto bad;
  *vg = g_strdup (s);
  *lv = g_strdup (slash + 1);
  return TRUE;
bad:
  fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: '%s' is not a %s locator "
        "(lvm:VG/LV)", d ? d->target : "?", loc ? loc : "(null)", NAME);
  return FALSE;
}

static char *
loc_make (const char *vg, const char *lv)
{
  return g_strdup_printf ("%s:%s/%s", NAME, vg, lv);
}

/* ============================================================= journal */

typedef struct {
  char *kind;      /* "thin" / "thick" */
  char *vg, *origin, *lv, *old, *rev;
  guint64 size;
  char *tags;      /* comma-separated tags to put on a new LV */
  JsonArray *extend; /* thick revert: [[lv, bytes], ...] */
} plan;

static void
plan_free (plan *p)
{
  if (p == NULL)
    return;
  g_free (p->kind);
  g_free (p->vg);
  g_free (p->origin);
  g_free (p->lv);
  g_free (p->old);
  g_free (p->rev);
  g_free (p->tags);
  if (p->extend)
    json_array_unref (p->extend);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (plan, plan_free)

static void
jb_str (JsonBuilder *b, const char *k, const char *v)
{
  if (v == NULL)
    return;
  json_builder_set_member_name (b, k);
  json_builder_add_string_value (b, v);
}

/* Record the plan (the decision) before anything is done. */
static gboolean
plan_record (vmsnap_op *op, const plan *p, GError **err)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  jb_str (b, "kind", p->kind);
  jb_str (b, "vg", p->vg);
  jb_str (b, "origin", p->origin);
  jb_str (b, "lv", p->lv);
  jb_str (b, "old", p->old);
  jb_str (b, "rev", p->rev);
  jb_str (b, "tags", p->tags);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64) p->size);
  json_builder_set_member_name (b, "extend");
  json_builder_begin_array (b);
  for (guint i = 0; p->extend && i < json_array_get_length (p->extend); i++) {
    JsonArray *e = json_array_get_array_element (p->extend, i);
    json_builder_begin_array (b);
    json_builder_add_string_value (b, json_array_get_string_element (e, 0));
    json_builder_add_int_value (b, json_array_get_int_element (e, 1));
    json_builder_end_array (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  text = json_generator_to_data (g, NULL);
  /* A step of its own, so that the crash hook can stop an operation with
   * its plan recorded and nothing done (tests/integration/lvm-killed.sh). */
  return vmsnap_op_set (op, "plan", text, err)
         && vmsnap_op_mark_done (op, "planned", err);
}

static char *
jstr_dup (JsonObject *o, const char *k)
{
  const char *v = json_object_get_string_member_with_default (o, k, NULL);
  return v ? g_strdup (v) : NULL;
}

/* LVM suspends an LV's device-mapper devices while it changes their
 * tables; a vmsnap killed inside such an LVM command (lvcreate -s,
 * lvconvert --merge, the end of a merge) leaves them suspended, and every
 * read of the LV would hang.  Resuming an interrupted operation first
 * resumes (lvchange --refresh) the disk's LV and its snapshots that LVM
 * reports suspended (lv_attr's state 's', 'S', 'M' or 'C'). */
static int
heal_suspended (const vmsnap_disk *d, const char *vg, const char *origin,
                GError **err)
{
  GError *e = NULL;
  g_autoptr (GPtrArray) rows = lvs_rows (vg, &e);

  if (rows == NULL)
    return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, vg);
  for (guint i = 0; i < rows->len; i++) {
    const lvinfo *l = g_ptr_array_index (rows, i);
    if (l->hidden || strlen (l->attr) < 5 || strchr ("sSMC", l->attr[4]) == NULL
        || (strcmp (l->name, origin) != 0 && strcmp (l->origin, origin) != 0))
      continue;
    if (!lvm_run (NULL, &e, "lvchange --refresh %s/%s", vg, l->name))
      return fail_with (err, e, "resume it by hand (lvchange --refresh), then "
                        "run `vmsnap recover` again", "disk %s: LV %s/%s was "
                        "left suspended by the interrupted operation and "
                        "could not be resumed", d->target, vg, l->name);
  }
  return 0;
}

/* The recorded plan, or NULL (and no error) when there is none.  A plan
 * found while recovering: its LVs are resumed first (heal_suspended). */
static plan *
plan_load (vmsnap_op *op, const vmsnap_disk *d, GError **err)
{
  const char *s = vmsnap_op_get (op, "plan");
  g_autoptr (JsonParser) jp = NULL;
  g_autoptr (plan) p = NULL;
  JsonNode *root;
  JsonObject *o;

  if (s == NULL)
    return NULL;
  jp = json_parser_new ();
  if (!json_parser_load_from_data (jp, s, -1, NULL)
      || (root = json_parser_get_root (jp)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal's plan of the "
          "interrupted operation cannot be read; it cannot be resumed",
          d->target);
    return NULL;
  }
  o = json_node_get_object (root);
  p = g_new0 (plan, 1);
  p->kind = jstr_dup (o, "kind");
  p->vg = jstr_dup (o, "vg");
  p->origin = jstr_dup (o, "origin");
  p->lv = jstr_dup (o, "lv");
  p->old = jstr_dup (o, "old");
  p->rev = jstr_dup (o, "rev");
  p->tags = jstr_dup (o, "tags");
  p->size = (guint64) json_object_get_int_member_with_default (o, "size", 0);
  if (json_object_has_member (o, "extend"))
    p->extend = json_array_ref (json_object_get_array_member (o, "extend"));
  if (p->kind == NULL || p->vg == NULL || p->origin == NULL || p->lv == NULL
      || !name_chars_ok (p->vg) || !name_chars_ok (p->origin)
      || !name_chars_ok (p->lv) || (p->old && !name_chars_ok (p->old))
      || (p->rev && !name_chars_ok (p->rev))
      || (!strcmp (p->kind, "thin") && p->rev && !p->old)) {
    fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal's plan of the "
          "interrupted operation is incomplete; it cannot be resumed",
          d->target);
    return NULL;
  }
  if (vmsnap_op_is_recovering (op)
      && heal_suspended (d, p->vg, p->origin, err) < 0)
    return NULL;
  return g_steal_pointer (&p);
}

/* ============================================================== common */

static int
check_slot (vmsnap_op *op, const vmsnap_disk *d, const char *slot,
            unsigned int flags, GError **err)
{
  if (!vmsnap_check_flags (NAME, slot, flags, 0, err))
    return -1;
  if (op == NULL || d == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: %s called without an "
                 "operation context or disk (internal error)", NAME, slot);
  return 0;
}

/* " --addtag T" for each tag of the comma-separated list. */
static char *
addtags (const char *tags)
{
  g_auto (GStrv) t = g_strsplit (tags ? tags : "", ",", -1);
  GString *s = g_string_new (NULL);

  for (char **p = t; *p; p++)
    if (**p)
      g_string_append_printf (s, " --addtag %s", *p);
  return g_string_free (s, FALSE);
}

/* Tags LVM accepts and lvm2_run() passes through unharmed. */
static gboolean
tag_ok (const char *t)
{
  if (t == NULL || *t == '\0' || strlen (t) > 1024)
    return FALSE;
  for (const char *p = t; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("_+.-/=!:&", *p))
      return FALSE;
  return TRUE;
}

/* The tags of TAGS (comma-separated, as lvs reports them) that can be
 * given to lvcreate again. */
static char *
usable_tags (const char *tags)
{
  g_auto (GStrv) t = g_strsplit (tags ? tags : "", ",", -1);
  GString *s = g_string_new (NULL);

  for (char **p = t; *p; p++)
    if (tag_ok (*p))
      g_string_append_printf (s, "%s%s", s->len ? "," : "", *p);
  return g_string_free (s, FALSE);
}

/* The tags of a new snapshot of disk D named NAME. */
static char *
snapshot_tags (vmsnap_op *op, const vmsnap_disk *d, const char *name)
{
  GString *s = g_string_new (NULL);
  g_autofree char *dom = g_strconcat (TAG_DOM, vmsnap_op_domain_uuid (op), NULL);
  g_autofree char *disk = g_strconcat (TAG_DISK, d->target, NULL);
  g_autofree char *snap = g_strconcat (TAG_SNAP, name, NULL);

  if (tag_ok (dom))
    g_string_append (s, dom);
  if (tag_ok (disk))
    g_string_append_printf (s, "%s%s", s->len ? "," : "", disk);
  if (tag_ok (snap))
    g_string_append_printf (s, "%s%s", s->len ? "," : "", snap);
  return g_string_free (s, FALSE);
}

static char *
dom_tag (vmsnap_op *op)
{
  return g_strconcat (TAG_DOM, vmsnap_op_domain_uuid (op), NULL);
}

/* The message for an LV with a deferred merge pending. */
static int
fail_merging (GError **err, const vmsnap_disk *d, const lvinfo *o,
              GPtrArray *rows)
{
  lvinfo *s = merging_into (rows, o);
  g_autofree char *sname = s ? g_strdup_printf ("%s/%s", o->vg, s->name)
                             : g_strdup ("a snapshot");

  return fail (err, VMSNAP_ERR_FAILED,
               "disk %s: LV %s/%s has a merge of %s pending (LVM deferred it "
               "because the LV was open; it runs when the LV is next "
               "activated).  Close whatever holds %s open, then run `lvchange "
               "-an %s/%s && lvchange -ay %s/%s` (or `vmsnap recover` if a "
               "vmsnap revert was interrupted); nothing was changed",
               d->target, o->vg, o->name, sname, d->source ? d->source : "it",
               o->vg, o->name, o->vg, o->name);
}

/* ============================================================== probe */

static int
lvm_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
           vmsnap_probe_result *res, GError **err)
{
  g_autofree char *vg = NULL, *name = NULL, *why = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (GError) local = NULL;
  lvinfo *o;

  (void) err;
  if (!disk_lv (d, &vg, &name, &why, &local)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s",
                      why ? why : local ? local->message : "not an LV");
    return 0;
  }
  rows = lvs_rows (vg, &local);
  if (rows == NULL || (o = find_lv (rows, name)) == NULL) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s",
                      local ? local->message : "the LV vanished while probed");
    return 0;
  }
  vmsnap_probe_add_detail (res, "lv", "%s/%s", vg, name);
  vmsnap_probe_add_detail (res, "lv_size", "%" G_GUINT64_FORMAT, o->size);
  vmsnap_probe_add_detail (res, "vg_free", "%" G_GUINT64_FORMAT, o->vg_free);
  if (is_cow (o)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s is itself a classic snapshot LV", d->source);
    return 0;
  }
  if (o->merging) {
    lvinfo *s = merging_into (rows, o);
    vmsnap_probe_add_limit (res, "a merge of %s/%s into this LV is pending "
                            "(deferred by LVM): operations are refused until "
                            "it has run", vg, s ? s->name : "?");
  }
  if (is_thin (o)) {
    lvinfo *pool = find_lv (rows, o->pool);
    const char *origin;
    double limit = thin_limit (vmsnap_probe_config (res), &origin);

    vmsnap_probe_set_class (res, VMSNAP_CLASS_LVM_THIN);
    vmsnap_probe_add_detail (res, "thin_pool", "%s/%s", vg, o->pool);
    if (pool) {
      vmsnap_probe_add_detail (res, "pool_data_percent", "%.2f", pool->data);
      vmsnap_probe_add_detail (res, "pool_metadata_percent", "%.2f", pool->meta);
    }
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 90,
                      "thin LV %s in pool %s/%s: thin snapshots, revert to any "
                      "snapshot without copying data", d->source, vg, o->pool);
    vmsnap_probe_add_limit (res, "creation is refused while pool %s/%s is "
                            "fuller than %.0f%% (%s)", vg, o->pool, limit,
                            origin);
  } else if (o->attr[0] == '-' || o->attr[0] == 'o' || o->attr[0] == 'O'
             || o->attr[0] == 'r' || o->attr[0] == 'm') {
    GString *snaps = g_string_new (NULL);
    g_autofree char *policy = NULL;
    guint64 size = 0;

    vmsnap_probe_set_class (res, VMSNAP_CLASS_LVM_THICK);
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 85,
                      "thick LV %s: classic COW snapshot sized by policy",
                      d->source);
    snapshot_size (vmsnap_probe_config (res), o, &size, &policy);
    {
      g_autofree char *s = size_text (size);
      vmsnap_probe_add_detail (res, "snapshot_size", "%s (%s)", s, policy);
    }
    for (guint i = 0; i < rows->len; i++) {
      lvinfo *l = g_ptr_array_index (rows, i);
      g_autofree char *u = NULL, *sn = NULL;
      if (!is_cow (l) || strcmp (l->origin, name) != 0)
        continue;
      u = cow_usage (l);
      sn = tag_value (l, TAG_SNAP);
      g_string_append_printf (snaps, "%s%s%s%s%s: %s", snaps->len ? "; " : "",
                              l->name, sn ? " (" : "", sn ? sn : "",
                              sn ? ")" : "", u);
    }
    if (snaps->len)
      vmsnap_probe_add_detail (res, "snapshots", "%s", snaps->str);
    g_string_free (snaps, TRUE);
    vmsnap_probe_add_limit (res, "a COW snapshot that fills up is invalidated; "
                            "revert merges into the LV with the VM shut off");
  } else {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s is an LV of type %s "
                      "(attributes %s), which %s does not snapshot", d->source,
                      o->segtype, o->attr, NAME);
    return 0;
  }
  if (req->memory)
    vmsnap_probe_add_limit (res, "memory state goes to an external file");
  return 0;
}

/* The central guard (vmsnap_op_guard) before this op removes VG/LV. */
static gboolean
lv_guard (vmsnap_op *op, const char *vg, const char *lv, GError **err)
{
  g_autofree char *st = g_strdup_printf ("lvm:%s/%s", vg, lv);

  return vmsnap_op_guard (op, st, VMSNAP_GUARD_REMOVE, err);
}

/* ============================================================== create */

/* Remove LV NAME of VG if it exists and carries TAG (what an unfinished
 * slot made).  Best effort: used on the way out of a failure. */
static void
drop_if_ours (const char *vg, const char *name, const char *tag)
{
  g_autoptr (GPtrArray) rows = lvs_rows (vg, NULL);
  lvinfo *l = rows ? find_lv (rows, name) : NULL;

  if (l && has_tag (l, tag))
    lvm_run (NULL, NULL, "lvremove -y %s/%s", vg, name);
}

/* A classic snapshot S (ours: tag DTAG) that an `lvcreate -s` killed
 * midway left behind (found by the crash matrix's random kills; LVM makes
 * a COW snapshot in steps: the COW store as a plain LV, its header wiped,
 * the conversion to a snapshot, the activation): still a plain LV (only the
 * COW store) is removed and *S set to NULL, so it is created again; a
 * snapshot left inactive beside its active origin is activated (its COW
 * store is empty: nothing wrote the LV since the kill, the domain's
 * lock and pause are vmsnap's).  Only while recovering. */
static int
heal_half_made_snapshot (vmsnap_op *op, const vmsnap_disk *d, const plan *p,
                         const char *dtag, lvinfo **s, GError **err)
{
  GError *e = NULL;

  if (*s == NULL || !vmsnap_op_is_recovering (op) || !has_tag (*s, dtag)
      || strcmp (p->kind, "thick") != 0)
    return 0;
  if (!is_cow (*s) && (*s)->origin[0] == '\0' && !(*s)->merging) {
    if (!lv_guard (op, p->vg, p->lv, err))
      return -1;
    if (!lvm_run (NULL, &e, "lvremove -y %s/%s", p->vg, p->lv))
      return fail_with (err, e, "run `vmsnap recover` again", "disk %s: "
                        "removing %s/%s, the COW store of a snapshot an "
                        "interrupted lvcreate left unfinished", d->target,
                        p->vg, p->lv);
    *s = NULL;
  } else if (is_cow (*s) && !(*s)->active) {
    /* LVM activates a snapshot with its origin: reload the origin's tables
     * (works while a paused QEMU holds it open); if the snapshot is still
     * not active, deactivate and activate the origin (it must be closed). */
    g_autoptr (GPtrArray) rows = NULL;
    const lvinfo *again;
    if (!lvm_run (NULL, &e, "lvchange --refresh %s/%s", p->vg, p->origin))
      g_clear_error (&e);
    rows = lvs_rows (p->vg, &e);
    again = rows ? find_lv (rows, p->lv) : NULL;
    if (rows == NULL || again == NULL || !again->active) {
      g_clear_error (&e);
      if (!lvm_run (NULL, &e, "lvchange -an %s/%s", p->vg, p->origin)
          || !lvm_run (NULL, &e, "lvchange -ay %s/%s", p->vg, p->origin))
        return fail_with (err, e, "close the LV (is a QEMU or a mount using "
                          "it?), then run `vmsnap recover` again", "disk %s: "
                          "activating snapshot %s/%s, which an interrupted "
                          "lvcreate left inactive", d->target, p->vg, p->lv);
    }
  }
  return 0;
}

/* ==================================================== thin orphans */

/* A thin device in the pool's kernel metadata that LVM does not know (no
 * LV has that id) while the pool's kernel transaction id is the one LVM's
 * metadata records.  Made by a vmsnap killed inside a thin `lvcreate -s`
 * (LVM runs in process and dies with it) after LVM sent the pool its
 * message and before it dropped the copy it keeps in its metadata (see
 * heal_undelivered_thin): LVM's next lvremove of another thin LV of the
 * pool queues its "delete ID" after that copy without moving the
 * transaction id, finds the kernel's id equal to its own and sends
 * nothing.  LVM gives the same id to the pool's next thin snapshot and
 * fails ("Thin pool ... already contain thin device with device_id ID ...
 * Manual intervention may be required").  Nothing can reach that device:
 * it is deleted from the pool (the "delete ID" message LVM's own lvremove
 * sends), under LVM's lock of the VG, after checking both facts again
 * under that lock; then the command is run again.  Any other state is
 * left to the administrator with what was seen. */
#define ORPHAN_MSG "already contain thin device with device_id "

static gboolean
orphan_id (const GError *e, guint *id)
{
  const char *m = e ? strstr (e->message, ORPHAN_MSG) : NULL;
  char *end;
  guint64 v;

  if (m == NULL)
    return FALSE;
  m += strlen (ORPHAN_MSG);
  v = g_ascii_strtoull (m, &end, 10);
  if (end == m || v == 0 || v > 0xffffff)    /* 24-bit thin device ids */
    return FALSE;
  *id = (guint) v;
  return TRUE;
}

/* Device-mapper TYPE task on NAME; for a status, the target's type and
 * parameters.  MSG: a target message (sector 0). */
static gboolean
dm_call (int type, const char *name, const char *msg, char **ttype,
         char **params)
{
  struct dm_task *t = dm_task_create (type);
  gboolean ok = t && dm_task_set_name (t, name) && dm_task_no_open_count (t)
                && (msg == NULL || (dm_task_set_sector (t, 0)
                                    && dm_task_set_message (t, msg)))
                && dm_task_run (t);

  if (ok && ttype) {
    uint64_t start, len;
    char *ty = NULL, *pa = NULL;
    dm_get_next_target (t, NULL, &start, &len, &ty, &pa);
    *ttype = g_strdup (ty ? ty : "");
    *params = g_strdup (pa ? pa : "");
  }
  if (t)
    dm_task_destroy (t);
  return ok;
}

/* LVM's lock directory: global/locking_dir of /etc/lvm/lvm.conf, else
 * LVM's default.  (lvmconfig through liblvm2cmd writes to our stdout.) */
static char *
lvm_lock_dir (void)
{
  g_autofree char *conf = NULL;
  g_auto (GStrv) lines = NULL;
  const char *env = g_getenv ("LVM_SYSTEM_DIR");
  g_autofree char *path = g_build_filename (env && *env ? env : "/etc/lvm",
                                            "lvm.conf", NULL);

  if (g_file_get_contents (path, &conf, NULL, NULL)) {
    lines = g_strsplit (conf, "\n", -1);
    for (char **l = lines; *l; l++) {
      const char *t = *l + strspn (*l, " \t"), *q, *q2;
      if (g_str_has_prefix (t, "locking_dir") && (q = strchr (t, '"'))
          && (q2 = strchr (q + 1, '"')) && q2 > q + 1)
        return g_strndup (q + 1, q2 - q - 1);
    }
  }
  return g_strdup ("/run/lock/lvm");
}

/* The transaction id the kernel's thin pool VG/POOL has (its -tpool
 * device's status); *DMNAME (if not NULL): that device's name.  FALSE
 * with *err if the pool is not active or its status is not a thin pool's. */
static gboolean
kernel_tid (const char *vg, const char *pool, guint64 *tid, char **dmname,
            GError **err)
{
  struct dm_pool *mem = dm_pool_create ("vmsnap-lvm", 256);
  g_autofree char *name = mem ? g_strdup (dm_build_dm_name (mem, vg, pool, "tpool"))
                              : NULL;
  g_autofree char *ttype = NULL, *params = NULL;
  char *end;

  if (mem)
    dm_pool_destroy (mem);
  if (name == NULL) {
    fail (err, VMSNAP_ERR_FAILED, "no memory");
    return FALSE;
  }
  if (!dm_call (DM_DEVICE_STATUS, name, NULL, &ttype, &params)
      || strcmp (ttype, "thin-pool")) {
    fail (err, VMSNAP_ERR_FAILED, "no thin-pool status from device-mapper "
          "for %s (is pool %s/%s active?)", name, vg, pool);
    return FALSE;
  }
  *tid = g_ascii_strtoull (params, &end, 10);
  if (end == params) {
    fail (err, VMSNAP_ERR_FAILED, "unexpected thin-pool status of %s: %s",
          name, params);
    return FALSE;
  }
  if (dmname)
    *dmname = g_steal_pointer (&name);
  return TRUE;
}

/* FAILED: the error of a thin lvcreate whose origin is VG/ORIGIN.  1: an
 * orphan was deleted (run the command again); 2: the pool moved on since
 * FAILED (*err says how; run the command again); 0: FAILED is another
 * error; -1: it was that error and the orphan could not be proved or
 * removed (*err).
 *
 * LVM's metadata is read first (an `lvs`, which takes LVM's VG lock
 * itself); then, holding that lock (LVM's file lock V_<vg> in lvm.conf's
 * global/locking_dir), the pool's kernel transaction id must still be the
 * one LVM's metadata recorded: every change of a pool is a message that
 * moves that id, and LVM sends its messages and commits its metadata
 * under that lock, so the device is nobody's for as long as the lock is
 * held. */
static int
drop_thin_orphan (const char *vg, const char *origin, const GError *failed,
                  char **healed, GError **err)
{
  g_autofree char *lockdir = NULL, *lockfile = NULL, *tail = NULL;
  g_autofree char *pool = NULL, *msg = NULL;
  g_autoptr (GPtrArray) objs = NULL;
  GError *e = NULL;
  guint id;
  guint64 lvm_tid = 0, ktid = 0;
  gboolean have_tid = FALSE, set, moved = FALSE;
  int fd;

  if (!orphan_id (failed, &id))
    return 0;
  tail = g_strdup_printf ("-o lv_name,pool_lv,segtype,thin_id,transaction_id %s", vg);
  objs = lvs_objects (tail, &e);
  for (guint i = 0; objs && i < objs->len; i++) {
    JsonObject *o = g_ptr_array_index (objs, i);
    if (!strcmp (jfield (o, "lv_name"), origin) && *jfield (o, "pool_lv"))
      pool = unhide (jfield (o, "pool_lv"));
  }
  for (guint i = 0; pool && objs && i < objs->len; i++) {
    JsonObject *o = g_ptr_array_index (objs, i);
    g_autofree char *n = unhide (jfield (o, "lv_name"));
    if (!strcmp (n, pool) && !strcmp (jfield (o, "segtype"), "thin-pool"))
      lvm_tid = jnum (o, "transaction_id", &have_tid);
    else if (!strcmp (jfield (o, "pool_lv"), pool)
             && jnum (o, "thin_id", &set) == id && set) {
      g_set_error (&e, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "LV %s/%s has thin "
                   "device id %u in LVM's metadata: not an orphan", vg, n, id);
      break;
    }
  }
  if (e == NULL && (pool == NULL || !have_tid))
    g_set_error (&e, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "the thin pool of "
                 "%s/%s or its transaction id is not in LVM's report", vg, origin);
  if (e == NULL) {
    lockdir = lvm_lock_dir ();
    lockfile = g_strdup_printf ("%s/V_%s", lockdir, vg);
    fd = open (lockfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock (fd, LOCK_EX) < 0) {
      int errsv = errno;
      if (fd >= 0)
        close (fd);
      g_set_error (&e, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "taking LVM's lock "
                   "%s: %s", lockfile, g_strerror (errsv));
    } else {
      g_autofree char *dmname = NULL;
      if (kernel_tid (vg, pool, &ktid, &dmname, &e) && ktid != lvm_tid)
        moved = TRUE;
      else if (e == NULL) {
        msg = g_strdup_printf ("delete %u", id);
        if (!dm_call (DM_DEVICE_TARGET_MSG, dmname, msg, NULL, NULL))
          g_set_error (&e, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "device-mapper "
                       "message \"%s\" to %s failed", msg, dmname);
      }
      flock (fd, LOCK_UN);
      close (fd);
    }
  }
  if (e) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s; vmsnap did not "
                 "remove thin device %u from the pool: %s (see lvconvert "
                 "--repair and thin_dump)", failed->message, id, e->message);
    g_error_free (e);
    return -1;
  }
  if (moved) {
    /* Another LVM command changed the pool since the report (or one is
     * unfinished: then the next attempt fails the same way). */
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s; the pool's "
                 "kernel transaction id (%" G_GUINT64_FORMAT ") is not the one "
                 "in LVM's metadata (%" G_GUINT64_FORMAT "): an LVM command "
                 "changed pool %s/%s meanwhile, or one is unfinished (see "
                 "lvconvert --repair)", failed->message, ktid, lvm_tid,
                 vg, pool);
    return 2;
  }
  g_free (*healed);
  *healed = g_strdup_printf ("removed thin device %u from pool %s/%s: no LV "
                             "in LVM's metadata had it (an lvcreate killed "
                             "before its metadata commit left it)", id, vg, pool);
  return 1;
}

/* A thin LV *S (VG/its name, ours) that a killed `lvcreate` left in LVM's
 * metadata without a device in the pool.  LVM makes a thin LV in three
 * steps: it commits its metadata with the LV, the pool's transaction id
 * one up and the pool message ("create_snap ID ORIGIN") kept in the
 * metadata; it sends the message (the kernel's pool then has the device
 * and that transaction id); it drops the kept message and commits again
 * (lvm2 lib/metadata/lv_manip.c, thin_manip.c).  Killed after the first
 * step, the LV is in the metadata and nothing in the pool has its id:
 * activating it fails ("reload ioctl ... No data available"; found by the
 * crash matrix's random kills).  Proof: the LV's transaction id (lvs
 * transaction_id: the pool's when the LV was made, the message's
 * transaction is the one after it) is not below the kernel pool's, which
 * only moves forward.  `lvremove` of that LV
 * first sends the messages kept for it, then deletes it (its own way out
 * of this state); *S is set to NULL: the caller makes the LV again.  Only
 * while recovering. */
static int
heal_undelivered_thin (vmsnap_op *op, const vmsnap_disk *d, const char *vg,
                       const char *tag, lvinfo **s, GError **err)
{
  g_autofree char *tail = NULL, *pool = NULL;
  g_autoptr (GPtrArray) objs = NULL;
  guint64 tid = 0, ktid = 0;
  gboolean have = FALSE;
  GError *e = NULL;

  if (*s == NULL || !vmsnap_op_is_recovering (op) || !has_tag (*s, tag)
      || !is_thin (*s))
    return 0;
  tail = g_strdup_printf ("-o lv_name,pool_lv,transaction_id %s/%s", vg,
                          (*s)->name);
  objs = lvs_objects (tail, &e);
  if (objs && objs->len == 1) {
    JsonObject *o = g_ptr_array_index (objs, 0);
    pool = unhide (jfield (o, "pool_lv"));
    tid = jnum (o, "transaction_id", &have);
  }
  if (objs == NULL || !have || pool == NULL || *pool == '\0')
    return fail_with (err, e, "run `vmsnap recover` again", "disk %s: reading "
                      "the creation transaction id of thin LV %s/%s",
                      d->target, vg, (*s)->name);
  if (!kernel_tid (vg, pool, &ktid, NULL, &e)) {
    g_autofree char *hint = g_strdup_printf ("activate the pool (lvchange -ay "
                                             "%s/%s), then run `vmsnap "
                                             "recover` again", vg, pool);
    return fail_with (err, e, hint, "disk %s: checking that thin LV %s/%s "
                      "has its device in pool %s/%s", d->target, vg,
                      (*s)->name, vg, pool);
  }
  if (tid < ktid)
    return 0;
  if (!lv_guard (op, vg, (*s)->name, err))
    return -1;
  if (!lvm_run (NULL, &e, "lvremove -y %s/%s", vg, (*s)->name))
    return fail_with (err, e, "run `vmsnap recover` again", "disk %s: removing "
                      "thin LV %s/%s, which an interrupted lvcreate left "
                      "without its device in pool %s/%s (its transaction %"
                      G_GUINT64_FORMAT ", the pool's %" G_GUINT64_FORMAT ")",
                      d->target, vg, (*s)->name, vg, pool, tid, ktid);
  *s = NULL;
  return 0;
}

/* `lvcreate -y -s FLAGS -n LV TAGS VG/ORIGIN` of a thin ORIGIN, again after
 * removing an orphan thin device a killed lvcreate left (*HEALED: what was
 * removed, for the result's note). */
static gboolean
thin_snapshot (const char *vg, const char *origin, const char *flags,
               const char *lv, const char *tags, char **healed, GError **err)
{
  GError *last = NULL;

  for (int attempt = 1;; attempt++) {
    GError *e = NULL;
    int r;

    if (lvm_run (NULL, &e, "lvcreate -y -s %s -n %s%s %s/%s", flags, lv, tags,
                 vg, origin)) {
      g_clear_error (&last);
      return TRUE;
    }
    g_clear_error (&last);
    r = drop_thin_orphan (vg, origin, e, healed, &last);
    if (r <= 0 || attempt == 3) {
      if (last) {
        g_propagate_error (err, last);
        g_error_free (e);
      } else
        g_propagate_error (err, e);
      return FALSE;
    }
    g_error_free (e);
  }
}

static int
create_1 (vmsnap_op *op, const vmsnap_disk *d, const char *name,
          vmsnap_result *res, GError **err)
{
  g_autoptr (plan) p = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autofree char *loc = NULL, *note = NULL, *dtag = dom_tag (op);
  g_autofree char *healed = NULL;
  GError *e = NULL;
  lvinfo *o, *s;

  p = plan_load (op, d, err);
  if (p == NULL && err && *err)
    return -1;
  if (p == NULL) {
    g_autofree char *vg = NULL, *lv = NULL;

    if (!name_chars_ok (name))
      return fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: snapshot name '%s' "
                   "has characters LVM does not allow in a tag", d->target, name);
    if (!disk_lv_or_fail (d, &vg, &lv, err))
      return -1;
    rows = lvs_rows (vg, &e);
    if (rows == NULL)
      return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, vg);
    o = find_lv (rows, lv);
    if (o == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s vanished",
                   d->target, vg, lv);
    if (o->merging)
      return fail_merging (err, d, o, rows);
    p = g_new0 (plan, 1);
    p->vg = g_strdup (vg);
    p->origin = g_strdup (lv);
    p->tags = snapshot_tags (op, d, name);
    if (is_thin (o)) {
      lvinfo *pool = find_lv (rows, o->pool);
      const char *origin;
      double limit = thin_limit (vmsnap_op_config (op), &origin);

      if (pool && (pool->data > limit || pool->meta > limit))
        return fail (err, VMSNAP_ERR_FAILED,
                     "disk %s: thin pool %s/%s is %.2f%% full (data; metadata "
                     "%.2f%%), above the limit of %.0f%% "
                     "(%s): a snapshot keeps every "
                     "block the disk overwrites, and a full pool stops every "
                     "thin LV in it.  Extend the pool (lvextend -L+SIZE %s/%s, "
                     "or --poolmetadatasize) or delete snapshots; nothing was "
                     "changed", d->target, vg, o->pool, pool->data, pool->meta,
                     limit, origin, vg, o->pool);
      p->kind = g_strdup ("thin");
    } else {
      g_autofree char *policy = NULL, *need = NULL, *have = NULL, *osz = NULL;
      snapshot_size (vmsnap_op_config (op), o, &p->size, &policy);
      if (p->size > o->vg_free) {
        need = size_text (p->size);
        have = size_text (o->vg_free);
        osz = size_text (o->size);
        return fail (err, VMSNAP_ERR_FAILED,
                     "disk %s: volume group %s has %s free, but a snapshot of "
                     "%s/%s (%s) needs %s (%s, whole extents): add space to "
                     "the VG (vgextend %s DEVICE), free some, or set "
                     "lvm.snapshot-size lower (--lvm-snapshot-size, vmsnap.conf "
                     "or VMSNAP_LVM_SNAPSHOT_SIZE; e.g. 10%% or 256M); "
                     "nothing was changed", d->target, vg, have, vg, lv, osz,
                     need, policy, vg);
      }
      p->kind = g_strdup ("thick");
    }
    p->lv = pick_name (rows, vg, lv, name, ".vmsnap-");
    if (p->lv == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: no free LV name for a "
                   "snapshot of %s/%s", d->target, vg, lv);
    if (!plan_record (op, p, err))
      return -1;
  }

  if (!vmsnap_op_step_done (op, "created")) {
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = lvs_rows (p->vg, &e);
    if (rows == NULL)
      return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
    s = find_lv (rows, p->lv);
    if (s && !has_tag (s, dtag))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: an LV %s/%s that vmsnap "
                   "did not make appeared while the snapshot was being taken; "
                   "nothing was changed", d->target, p->vg, p->lv);
    if (heal_half_made_snapshot (op, d, p, dtag, &s, err) < 0
        || heal_undelivered_thin (op, d, p->vg, dtag, &s, err) < 0)
      return -1;
    if (s == NULL) {
      g_autofree char *tags = addtags (p->tags);
      gboolean ok;
      if (!strcmp (p->kind, "thin"))
        ok = thin_snapshot (p->vg, p->origin, "", p->lv, tags, &healed, &e);
      else
        ok = lvm_run (NULL, &e, "lvcreate -y -s -L %" G_GUINT64_FORMAT "b -n "
                      "%s%s %s/%s", p->size, p->lv, tags, p->vg, p->origin);
      if (!ok)
        return fail_with (err, e, "nothing was changed", "disk %s: creating "
                          "%s snapshot %s/%s of %s/%s", d->target, p->kind,
                          p->vg, p->lv, p->vg, p->origin);
    }
    if (!vmsnap_op_mark_done (op, "created", err))
      return -1;
  }

  loc = loc_make (p->vg, p->lv);
  vmsnap_result_set_locator (res, loc);
  vmsnap_result_add_undo (res, loc);
  g_clear_pointer (&rows, g_ptr_array_unref);
  rows = lvs_rows (p->vg, NULL);
  s = rows ? find_lv (rows, p->lv) : NULL;
  o = rows ? find_lv (rows, p->origin) : NULL;
  if (!strcmp (p->kind, "thin")) {
    lvinfo *pool = o ? find_lv (rows, o->pool) : NULL;
    if (pool)
      vmsnap_result_set_note (res, "thin snapshot %s/%s of %s/%s (pool %s/%s: "
                              "data %.2f%%, metadata %.2f%%)%s%s", p->vg, p->lv,
                              p->vg, p->origin, p->vg, pool->name, pool->data,
                              pool->meta, healed ? "; " : "", healed ? healed : "");
    else
      vmsnap_result_set_note (res, "thin snapshot %s/%s of %s/%s%s%s", p->vg,
                              p->lv, p->vg, p->origin, healed ? "; " : "",
                              healed ? healed : "");
  } else {
    g_autofree char *sz = size_text (p->size);
    note = s ? size_text (s->vg_free) : NULL;
    vmsnap_result_set_note (res, "COW snapshot %s/%s of %s/%s with %s of COW "
                            "space%s%s", p->vg, p->lv, p->vg, p->origin, sz,
                            note ? "; VG free now " : "", note ? note : "");
  }
  return 0;
}

static int
lvm_create (vmsnap_op *op, const vmsnap_disk *d, const char *name,
            unsigned int flags, vmsnap_result *res, GError **err)
{
  if (check_slot (op, d, "create", flags, err) < 0)
    return -1;
  if (create_1 (op, d, name, res, err) == 0)
    return 0;
  /* Nothing this slot made may remain: the snapshot of an interrupted or
   * failed run (known by its recorded name and our tag) goes. */
  {
    g_autoptr (plan) p = plan_load (op, d, NULL);
    g_autofree char *dtag = dom_tag (op);
    if (p)
      drop_if_ours (p->vg, p->lv, dtag);
  }
  return -1;
}

/* ============================================================== revert */

/* Thin: rename the disk's LV away ("renamed"), then a new thin snapshot of
 * the snapshot takes its name ("created").  Each step is found done on
 * storage when a crash came between the step and its mark. */
static int
revert_thin (vmsnap_op *op, const vmsnap_disk *d, const plan *p,
             vmsnap_result *res, GError **err)
{
  g_autoptr (GPtrArray) rows = NULL;
  g_autofree char *revtag = g_strconcat (TAG_REV, p->rev, NULL);
  g_autofree char *healed = NULL;
  GError *e = NULL;
  lvinfo *o, *old;

  if (!vmsnap_op_step_done (op, "renamed")) {
    rows = lvs_rows (p->vg, &e);
    if (rows == NULL)
      return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
    o = find_lv (rows, p->origin);
    old = find_lv (rows, p->old);
    if (o && old)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: both %s/%s and %s/%s "
                   "exist before the revert renamed anything; rename or remove "
                   "%s/%s", d->target, p->vg, p->origin, p->vg, p->old, p->vg,
                   p->old);
    if (o == NULL && old == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s is missing",
                   d->target, p->vg, p->origin);
    if (o && !lvm_run (NULL, &e, "lvrename %s %s %s", p->vg, p->origin, p->old))
      return fail_with (err, e, "nothing was changed", "disk %s: renaming "
                        "%s/%s to %s", d->target, p->vg, p->origin, p->old);
    if (!vmsnap_op_mark_done (op, "renamed", err))
      return -1;
  }
  if (!vmsnap_op_step_done (op, "created")) {
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = lvs_rows (p->vg, &e);
    if (rows == NULL)
      return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
    o = find_lv (rows, p->origin);
    if (o && !has_tag (o, revtag))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: an LV %s/%s that this "
                   "revert did not make appeared after %s/%s was renamed to "
                   "%s", d->target, p->vg, p->origin, p->vg, p->origin, p->old);
    if (heal_undelivered_thin (op, d, p->vg, revtag, &o, err) < 0)
      return -1;
    /* An `lvcreate` killed after its pool message, before it activated
     * the new LV, left it whole but inactive: no device for the disk
     * (found by the crash matrix's random kills). */
    if (o && !o->active && vmsnap_op_is_recovering (op)
        && !lvm_run (NULL, &e, "lvchange -ay %s/%s", p->vg, p->origin))
      return fail_with (err, e, "run `vmsnap recover` again", "disk %s: "
                        "activating %s/%s, which an interrupted lvcreate "
                        "left inactive", d->target, p->vg, p->origin);
    if (o == NULL) {
      g_autofree char *tags = addtags (p->tags);
      /* -kn: the disk's LV must not carry the activation-skip flag thin
       * snapshots get, or it would not come up with the VG. */
      if (!thin_snapshot (p->vg, p->lv, "-kn -ay", p->origin, tags, &healed, &e))
        return fail_with (err, e, NULL, "disk %s: creating %s/%s as a thin "
                          "snapshot of %s/%s", d->target, p->vg, p->origin,
                          p->vg, p->lv);
    }
    if (!vmsnap_op_mark_done (op, "created", err))
      return -1;
  }
  {
    g_autofree char *garbage = loc_make (p->vg, p->old);
    g_autofree char *undo = g_strdup_printf ("%s:%s/%s?restore=%s&rev=%s", NAME,
                                             p->vg, p->old, p->origin, p->rev);
    g_autofree char *sn = NULL, *pool_text = NULL;
    lvinfo *s, *pool = NULL;

    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = lvs_rows (p->vg, NULL);
    s = rows ? find_lv (rows, p->lv) : NULL;
    o = rows ? find_lv (rows, p->origin) : NULL;
    if (o)
      pool = find_lv (rows, o->pool);
    sn = s ? tag_value (s, TAG_SNAP) : NULL;
    pool_text = pool ? g_strdup_printf ("; pool %s/%s: data %.2f%%, metadata "
                                        "%.2f%%", p->vg, pool->name, pool->data,
                                        pool->meta)
                     : g_strdup ("");
    /* The replaced LV goes once the core has recorded the revert; if the
     * operation is rolled back instead, the undo puts it back. */
    vmsnap_result_add_garbage (res, garbage);
    vmsnap_result_add_undo (res, undo);
    vmsnap_result_set_note (res, "%s/%s is now a new thin snapshot of %s/%s%s%s%s "
                            "(which stays as it was); the previous contents, "
                            "renamed %s/%s, are removed once this is recorded%s%s%s",
                            p->vg, p->origin, p->vg, p->lv,
                            sn ? " (snapshot '" : "", sn ? sn : "", sn ? "')" : "",
                            p->vg, p->old, pool_text, healed ? "; " : "",
                            healed ? healed : "");
  }
  return 0;
}

/* Put back what an unfinished thin revert changed: the renamed LV gets
 * its name again (the new LV of this revert, if any, is removed first). */
static void
revert_thin_undo (const char *vg, const char *origin, const char *old,
                  const char *rev, GError **err)
{
  g_autoptr (GPtrArray) rows = lvs_rows (vg, err);
  g_autofree char *revtag = g_strconcat (TAG_REV, rev, NULL);
  lvinfo *o, *l;

  if (rows == NULL)
    return;
  o = find_lv (rows, origin);
  l = find_lv (rows, old);
  if (o && l && has_tag (o, revtag)) {
    if (!lvm_run (NULL, err, "lvremove -y %s/%s", vg, origin))
      return;
    o = NULL;
  }
  if (o == NULL && l)
    lvm_run (NULL, err, "lvrename %s %s %s", vg, old, origin);
}

/* Thick: extend other snapshots that would not hold what the merge
 * rewrites ("extended"), merge ("merged"), create the snapshot again under
 * its name and tags ("recreated"). */
static int
revert_thick (vmsnap_op *op, const vmsnap_disk *d, const plan *p,
              vmsnap_result *res, GError **err)
{
  g_autoptr (GPtrArray) rows = NULL;
  g_autofree char *dtag = dom_tag (op);
  GString *ext = g_string_new (NULL);
  GError *e = NULL;
  lvinfo *o, *s;
  int ret = -1;

  if (p->extend && json_array_get_length (p->extend) > 0
      && !vmsnap_op_step_done (op, "extended")) {
    for (guint i = 0; p->extend && i < json_array_get_length (p->extend); i++) {
      JsonArray *x = json_array_get_array_element (p->extend, i);
      const char *t = json_array_get_string_element (x, 0);
      guint64 want = (guint64) json_array_get_int_element (x, 1);
      lvinfo *l;
      g_clear_pointer (&rows, g_ptr_array_unref);
      if (!name_chars_ok (t) || (rows = lvs_rows (p->vg, &e)) == NULL) {
        fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
        goto out;
      }
      l = find_lv (rows, t);
      if (l && l->size < want
          && !lvm_run (NULL, &e, "lvextend -L %" G_GUINT64_FORMAT "b %s/%s",
                       want, p->vg, t)) {
        g_autofree char *w = size_text (want);
        fail_with (err, e, "nothing was reverted; make room in the VG or "
                   "delete that snapshot", "disk %s: extending snapshot %s/%s "
                   "to %s so that it keeps its contents through the merge",
                   d->target, p->vg, t, w);
        goto out;
      }
    }
    if (!vmsnap_op_mark_done (op, "extended", err))
      goto out;
  }
  for (guint i = 0; p->extend && i < json_array_get_length (p->extend); i++) {
    JsonArray *x = json_array_get_array_element (p->extend, i);
    g_autofree char *w = size_text ((guint64) json_array_get_int_element (x, 1));
    g_string_append_printf (ext, "%s%s/%s to %s", ext->len ? ", " : "", p->vg,
                            json_array_get_string_element (x, 0), w);
  }

  if (!vmsnap_op_step_done (op, "merged")) {
    g_autofree char *printed = NULL;

    g_clear_pointer (&rows, g_ptr_array_unref);
    if ((rows = lvs_rows (p->vg, &e)) == NULL) {
      fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
      goto out;
    }
    s = find_lv (rows, p->lv);
    o = find_lv (rows, p->origin);
    if (o == NULL) {
      fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s is missing", d->target,
            p->vg, p->origin);
      goto out;
    }
    if (s && !is_cow (s) && !s->merging && s->origin[0] == '\0'
        && has_tag (s, dtag) && vmsnap_op_is_recovering (op)) {
      /* The merge finished, and LVM was killed between its two metadata
       * commits at the end: the first detached the snapshot's COW store,
       * which is left as a plain LV under the snapshot's name and tags;
       * the second would have removed it.  Its blocks are merged: remove
       * it, as LVM would have. */
      if (!lv_guard (op, p->vg, p->lv, err))
        goto out;
      if (!lvm_run (NULL, &e, "lvremove -y %s/%s", p->vg, p->lv)) {
        fail_with (err, e, "run `vmsnap recover` again", "disk %s: removing "
                   "%s/%s, the COW store a finished merge left behind",
                   d->target, p->vg, p->lv);
        goto out;
      }
      s = NULL;
    }
    if (s && !s->merging) {
      if (s->invalid) {
        fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s/%s was invalidated "
              "(it overflowed its COW space) before it could be merged; "
              "nothing was reverted", d->target, p->vg, p->lv);
        goto out;
      }
      if (!lvm_run (&printed, &e, "lvconvert -y --merge -i 1 %s/%s", p->vg, p->lv)) {
        fail_with (err, e, "nothing was reverted", "disk %s: merging snapshot "
                   "%s/%s into %s/%s", d->target, p->vg, p->lv, p->vg, p->origin);
        goto out;
      }
      g_clear_pointer (&rows, g_ptr_array_unref);
      if ((rows = lvs_rows (p->vg, &e)) == NULL) {
        fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
        goto out;
      }
      s = find_lv (rows, p->lv);
      o = find_lv (rows, p->origin);
    }
    if (s && s->merging && o) {
      /* Deferred (the LV or the snapshot was open), or interrupted: the
       * merge runs when the LV is activated again, and polling finishes
       * it (removes the snapshot from the metadata).  --poll n: LVM would
       * otherwise fork a background poller out of this process. */
      if (o->open || s->open) {
        fail (err, VMSNAP_ERR_FAILED, "disk %s: LVM deferred the merge of "
              "snapshot %s/%s into %s/%s because %s is open (in use by "
              "another process).  The snapshot is consumed: the merge runs "
              "when %s/%s is next activated.  Close it (is a QEMU or a "
              "mount still using %s?), then run `vmsnap recover` if `vmsnap "
              "list` shows this revert pending, else `lvchange -an %s/%s && "
              "lvchange -ay %s/%s`",
              d->target, p->vg, p->lv, p->vg, p->origin,
              o->open ? "the LV" : "the snapshot", p->vg, p->origin,
              d->source ? d->source : p->origin, p->vg, p->origin, p->vg,
              p->origin);
        goto out;
      }
      if (!lvm_run (NULL, &e, "lvchange -an %s/%s", p->vg, p->origin)
          || !lvm_run (NULL, &e, "lvchange -ay --poll n %s/%s", p->vg, p->origin)
          || !lvm_run (NULL, &e, "lvpoll --polloperation merge -i 1 %s/%s",
                       p->vg, p->origin)) {
        fail_with (err, e, "LVM goes on with the merge when the LV is next "
                   "activated; once the cause is fixed, run `vmsnap recover` "
                   "if `vmsnap list` shows this revert pending, else "
                   "`lvchange -an` and `lvchange -ay` the LV",
                   "disk %s: finishing the merge of %s/%s into %s/%s",
                   d->target, p->vg, p->lv, p->vg, p->origin);
        goto out;
      }
      g_clear_pointer (&rows, g_ptr_array_unref);
      if ((rows = lvs_rows (p->vg, &e)) == NULL) {
        fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
        goto out;
      }
      s = find_lv (rows, p->lv);
    }
    if (s) {
      fail (err, VMSNAP_ERR_FAILED, "disk %s: the merge of %s/%s into %s/%s "
            "did not finish (%s); run `vmsnap recover` if `vmsnap list` "
            "shows this revert pending, else `lvchange -an` and `lvchange "
            "-ay` the LV",
            d->target, p->vg, p->lv, p->vg, p->origin,
            printed && *printed ? g_strstrip (printed) : "LVM said nothing");
      goto out;
    }
    if (!vmsnap_op_mark_done (op, "merged", err))
      goto out;
  }

  if (!vmsnap_op_step_done (op, "recreated")) {
    g_clear_pointer (&rows, g_ptr_array_unref);
    if ((rows = lvs_rows (p->vg, &e)) == NULL) {
      fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, p->vg);
      goto out;
    }
    s = find_lv (rows, p->lv);
    if (heal_half_made_snapshot (op, d, p, dtag, &s, err) < 0)
      goto out;
    if (s && !(has_tag (s, dtag) && is_cow (s) && !strcmp (s->origin, p->origin))) {
      fail (err, VMSNAP_ERR_FAILED, "disk %s: %s/%s holds the snapshot's "
            "contents now, but an LV %s/%s that vmsnap did not make appeared; "
            "rename it, then run `vmsnap recover` if `vmsnap list` shows "
            "this revert pending", d->target, p->vg, p->origin,
            p->vg, p->lv);
      goto out;
    }
    if (s == NULL) {
      g_autofree char *tags = addtags (p->tags);
      if (!lvm_run (NULL, &e, "lvcreate -y -s -L %" G_GUINT64_FORMAT "b -n %s%s "
                    "%s/%s", p->size, p->lv, tags, p->vg, p->origin)) {
        g_autofree char *sz = size_text (p->size);
        fail_with (err, e, "make room in the VG, then run `vmsnap recover` "
                   "if `vmsnap list` shows this revert pending; otherwise "
                   "that snapshot is gone from this disk: delete it and "
                   "take a new one",
                   "disk %s: %s/%s holds the snapshot's contents now, but "
                   "creating the snapshot %s/%s (%s) again failed", d->target,
                   p->vg, p->origin, p->vg, p->lv, sz);
        goto out;
      }
    }
    if (!vmsnap_op_mark_done (op, "recreated", err))
      goto out;
  }
  {
    g_autofree char *sz = size_text (p->size);
    g_autofree char *sn = NULL;
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = lvs_rows (p->vg, NULL);
    s = rows ? find_lv (rows, p->lv) : NULL;
    sn = s ? tag_value (s, TAG_SNAP) : NULL;
    vmsnap_result_set_note (res, "merged snapshot %s/%s%s%s%s into %s/%s and "
                            "created it again (%s of COW space) so that it "
                            "stays revertable; the previous contents are "
                            "gone%s%s", p->vg, p->lv, sn ? " ('" : "",
                            sn ? sn : "", sn ? "')" : "", p->vg, p->origin, sz,
                            ext->len ? "; extended " : "", ext->str);
  }
  ret = 0;
out:
  g_string_free (ext, TRUE);
  return ret;
}

/* Decide a revert of disk D to locator VG/SNAP and record it. */
static plan *
revert_plan (vmsnap_op *op, const vmsnap_disk *d, const char *svg,
             const char *snap, GError **err)
{
  g_autofree char *vg = NULL, *lv = NULL, *dtag = dom_tag (op);
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (plan) p = NULL;
  GError *e = NULL;
  lvinfo *o, *s;

  if (!disk_lv_or_fail (d, &vg, &lv, err))
    return NULL;
  if (strcmp (vg, svg) != 0)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: the snapshot's LV %s/%s is "
                 "in another VG than the disk's LV %s/%s (was the disk moved?); "
                 "nothing was changed", d->target, svg, snap, vg, lv), NULL;
  rows = lvs_rows (vg, &e);
  if (rows == NULL)
    return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, vg), NULL;
  o = find_lv (rows, lv);
  s = find_lv (rows, snap);
  if (o == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s vanished",
                 d->target, vg, lv), NULL;
  if (s == o)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot locator %s/%s is "
                 "the disk's LV itself (internal error: the catalog and the "
                 "domain disagree)", d->target, vg, snap), NULL;
  if (s == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: the snapshot's LV %s/%s is "
                 "missing (removed outside vmsnap?); it cannot be reverted to",
                 d->target, vg, snap), NULL;
  if (!has_tag (s, dtag))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s does not carry the "
                 "tag %s: vmsnap did not make it for this domain; nothing was "
                 "changed", d->target, vg, snap, dtag), NULL;
  if (o->merging)
    return fail_merging (err, d, o, rows), NULL;
  if (o->open)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s is open (in use by "
                 "another process: a QEMU this domain does not show, a mount, "
                 "a dd?); vmsnap reverts an LV nobody uses: close it first; "
                 "nothing was changed", d->target, vg, lv), NULL;
  p = g_new0 (plan, 1);
  p->vg = g_strdup (vg);
  p->origin = g_strdup (lv);
  p->lv = g_strdup (snap);
  if (is_thin (o)) {
    GString *tags = g_string_new (dtag);
    g_auto (GStrv) user = g_strsplit (o->tags, ",", -1);
    if (!is_thin (s) || strcmp (s->pool, o->pool) != 0) {
      g_string_free (tags, TRUE);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: %s/%s is not a thin LV in "
                   "pool %s/%s like the disk's LV %s/%s; nothing was changed",
                   d->target, vg, snap, vg, o->pool, vg, lv), NULL;
    }
    p->kind = g_strdup ("thin");
    p->rev = g_strdup_printf ("%08x", g_random_int ());
    g_string_append_printf (tags, "," TAG_REV "%s", p->rev);
    /* The LV's own tags (not vmsnap's) go to its successor. */
    for (char **t = user; *t; t++)
      if (**t && !g_str_has_prefix (*t, "vmsnap_") && tag_ok (*t))
        g_string_append_printf (tags, ",%s", *t);
    p->tags = g_string_free (tags, FALSE);
    p->old = pick_name (rows, vg, lv, NULL, OLD_MARK);
    if (p->old == NULL)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: no free LV name to "
                   "rename %s/%s to", d->target, vg, lv), NULL;
  } else {
    g_autoptr (JsonArray) ext = json_array_new ();
    g_autoptr (GString) names = g_string_new (NULL);
    guint64 used, total = 0;

    if (!is_cow (s) || strcmp (s->origin, lv) != 0)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: %s/%s is not a snapshot "
                   "of the disk's LV %s/%s; nothing was changed", d->target, vg,
                   snap, vg, lv), NULL;
    if (s->invalid) {
      g_autofree char *sz = size_text (s->size);
      g_autofree char *sn = tag_value (s, TAG_SNAP);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s/%s%s%s%s is "
                   "INVALID: it overflowed its %s of COW space (the LV changed "
                   "more than that since it was taken), so LVM dropped it and "
                   "it no longer holds its point in time.  It cannot be "
                   "reverted to; delete it (vmsnap delete); nothing was "
                   "changed", d->target, vg, snap, sn ? " (snapshot '" : "",
                   sn ? sn : "", sn ? "')" : "", sz), NULL;
    }
    if (s->open)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot LV %s/%s is open "
                   "(in use by another process); LVM would defer the merge: "
                   "close it first; nothing was changed", d->target, vg,
                   snap), NULL;
    /* The merge writes S's changed blocks into O; every other snapshot of
     * O keeps a copy of each block first.  One that could not hold them
     * would overflow and be lost: extend it (room permitting). */
    used = ceil_u64 ((double) s->size * MAX (s->snap, 0) / 100.0);
    for (guint i = 0; i < rows->len; i++) {
      lvinfo *t = g_ptr_array_index (rows, i);
      guint64 tfree, want;
      if (t == s || !is_cow (t) || t->invalid || strcmp (t->origin, lv) != 0)
        continue;
      tfree = (guint64) ((double) t->size * (100.0 - MAX (t->snap, 0)) / 100.0);
      if (tfree >= used + used / 16 + t->extent)
        continue;
      want = round_up (t->size + used + used / 16 + t->extent - tfree, t->extent);
      {
        JsonArray *pair = json_array_new ();
        json_array_add_string_element (pair, t->name);
        json_array_add_int_element (pair, (gint64) want);
        json_array_add_array_element (ext, pair);
      }
      total += want - t->size;
      g_string_append_printf (names, "%s%s/%s", names->len ? ", " : "", vg,
                              t->name);
    }
    if (total > o->vg_free) {
      g_autofree char *need = size_text (total), *have = size_text (o->vg_free);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: merging %s/%s into %s/%s "
                   "copies the blocks it rewrites into the LV's other "
                   "snapshots, which need %s more COW space (%s), but VG %s "
                   "has %s free: add space (vgextend) or delete some of them; "
                   "nothing was changed", d->target, vg, snap, vg, lv, need,
                   names->str, vg, have), NULL;
    }
    p->kind = g_strdup ("thick");
    p->size = s->size;
    p->tags = usable_tags (s->tags);
    p->extend = json_array_ref (ext);
  }
  if (!plan_record (op, p, err))
    return NULL;
  return g_steal_pointer (&p);
}

static int
lvm_revert (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
            unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *vg = NULL, *snap = NULL;
  g_autoptr (plan) p = NULL;
  int r;

  if (check_slot (op, d, "revert", flags, err) < 0)
    return -1;
  if (vmsnap_op_is_online (op))
    return fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: backend %s reverts "
                 "with the domain shut off (a thick revert merges into the LV, "
                 "which must be closed; a thin one replaces the LV)", d->target,
                 NAME);
  if (!loc_parse (d, locator, &vg, &snap, NULL, NULL, err))
    return -1;
  p = plan_load (op, d, err);
  if (p == NULL && err && *err)
    return -1;
  if (p == NULL && (p = revert_plan (op, d, vg, snap, err)) == NULL)
    return -1;
  if (!strcmp (p->kind, "thin")) {
    r = revert_thin (op, d, p, res, err);
    if (r < 0 && !vmsnap_op_step_done (op, "created")) {
      /* Nothing may stay half done: the LV gets its name back. */
      g_autoptr (GError) e = NULL;
      revert_thin_undo (p->vg, p->origin, p->old, p->rev, &e);
      if (e && err && *err)
        g_prefix_error (err, "putting %s/%s back failed too (%s; rename %s/%s "
                        "to %s by hand): ", p->vg, p->origin, e->message,
                        p->vg, p->old, p->origin);
    }
    return r;
  }
  return revert_thick (op, d, p, res, err);
}

/* ============================================================== delete */

/* The snapshot's LV is returned as garbage: the core removes it (discard)
 * once the catalog no longer names it. */
static int
lvm_delete (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
            unsigned int flags, vmsnap_result *res, GError **err)
{
  g_autofree char *vg = NULL, *lv = NULL, *dtag = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  GError *e = NULL;
  lvinfo *s;

  if (check_slot (op, d, "delete", flags, err) < 0)
    return -1;
  if (!loc_parse (d, locator, &vg, &lv, NULL, NULL, err))
    return -1;
  dtag = dom_tag (op);
  rows = lvs_rows (vg, &e);
  if (rows == NULL)
    return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target, vg);
  s = find_lv (rows, lv);
  if (s == NULL) {
    vmsnap_result_set_note (res, "%s/%s was already gone", vg, lv);
    return 0;
  }
  if (!has_tag (s, dtag))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: LV %s/%s does not carry the "
                 "tag %s: vmsnap did not make it for this domain and will not "
                 "remove it; nothing was changed", d->target, vg, lv, dtag);
  if (s->merging)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s/%s is being "
                 "merged into its origin (a deferred or interrupted merge); "
                 "it goes away by itself when the merge has run; nothing was "
                 "changed", d->target, vg, lv);
  if (s->open)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot LV %s/%s is open "
                 "(in use by another process); close it first; nothing was "
                 "changed", d->target, vg, lv);
  vmsnap_result_add_garbage (res, locator);
  if (is_cow (s)) {
    g_autofree char *u = cow_usage (s);
    g_autofree char *sz = size_text (s->size);
    vmsnap_result_set_note (res, "COW snapshot %s/%s (%s) removed with "
                            "lvremove; %s returns to VG %s%s", vg, lv, u, sz, vg,
                            s->invalid ? " (it was invalid: no data was lost "
                            "that it still held)" : "");
  } else
    vmsnap_result_set_note (res, "thin snapshot %s/%s removed with lvremove; "
                            "blocks no other thin LV shares return to pool "
                            "%s/%s", vg, lv, vg, s->pool);
  return 0;
}

/* =============================================================== merge */

/* LVM snapshots form no chains: nothing to consolidate.  The note gives
 * the snapshots' state (pool usage, COW usage, invalid ones). */
static int
lvm_merge (vmsnap_op *op, const vmsnap_disk *d, const vmsnap_merge_spec *spec,
           unsigned int flags, vmsnap_result *res, GError **err)
{
  GString *s;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  (void) spec;
  if (check_slot (op, d, "merge", flags, err) < 0)
    return -1;
  s = g_string_new (NULL);
  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    g_autofree char *vg = NULL, *lv = NULL;
    g_autoptr (GPtrArray) rows = NULL;
    lvinfo *l;
    if (!loc_parse (d, vmsnap_op_locator (op, i), &vg, &lv, NULL, NULL, NULL)
        || (rows = lvs_rows (vg, NULL)) == NULL)
      continue;
    if ((l = find_lv (rows, lv)) == NULL) {
      g_string_append_printf (s, "; %s/%s: MISSING", vg, lv);
      continue;
    }
    if (is_cow (l)) {
      g_autofree char *u = cow_usage (l);
      g_string_append_printf (s, "; %s/%s: %s", vg, lv, u);
    } else if (is_thin (l) && !g_hash_table_contains (seen, l->pool)) {
      lvinfo *pool = find_lv (rows, l->pool);
      g_hash_table_add (seen, g_strdup (l->pool));
      if (pool)
        g_string_append_printf (s, "; pool %s/%s: data %.2f%%, metadata "
                                "%.2f%%", vg, pool->name, pool->data, pool->meta);
    }
  }
  vmsnap_result_set_note (res, "nothing to consolidate: LVM snapshots do not "
                          "form chains (each is an LV of its own)%s", s->str);
  g_string_free (s, TRUE);
  return 0;
}

/* ================================================================ list */

static int
lvm_list (vmsnap_op *op, const vmsnap_disk *d, GPtrArray **points,
          GError **err)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) vmsnap_point_free);
  g_autoptr (GHashTable) vgs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *vg = NULL, *lv = NULL, *why = NULL;
  g_autofree char *dtag = NULL, *ktag = NULL;
  GHashTableIter it;
  gpointer key;

  if (check_slot (op, d, "list", 0, err) < 0)
    return -1;
  dtag = dom_tag (op);
  ktag = g_strconcat (TAG_DISK, d->target, NULL);
  if (disk_lv (d, &vg, &lv, &why, NULL))
    g_hash_table_add (vgs, g_strdup (vg));
  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    g_autofree char *v = NULL, *l = NULL;
    if (loc_parse (d, vmsnap_op_locator (op, i), &v, &l, NULL, NULL, NULL))
      g_hash_table_add (vgs, g_steal_pointer (&v));
  }
  g_hash_table_iter_init (&it, vgs);
  while (g_hash_table_iter_next (&it, &key, NULL)) {
    GError *e = NULL;
    g_autoptr (GPtrArray) rows = lvs_rows (key, &e);
    if (rows == NULL)
      return fail_with (err, e, NULL, "disk %s: reading VG %s", d->target,
                        (const char *) key);
    for (guint i = 0; i < rows->len; i++) {
      lvinfo *l = g_ptr_array_index (rows, i);
      vmsnap_point *pt;
      g_autofree char *state = NULL;
      if (!has_tag (l, dtag) || !has_tag (l, ktag))
        continue;
      pt = g_new0 (vmsnap_point, 1);
      pt->locator = loc_make (l->vg, l->name);
      pt->name = tag_value (l, TAG_SNAP);
      state = is_cow (l) ? cow_usage (l) : g_strdup ("thin snapshot");
      pt->owner = g_strdup_printf ("vmsnap (tags %s; %s)", l->tags, state);
      g_ptr_array_add (out, pt);
    }
  }
  *points = g_steal_pointer (&out);
  return 0;
}

/* ============================================================= discard */

/* Remove an LV the core no longer references: a deleted snapshot, the LV
 * a thin revert replaced, a snapshot of a rolled-back create.  Only LVs
 * vmsnap made for this domain or renamed away; never the disk's own LV.
 * "lvm:VG/OLD?restore=LV&rev=HEX" (the undo of a thin revert) puts OLD
 * back as LV instead.  Already done: success. */
static int
lvm_discard (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, GError **err)
{
  g_autofree char *vg = NULL, *lv = NULL, *restore = NULL, *rev = NULL;
  g_autofree char *dtag = NULL, *cur_vg = NULL, *cur_lv = NULL, *why = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  const char *target = d ? d->target : "?";
  GError *e = NULL;
  lvinfo *l;

  if (!vmsnap_check_flags (NAME, "discard", flags, 0, err))
    return -1;
  if (op == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: discard without an "
                 "operation context (internal error)", NAME);
  if (!loc_parse (d, locator, &vg, &lv, &restore, &rev, err))
    return -1;
  if (restore) {
    if (rev == NULL)
      return fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: '%s': no rev",
                   target, locator);
    revert_thin_undo (vg, restore, lv, rev, &e);
    if (e)
      return fail_with (err, e, NULL, "disk %s: putting %s/%s back as %s/%s",
                        target, vg, lv, vg, restore);
    return 0;
  }
  dtag = dom_tag (op);
  rows = lvs_rows (vg, &e);
  if (rows == NULL)
    return fail_with (err, e, NULL, "disk %s: reading VG %s", target, vg);
  if ((l = find_lv (rows, lv)) == NULL)
    return 0;
  if (d && disk_lv (d, &cur_vg, &cur_lv, &why, NULL)
      && !strcmp (cur_vg, vg) && !strcmp (cur_lv, lv))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: refusing to remove %s/%s: "
                 "it is the disk's LV (internal error)", target, vg, lv);
  if (!has_tag (l, dtag) && strstr (lv, OLD_MARK) == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: refusing to remove %s/%s: "
                 "vmsnap did not make it for this domain (no tag %s)", target,
                 vg, lv, dtag);
  if (l->open)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: %s/%s is open (in use by "
                 "another process); remove it with `lvremove %s/%s` once it "
                 "is closed", target, vg, lv, vg, lv);
  if (!lv_guard (op, vg, lv, err))
    return -1;
  if (!lvm_run (NULL, &e, "lvremove -y %s/%s", vg, lv))
    return fail_with (err, e, NULL, "disk %s: removing %s/%s", target, vg, lv);
  return 0;
}

static vmsnap_backend lvm = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "LVM thin and classic snapshots through liblvm2cmd",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE
        | VMSNAP_CAP_MERGE_OFFLINE | VMSNAP_CAP_MERGE_ONLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_CREATE_NEEDS_PAUSE | VMSNAP_CAP_REVERT_NEEDS_SHUTOFF,
  .probe = lvm_probe,
  .create = lvm_create,
  .revert = lvm_revert,
  .merge = lvm_merge,
  .delete = lvm_delete,
  .list = lvm_list,
  .discard = lvm_discard,
  .options = lvm_options,
};

VMSNAP_REGISTER_BACKEND (lvm)
