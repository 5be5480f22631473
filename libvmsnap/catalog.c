/* The catalog of one domain (DESIGN.md §7): the snapshot tree, the current
 * snapshot and every snapshot's disk records, as XML (libxml2), written
 * atomically with mode 0600 under STATE_DIR/UUID/catalog.xml.
 *
 * A snapshot whose name was deleted while other points still depend on its
 * storage stays as a hidden entry (hidden='yes') holding only the disk
 * records whose storage was kept; merge consolidates it away. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "internal.h"

static void
cat_disk_free (gpointer p)
{
  cat_disk *d = p;

  g_free (d->target);
  g_free (d->backend);
  g_free (d->locator);
  g_free (d);
}

cat_disk *
vmsnap_cat_disk_new (const char *target, const char *backend, const char *locator)
{
  cat_disk *d = g_new0 (cat_disk, 1);

  d->target = g_strdup (target);
  d->backend = g_strdup (backend);
  d->locator = g_strdup (locator);
  return d;
}

static void
cat_snap_free (gpointer p)
{
  cat_snap *s = p;

  g_free (s->id);
  g_free (s->name);
  g_free (s->parent);
  g_free (s->description);
  g_free (s->domain_xml);
  g_free (s->libvirt_xml);
  g_free (s->memory);
  g_free (s->nvram);
  g_free (s->nvram_source);
  g_ptr_array_unref (s->disks);
  g_ptr_array_unref (s->lost);
  g_free (s);
}

cat_snap *
vmsnap_cat_snap_new (const char *id, const char *name)
{
  cat_snap *s = g_new0 (cat_snap, 1);

  s->id = g_strdup (id);
  s->name = g_strdup (name);
  s->disks = g_ptr_array_new_with_free_func (cat_disk_free);
  s->lost = g_ptr_array_new_with_free_func (g_free);
  return s;
}

catalog *
vmsnap_catalog_new (const char *path, const char *uuid, const char *name)
{
  catalog *c = g_new0 (catalog, 1);

  c->path = g_strdup (path);
  c->uuid = g_strdup (uuid);
  c->name = g_strdup (name);
  c->next_id = 1;
  c->snaps = g_ptr_array_new_with_free_func (cat_snap_free);
  return c;
}

void
vmsnap_catalog_free (catalog *c)
{
  if (c == NULL)
    return;
  g_free (c->path);
  g_free (c->uuid);
  g_free (c->name);
  g_free (c->current);
  g_ptr_array_unref (c->snaps);
  if (c->by_id)
    g_hash_table_unref (c->by_id);
  g_free (c);
}

static char *
getp (xmlNodePtr n, const char *name)
{
  xmlChar *v = xmlGetProp (n, BAD_CAST name);
  char *s = v ? g_strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

static char *
node_text (xmlNodePtr n)
{
  xmlChar *v = xmlNodeGetContent (n);
  char *s = v ? g_strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

static gboolean G_GNUC_PRINTF (4, 5)
bad_catalog (const catalog *c, long line, GError **err, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "catalog %s, line %ld: %s; vmsnap never writes such a catalog, "
               "so it was damaged or edited: nothing was done. Restore it from "
               "a backup, or move it away and rebuild it (vmsnap check --repair)",
               c->path, line, why);
  return FALSE;
}

/* Is V a snapshot id as vmsnap writes them (a decimal number)? */
static gboolean
valid_id (const char *v)
{
  return v && *v && strlen (v) <= 10 && strspn (v, "0123456789") == strlen (v)
         && g_ascii_strtoull (v, NULL, 10) < G_MAXUINT;
}

/* What vmsnap relies on in a loaded catalog (issue 16, item 12): unique
 * ids, one visible snapshot per name, parents that exist and lead to a
 * root, a current snapshot that exists.  Two snapshots of one name made
 * `list --tree` recurse until it crashed; a parent cycle printed nothing. */
