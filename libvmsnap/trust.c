/* What a catalog or a journal may name (issue 16, items 10 and 12;
 * doc/security.md).
 *
 * Both live in the state directory and both are read back: a damaged,
 * edited or planted one must not make vmsnap act on a file that is not the
 * domain's.  Every file path they hold for a disk must lie in a directory
 * the disk's images live in: a directory of a file of its active chain (as
 * the domain is defined now), of an image the catalog holds for it, of its
 * source in a snapshot's saved definition, or the domain's state directory
 * (overlays of block devices).  vmsnap never records a path anywhere else:
 * overlays are made next to the image they grow on.  (Locators of LVM and
 * RBD name volumes, not files, and are left to the backends: LVM removes
 * only LVs tagged for the domain; see doc/security.md for RBD.) */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "internal.h"

/* The file path in VALUE: "/path", or a locator "FORMAT:/path" (with
 * qcow2-internal's "#TAG" taken off); NULL if VALUE names no file. */
static char *
file_of (const char *value)
{
  const char *p = value;
  char *path, *hash;

  if (value == NULL || strchr (value, '\n'))
    return NULL;
  if (*p != '/') {
    size_t n = strspn (p, "abcdefghijklmnopqrstuvwxyz0123456789_-");
    if (n == 0 || p[n] != ':' || p[n + 1] != '/')
      return NULL;
    p += n + 1;
  }
  path = g_strdup (p);
  hash = strrchr (path, '#');
  if (hash && strchr (hash, '/') == NULL && !g_file_test (path, G_FILE_TEST_EXISTS))
    *hash = '\0';
  return path;
}

/* Is PATH absolute without ".", ".." or empty components? */
static gboolean
normal_path (const char *path)
{
  g_auto (GStrv) parts = NULL;

  if (path[0] != '/' || path[1] == '\0')
    return FALSE;
  parts = g_strsplit (path + 1, "/", -1);
  for (char **p = parts; *p; p++)
    if (**p == '\0' || !strcmp (*p, ".") || !strcmp (*p, ".."))
      return FALSE;
  return TRUE;
}

static void
add_dir (GHashTable *dirs, const char *path)
{
  if (path && path[0] == '/' && normal_path (path))
    g_hash_table_add (dirs, g_path_get_dirname (path));
}

/* Sources of disk TARGET in a snapshot's saved domain XML. */
static void
add_saved_sources (GHashTable *dirs, const char *xml, const char *target)
{
  xmlDocPtr doc;
  xmlNodePtr root, devices = NULL;

  if (xml == NULL || *xml == '\0')
    return;
  doc = xmlReadMemory (xml, (int) strlen (xml), "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == NULL)
    return;
  root = xmlDocGetRootElement (doc);
  for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && xmlStrEqual (c->name, BAD_CAST "devices"))
      devices = c;
  for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
    xmlChar *dev = NULL, *file = NULL;
    if (d->type != XML_ELEMENT_NODE || !xmlStrEqual (d->name, BAD_CAST "disk"))
      continue;
    for (xmlNodePtr k = d->children; k; k = k->next) {
      if (k->type != XML_ELEMENT_NODE)
        continue;
      if (xmlStrEqual (k->name, BAD_CAST "target") && dev == NULL)
        dev = xmlGetProp (k, BAD_CAST "dev");
      else if (xmlStrEqual (k->name, BAD_CAST "source") && file == NULL) {
        file = xmlGetProp (k, BAD_CAST "file");
        if (file == NULL)
          file = xmlGetProp (k, BAD_CAST "dev");
      }
    }
    if (dev && file && strcmp ((const char *) dev, target) == 0)
      add_dir (dirs, (const char *) file);
    xmlFree (dev);
    xmlFree (file);
  }
  xmlFreeDoc (doc);
}

/* The directories disk TARGET's images live in.  WITH_SAVED: also the
 * sources in the snapshots' saved domain XML (one XML parse a snapshot);
 * WITH_CATALOG: also those of the catalog's locators (checked already). */
