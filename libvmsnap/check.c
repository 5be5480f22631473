/* Drift detection and repair (`vmsnap check`): compare the catalog with
 * what each disk's backend finds on storage (its `list` slot) and, with
 * VMSNAP_CHECK_REPAIR, correct the catalog from storage.
 *
 * Without repair nothing is created or written: the catalog is read where
 * it is (a domain vmsnap never touched has none, and keeps none), no state
 * directory is made, no lock is taken.  Repair opens the domain as every
 * write command does (lock, recovery of an interrupted operation), then
 * writes the corrected catalog atomically (new file, rename).  Repair never
 * deletes or modifies anything on storage: it only adds catalog entries for
 * points storage holds and drops catalog records whose storage is gone. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "internal.h"

typedef struct {
  char *kind;       /* missing-on-storage | not-in-catalog */
  char *disk;
  char *snapshot;   /* catalog name, name on storage, or NULL */
  char *locator;
  char *owner;
  char *fix;
  gboolean repairable;
} drift;

static void
drift_free (gpointer p)
{
  drift *d = p;

  g_free (d->kind);
  g_free (d->disk);
  g_free (d->snapshot);
  g_free (d->locator);
  g_free (d->owner);
  g_free (d->fix);
  g_free (d);
}

/* The backends that hold TARGET's points: those of its catalog records,
 * and the planner's (where a new snapshot would go). */
static GPtrArray *
disk_backends (catalog *c, const vmsnap_plan *plan, const char *target)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  const char *pb = vmsnap_plan_backend (plan, target);

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0
          && !g_ptr_array_find_with_equal_func (out, d->backend, g_str_equal, NULL))
        g_ptr_array_add (out, g_strdup (d->backend));
    }
  }
  if (pb && !g_ptr_array_find_with_equal_func (out, pb, g_str_equal, NULL))
    g_ptr_array_add (out, g_strdup (pb));
  return out;
}

/* A qcow2 layer of the chain with a snapshot table: qcow2-internal looks
 * too (a lost catalog forgets which backend held the disk). */
static void
add_internal (GPtrArray *bes, const vmsnap_disk *d)
{
  for (size_t i = 0; i < d->n_chain; i++)
    if (d->chain[i]->n_internal_snapshots > 0
        && !g_ptr_array_find_with_equal_func (bes, "qcow2-internal", g_str_equal, NULL))
      g_ptr_array_add (bes, g_strdup ("qcow2-internal"));
}

/* The locators of TARGET's records on BACKEND. */
static GPtrArray *
backend_locators (catalog *c, const char *target, const char *backend)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0 && strcmp (d->backend, backend) == 0
          && !g_ptr_array_find_with_equal_func (out, d->locator, g_str_equal, NULL))
        g_ptr_array_add (out, g_strdup (d->locator));
    }
  }
  return out;
}

static char *loc_real_path (const char *loc);

/* Position of LOC in D's active chain counted from the bottom (1: the
 * image with no backing file), or 0 if it is not on it. */
static guint
chain_pos (const vmsnap_disk *d, const char *loc)
{
  g_autofree char *want = loc_real_path (loc);

  for (size_t i = 0; want && i < d->n_chain; i++) {
    char *r = realpath (d->chain[i]->path, NULL);
    gboolean same = r && strcmp (r, want) == 0;
    free (r);
    if (same)
      return (guint) (d->n_chain - i);
  }
  return 0;
}

/* qcow2-external: an image the active chain has directly below one of
 * vmsnap's overlays (NAME.vmsnap-DISK-HEX.qcow2, or NAME.vmsnap-HEX.qcow2
 * of an earlier vmsnap) was frozen by vmsnap, though
 * its own name carries no mark (the disk's original image). */
static gboolean
below_our_overlay (const vmsnap_disk *d, const char *loc)
{
  g_autofree char *want = loc_real_path (loc);

  for (size_t i = 0; want && i + 1 < d->n_chain; i++) {
    g_autofree char *base = g_path_get_basename (d->chain[i]->path);
    char *r;
    gboolean same;
    if (strstr (base, ".vmsnap-") == NULL)
      continue;
    r = realpath (d->chain[i + 1]->path, NULL);
    same = r && strcmp (r, want) == 0;
    free (r);
    if (same)
      return TRUE;
  }
  return FALSE;
}