static gboolean
catalog_consistent (catalog *c, GError **err)
{
  g_autoptr (GHashTable) ids = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  guint max_id = 0;

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    cat_snap *other = g_hash_table_lookup (ids, s->id);
    if (other)
      return bad_catalog (c, s->line, err, "snapshot id %s is used twice (also "
                          "on line %ld)", s->id, other->line);
    g_hash_table_insert (ids, s->id, s);
    max_id = MAX (max_id, (guint) g_ascii_strtoull (s->id, NULL, 10));
    if (s->hidden)
      continue;
    if ((other = g_hash_table_lookup (names, s->name)) != NULL)
      return bad_catalog (c, s->line, err, "two snapshots are named '%s' (the "
                          "other on line %ld)", s->name, other->line);
    g_hash_table_insert (names, s->name, s);
  }
  /* No parent cycles.  A snapshot whose ancestry has been walked to a root
   * is remembered (ROOTED), so each walk stops at the first such ancestor:
   * O(N) in all, where walking every snapshot to the root was O(N * depth)
   * (issue 17: a 1000-deep chain made `list` spend a fifth of its time
   * here). */
  g_autoptr (GHashTable) rooted = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i], *p = s;
    guint steps = 0;
    if (s->parent && !g_hash_table_contains (ids, s->parent))
      return bad_catalog (c, s->line, err, "snapshot '%s' has parent id %s, which "
                          "no snapshot has", s->name, s->parent);
    while (p && p->parent && !g_hash_table_contains (rooted, p)) {
      if (++steps > c->snaps->len)
        return bad_catalog (c, s->line, err, "the parents of snapshot '%s' go "
                            "round in a circle", s->name);
      p = g_hash_table_lookup (ids, p->parent);
    }
    /* S's ancestry reaches a root: so does every snapshot on the way. */
    for (p = s; p && !g_hash_table_contains (rooted, p);
         p = p->parent ? g_hash_table_lookup (ids, p->parent) : NULL)
      g_hash_table_add (rooted, p);
  }
  if (c->current && !g_hash_table_contains (ids, c->current))
    return bad_catalog (c, c->current_line, err, "the current snapshot is id %s, "
                        "which no snapshot has", c->current);
  /* The next create must not reuse an id. */
  c->next_id = MAX (c->next_id, max_id + 1);
  return TRUE;
}