static GHashTable *
disk_dirs (vmsnap_domain *dom, catalog *cat, const char *state_dir,
           const char *target, gboolean with_saved, gboolean with_catalog)
{
  GHashTable *dirs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  g_hash_table_add (dirs, g_strdup (state_dir));
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    if (strcmp (d->pub.target, target) != 0)
      continue;
    if (d->pub.source && d->pub.type != VMSNAP_DISK_TYPE_NETWORK)
      add_dir (dirs, d->pub.source);
    for (size_t k = 0; k < d->pub.n_chain; k++)
      if (!d->pub.chain[k]->is_network)
        add_dir (dirs, d->pub.chain[k]->path);
  }
  for (guint i = 0; cat && i < cat->snaps->len; i++) {
    cat_snap *s = cat->snaps->pdata[i];
    if (with_saved)
      add_saved_sources (dirs, s->domain_xml, target);
    for (guint k = 0; with_catalog && k < s->disks->len; k++) {
      cat_disk *cd = s->disks->pdata[k];
      g_autofree char *f = strcmp (cd->target, target) == 0 ? file_of (cd->locator) : NULL;
      add_dir (dirs, f);
    }
  }
  return dirs;
}

/* NULL if VALUE (a path or a locator, or no file at all) may be acted on
 * for a disk whose images live in DIRS, else why not. */
static char *
outside (GHashTable *dirs, const char *value)
{
  g_autofree char *f = file_of (value);
  g_autofree char *dir = NULL;

  if (f == NULL)
    return NULL;
  if (!normal_path (f))
    return g_strdup ("is not a plain absolute path");
  dir = g_path_get_dirname (f);
  if (g_hash_table_contains (dirs, dir))
    return NULL;
  return g_strdup ("is not in a directory of the disk's images nor in the "
                   "domain's state directory");
}

static gboolean G_GNUC_PRINTF (5, 6)
bad_catalog_line (catalog *c, long line, const char *what, GError **err,
                  const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL, *shown = NULL;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  shown = vmsnap_printable (what);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "catalog %s, line %ld: %s %s; vmsnap never records such a "
               "locator, so the catalog was damaged or edited: nothing was "
               "done. Restore it from a backup, or move it away and rebuild "
               "it (vmsnap check --repair)", c->path, line, shown, why);
  return FALSE;
}

gboolean
vmsnap_catalog_paths_check (catalog *c, vmsnap_domain *dom, const char *state_dir,
                            GError **err)
{
  /* Per target, the directories of the definition's chain and the state
   * directory first (no parsing), and only for a locator outside them also
   * those of the snapshots' saved definitions (issue 17: `list` of N
   * snapshots parsed N saved definitions per disk).  The set accepted is
   * the same. */
  g_autoptr (GHashTable) cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                        (GDestroyNotify) g_hash_table_unref);
  g_autoptr (GHashTable) full = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                       (GDestroyNotify) g_hash_table_unref);

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      GHashTable *dirs = g_hash_table_lookup (cache, d->target);
      g_autofree char *why = NULL;
      if (dirs == NULL) {
        dirs = disk_dirs (dom, c, state_dir, d->target, FALSE, FALSE);
        g_hash_table_insert (cache, g_strdup (d->target), dirs);
      }
      if ((why = outside (dirs, d->locator)) == NULL)
        continue;
      g_clear_pointer (&why, g_free);
      dirs = g_hash_table_lookup (full, d->target);
      if (dirs == NULL) {
        dirs = disk_dirs (dom, c, state_dir, d->target, TRUE, FALSE);
        g_hash_table_insert (full, g_strdup (d->target), dirs);
      }
      if ((why = outside (dirs, d->locator)) != NULL) {
        g_autofree char *what = g_strdup_printf ("snapshot '%s', disk %s: locator %s",
                                                 s->name, d->target, d->locator);
        return bad_catalog_line (c, d->line, what, err, "%s", why);
      }
    }
  }
  return TRUE;
}