static gboolean
has_point (GPtrArray *pts, const char *loc)
{
  for (guint i = 0; i < pts->len; i++) {
    vmsnap_point *p = pts->pdata[i];
    if (p->locator && strcmp (p->locator, loc) == 0)
      return TRUE;
  }
  return FALSE;
}

/* Is POINT one the catalog has to know?  Points with vmsnap's ownership
 * mark; on qcow2-internal (whose table has no room for a mark) every
 * entry with a name vmsnap could have given; on qcow2-external the image
 * below one of vmsnap's overlays. */
static gboolean
ours (const char *backend, const vmsnap_disk *d, const vmsnap_point *p)
{
  if (p->owner)
    return TRUE;
  if (strcmp (backend, "qcow2-internal") == 0)
    return p->name && vmsnap_valid_snapshot_name (p->name, NULL);
  if (strcmp (backend, "qcow2-external") == 0)
    return below_our_overlay (d, p->locator);
  return FALSE;
}

static void
add_drift (GPtrArray *out, const char *kind, const char *disk,
           const char *snap, const char *loc, const char *owner,
           gboolean repairable, char *fix)
{
  drift *d = g_new0 (drift, 1);

  d->kind = g_strdup (kind);
  d->disk = g_strdup (disk);
  d->snapshot = g_strdup (snap);
  d->locator = g_strdup (loc);
  d->owner = g_strdup (owner);
  d->repairable = repairable;
  d->fix = fix;
  g_ptr_array_add (out, d);
}

/* Compare the records of disk DP on backend BNAME with what that backend
 * lists; ALL: every locator the catalog has for the disk. */