catalog *
vmsnap_catalog_load (const char *path, const char *uuid, const char *name,
                     GError **err)
{
  g_autoptr (catalog) c = vmsnap_catalog_new (path, uuid, name);
  g_autofree char *data = NULL;
  size_t len = 0;
  xmlDocPtr doc;
  xmlNodePtr root;

  if (!vmsnap_read_state_file (path, 1024u * 1024 * 1024, &data, &len, err))
    return errno == ENOENT && (err == NULL || *err == NULL) ? g_steal_pointer (&c) : NULL;
  if (len > G_MAXINT)
    return bad_catalog (c, 0, err, "it is too large"), NULL;
  xmlResetLastError ();
  doc = xmlReadMemory (data, (int) len, path, NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING
                       | XML_PARSE_HUGE);
  if (doc == NULL) {
    const xmlError *xe = xmlGetLastError ();
    g_autofree char *why = vmsnap_printable (xe && xe->message ? xe->message : "?");
    g_strchomp (why);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "catalog %s, line %d: not readable XML (%s); it is only ever "
                 "replaced atomically, so something outside vmsnap damaged it: "
                 "restore it from a backup", path, xe ? xe->line : 0, why);
    return NULL;
  }
  root = xmlDocGetRootElement (doc);
  if (root == NULL || !xmlStrEqual (root->name, BAD_CAST "vmsnap-catalog")) {
    xmlFreeDoc (doc);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "%s is not a vmsnap catalog", path);
    return NULL;
  }
  {
    g_autofree char *next = getp (root, "next-id");
    g_autofree char *duuid = getp (root, "domain-uuid");
    c->current_line = xmlGetLineNo (root);
    if (uuid && (duuid == NULL || g_ascii_strcasecmp (duuid, uuid) != 0)) {
      g_autofree char *shown = vmsnap_printable (duuid);
      bad_catalog (c, xmlGetLineNo (root), err, "it belongs to domain UUID %s, "
                   "not to %s (%s): a catalog of another domain",
                   duuid ? shown : "(none)", uuid, name ? name : "?");
      xmlFreeDoc (doc);
      return NULL;
    }
    if (next && !valid_id (next)) {
      bad_catalog (c, xmlGetLineNo (root), err, "next-id is not a number");
      xmlFreeDoc (doc);
      return NULL;
    }
    c->next_id = next ? (guint) g_ascii_strtoull (next, NULL, 10) : 1;
    c->current = getp (root, "current");
    if (c->current && !valid_id (c->current)) {
      bad_catalog (c, xmlGetLineNo (root), err, "current is not a snapshot id");
      xmlFreeDoc (doc);
      return NULL;
    }
  }
  for (xmlNodePtr n = root->children; n; n = n->next) {
    g_autofree char *id = NULL, *nm = NULL, *hidden = NULL, *created = NULL;
    g_autoptr (GHashTable) targets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    cat_snap *s;
    long line = xmlGetLineNo (n);

    if (n->type != XML_ELEMENT_NODE || !xmlStrEqual (n->name, BAD_CAST "snapshot"))
      continue;
    id = getp (n, "id");
    nm = getp (n, "name");
    if (!valid_id (id) || !vmsnap_valid_snapshot_name (nm, NULL)) {
      g_autofree char *shown = vmsnap_printable (nm ? nm : "(none)");
      bad_catalog (c, line, err, "a snapshot without a valid id or name ('%s')", shown);
      xmlFreeDoc (doc);
      return NULL;
    }
    s = vmsnap_cat_snap_new (id, nm);
    s->line = line;
    g_ptr_array_add (c->snaps, s);
    s->parent = getp (n, "parent");
    if (s->parent && !valid_id (s->parent)) {
      bad_catalog (c, line, err, "snapshot '%s': its parent is not a snapshot id", nm);
      xmlFreeDoc (doc);
      return NULL;
    }
    hidden = getp (n, "hidden");
    s->hidden = hidden && strcmp (hidden, "yes") == 0;
    created = getp (n, "created");
    s->created = created ? g_ascii_strtoll (created, NULL, 10) : 0;
    for (xmlNodePtr k = n->children; k; k = k->next) {
      if (k->type != XML_ELEMENT_NODE)
        continue;
      /* vmsnap writes each of these once; of repeated ones (a hand-edited
       * catalog) the last counts, and the earlier ones are freed, not
       * leaked (found by tests/fuzz/fuzz-catalog). */
      if (xmlStrEqual (k->name, BAD_CAST "description")) {
        g_free (s->description);
        s->description = node_text (k);
      } else if (xmlStrEqual (k->name, BAD_CAST "domain-xml")) {
        g_free (s->domain_xml);
        s->domain_xml = node_text (k);
      } else if (xmlStrEqual (k->name, BAD_CAST "libvirt-snapshot-xml")) {
        g_free (s->libvirt_xml);
        s->libvirt_xml = node_text (k);
      } else if (xmlStrEqual (k->name, BAD_CAST "memory")) {
        /* a plain name in the state dir: anything else is not ours */
        g_autofree char *f = getp (k, "file");
        g_free (s->memory);
        s->memory = f && *f && !strchr (f, '/') && strcmp (f, "..") != 0
                    ? g_steal_pointer (&f) : NULL;
      } else if (xmlStrEqual (k->name, BAD_CAST "nvram")) {
        g_autofree char *f = getp (k, "file"), *src = getp (k, "source");
        g_free (s->nvram);
        g_free (s->nvram_source);
        s->nvram = s->nvram_source = NULL;
        if (f && *f && !strchr (f, '/') && strcmp (f, "..") != 0 && src && *src == '/') {
          s->nvram = g_steal_pointer (&f);
          s->nvram_source = g_steal_pointer (&src);
        }
      } else if (xmlStrEqual (k->name, BAD_CAST "disk")) {
        g_autofree char *t = getp (k, "target"), *b = getp (k, "backend"),
                        *l = getp (k, "locator");
        cat_disk *d;
        if (!t || !*t || !b || !*b || !l || !*l) {
          bad_catalog (c, xmlGetLineNo (k), err, "snapshot '%s': a disk without "
                       "a target, a backend or a locator", nm);
          xmlFreeDoc (doc);
          return NULL;
        }
        if (g_hash_table_contains (targets, t)) {
          g_autofree char *shown = vmsnap_printable (t);
          bad_catalog (c, xmlGetLineNo (k), err, "snapshot '%s' has disk %s twice",
                       nm, shown);
          xmlFreeDoc (doc);
          return NULL;
        }
        g_hash_table_add (targets, g_strdup (t));
        d = vmsnap_cat_disk_new (t, b, l);
        d->line = xmlGetLineNo (k);
        g_ptr_array_add (s->disks, d);
      } else if (xmlStrEqual (k->name, BAD_CAST "lost-disk")) {
        g_autofree char *t = getp (k, "target");
        if (t && *t && !g_ptr_array_find_with_equal_func (s->lost, t, g_str_equal, NULL))
          g_ptr_array_add (s->lost, g_steal_pointer (&t));
      }
    }
  }
  xmlFreeDoc (doc);
  if (!catalog_consistent (c, err))
    return NULL;
  return g_steal_pointer (&c);
}