/* Every string inside JSON document NODE (a backend's recorded plan). */
static void
json_strings (JsonNode *node, GPtrArray *out)
{
  if (node == NULL)
    return;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    g_ptr_array_add (out, g_strdup (json_node_get_string (node)));
  else if (JSON_NODE_HOLDS_ARRAY (node)) {
    JsonArray *a = json_node_get_array (node);
    for (guint i = 0; i < json_array_get_length (a); i++)
      json_strings (json_array_get_element (a, i), out);
  } else if (JSON_NODE_HOLDS_OBJECT (node)) {
    g_autoptr (GList) members = json_object_get_values (json_node_get_object (node));
    for (GList *l = members; l; l = l->next)
      json_strings (l->data, out);
  }
}

/* The values in V that may name files: V itself, or, for a JSON document,
 * every string in it. */
static GPtrArray *
values_in (const char *v)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  if (v && (*v == '{' || *v == '[')) {
    g_autoptr (JsonParser) p = json_parser_new ();
    if (json_parser_load_from_data (p, v, -1, NULL)) {
      json_strings (json_parser_get_root (p), out);
      return out;
    }
  }
  if (v)
    g_ptr_array_add (out, g_strdup (v));
  return out;
}

/* The line of KEY in [GROUP] of journal J's file, or 0. */
guint
vmsnap_journal_line (vmsnap_journal *j, const char *group, const char *key)
{
  g_autofree char *data = NULL;
  g_autofree char *head = g_strdup_printf ("[%s]", group);
  g_autofree char *start = g_strdup_printf ("%s=", key);
  g_auto (GStrv) lines = NULL;
  size_t len = 0;
  gboolean in = FALSE;

  if (!vmsnap_read_state_file (j->path, 64u * 1024 * 1024, &data, &len, NULL))
    return 0;
  lines = g_strsplit (data, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    if (lines[i][0] == '[')
      in = strcmp (lines[i], head) == 0;
    else if (in && g_str_has_prefix (lines[i], start))
      return i + 1;
  }
  return 0;
}

static gboolean
bad_journal_path (vmsnap_journal *j, const char *group, const char *key,
                  const char *target, const char *value, const char *why,
                  GError **err)
{
  g_autofree char *shown = vmsnap_printable (value);
  g_autofree char *disk = vmsnap_printable (target);
  g_autofree char *g = vmsnap_printable (group), *k = vmsnap_printable (key);

  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "journal %s, line %u ([%s] %s): disk %s: %s %s; vmsnap never "
               "records such a path, so the journal was damaged, edited or "
               "planted: nothing was replayed and nothing was removed. Check "
               "the domain's disks by hand (vmsnap check), then move the "
               "journal away", j->path, vmsnap_journal_line (j, group, key), g, k,
               disk, shown, why);
  return FALSE;
}

/* Every file a journal names for a disk is checked (outside()) before
 * recovery acts on any of it: the locators of the operation, what each
 * backend recorded (its "s." keys) and the results the core saved (new
 * sources, locators, renames, and what to remove). */