static void
check_disk (vmsnap_ctx *ctx, vmsnap_domain *dom, vmsnap_disk_priv *dp,
            catalog *c, const char *bname, GPtrArray *all,
            const char *state_dir, gboolean online, const vmsnap_guard *guard,
            GPtrArray *drifts, GPtrArray *found, GPtrArray *notes)
{
  const char *t = dp->pub.target;
  const vmsnap_module *m = vmsnap_find_module (ctx, bname);
  g_autoptr (GPtrArray) locs = NULL;
  g_autoptr (GPtrArray) pts = NULL;
  g_autoptr (vmsnap_journal) j = NULL;
  g_autofree char *actloc = NULL;
  vmsnap_op *op;
  GError *lerr = NULL;
  int r;

  if (m == NULL || m->info.status != VMSNAP_BACKEND_LOADED || m->be.list == NULL) {
    g_ptr_array_add (notes, g_strdup_printf (
        "disk %s: backend %s is not loaded or cannot list what storage "
        "holds; its points on this disk were not checked", t, bname));
    return;
  }
  locs = backend_locators (c, t, bname);
  /* A scratch journal no one saves: list slots only read it. */
  j = vmsnap_journal_new ("/nonexistent/vmsnap-check-journal");
  op = vmsnap_op_new (j, t, dom->name, dom->uuid, online, dom->conn,
                      state_dir, locs);
  op->config = ctx->config;
  r = m->be.list (op, &dp->pub, &pts, &lerr);
  vmsnap_op_free (op);
  if (r < 0) {
    /* Storage too damaged to list (a layer of the chain gone): that is
     * what check is for, so it is reported, not fatal. */
    add_drift (drifts, "storage-unreadable", t, NULL, dp->pub.source, NULL, FALSE,
               g_strdup_printf ("%s (%s): the catalog cannot be compared with "
                                "disk %s until this is fixed by hand (restore "
                                "the file from a backup, or point the disk at "
                                "an image that is whole)",
                                lerr ? lerr->message : "list failed", bname, t));
    g_clear_error (&lerr);
    return;
  }
  /* Catalog records whose storage is gone. */
  for (guint s = 0; s < c->snaps->len; s++) {
    cat_snap *cs = c->snaps->pdata[s];
    for (guint k = 0; k < cs->disks->len; k++) {
      cat_disk *cd = cs->disks->pdata[k];
      if (strcmp (cd->target, t) != 0 || strcmp (cd->backend, bname) != 0
          || has_point (pts, cd->locator))
        continue;
      add_drift (drifts, "missing-on-storage", t, cs->hidden ? NULL : cs->name,
                 cd->locator, NULL, TRUE,
                 g_strdup_printf ("the data of %s on disk %s is gone: restore "
                                  "%s from a backup, or run `vmsnap check "
                                  "--repair` to drop the record%s",
                                  cs->hidden ? "a kept unnamed point" : cs->name,
                                  t, cd->locator, cs->hidden ? "" :
                                  " (a snapshot left with no disk is removed)"));
    }
  }
  /* RBD: a catalogued snapshot whose ownership mark was removed (rbd
   * image-meta remove) is still vmsnap's, but a lost catalog could not be
   * rebuilt for it. */
  for (guint k = 0; strcmp (bname, "rbd") == 0 && k < pts->len; k++) {
    vmsnap_point *p = pts->pdata[k];
    if (p->owner || p->locator == NULL
        || !g_ptr_array_find_with_equal_func (all, p->locator, g_str_equal, NULL))
      continue;
    add_drift (drifts, "mark-missing", t, p->name, p->locator, NULL, FALSE,
               g_strdup_printf ("snapshot %s of disk %s has lost vmsnap's "
                                "ownership mark (image metadata vmsnap.snap.%s, "
                                "removed outside vmsnap); the catalog still "
                                "holds it, but a lost catalog could not be "
                                "rebuilt for it: set the key again by hand "
                                "(rbd image-meta set IMAGE vmsnap.snap.%s VALUE, "
                                "VALUE as the other snapshots' keys have it)",
                                p->locator, t, p->name ? p->name : "NAME",
                                p->name ? p->name : "NAME"));
  }
  /* Points with vmsnap's mark that the catalog does not know.  The active
   * file of a qcow2-external disk is where the VM writes, not a point. */
  actloc = g_strconcat (dp->pub.format ? dp->pub.format : "", ":",
                        dp->pub.source ? dp->pub.source : "", NULL);
  for (guint k = 0; k < pts->len; k++) {
    vmsnap_point *p = pts->pdata[k];
    char **f;
    unsigned int what = 0;
    g_autofree char *storage = NULL;
    gboolean active = FALSE;
    if (p->locator == NULL || !ours (bname, &dp->pub, p)
        || g_ptr_array_find_with_equal_func (all, p->locator, g_str_equal, NULL))
      continue;
    /* Storage another disk of the domain uses is never this disk's point
     * (two images that share a stem, a shared base image). */
    storage = vmsnap_guard_locator_storage (p->locator, &what);
    if (vmsnap_guard_other_user (guard, t, storage, &active))
      continue;
    if (strcmp (bname, "qcow2-external") == 0 && strcmp (p->locator, actloc) == 0)
      continue;
    add_drift (drifts, "not-in-catalog", t, p->name, p->locator, p->owner, TRUE,
               g_strdup_printf ("storage holds %s for disk %s that the catalog "
                                "does not know: `vmsnap check --repair` adds it "
                                "as a snapshot (storage is left as it is)",
                                p->locator, t));
    f = g_new0 (char *, 5);   /* target, backend, locator, name */
    f[0] = g_strdup (t);
    f[1] = g_strdup (bname);
    f[2] = g_strdup (p->locator);
    /* qcow2-external images carry no name: the layers at the same height
     * of every disk's chain are taken for one snapshot. */
    if (p->name == NULL && strcmp (bname, "qcow2-external") == 0
        && chain_pos (&dp->pub, p->locator) > 0)
      f[3] = g_strdup_printf ("recovered-%u", chain_pos (&dp->pub, p->locator));
    else
      f[3] = g_strdup (p->name ? p->name : "");
    g_ptr_array_add (found, f);
  }
}

/* Compare catalog C with storage for every disk of DOM. */
static gboolean
compare (vmsnap_ctx *ctx, vmsnap_domain *dom, catalog *c,
         const char *state_dir, GPtrArray *drifts, GPtrArray *found,
         GPtrArray *notes, GError **err)
{
  g_autoptr (vmsnap_plan) plan = vmsnap_plan_new (ctx, dom, NULL, err);
  gboolean online = dom->state == VMSNAP_STATE_RUNNING
                    || dom->state == VMSNAP_STATE_PAUSED;
  g_autoptr (vmsnap_guard) guard = vmsnap_guard_new (dom);

  if (plan == NULL)
    return FALSE;
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *dp = dom->disks->pdata[i];
    g_autoptr (GPtrArray) bes = disk_backends (c, plan, dp->pub.target);
    g_autoptr (GPtrArray) all = vmsnap_catalog_locators (c, dp->pub.target);
    add_internal (bes, &dp->pub);
    for (guint bi = 0; bi < bes->len; bi++)
      check_disk (ctx, dom, dp, c, bes->pdata[bi], all, state_dir, online,
                  guard, drifts, found, notes);
  }
  return TRUE;
}