/* S as XML 1.0 can hold it: valid UTF-8 (invalid bytes become U+FFFD) and
 * no character XML forbids (control characters but tab, newline and
 * carriage return; U+FFFE, U+FFFF), which become U+FFFD too.  A description
 * is whatever the user typed and a journal replayed whatever it held:
 * libxml2 writes such characters as they are, then refuses to read the file
 * back, so one of them made the catalog, and with it every snapshot of the
 * domain, unreadable (found by tests/fuzz/fuzz-journal). */
static xmlChar *
xml_safe (const char *s)
{
  g_autofree char *valid = g_utf8_make_valid (s, -1);
  GString *out = g_string_sized_new (strlen (valid));

  for (const char *p = valid; *p; p = g_utf8_next_char (p)) {
    gunichar ch = g_utf8_get_char (p);
    gboolean ok = ch >= 0x20 ? ch != 0xFFFE && ch != 0xFFFF
                             : ch == '\t' || ch == '\n' || ch == '\r';
    g_string_append_unichar (out, ok ? ch : 0xFFFD);
  }
  return BAD_CAST g_string_free (out, FALSE);
}

static void
set_prop (xmlNodePtr n, const char *name, const char *value)
{
  g_autofree xmlChar *v = xml_safe (value ? value : "");

  xmlNewProp (n, BAD_CAST name, v);
}

static void
text_child (xmlNodePtr n, const char *name, const char *value)
{
  g_autofree xmlChar *v = xml_safe (value);

  xmlNewTextChild (n, NULL, BAD_CAST name, v);
}

gboolean
vmsnap_catalog_save (catalog *c, GError **err)
{
  xmlDocPtr doc = xmlNewDoc (BAD_CAST "1.0");
  xmlNodePtr root = xmlNewNode (NULL, BAD_CAST "vmsnap-catalog");
  xmlChar *buf = NULL;
  int len = 0;
  g_autofree char *next = g_strdup_printf ("%u", c->next_id);
  gboolean ok;

  xmlDocSetRootElement (doc, root);
  set_prop (root, "version", "1");
  set_prop (root, "domain-uuid", c->uuid);
  set_prop (root, "domain-name", c->name);
  set_prop (root, "next-id", next);
  if (c->current)
    set_prop (root, "current", c->current);
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    xmlNodePtr n = xmlNewChild (root, NULL, BAD_CAST "snapshot", NULL);
    g_autofree char *created = g_strdup_printf ("%" G_GINT64_FORMAT, s->created);

    set_prop (n, "id", s->id);
    set_prop (n, "name", s->name);
    if (s->parent)
      set_prop (n, "parent", s->parent);
    set_prop (n, "created", created);
    if (s->hidden)
      set_prop (n, "hidden", "yes");
    if (s->description)
      text_child (n, "description", s->description);
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      xmlNodePtr dn = xmlNewChild (n, NULL, BAD_CAST "disk", NULL);
      set_prop (dn, "target", d->target);
      set_prop (dn, "backend", d->backend);
      set_prop (dn, "locator", d->locator);
    }
    for (guint k = 0; k < s->lost->len; k++) {
      xmlNodePtr dn = xmlNewChild (n, NULL, BAD_CAST "lost-disk", NULL);
      set_prop (dn, "target", s->lost->pdata[k]);
    }
    if (s->domain_xml)
      text_child (n, "domain-xml", s->domain_xml);
    if (s->libvirt_xml)
      text_child (n, "libvirt-snapshot-xml", s->libvirt_xml);
    if (s->memory) {
      xmlNodePtr m = xmlNewChild (n, NULL, BAD_CAST "memory", NULL);
      set_prop (m, "file", s->memory);
    }
    if (s->nvram) {
      xmlNodePtr m = xmlNewChild (n, NULL, BAD_CAST "nvram", NULL);
      set_prop (m, "file", s->nvram);
      set_prop (m, "source", s->nvram_source);
    }
  }
  xmlDocDumpFormatMemoryEnc (doc, &buf, &len, "UTF-8", 1);
  xmlFreeDoc (doc);
  ok = vmsnap_write_atomic (c->path, (const char *) buf, (size_t) len, 0600, err);
  xmlFree (buf);
  return ok;
}