gboolean
vmsnap_journal_paths_check (vmsnap_journal *j, vmsnap_domain *dom, catalog *cat,
                            const char *state_dir, GError **err)
{
  g_auto (GStrv) disks = g_key_file_get_string_list (j->kf, "op", "disks", NULL, NULL);
  const char *nv = vmsnap_journal_get (j, "op", "nvram_source");

  for (char **t = disks; t && *t; t++) {
    g_autoptr (GHashTable) dirs = disk_dirs (dom, cat, state_dir, *t, TRUE, TRUE);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);
    g_autofree char *lkey = g_strconcat ("locator.", *t, NULL);
    g_auto (GStrv) keys = g_key_file_get_keys (j->kf, group, NULL, NULL);
    g_autofree char *why = outside (dirs, vmsnap_journal_get (j, "op", lkey));

    if (why)
      return bad_journal_path (j, "op", lkey, *t, vmsnap_journal_get (j, "op", lkey),
                               why, err);
    for (char **k = keys; k && *k; k++) {
      g_auto (GStrv) vals = NULL;
      if (g_str_has_prefix (*k, "s.") || !strcmp (*k, "r.locator")
          || !strcmp (*k, "r.new_source")) {
        g_autoptr (GPtrArray) vs = values_in (vmsnap_journal_get (j, group, *k));
        for (guint i = 0; i < vs->len; i++)
          if ((why = outside (dirs, vs->pdata[i])) != NULL)
            return bad_journal_path (j, group, *k, *t, vs->pdata[i], why, err);
        continue;
      }
      if (strcmp (*k, "r.undo") && strcmp (*k, "r.garbage") && strcmp (*k, "r.removed")
          && strcmp (*k, "r.renames"))
        continue;
      vals = g_key_file_get_string_list (j->kf, group, *k, NULL, NULL);
      for (char **v = vals; v && *v; v++)
        if ((why = outside (dirs, *v)) != NULL)
          return bad_journal_path (j, group, *k, *t, *v, why, err);
    }
  }
  /* The NVRAM a create copies, or a revert writes: the domain's own. */
  if (nv) {
    const char *id = vmsnap_journal_get (j, "op", "id");
    cat_snap *s = cat ? vmsnap_catalog_find_id (cat, id) : NULL;
    if (g_strcmp0 (nv, dom->nvram_path) != 0 && !(s && g_strcmp0 (nv, s->nvram_source) == 0))
      return bad_journal_path (j, "op", "nvram_source", "(NVRAM)", nv,
                               "is not the domain's NVRAM file", err);
  }
  return TRUE;
}

static gboolean G_GNUC_PRINTF (5, 6)
bad_journal_op (vmsnap_journal *j, const char *key, catalog *c, GError **err,
                const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL, *raw = NULL;

  va_start (ap, fmt);
  raw = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  why = vmsnap_printable (raw);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "journal %s, line %u: %s, which does not fit catalog %s: the "
               "journal is of another domain or was damaged, edited or "
               "planted; nothing was replayed. Check the domain's disks by "
               "hand (vmsnap check), then move the journal away", j->path,
               vmsnap_journal_line (j, "op", key), why, c->path);
  return FALSE;
}

/* Would the catalog step of journal J leave catalog C valid (the loader's
 * rules, catalog.c)?  A create must add a new name under an existing
 * parent, a revert must make an existing snapshot current.  Once the step
 * is done, the catalog already holds its outcome. */
gboolean
vmsnap_journal_catalog_check (vmsnap_journal *j, catalog *c, GError **err)
{
  const char *kind = vmsnap_journal_get (j, "op", "kind");
  const char *id = vmsnap_journal_get (j, "op", "id");
  const char *name = vmsnap_journal_get (j, "op", "name");
  const char *parent = vmsnap_journal_get (j, "op", "parent");
  cat_snap *s = vmsnap_catalog_find_id (c, id);

  if (vmsnap_journal_done (j, "core", "catalog") || kind == NULL)
    return TRUE;
  if (!strcmp (kind, "create")) {
    cat_snap *named = name ? vmsnap_catalog_find (c, name) : NULL;
    if (s && g_strcmp0 (s->name, name) != 0)
      return bad_journal_op (j, "id", c, err, "snapshot id %s is taken by "
                             "snapshot '%s'", id, s->name);
    if (s == NULL && named)
      return bad_journal_op (j, "name", c, err, "a snapshot named '%s' exists "
                             "already", name);
    if (s == NULL && parent && *parent && vmsnap_catalog_find_id (c, parent) == NULL)
      return bad_journal_op (j, "parent", c, err, "its parent id %s is no "
                             "snapshot", parent);
  } else if (!strcmp (kind, "revert")) {
    if (s == NULL)
      return bad_journal_op (j, "id", c, err, "it reverts to snapshot id %s, "
                             "which does not exist", id ? id : "(none)");
  }
  return TRUE;
}