/* The path of a "FORMAT:/path" locator, resolved; NULL if not one. */
static char *
loc_real_path (const char *loc)
{
  const char *c = strchr (loc, ':');
  char *r;

  if (c == NULL || c[1] != '/')
    return NULL;
  r = realpath (c + 1, NULL);
  if (r) {
    char *g = g_strdup (r);
    free (r);
    return g;
  }
  return g_strdup (c + 1);
}

static gboolean
on_chain (const vmsnap_disk *d, const char *loc)
{
  g_autofree char *want = loc_real_path (loc);

  for (size_t i = 0; want && i < d->n_chain; i++) {
    char *r = d->chain[i]->path ? realpath (d->chain[i]->path, NULL) : NULL;
    gboolean same = r && strcmp (r, want) == 0;
    free (r);
    if (same)
      return TRUE;
  }
  return FALSE;
}

/* qcow2-external: the current snapshot and its ancestors must be layers of
 * the chain the domain uses; a layer the active image no longer sits on
 * (qemu-img rebase -u, a copied image) is a chain mismatch. */
static void
check_chain (catalog *c, vmsnap_domain *dom, GPtrArray *drifts)
{
  cat_snap *s = c->current ? vmsnap_catalog_find_id (c, c->current) : NULL;

  for (guint steps = 0; s && steps <= c->snaps->len; steps++) {
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *cd = s->disks->pdata[k];
      vmsnap_disk_priv *dp = NULL;
      if (strcmp (cd->backend, "qcow2-external") != 0)
        continue;
      for (guint i = 0; i < dom->disks->len && !dp; i++)
        if (strcmp (((vmsnap_disk_priv *) dom->disks->pdata[i])->pub.target,
                    cd->target) == 0)
          dp = dom->disks->pdata[i];
      if (dp == NULL || !dp->pub.inspected || on_chain (&dp->pub, cd->locator))
        continue;
      {
        g_autofree char *p = loc_real_path (cd->locator);
        if (p == NULL || !g_file_test (p, G_FILE_TEST_EXISTS))
          continue;   /* reported as missing-on-storage */
      }
      add_drift (drifts, "chain-mismatch", cd->target, s->hidden ? NULL : s->name,
                 cd->locator, NULL, FALSE,
                 g_strdup_printf ("disk %s (%s) no longer sits on %s, which the "
                                  "catalog says is below it: put the backing file "
                                  "back by hand (qemu-img rebase -u -F FORMAT -b "
                                  "FILE %s), or revert to a snapshot to start "
                                  "from a known point", cd->target,
                                  dp->pub.source ? dp->pub.source : "?",
                                  cd->locator, dp->pub.source ? dp->pub.source : "ACTIVE"));
    }
    s = vmsnap_catalog_find_id (c, s->parent);
  }
}

/* Snapshots an earlier repair left partial (a disk's data was gone): they
 * stay reported until deleted, so that check never calls such a domain
 * clean. */
static void
check_partial (catalog *c, GPtrArray *drifts)
{
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    g_autofree char *lost = NULL;
    if (s->hidden || s->lost->len == 0)
      continue;
    g_ptr_array_add (s->lost, NULL);
    lost = g_strjoinv (", ", (char **) s->lost->pdata);
    g_ptr_array_remove_index (s->lost, s->lost->len - 1);
    add_drift (drifts, "partial-snapshot", s->lost->pdata[0], s->name, NULL, NULL,
               FALSE, g_strdup_printf ("snapshot %s lacks disk(s) %s, whose data "
                                       "was found gone: a revert to it is "
                                       "refused (the disks would be at different "
                                       "points in time); remove it with `vmsnap "
                                       "delete %s`", s->name, lost, s->name));
  }
}

/* Catalog records of disks the domain no longer has (issue 16 item 13):
 * storage cannot be compared for them, revert refuses such a snapshot and
 * delete leaves the storage as a kept unnamed point; that is said here
 * rather than "agree".  Not repairable: only the user knows where the disk went. */