cat_snap *
vmsnap_catalog_find (catalog *c, const char *name)
{
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    if (!s->hidden && strcmp (s->name, name) == 0)
      return s;
  }
  return NULL;
}

cat_snap *
vmsnap_catalog_find_id (catalog *c, const char *id)
{
  gpointer v;

  if (id == NULL)
    return NULL;
  /* An index instead of a scan (issue 17: list and the consistency checks
   * look up every snapshot's parent, O(N^2) with a scan).  The catalog is
   * changed in place (adds, removes), so a hit is checked and a stale or
   * missing index is rebuilt; a miss is confirmed by a scan. */
  for (int pass = 0; pass < 2; pass++) {
    if (c->by_id == NULL || c->by_id_len != c->snaps->len || pass == 1) {
      if (c->by_id == NULL)
        c->by_id = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      else
        g_hash_table_remove_all (c->by_id);
      for (guint i = 0; i < c->snaps->len; i++) {
        cat_snap *s = c->snaps->pdata[i];
        if (s->id && !g_hash_table_contains (c->by_id, s->id))
          g_hash_table_insert (c->by_id, g_strdup (s->id), GUINT_TO_POINTER (i));
      }
      c->by_id_len = c->snaps->len;
    }
    if (g_hash_table_lookup_extended (c->by_id, id, NULL, &v)) {
      guint i = GPOINTER_TO_UINT (v);
      cat_snap *s = i < c->snaps->len ? c->snaps->pdata[i] : NULL;
      if (s && s->id && strcmp (s->id, id) == 0)
        return s;
    } else {
      break;
    }
  }
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    if (s->id && strcmp (s->id, id) == 0)
      return s;
  }
  return NULL;
}

/* Every locator the catalog holds for a disk target. */
GPtrArray *
vmsnap_catalog_locators (catalog *c, const char *target)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0
          && !g_ptr_array_find_with_equal_func (out, d->locator, g_str_equal, NULL))
        g_ptr_array_add (out, g_strdup (d->locator));
    }
  }
  return out;
}

/* The nearest visible ancestor of ID (or ID itself), or NULL.  A walk of
 * more steps than the catalog has entries is a loop of hidden entries (a
 * damaged catalog), which has no visible ancestor.  (The bound used to be
 * 100000 steps of a linear search each, and the hidden entry it stopped on
 * was returned as the parent: with 60 hidden entries in a loop `vmsnap
 * list` took seconds, growing with the square of their number; see
 * tests/fuzz/corpus/catalog/bug-hidden-loop.xml.) */
cat_snap *
vmsnap_catalog_visible (catalog *c, const char *id)
{
  cat_snap *s = vmsnap_catalog_find_id (c, id);

  for (guint steps = 0; s && s->hidden; steps++) {
    if (steps >= c->snaps->len)
      return NULL;
    s = vmsnap_catalog_find_id (c, s->parent);
  }
  return s;
}

/* Remove a snapshot entry; its children get its parent; current moves up. */
void
vmsnap_catalog_remove (catalog *c, cat_snap *s)
{
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *o = c->snaps->pdata[i];
    if (o->parent && strcmp (o->parent, s->id) == 0) {
      g_free (o->parent);
      o->parent = g_strdup (s->parent);
    }
  }
  if (c->current && strcmp (c->current, s->id) == 0) {
    g_free (c->current);
    c->current = g_strdup (s->parent);
  }
  g_ptr_array_remove (c->snaps, s);
}

/* Apply a locator rename to every record of a disk target. */
void
vmsnap_catalog_rename (catalog *c, const char *target, const char *from,
                       const char *to)
{
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0 && strcmp (d->locator, from) == 0) {
        g_free (d->locator);
        d->locator = g_strdup (to);
      }
    }
  }
}

/* Drop the record of LOCATOR for TARGET from hidden entries; hidden entries
 * left with no record disappear. */
void
vmsnap_catalog_drop_hidden_locator (catalog *c, const char *target,
                                    const char *locator)
{
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    if (!s->hidden)
      continue;
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0 && strcmp (d->locator, locator) == 0) {
        g_ptr_array_remove_index (s->disks, k);
        break;
      }
    }
  }
  for (guint i = 0; i < c->snaps->len;) {
    cat_snap *s = c->snaps->pdata[i];
    if (s->hidden && s->disks->len == 0)
      vmsnap_catalog_remove (c, s);
    else
      i++;
  }
}