static void
check_removed_disks (catalog *c, vmsnap_domain *dom, GPtrArray *drifts)
{
  for (guint s = 0; s < c->snaps->len; s++) {
    cat_snap *cs = c->snaps->pdata[s];
    for (guint k = 0; k < cs->disks->len; k++) {
      cat_disk *cd = cs->disks->pdata[k];
      gboolean present = FALSE;
      for (guint i = 0; i < dom->disks->len && !present; i++)
        present = strcmp (((vmsnap_disk_priv *) dom->disks->pdata[i])->pub.target,
                          cd->target) == 0;
      if (present)
        continue;
      add_drift (drifts, "disk-not-in-domain", cd->target,
                 cs->hidden ? NULL : cs->name, cd->locator, NULL, FALSE,
                 cs->hidden
                 ? g_strdup_printf ("a kept unnamed point holds disk %s (%s), "
                                    "which domain %s no longer has: it stays "
                                    "until disk %s is back in the domain "
                                    "definition, then vmsnap merge "
                                    "consolidates it", cd->target, cd->locator,
                                    dom->name, cd->target)
                 : g_strdup_printf ("snapshot %s holds disk %s (%s), which "
                                    "domain %s no longer has: `vmsnap revert "
                                    "%s` is refused (the other disks alone "
                                    "would be at another point in time than "
                                    "%s); `vmsnap delete %s` leaves %s's "
                                    "storage untouched and keeps it as an "
                                    "unnamed point; or put disk %s back into "
                                    "the domain definition",
                                    cs->name, cd->target, cd->locator, dom->name,
                                    cs->name, cd->target, cs->name, cd->target,
                                    cd->target));
    }
  }
}

/* A disk whose chain no longer matches the catalog: what its chain holds
 * cannot be told from what the catalog lost, so points found on it are
 * not added until the chain is fixed. */
static void
hold_back_mismatched (GPtrArray *drifts, GPtrArray *found)
{
  for (guint i = 0; i < drifts->len; i++) {
    drift *m = drifts->pdata[i];
    if (strcmp (m->kind, "chain-mismatch") != 0)
      continue;
    for (guint k = 0; k < drifts->len; k++) {
      drift *d = drifts->pdata[k];
      if (strcmp (d->kind, "not-in-catalog") != 0 || strcmp (d->disk, m->disk) != 0
          || !d->repairable)
        continue;
      d->repairable = FALSE;
      g_free (d->fix);
      d->fix = g_strdup_printf ("storage holds %s for disk %s that the catalog "
                                "does not know, but the disk's chain does not "
                                "match the catalog (see chain-mismatch): fix "
                                "that first, then run `vmsnap check --repair`",
                                d->locator, d->disk);
    }
    for (guint k = 0; k < found->len;) {
      char **f = found->pdata[k];
      if (strcmp (f[0], m->disk) == 0)
        g_ptr_array_remove_index (found, k);
      else
        k++;
    }
  }
}

/* A snapshot name for a point storage holds: its own name if it has a
 * valid free one, else recovered-<last path component>. */
static char *
recovered_name (catalog *c, const char *name, const char *loc)
{
  g_autofree char *base = NULL;
  GString *s;
  const char *p;

  if (name && *name && vmsnap_valid_snapshot_name (name, NULL))
    return g_strdup (name);
  p = strrchr (loc, '/');
  base = g_strdup (p ? p + 1 : loc);
  s = g_string_new ("recovered-");
  for (const char *q = base; *q && s->len < 120; q++)
    g_string_append_c (s, g_ascii_isalnum (*q) || strchr ("._+-", *q) ? *q : '_');
  for (guint n = 2; vmsnap_catalog_find (c, s->str); n++) {
    g_string_truncate (s, MIN (s->len, 118));
    g_string_append_printf (s, "-%u", n);
  }
  return g_string_free (s, FALSE);
}

/* Apply the repairable drifts to C; describe each change in CHANGES. */
static void
repair (catalog *c, GPtrArray *drifts, GPtrArray *found, GPtrArray *changes)
{
  GHashTable *added = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < drifts->len; i++) {
    drift *d = drifts->pdata[i];
    if (!d->repairable || strcmp (d->kind, "missing-on-storage") != 0)
      continue;
    for (guint s = 0; s < c->snaps->len; s++) {
      cat_snap *cs = c->snaps->pdata[s];
      for (guint k = 0; k < cs->disks->len; k++) {
        cat_disk *cd = cs->disks->pdata[k];
        if (strcmp (cd->target, d->disk) == 0 && strcmp (cd->locator, d->locator) == 0) {
          /* A named snapshot that keeps other disks becomes partial, and
           * says so: a revert to it is refused (its disks would be at
           * different points in time); deleting it is how it goes. */
          gboolean partial = !cs->hidden && cs->disks->len > 1;
          g_ptr_array_add (changes, g_strdup_printf (
              "dropped the record of disk %s (%s) from %s%s%s%s%s", d->disk, d->locator,
              cs->hidden ? "a kept unnamed point" : "snapshot ",
              cs->hidden ? "" : cs->name,
              partial ? ": the snapshot is now partial (it lacks disk " : "",
              partial ? d->disk : "",
              partial ? "), a revert to it is refused; remove it with `vmsnap delete`" : ""));
          if (partial && !g_ptr_array_find_with_equal_func (cs->lost, d->disk, g_str_equal, NULL))
            g_ptr_array_add (cs->lost, g_strdup (d->disk));
          g_ptr_array_remove_index (cs->disks, k);
          break;
        }
      }
    }
  }
  for (guint s = 0; s < c->snaps->len;) {
    cat_snap *cs = c->snaps->pdata[s];
    if (cs->disks->len == 0) {
      g_ptr_array_add (changes, g_strdup_printf (
          "removed %s%s: none of its data is left on storage",
          cs->hidden ? "a kept unnamed point" : "snapshot ", cs->hidden ? "" : cs->name));
      vmsnap_catalog_remove (c, cs);
    } else
      s++;
  }
  for (guint i = 0; i < found->len; i++) {
    char **f = found->pdata[i];
    g_autofree char *name = NULL;
    cat_snap *s = NULL;
    /* Points of several disks with the same storage name (LVM, RBD) are
     * one snapshot. */
    if (*f[3])
      s = g_hash_table_lookup (added, f[3]);
    if (s == NULL) {
      g_autofree char *id = g_strdup_printf ("%u", c->next_id++);
      name = recovered_name (c, f[3], f[2]);
      if (vmsnap_catalog_find (c, name)) {
        g_free (name);
        name = recovered_name (c, NULL, f[2]);
      }
      s = vmsnap_cat_snap_new (id, name);
      s->created = g_get_real_time () / G_USEC_PER_SEC;
      s->description = g_strdup ("re-added by vmsnap check --repair from storage");
      g_ptr_array_add (c->snaps, s);
      if (*f[3])
        g_hash_table_insert (added, f[3], s);
    }
    g_ptr_array_add (s->disks, vmsnap_cat_disk_new (f[0], f[1], f[2]));
    g_ptr_array_add (changes, g_strdup_printf (
        "added disk %s (%s, %s) to snapshot %s", f[0], f[1], f[2], s->name));
  }
  /* Recovered layers of a chain: each one's parent is the layer below,
   * and with no current snapshot the top one is current. */
  {
    cat_snap *top = NULL;
    for (guint n = 1;; n++) {
      g_autofree char *key = g_strdup_printf ("recovered-%u", n);
      cat_snap *s = g_hash_table_lookup (added, key);
      if (s == NULL)
        break;
      if (top && s->parent == NULL)
        s->parent = g_strdup (top->id);
      top = s;
    }
    if (top && c->current == NULL) {
      c->current = g_strdup (top->id);
      g_ptr_array_add (changes, g_strdup_printf ("made %s the current snapshot", top->name));
    }
  }
  g_hash_table_unref (added);
}

static void
jstr (JsonBuilder *b, const char *k, const char *v)
{
  json_builder_set_member_name (b, k);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
drifts_json (JsonBuilder *b, const char *member, GPtrArray *drifts)
{
  json_builder_set_member_name (b, member);
  json_builder_begin_array (b);
  for (guint i = 0; i < drifts->len; i++) {
    drift *d = drifts->pdata[i];
    json_builder_begin_object (b);
    jstr (b, "kind", d->kind);
    jstr (b, "disk", d->disk);
    jstr (b, "snapshot", d->snapshot);
    jstr (b, "storage", d->locator);
    jstr (b, "owner", d->owner);
    json_builder_set_member_name (b, "repairable");
    json_builder_add_boolean_value (b, d->repairable);
    jstr (b, "fix", d->fix);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

static void
strv_json (JsonBuilder *b, const char *member, GPtrArray *a)
{
  json_builder_set_member_name (b, member);
  json_builder_begin_array (b);
  for (guint i = 0; i < a->len; i++)
    json_builder_add_string_value (b, a->pdata[i]);
  json_builder_end_array (b);
}

char *
vmsnap_check_domain (vmsnap_ctx *ctx, const char *spec,
              const vmsnap_engine_options *opts, unsigned int flags,
              bool *drift_left, GError **err)
{
  g_autoptr (vmsnap_domain) own = NULL;
  vmsnap_domain *dom;
  g_autoptr (vmsnap_engine) e = NULL;   /* holds the lock while repairing */
  g_autoptr (catalog) c = NULL;
  g_autoptr (GPtrArray) drifts = g_ptr_array_new_with_free_func (drift_free);
  g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  g_autoptr (GPtrArray) notes = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) after = g_ptr_array_new_with_free_func (drift_free);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *state_dir = NULL, *catpath = NULL;
  gboolean had_catalog;
  const char *sroot;

  if (flags & ~VMSNAP_CHECK_REPAIR) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_FLAGS,
                 "vmsnap_check_domain: unknown flags 0x%x", flags & ~VMSNAP_CHECK_REPAIR);
    return NULL;
  }
  if (flags & VMSNAP_CHECK_REPAIR) {
    vmsnap_engine_options eo = { 0 };
    if (opts)
      eo = *opts;
    eo.flags &= ~VMSNAP_ENGINE_READ_ONLY;
    /* Lock, and finish an interrupted operation first. */
    if ((e = vmsnap_engine_open (ctx, spec, &eo, err)) == NULL)
      return NULL;
  }
  /* Repairing: the engine's inventory, read under its lock (after any
   * recovery); not inspected a second time. */
  if (e)
    dom = vmsnap_engine_domain (e);
  else if ((dom = own = vmsnap_domain_open (ctx, spec, opts ? opts->uri : NULL, err)) == NULL)
    return NULL;
  if (dom->uuid == NULL || !g_uuid_string_is_valid (dom->uuid)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s has no valid <uuid>: vmsnap keys its catalog by UUID",
                 dom->name);
    return NULL;
  }
  sroot = opts && opts->state_dir ? opts->state_dir
          : vmsnap_option_get (ctx->config, "vmsnap.state-dir");
  state_dir = g_build_filename (sroot, dom->uuid, NULL);
  catpath = g_build_filename (state_dir, "catalog.xml", NULL);
  had_catalog = g_file_test (catpath, G_FILE_TEST_EXISTS);
  if ((c = vmsnap_catalog_load (catpath, dom->uuid, dom->name, err)) == NULL)
    return NULL;
  if (!compare (ctx, dom, c, state_dir, drifts, found, notes, err))
    return NULL;
  check_chain (c, dom, drifts);
  check_partial (c, drifts);
  check_removed_disks (c, dom, drifts);
  hold_back_mismatched (drifts, found);

  if (e && drifts->len > 0) {
    g_autoptr (GPtrArray) found2 = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
    repair (c, drifts, found, changes);
    if (changes->len > 0 && !vmsnap_catalog_save (c, err))
      return NULL;
    /* What is left: compare again against the catalog as written. */
    if (!compare (ctx, dom, c, state_dir, after, found2, notes, err))
      return NULL;
    check_chain (c, dom, after);
    check_partial (c, after);
    check_removed_disks (c, dom, after);
    hold_back_mismatched (after, found2);
  }

  json_builder_begin_object (b);
  jstr (b, "domain", dom->name);
  jstr (b, "uuid", dom->uuid);
  jstr (b, "catalog", catpath);
  json_builder_set_member_name (b, "catalog_existed");
  json_builder_add_boolean_value (b, had_catalog);
  json_builder_set_member_name (b, "repair");
  json_builder_add_boolean_value (b, e != NULL);
  drifts_json (b, "differences", drifts);
  strv_json (b, "changes", changes);
  drifts_json (b, "remaining", e ? after : drifts);
  strv_json (b, "notes", notes);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  if (drift_left)
    *drift_left = (e ? after : drifts)->len > 0;
  return json_generator_to_data (gen, NULL);
}
