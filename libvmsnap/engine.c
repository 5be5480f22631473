/* The snapshot engine: VM-level operations dispatched per disk to backends,
 * under a per-domain lock, written ahead to a journal, recorded in the
 * catalog, and reflected in the domain definition.
 *
 * Every operation (create, revert, delete, merge) runs the same journaled
 * sequence, each step marked done in the journal when it completes:
 *   disk-T   for each disk T: the backend slot (which journals its own
 *            sub-steps through the op context); its result is saved
 *   define   new active sources into the domain definition
 *   catalog  the catalog change (new snapshot, current, removals, renames)
 *   discard  storage the results named as garbage is discarded
 * then the journal is removed.  After a crash, recovery re-runs the same
 * sequence from the journal: steps marked done are skipped, the backend of
 * an unfinished disk step is called again and resumes from what it recorded.
 * If a create or revert cannot be finished before its "define" step, it is
 * rolled back instead (the undo storage of finished disks is discarded), so
 * the domain is as before.  Delete and merge only roll forward: once a
 * commit has started, the deleted point's storage is already being
 * rewritten; the current state and every other point stay intact. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "internal.h"
#include "plugin-internal.h"

struct vmsnap_engine {
  vmsnap_ctx *ctx;             /* borrowed */
  char *spec;
  char *uri;
  char *state_dir;             /* STATE/UUID */
  int state_fd;                /* STATE/UUID, checked (vmsnap_state_dir_open) */
  int lock_fd;
  vmsnap_domain *dom;
  catalog *cat;
  char *recover_report;        /* JSON, or NULL */
  gint64 paused_at;            /* monotonic µs when we asked libvirt to
                                  suspend the VM, or 0 */
  gint64 pause_us;             /* until its resume returned */
  /* The window's parts (monotonic µs), for the report's pause_steps:
   * suspend returned, captures done, switch done, resume asked. */
  gint64 w_suspended, w_captured, w_switched, w_resuming;
  gint64 w_suspend_us, w_resume_us;   /* the two libvirt calls */
  gint64 w_flushed;                   /* the journal write before the switch */
  vmsnap_hook_call *hooks;     /* the plugins' view of the running operation */
  gint64 frozen_at;            /* monotonic µs of a successful FREEZE, or 0 */
  gint64 frozen_us;            /* how long the guest stayed frozen */
  vmsnap_guard *guard;         /* of dom: built on first use (guard.c) */
  gboolean catalog_only;       /* list, info, chain: storage inspected only
                                  when asked (vmsnap_engine_chain) */
  gboolean stale;              /* the definition or storage changed since
                                  dom was read and inspected */
  vmsnap_window_guard *wguard; /* resumes the VM if we die in the window */
  gboolean prepared;           /* this process ran the prepare slots of the
                                  create in its journal (pause window) */
};

typedef enum { OP_CREATE, OP_REVERT, OP_DELETE, OP_MERGE } op_kind;

static const char *const op_names[] = { "create", "revert", "delete", "merge" };

/* ------------------------------------------------------------- helpers */

gboolean
vmsnap_valid_snapshot_name (const char *name, GError **err)
{
  size_t len = name ? strlen (name) : 0;

  if (len == 0 || len > 128 || !g_ascii_isalnum (name[0])) {
    g_autofree char *shown = g_strescape (name ? name : "", NULL);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                 "invalid snapshot name '%s': use 1 to 128 characters from "
                 "A-Z a-z 0-9 . _ + -, starting with a letter or digit", shown);
    return FALSE;
  }
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("._+-", *p)) {
      g_autofree char *shown = g_strescape (name, NULL);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "invalid snapshot name '%s': character 0x%02x is not allowed "
                   "(use A-Z a-z 0-9 . _ + -)", shown, (unsigned char) *p);
      return FALSE;
    }
  return TRUE;
}

static vmsnap_disk_priv *
find_disk (vmsnap_domain *dom, const char *target)
{
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    if (strcmp (d->pub.target, target) == 0)
      return d;
  }
  return NULL;
}

static char *
iso_time (gint64 t)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc (t);

  return dt ? g_date_time_format (dt, "%Y-%m-%dT%H:%M:%SZ") : g_strdup ("?");
}

static char *
builder_to_json (JsonBuilder *b)
{
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);

  json_generator_set_root (g, root);
  json_generator_set_pretty (g, TRUE);
  json_generator_set_indent (g, 2);
  return json_generator_to_data (g, NULL);
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

/* -------------------------------------------------------------- locking */

static gboolean
take_lock (vmsnap_engine *e, unsigned int flags, GError **err)
{
  g_autofree char *path = g_build_filename (e->state_dir, "lock", NULL);
  char pid[32];

  struct stat st;

  /* Never through a symbolic link, and only a regular file of ours: the
   * pid written into it must not land in a file someone else chose. */
  e->lock_fd = openat (e->state_fd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (e->lock_fd < 0 || fstat (e->lock_fd, &st) != 0 || !S_ISREG (st.st_mode)
      || st.st_uid != geteuid ()) {
    int en = errno;
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot open lock %s: %s", path,
                 e->lock_fd < 0 && en == ELOOP ? "it is a symbolic link, which vmsnap "
                 "never makes: someone else put it there; look at it and remove it"
                 : e->lock_fd < 0 ? g_strerror (en) : "it is not a regular file of "
                 "this user, which vmsnap never makes: look at it and remove it");
    return FALSE;
  }
  if (flock (e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    g_autofree char *holder = NULL;
    if (errno != EWOULDBLOCK) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot lock %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
    {
      char buf[32] = "";
      ssize_t n = pread (e->lock_fd, buf, sizeof buf - 1, 0);
      holder = n > 0 ? g_strndup (buf, (gsize) n) : NULL;
      if (holder && strspn (g_strstrip (holder), "0123456789") != strlen (holder))
        g_clear_pointer (&holder, g_free);
    }
    if (flags & VMSNAP_ENGINE_NO_WAIT) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_BUSY,
                   "domain %s is busy: another vmsnap (pid %s) is working on "
                   "it; try again later, or leave out --no-wait to wait",
                   e->dom->name, holder && *holder ? holder : "unknown");
      return FALSE;
    }
    fprintf (stderr, "vmsnap: waiting for another vmsnap (pid %s) working on "
             "domain %s...\n", holder && *holder ? holder : "unknown", e->dom->name);
    while (flock (e->lock_fd, LOCK_EX) != 0)
      if (errno != EINTR) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot lock %s: %s",
                     path, g_strerror (errno));
        return FALSE;
      }
  }
  g_snprintf (pid, sizeof pid, "%d\n", (int) getpid ());
  if (ftruncate (e->lock_fd, 0) == 0 && pwrite (e->lock_fd, pid, strlen (pid), 0) < 0) {
    /* the pid is only informative */
  }
  return TRUE;
}

/* ------------------------------------------------- domain definition */

/* Point disk TARGET of domain XML DOC at SOURCE (a file) with FORMAT. */
static gboolean
set_disk_source (xmlDocPtr doc, const char *target, const char *source,
                 const char *format, GError **err)
{
  xmlNodePtr root = xmlDocGetRootElement (doc), devices = NULL;

  for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && xmlStrEqual (c->name, BAD_CAST "devices"))
      devices = c;
  for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
    xmlNodePtr tgt = NULL, src = NULL, drv = NULL, bs = NULL;
    xmlChar *dev;
    gboolean match;

    if (d->type != XML_ELEMENT_NODE || !xmlStrEqual (d->name, BAD_CAST "disk"))
      continue;
    for (xmlNodePtr k = d->children; k; k = k->next) {
      if (k->type != XML_ELEMENT_NODE)
        continue;
      if (xmlStrEqual (k->name, BAD_CAST "target")) tgt = k;
      else if (xmlStrEqual (k->name, BAD_CAST "source")) src = k;
      else if (xmlStrEqual (k->name, BAD_CAST "driver")) drv = k;
      else if (xmlStrEqual (k->name, BAD_CAST "backingStore")) bs = k;
    }
    dev = tgt ? xmlGetProp (tgt, BAD_CAST "dev") : NULL;
    match = dev && strcmp ((const char *) dev, target) == 0;
    xmlFree (dev);
    if (!match)
      continue;
    /* A network disk whose backend names a new image (an RBD clone):
     * "pool/image" becomes <source name>; protocol, hosts, auth stay. */
    {
      xmlChar *ty = xmlGetProp (d, BAD_CAST "type");
      gboolean net = ty && xmlStrEqual (ty, BAD_CAST "network") && source[0] != '/';
      xmlFree (ty);
      if (net) {
        if (src == NULL) {
          g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                       "network disk %s has no <source>", target);
          return FALSE;
        }
        xmlSetProp (src, BAD_CAST "name", BAD_CAST source);
        if (drv == NULL) {
          drv = xmlNewChild (d, NULL, BAD_CAST "driver", NULL);
          xmlSetProp (drv, BAD_CAST "name", BAD_CAST "qemu");
        }
        xmlSetProp (drv, BAD_CAST "type", BAD_CAST format);
        return TRUE;
      }
    }
    /* An overlay on a block device is a file (type file); a commit back
     * into a block device makes the disk a block disk again. */
    {
      GStatBuf st;
      gboolean blk = g_stat (source, &st) == 0 && S_ISBLK (st.st_mode);
      xmlSetProp (d, BAD_CAST "type", BAD_CAST (blk ? "block" : "file"));
      if (src == NULL)
        src = xmlNewChild (d, NULL, BAD_CAST "source", NULL);
      xmlUnsetProp (src, BAD_CAST (blk ? "file" : "dev"));
      xmlSetProp (src, BAD_CAST (blk ? "dev" : "file"), BAD_CAST source);
    }
    if (drv == NULL) {
      drv = xmlNewChild (d, NULL, BAD_CAST "driver", NULL);
      xmlSetProp (drv, BAD_CAST "name", BAD_CAST "qemu");
    }
    xmlSetProp (drv, BAD_CAST "type", BAD_CAST format);
    if (bs) {
      /* libvirt re-reads the chain from the images; a stale one misleads. */
      xmlUnlinkNode (bs);
      xmlFreeNode (bs);
    }
    /* Except for an encrypted disk: libvirt 9.0 cannot open an encrypted
     * backing file it found itself, so the chain is written out, each
     * encrypted layer with the disk's <encryption>. */
    {
      xmlNodePtr enc = NULL;
      for (xmlNodePtr k = src->children; k && !enc; k = k->next)
        if (k->type == XML_ELEMENT_NODE && xmlStrEqual (k->name, BAD_CAST "encryption"))
          enc = k;
      for (xmlNodePtr k = d->children; k && !enc; k = k->next)
        if (k->type == XML_ELEMENT_NODE && xmlStrEqual (k->name, BAD_CAST "encryption"))
          enc = k;
      if (enc && !vmsnap_encrypted_chain_set (d, enc, source, format, err)) {
        g_prefix_error (err, "disk %s: ", target);
        return FALSE;
      }
    }
    return TRUE;
  }
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "the domain definition has no disk %s any more", target);
  return FALSE;
}

/* SOURCES: target -> "format\nsource".  Rewrites the domain XML file
 * atomically, or redefines the libvirt domain. */
static gboolean
define_sources (vmsnap_engine *e, GHashTable *sources, GError **err)
{
  vmsnap_domain *dom = e->dom;
  g_autofree char *orig = NULL;
  xmlDocPtr doc;
  xmlChar *buf = NULL;
  int len = 0;
  GHashTableIter it;
  gpointer k, v;
  gboolean ok = TRUE;

  if (g_hash_table_size (sources) == 0)
    return TRUE;
  if (dom->path) {
    if (!g_file_get_contents (dom->path, &orig, NULL, NULL)) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s", dom->path);
      return FALSE;
    }
  } else {
    orig = virDomainGetXMLDesc (dom->dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    if (orig == NULL) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: cannot read its definition: %s", dom->name,
                   virGetLastErrorMessage ());
      return FALSE;
    }
  }
  doc = xmlReadMemory (orig, (int) strlen (orig), dom->path ? dom->path : "domain.xml",
                       NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: its definition is no longer valid XML", dom->name);
    return FALSE;
  }
  g_hash_table_iter_init (&it, sources);
  while (ok && g_hash_table_iter_next (&it, &k, &v)) {
    g_auto (GStrv) fs = g_strsplit (v, "\n", 2);
    ok = set_disk_source (doc, k, fs[1], fs[0], err);
  }
  if (ok)
    xmlDocDumpMemory (doc, &buf, &len);
  xmlFreeDoc (doc);
  if (!ok)
    return FALSE;
  if (dom->path) {
    /* Its owner and mode stay (the new file replaces it by a rename). */
    struct stat st;
    gboolean known = stat (dom->path, &st) == 0;
    ok = vmsnap_write_atomic_as (dom->path, (const char *) buf, (size_t) len,
                                 known ? (int) (st.st_mode & 07777) : 0600,
                                 known ? &st : NULL, err);
  } else {
    virDomainPtr nd = virDomainDefineXML (dom->conn, (const char *) buf);
    if (nd == NULL) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: libvirt refused the new definition: %s",
                   dom->name, virGetLastErrorMessage ());
      ok = FALSE;
    } else
      virDomainFree (nd);
  }
  xmlFree (buf);
  return ok;
}

/* ------------------------------------------------------------- running */

static const vmsnap_module *
module_for (vmsnap_engine *e, const char *name, GError **err)
{
  const vmsnap_module *m = vmsnap_find_module (e->ctx, name);

  if (m == NULL || m->info.status != VMSNAP_BACKEND_LOADED) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "backend %s is %s: %s", name,
                 m ? vmsnap_backend_status_name (m->info.status) : "unknown",
                 m && m->message ? m->message : "vmsnap backends lists what is available");
    return NULL;
  }
  return m;
}

static vmsnap_op *
make_op (vmsnap_engine *e, vmsnap_journal *j, const char *target)
{
  g_autoptr (GPtrArray) locs = vmsnap_catalog_locators (e->cat, target);
  gboolean online = e->dom->state == VMSNAP_STATE_RUNNING
                    || e->dom->state == VMSNAP_STATE_PAUSED;

  vmsnap_op *op = vmsnap_op_new (j, target, e->dom->name, e->dom->uuid, online,
                                 e->dom->conn, e->state_dir, locs);

  op->config = e->ctx->config;
  if (e->guard == NULL)
    e->guard = vmsnap_guard_new (e->dom);
  op->guard = vmsnap_guard_ref (e->guard);
  return op;
}

static gboolean refresh_domain (vmsnap_engine *e, GError **err);

static void
discard_list (vmsnap_engine *e, vmsnap_journal *j, const vmsnap_module *m,
              const char *target, GPtrArray *locs, JsonBuilder *warn)
{
  vmsnap_disk_priv *d = find_disk (e->dom, target);

  for (guint i = 0; i < locs->len; i++) {
    g_autoptr (GError) err = NULL;
    g_autoptr (vmsnap_op) op = make_op (e, j, target);
    g_autofree char *storage = NULL;
    unsigned int what = 0;
    if (m->be.discard == NULL)
      continue;
    /* The central guard, before the backend is asked (it checks again
     * before each removal it makes itself). */
    storage = vmsnap_guard_locator_storage (locs->pdata[i], &what);
    if (storage && !vmsnap_op_guard (op, storage, what, &err)) {
      g_autofree char *w = g_strdup_printf ("disk %s: kept %s: %s", target,
                                            (char *) locs->pdata[i], err->message);
      if (warn)
        json_builder_add_string_value (warn, w);
      else
        fprintf (stderr, "vmsnap: warning: %s\n", w);
      continue;
    }
    if (m->be.discard (op, d ? &d->pub : NULL, locs->pdata[i], 0, &err) < 0) {
      g_autofree char *w = g_strdup_printf ("disk %s: could not remove %s: %s "
                                            "(remove it by hand)", target,
                                            (char *) locs->pdata[i], err->message);
      if (warn)
        json_builder_add_string_value (warn, w);
      else
        fprintf (stderr, "vmsnap: warning: %s\n", w);
    }
  }
}

static GStrv
journal_disks (vmsnap_journal *j)
{
  return g_key_file_get_string_list (j->kf, "op", "disks", NULL, NULL);
}

static const char *
jop (vmsnap_journal *j, const char *key)
{
  return vmsnap_journal_get (j, "op", key);
}

/* Did any step of the operation record anything?  Backends record a
 * decision (vmsnap_op_set) before they act on storage, so a journal with no
 * recorded state and no step done means storage is untouched. */
static gboolean
journal_touched (vmsnap_journal *j)
{
  g_auto (GStrv) groups = g_key_file_get_groups (j->kf, NULL);

  for (char **g = groups; g && *g; g++) {
    g_auto (GStrv) keys = NULL;
    if (strcmp (*g, "op") == 0)
      continue;
    keys = g_key_file_get_keys (j->kf, *g, NULL, NULL);
    for (char **k = keys; k && *k; k++)
      if (g_str_has_prefix (*k, "s.") || strcmp (*k, "done") == 0)
        return TRUE;
  }
  return FALSE;
}

static gboolean resume_if_paused (vmsnap_engine *e, vmsnap_journal *j, GError **err);

/* Issue 7: the memory file and the NVRAM copy a snapshot keeps in the
 * state dir, named in the journal by key KEY ("memory", "nvram"). */
static char *
state_file (vmsnap_engine *e, vmsnap_journal *j, const char *key)
{
  const char *f = jop (j, key);

  return f && *f ? g_build_filename (e->state_dir, f, NULL) : NULL;
}

/* Remove the state files a create made (roll back) or a deleted snapshot
 * had.  Absent files are fine: repeatable. */
static void
remove_state_files (vmsnap_engine *e, vmsnap_journal *j)
{
  static const char *const keys[] = { "memory", "nvram" };

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
    g_autofree char *p = state_file (e, j, keys[i]);
    if (p && g_unlink (p) < 0 && errno != ENOENT)
      fprintf (stderr, "vmsnap: warning: cannot remove %s: %s\n", p, g_strerror (errno));
  }
}

/* The VM-level part of a rollback: an internal snapshot libvirt took is
 * deleted again, a domain stopped for a revert is started again. */
static void
online_roll_back (vmsnap_engine *e, vmsnap_journal *j)
{
  const char *mode = jop (j, "online");
  const char *kind = jop (j, "kind");
  g_autoptr (GError) err = NULL;

  if (mode == NULL || e->dom->dom == NULL)
    return;
  if (!strcmp (mode, "pause")) {
    if (!resume_if_paused (e, j, &err))
      fprintf (stderr, "vmsnap: warning: rolling back: %s\n", err->message);
    return;
  }
  if (!vmsnap_journal_done (j, "core", "vm"))
    return;
  if (!strcmp (mode, "internal") && !strcmp (kind, "create")) {
    g_auto (GStrv) disks = journal_disks (j);
    if (!vmsnap_online_internal_delete (e->dom, jop (j, "name"), jop (j, "libvirt_xml"),
                                        (const char *const *) disks, &err))
      fprintf (stderr, "vmsnap: warning: rolling back: %s\n", err->message);
  } else if (!strcmp (mode, "restart")) {
    const char *was = jop (j, "was");
    if (was && !vmsnap_online_start (e->dom, !strcmp (was, "paused"), &err))
      fprintf (stderr, "vmsnap: warning: rolling back: %s\n", err->message);
  }
}

/* Roll a create/revert back: discard what finished disks created. */
static gboolean
roll_back (vmsnap_engine *e, vmsnap_journal *j)
{
  g_auto (GStrv) disks = journal_disks (j);
  gboolean window = g_strcmp0 (jop (j, "kind"), "create") == 0
                    && g_strcmp0 (jop (j, "online"), "pause") == 0;
  gboolean complete = TRUE;

  /* A pause window ends first: nothing below needs the vCPUs stopped. */
  if (window)
    online_roll_back (e, j);
  for (char **t = disks; t && *t; t++) {
    g_autofree char *step = g_strconcat ("disk-", *t, NULL);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);
    g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
    const vmsnap_module *m = vmsnap_find_module (e->ctx, jop (j, bkey));
    g_autoptr (vmsnap_result) r = NULL;

    if (m == NULL)
      continue;
    if (!vmsnap_journal_done (j, "core", step)) {
      /* What a prepare slot made for a capture that never finished (or
       * never came): the backend undoes it from its own records. */
      vmsnap_disk_priv *d = find_disk (e->dom, *t);
      g_autoptr (GError) err = NULL;
      g_autoptr (vmsnap_op) op = NULL;
      if (!window || m->be.abort == NULL)
        continue;
      op = make_op (e, j, *t);
      op->quiet = TRUE;
      if (d == NULL
          || m->be.abort (op, &d->pub, jop (j, "name"), 0, &err) < 0) {
        fprintf (stderr, "vmsnap: warning: rolling back disk %s: %s\n", *t,
                 d == NULL ? "the domain has no such disk any more"
                 : err ? err->message : "the backend's abort failed");
        complete = FALSE;
      }
      continue;
    }
    r = vmsnap_result_load (j, group);
    discard_list (e, j, m, *t, r->undo, NULL);
  }
  if (!window)
    online_roll_back (e, j);
  if (g_strcmp0 (jop (j, "kind"), "create") == 0)
    remove_state_files (e, j);
  return complete;
}

/* Apply the finished operation to the catalog.  Idempotent. */
static gboolean
apply_catalog (catalog *c, vmsnap_journal *j, op_kind kind,
               GHashTable *results, GError **err)
{
  const char *id = jop (j, "id");
  g_auto (GStrv) disks = journal_disks (j);

  switch (kind) {
  case OP_CREATE:
    if (vmsnap_catalog_find_id (c, id) == NULL) {
      cat_snap *s = vmsnap_cat_snap_new (id, jop (j, "name"));
      const char *parent = jop (j, "parent");
      s->parent = parent && *parent ? g_strdup (parent) : NULL;
      s->created = g_ascii_strtoll (jop (j, "created"), NULL, 10);
      s->description = jop (j, "description") && *jop (j, "description")
                       ? g_strdup (jop (j, "description")) : NULL;
      s->domain_xml = g_strdup (jop (j, "domain_xml"));
      s->libvirt_xml = g_strdup (jop (j, "libvirt_xml"));
      s->memory = jop (j, "memory") ? g_strdup (jop (j, "memory")) : NULL;
      if (jop (j, "nvram")) {
        s->nvram = g_strdup (jop (j, "nvram"));
        s->nvram_source = g_strdup (jop (j, "nvram_source"));
      }
      for (char **t = disks; t && *t; t++) {
        vmsnap_result *r = g_hash_table_lookup (results, *t);
        g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
        g_ptr_array_add (s->disks, vmsnap_cat_disk_new (*t, jop (j, bkey), r->locator));
      }
      g_ptr_array_add (c->snaps, s);
    }
    c->next_id = MAX (c->next_id, (guint) g_ascii_strtoull (id, NULL, 10) + 1);
    g_free (c->current);
    c->current = g_strdup (id);
    break;
  case OP_REVERT:
    g_free (c->current);
    c->current = g_strdup (id);
    break;
  case OP_DELETE: {
    cat_snap *s = vmsnap_catalog_find_id (c, id);
    if (s && !s->hidden) {
      for (guint k = 0; k < s->disks->len;) {
        cat_disk *d = s->disks->pdata[k];
        vmsnap_result *r = g_hash_table_lookup (results, d->target);
        g_autofree char *lb = g_strconcat ("left_behind.", d->target, NULL);
        /* A disk the domain no longer has keeps its record, as an unnamed
         * point, until it is back (see per_snapshot_op). */
        if ((r && r->kept) || jop (j, lb))
          k++;
        else
          g_ptr_array_remove_index (s->disks, k);
      }
      if (s->disks->len > 0)
        s->hidden = TRUE;
      else
        vmsnap_catalog_remove (c, s);
    }
  }
    G_GNUC_FALLTHROUGH;
  case OP_MERGE:
    /* Removed points first: a rename may give another point the locator
     * of one that was consolidated away (C committed into U: removed U,
     * rename C -> U). */
    for (char **t = disks; t && *t; t++) {
      vmsnap_result *r = g_hash_table_lookup (results, *t);
      for (guint i = 0; r && i < r->removed->len; i++)
        vmsnap_catalog_drop_hidden_locator (c, *t, r->removed->pdata[i]);
      for (guint i = 0; r && i + 1 < r->renames->len; i += 2)
        vmsnap_catalog_rename (c, *t, r->renames->pdata[i], r->renames->pdata[i + 1]);
    }
    break;
  }
  return vmsnap_catalog_save (c, err);
}

/* A delete's disks that the domain no longer has: their catalog records
 * went with the snapshot, their storage was not touched. */
static void
report_left_behind (vmsnap_engine *e, vmsnap_journal *j, JsonBuilder *report)
{
  g_auto (GStrv) keys = g_key_file_get_keys (j->kf, "op", NULL, NULL);

  for (char **k = keys; k && *k; k++) {
    g_autofree char *msg = NULL;
    if (!g_str_has_prefix (*k, "left_behind."))
      continue;
    msg = g_strdup_printf ("disk %s is no longer in domain %s: its point "
                           "in %s (%s) was left untouched and is kept as an "
                           "unnamed point, as vmsnap cannot tell what uses "
                           "that storage now; once disk %s is back in the "
                           "domain definition, vmsnap merge consolidates it",
                           *k + strlen ("left_behind."), e->dom->name,
                           jop (j, "name"), jop (j, *k),
                           *k + strlen ("left_behind."));
    json_builder_add_string_value (report, msg);
  }
}

static int
call_slot (vmsnap_engine *e, vmsnap_journal *j, op_kind kind,
           const vmsnap_module *m, vmsnap_disk_priv *d, vmsnap_op *op,
           vmsnap_result *r, GError **err)
{
  const char *t = d->pub.target;
  g_autofree char *lkey = g_strconcat ("locator.", t, NULL);

  switch (kind) {
  case OP_CREATE:
    return m->be.create (op, &d->pub, jop (j, "name"), 0, r, err);
  case OP_REVERT:
    return m->be.revert (op, &d->pub, jop (j, lkey), 0, r, err);
  case OP_DELETE:
    return m->be.delete (op, &d->pub, jop (j, lkey), 0, r, err);
  case OP_MERGE: {
    g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
    const char *md = jop (j, "max_depth");
    vmsnap_merge_spec spec = { .struct_size = sizeof spec };
    for (guint i = 0; i < e->cat->snaps->len; i++) {
      cat_snap *s = e->cat->snaps->pdata[i];
      for (guint k = 0; !s->hidden && k < s->disks->len; k++) {
        cat_disk *cd = s->disks->pdata[k];
        if (strcmp (cd->target, t) == 0)
          g_ptr_array_add (keep, g_strdup (cd->locator));
      }
    }
    spec.max_depth = md ? (unsigned) g_ascii_strtoull (md, NULL, 10) : 0;
    spec.keep = (const char *const *) keep->pdata;
    spec.n_keep = keep->len;
    if (m->be.merge == NULL) {
      vmsnap_result_set_note (r, "%s: nothing to consolidate", m->name);
      return 0;
    }
    return m->be.merge (op, &d->pub, &spec, 0, r, err);
  }
  }
  return -1;
}

/* Before libvirt takes internal snapshot TAG: QEMU's savevm replaces an
 * entry of the same name without a word, and an existing libvirt snapshot
 * of that name would be taken for ours.  Refuse both. */
static gboolean
internal_name_free (vmsnap_engine *e, vmsnap_journal *j, const char *tag,
                    GError **err)
{
  g_auto (GStrv) disks = journal_disks (j);
  virDomainSnapshotPtr s = virDomainSnapshotLookupByName (e->dom->dom, tag, 0);

  if (s) {
    virDomainSnapshotFree (s);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s: libvirt already has a snapshot named '%s' "
                 "(virsh snapshot-list %s); choose another name: nothing was "
                 "changed", e->dom->name, tag, e->dom->name);
    return FALSE;
  }
  if (vmsnap_online_tag_somewhere (e->dom, tag, (const char *const *) disks, FALSE)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s: an image already holds an internal snapshot named "
                 "'%s' (qemu-img snapshot -U -l shows it), which QEMU would "
                 "overwrite; choose another name: nothing was changed",
                 e->dom->name, tag);
    return FALSE;
  }
  return TRUE;
}

/* Test hook: VMSNAP_TEST_HOLD_BEFORE_PAUSE=FILE makes a create of a
 * running VM, its disks prepared and right before the pause, create FILE
 * and wait (at most 120 s) until the test removes it: the test changes
 * the world in between (tests/integration/rbd-window.sh takes Ceph away). */
static void
hold_before_pause (void)
{
  const char *f = g_getenv ("VMSNAP_TEST_HOLD_BEFORE_PAUSE");
  int fd;

  if (f == NULL || *f == '\0')
    return;
  fd = open (f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return;
  close (fd);
  for (int i = 0; i < 12000 && access (f, F_OK) == 0; i++)
    g_usleep (10000);
}

/* End the pause window of a create if this operation paused the VM. */
static gboolean
resume_if_paused (vmsnap_engine *e, vmsnap_journal *j, GError **err)
{
  int st = 0, reason = 0;

  if (g_strcmp0 (jop (j, "paused_by_us"), "yes") != 0 || e->dom->dom == NULL)
    return TRUE;
  e->w_resuming = g_get_monotonic_time ();
  if (virDomainGetState (e->dom->dom, &st, &reason, 0) == 0 && st == VIR_DOMAIN_PAUSED
      && virDomainResume (e->dom->dom) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: the snapshot is taken but resuming the VM failed: "
                 "%s (virsh resume %s)", e->dom->name, virGetLastErrorMessage (),
                 e->dom->name);
    return FALSE;
  }
  if (e->paused_at) {
    gint64 now = g_get_monotonic_time ();
    e->w_resume_us = now - e->w_resuming;
    e->pause_us = now - e->paused_at;
    e->paused_at = 0;
  }
  /* The VM runs (or was resumed by someone else): the guard can go (its
   * exit is waited for, after the window's measure). */
  vmsnap_window_guard_done (e->wguard);
  e->wguard = NULL;
  return TRUE;
}

/* The VM-level step of an operation on a running domain, before the disk
 * steps (journal key "online"):
 *  internal  libvirt's internal snapshot with memory: created (its XML kept,
 *            libvirt's metadata dropped: the catalog owns it), reverted to
 *            or deleted, for every disk at once; the backends' online slots
 *            then only confirm what the images hold
 *  restart   a revert: QEMU is stopped, the disks are reverted offline, the
 *            domain is started again at the end ("start")
 * Repeatable: each call finds what an interrupted one did. */
static gboolean
vm_step (vmsnap_engine *e, vmsnap_journal *j, op_kind kind, GError **err)
{
  const char *mode = jop (j, "online");
  const char *tag = jop (j, "name");
  gboolean active = e->dom->dom && virDomainIsActive (e->dom->dom) == 1;

  if (!strcmp (mode, "restart"))
    return vmsnap_online_stop (e->dom, err);
  if (!strcmp (mode, "pause")) {
    /* The pause window: every backend captures its disk while the vCPUs
     * are stopped.  Only a VM we paused is resumed afterwards. */
    int st = 0, reason = 0;
    g_autofree char *mem = state_file (e, j, "memory");
    if (active && virDomainGetState (e->dom->dom, &st, &reason, 0) == 0
        && st == VIR_DOMAIN_RUNNING) {
      hold_before_pause ();
      /* The window guard (tools/vmsnap-window-guard.c): if this process
       * dies before it resumes the VM, the guard does. */
      if (e->wguard == NULL && e->dom->uri) {
        e->wguard = vmsnap_window_guard_start (e->dom->uri, e->dom->uuid, err);
        if (e->wguard == NULL) {
          g_prefix_error (err, "domain %s: the VM was not paused: ", e->dom->name);
          return FALSE;
        }
      }
      if (!vmsnap_journal_set (j, "op", "paused_by_us", "yes", err))
        return FALSE;
      /* From the call: the vCPUs stop inside it (an upper bound of what
       * the guest sees, with resume_if_paused's end). */
      e->paused_at = g_get_monotonic_time ();
      if (virDomainSuspend (e->dom->dom) < 0) {
        e->paused_at = 0;
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "domain %s: cannot pause it for the snapshot: %s",
                     e->dom->name, virGetLastErrorMessage ());
        return FALSE;
      }
      e->w_suspended = g_get_monotonic_time ();
      e->w_suspend_us = e->w_suspended - e->paused_at;
    }
    /* The memory state, at the instant the disks are captured: the vCPUs
     * stay stopped until every backend is done. */
    if (mem && kind == OP_CREATE)
      return vmsnap_memstate_save (e->dom, tag, mem, err);
    return TRUE;
  }
  if (strcmp (mode, "internal") != 0)
    return TRUE;
  switch (kind) {
  case OP_CREATE: {
    g_autofree char *xml = NULL;
    if (jop (j, "libvirt_xml") == NULL) {
      if (!j->recovering && !internal_name_free (e, j, tag, err))
        return FALSE;
      if (!active) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "domain %s is no longer running: its memory state "
                     "cannot be saved", e->dom->name);
        return FALSE;
      }
      if (!vmsnap_online_internal_take (e->dom, tag, &xml, err)
          || !vmsnap_journal_set (j, "op", "libvirt_xml", xml, err))
        return FALSE;
    }
    return vmsnap_online_internal_forget (e->dom, tag, err);
  }
  case OP_REVERT: {
    const char *after = jop (j, "after");
    unsigned int flags = 0;
    if (after && !strcmp (after, "running"))
      flags = VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING;
    else if (after && !strcmp (after, "paused"))
      flags = VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED;
    if (!vmsnap_online_internal_revert (e->dom, tag, jop (j, "libvirt_xml"), flags, err))
      return FALSE;
    return after && !strcmp (after, "stopped") ? vmsnap_online_stop (e->dom, err) : TRUE;
  }
  case OP_DELETE: {
    g_auto (GStrv) disks = journal_disks (j);
    if (!active)
      return TRUE;   /* shut off since: the backends delete offline */
    return vmsnap_online_internal_delete (e->dom, tag, jop (j, "libvirt_xml"),
                                          (const char *const *) disks, err);
  }
  case OP_MERGE:
    break;
  }
  return TRUE;
}

/* ------------------------------------------------------------ plugins */

static const char *
state_name (vmsnap_engine *e)
{
  int st = 0, reason = 0;

  if (e->dom->dom == NULL)
    return "file";
  if (virDomainGetState (e->dom->dom, &st, &reason, 0) < 0)
    return "unknown";
  return st == VIR_DOMAIN_RUNNING ? "running" : st == VIR_DOMAIN_PAUSED ? "paused"
       : st == VIR_DOMAIN_SHUTOFF ? "shut off" : "other";
}

/* The plugins' view of the operation in J (HC's strings borrow from J and
 * E; targets/backends are freed by hooks_clear). */
static void
hooks_init (vmsnap_engine *e, vmsnap_journal *j, vmsnap_hook_call *hc, GPtrArray *msgs)
{
  char **disks = journal_disks (j);
  guint n = disks ? g_strv_length (disks) : 0;

  /* Copies: the journal's values and the domain model change under us. */
  memset (hc, 0, sizeof *hc);
  hc->operation = g_strdup (jop (j, "kind"));
  hc->domain = g_strdup (e->dom->name);
  hc->uuid = g_strdup (e->dom->uuid);
  hc->snapshot = g_strdup (jop (j, "name"));
  hc->state = state_name (e);
  hc->targets = disks;
  hc->backends = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++) {
    g_autofree char *bkey = g_strconcat ("backend.", disks[i], NULL);
    hc->backends[i] = g_strdup (jop (j, bkey));
  }
  hc->libvirt_domain = e->dom->dom;
  hc->config = e->ctx->config;
  hc->messages = msgs;
}

static void
hooks_clear (vmsnap_hook_call *hc)
{
  g_strfreev (hc->targets);
  g_strfreev (hc->backends);
  g_free ((char *) hc->operation);
  g_free ((char *) hc->domain);
  g_free ((char *) hc->uuid);
  g_free ((char *) hc->snapshot);
  memset (hc, 0, sizeof *hc);
}

/* create --quiesce: FREEZE every plugin right before the capture, the
 * freeze recorded first so that recovery thaws after a crash. */
static gboolean
freeze (vmsnap_engine *e, vmsnap_journal *j, GError **err)
{
  const char *mode = vmsnap_option_get (e->ctx->config, "vmsnap.quiesce");

  if (e->hooks == NULL || g_strcmp0 (mode, "off") == 0 || mode == NULL
      || e->dom->dom == NULL || virDomainIsActive (e->dom->dom) != 1)
    return TRUE;
  if (!vmsnap_journal_set (j, "op", "frozen", "yes", err))
    return FALSE;
  e->hooks->libvirt_domain = e->dom->dom;
  e->hooks->state = state_name (e);
  if (!vmsnap_plugins_run (e->hooks, VMSNAP_HOOK_FREEZE, TRUE, NULL, err)) {
    vmsnap_journal_mark (j, "core", "thaw", NULL);
    return FALSE;
  }
  e->frozen_at = g_get_monotonic_time ();
  return TRUE;
}

/* THAW after the capture, on an error path, or in recovery; idempotent
 * (journal step "thaw").  Failures are warnings (e->hooks' messages). */
static gboolean
thaw_if_frozen (vmsnap_engine *e, vmsnap_journal *j, gboolean succeeded, const char *error)
{
  g_autoptr (GPtrArray) own = NULL;
  vmsnap_hook_call local, *hc = e->hooks;

  if (g_strcmp0 (jop (j, "frozen"), "yes") != 0 || vmsnap_journal_done (j, "core", "thaw"))
    return TRUE;
  if (hc == NULL) {
    own = g_ptr_array_new_with_free_func (g_free);
    hooks_init (e, j, &local, own);
    hc = &local;
  }
  hc->libvirt_domain = e->dom->dom;
  hc->state = state_name (e);
  vmsnap_plugins_run (hc, VMSNAP_HOOK_THAW, succeeded, error, NULL);
  if (hc == &local) {
    for (guint i = 0; i < own->len; i++)
      g_printerr ("vmsnap: %s\n", (char *) own->pdata[i]);
    hooks_clear (&local);
  }
  if (e->frozen_at) {
    e->frozen_us = g_get_monotonic_time () - e->frozen_at;
    e->frozen_at = 0;
  }
  return vmsnap_journal_mark (j, "core", "thaw", NULL);
}

/* ------------------------------------------------------ the pause window */

/* A create of a running VM in pause mode: the work every disk's backend
 * can do before the instant (its prepare slot) runs here, before the
 * guest is frozen and the VM paused (doc/consistency.md). */
static gboolean
prepare_disks (vmsnap_engine *e, vmsnap_journal *j, GError **err)
{
  g_auto (GStrv) disks = journal_disks (j);

  for (char **t = disks; t && *t; t++) {
    g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
    const vmsnap_module *m = module_for (e, jop (j, bkey), err);
    vmsnap_disk_priv *d = find_disk (e->dom, *t);
    g_autoptr (vmsnap_op) op = NULL;
    g_autoptr (GError) local = NULL;
    g_autofree char *prefix = g_strdup_printf ("disk %s: ", *t);

    if (m == NULL)
      return FALSE;
    if (m->be.prepare == NULL || d == NULL)
      continue;
    op = make_op (e, j, *t);
    op->quiet = TRUE;
    if (m->be.prepare (op, &d->pub, jop (j, "name"), 0, &local) < 0) {
      if (local == NULL)
        g_set_error (&local, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "backend %s failed to prepare without saying why", m->name);
      if (g_str_has_prefix (local->message, prefix))
        g_propagate_error (err, g_steal_pointer (&local));
      else
        g_propagate_prefixed_error (err, g_steal_pointer (&local), "%s", prefix);
      return FALSE;
    }
  }
  e->prepared = TRUE;
  return TRUE;
}

/* One disk's capture inside the window, in a thread of its own. */
typedef struct {
  vmsnap_engine *e;
  const vmsnap_module *m;
  vmsnap_disk_priv *d;
  vmsnap_op *op;
  vmsnap_result *r;
  const char *name;
  GError *err;
  int rc;
  GThread *thread;
} window_job;

static void
window_job_free (gpointer data)
{
  window_job *w = data;

  if (w->thread)
    g_thread_join (w->thread);
  vmsnap_op_free (w->op);
  if (w->r)
    vmsnap_result_free (w->r);
  g_clear_error (&w->err);
  g_free (w);
}

static gpointer
window_job_run (gpointer data)
{
  window_job *w = data;

  w->rc = w->m->be.create (w->op, &w->d->pub, w->name, 0, w->r, &w->err);
  return NULL;
}

/* Was the pause window of the create in J interrupted, so that the disks
 * captured and those not yet captured no longer share one instant?  True
 * when the VM was never paused by the journaled step, or runs (or is shut
 * off) again before every capture was made: the guard resumed it after
 * vmsnap died, or someone did.  The capture is complete once every disk
 * is recorded done and the live definition already names the overlays
 * the transaction switched to (it is atomic: all or none). */
static gboolean
window_broken (vmsnap_engine *e, vmsnap_journal *j)
{
  g_auto (GStrv) disks = journal_disks (j);
  int st = 0, reason = 0;

  if (!vmsnap_journal_done (j, "core", "vm"))
    return TRUE;
  if (e->dom->dom == NULL
      || (virDomainGetState (e->dom->dom, &st, &reason, 0) == 0
          && st == VIR_DOMAIN_PAUSED))
    return FALSE;
  for (char **t = disks; t && *t; t++) {
    g_autofree char *step = g_strconcat ("disk-", *t, NULL);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);
    g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
    const vmsnap_module *m = vmsnap_find_module (e->ctx, jop (j, bkey));
    vmsnap_disk_priv *d = find_disk (e->dom, *t);
    g_autoptr (vmsnap_result) r = NULL;

    if (!vmsnap_journal_done (j, "core", step))
      return TRUE;
    r = vmsnap_result_load (j, group);
    if (!vmsnap_journal_done (j, "core", "switch") && r->new_source && m
        && (m->be.caps & VMSNAP_CAP_ONE_TRANSACTION)
        && (d == NULL || g_strcmp0 (d->pub.source, r->new_source) != 0))
      return TRUE;
  }
  return FALSE;
}

/* Run (or resume) the operation in journal J.  REPORT gets one object per
 * disk.  On failure of a create/revert before "define", roll back. */
static gboolean
run_journal (vmsnap_engine *e, vmsnap_journal *j, JsonBuilder *report,
             GError **err)
{
  const char *kind_s = jop (j, "kind");
  op_kind kind = OP_CREATE;
  g_auto (GStrv) disks = journal_disks (j);
  g_autoptr (GHashTable) results =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                           (GDestroyNotify) vmsnap_result_free);
  g_autoptr (GHashTable) sources =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GHashTable) switched =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GHashTable) jobs =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, window_job_free);
  GError *failure = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (op_names); i++)
    if (kind_s && strcmp (kind_s, op_names[i]) == 0)
      kind = (op_kind) i;

  /* From here on the definition or the storage may change: the inventory
   * read at the start is no longer the truth until read again. */
  e->stale = TRUE;
  if (j->recovering)
    thaw_if_frozen (e, j, FALSE, "interrupted");

  /* What must be on disk before each step: doc/architecture.md.  The
   * operation's own records (group "op") go out with the first write a
   * step needs: before a running domain is touched, or with a backend's
   * first record (vmsnap_op_set), which comes before it touches storage. */
  if (jop (j, "online") && !vmsnap_journal_flush (j, err))
    goto failed;
  if (kind == OP_CREATE && !j->recovering
      && g_strcmp0 (jop (j, "online"), "pause") == 0
      && !vmsnap_journal_done (j, "core", "vm") && !prepare_disks (e, j, err))
    goto failed;
  if (kind == OP_CREATE && !j->recovering && jop (j, "online")
      && g_strcmp0 (jop (j, "online"), "restart") != 0
      && !vmsnap_journal_done (j, "core", "vm") && !freeze (e, j, err))
    goto failed;
  if (jop (j, "online") && !vmsnap_journal_done (j, "core", "vm")) {
    const char *mode = jop (j, "online");
    if (!vm_step (e, j, kind, err))
      goto failed;
    /* In the window the mark stays in memory: "paused_by_us", written
     * before the pause, is what a recovery needs (window_broken). */
    if (!strcmp (mode, "pause") && kind == OP_CREATE)
      vmsnap_journal_note (j, "core", "vm");
    else if (!vmsnap_journal_mark (j, "core", "vm", err))
      goto failed;
    if (!strcmp (mode, "transaction")) {
      /* vm_step did nothing: one libvirt transaction after the disks. */
    } else if (!strcmp (mode, "pause")) {
      /* The pause window: the vCPUs stopped (and the memory saved to a
       * file), the definition and the images as they were: the model is
       * updated in memory, not read again inside the window. */
      int st = 0, reason = 0;
      if (e->dom->dom && virDomainGetState (e->dom->dom, &st, &reason, 0) == 0)
        e->dom->state = st == VIR_DOMAIN_PAUSED ? VMSNAP_STATE_PAUSED
                        : st == VIR_DOMAIN_RUNNING ? VMSNAP_STATE_RUNNING
                        : st == VIR_DOMAIN_SHUTOFF ? VMSNAP_STATE_SHUTOFF
                        : VMSNAP_STATE_OTHER;
    } else if (!refresh_domain (e, err))
      /* Read again: libvirt changed the domain's state (a revert stopped
       * it) or its definition and images (an internal snapshot taken or
       * reverted with the memory), and the disk steps below act on the
       * domain as it is now. */
      goto failed;
    e->stale = TRUE;
  }
  if (kind == OP_CREATE && jop (j, "nvram") && !vmsnap_journal_done (j, "core", "nvram")) {
    /* Inside the pause window of a running domain, or offline. */
    g_autofree char *copy = state_file (e, j, "nvram");
    const char *src = jop (j, "nvram_source");
    if (!g_file_test (src, G_FILE_TEST_IS_REGULAR)) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: its UEFI NVRAM file %s is missing, so the "
                   "snapshot cannot capture it; restore the file (or start "
                   "the domain once, which recreates it from the template)",
                   e->dom->name, src);
      goto failed;
    }
    if (!vmsnap_journal_flush (j, err)   /* it names the copy, for a rollback */
        || !vmsnap_copy_file_atomic (src, copy, 0600, err)
        || !vmsnap_journal_mark (j, "core", "nvram", err))
      goto failed;
  }

  /* Inside the window, every disk whose backend prepared it is captured
   * at once, each in its own thread, its records kept in memory; the
   * others run one after the other below, as before. */
  if (kind == OP_CREATE && e->prepared && g_strcmp0 (jop (j, "online"), "pause") == 0) {
    for (char **t = disks; t && *t; t++) {
      g_autofree char *step = g_strconcat ("disk-", *t, NULL);
      g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
      const vmsnap_module *m = vmsnap_find_module (e->ctx, jop (j, bkey));
      vmsnap_disk_priv *d = find_disk (e->dom, *t);
      window_job *w;
      if (m == NULL || m->be.prepare == NULL || d == NULL
          || vmsnap_journal_done (j, "core", step))
        continue;
      w = g_new0 (window_job, 1);
      w->e = e;
      w->m = m;
      w->d = d;
      w->op = make_op (e, j, *t);
      w->op->quiet = TRUE;
      w->op->in_window = TRUE;
      w->r = vmsnap_result_new ();
      w->name = jop (j, "name");
      g_hash_table_insert (jobs, g_strdup (*t), w);
    }
    if (g_hash_table_size (jobs) > 1) {
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, jobs);
      while (g_hash_table_iter_next (&it, &k, &v)) {
        window_job *w = v;
        g_autofree char *tname = g_strdup_printf ("vmsnap-%s", (char *) k);
        w->thread = g_thread_try_new (tname, window_job_run, w, NULL);
        if (w->thread == NULL)
          window_job_run (w);   /* no thread to be had: in this one */
      }
    } else if (g_hash_table_size (jobs) == 1) {
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, jobs);
      if (g_hash_table_iter_next (&it, &k, &v))
        window_job_run (v);
    }
    /* Every capture ends before this thread touches the journal again
     * (the loop below): the threads share it only through op_lock. */
    {
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, jobs);
      while (g_hash_table_iter_next (&it, &k, &v)) {
        window_job *w = v;
        if (w->thread) {
          g_thread_join (w->thread);
          w->thread = NULL;
        }
      }
    }
  }

  for (char **t = disks; t && *t; t++) {
    g_autofree char *step = g_strconcat ("disk-", *t, NULL);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);
    g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
    window_job *w = g_hash_table_lookup (jobs, *t);
    vmsnap_result *r;

    if (w) {
      g_autofree char *prefix = g_strdup_printf ("disk %s: ", *t);
      if (w->thread) {
        g_thread_join (w->thread);
        w->thread = NULL;
      }
      w->op->in_window = FALSE;
      if (w->rc < 0) {
        if (w->err == NULL)
          g_set_error (&w->err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                       "backend %s failed without saying why", w->m->name);
        if (failure == NULL)
          failure = g_str_has_prefix (w->err->message, prefix)
                    ? g_steal_pointer (&w->err)
                    : g_error_new (w->err->domain, w->err->code, "%s%s",
                                   prefix, w->err->message);
        continue;
      }
      r = g_steal_pointer (&w->r);
      /* In memory, written after the window with the others. */
      vmsnap_result_save (r, j, group, NULL);
      vmsnap_journal_note (j, "core", step);
    } else if (failure)
      continue;   /* only the jobs are still joined */
    else if (vmsnap_journal_done (j, "core", step))
      r = vmsnap_result_load (j, group);
    else {
      g_autoptr (GError) local = NULL;
      const vmsnap_module *m = module_for (e, jop (j, bkey), &local);
      vmsnap_disk_priv *d = find_disk (e->dom, *t);
      g_autoptr (vmsnap_op) op = NULL;

      if (m == NULL) {
        failure = g_steal_pointer (&local);
        continue;
      }
      if (d == NULL) {
        failure = g_error_new (VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                               "domain %s has no disk %s any more", e->dom->name, *t);
        continue;
      }
      op = make_op (e, j, *t);
      op->quiet = report == NULL;
      r = vmsnap_result_new ();
      if (call_slot (e, j, kind, m, d, op, r, &local) < 0) {
        g_autofree char *prefix = g_strdup_printf ("disk %s: ", *t);
        vmsnap_result_free (r);
        if (local == NULL)
          g_set_error (&local, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                       "backend %s failed without saying why", m->name);
        if (g_str_has_prefix (local->message, prefix))
          failure = g_steal_pointer (&local);
        else
          failure = g_error_new (local->domain, local->code, "%s%s", prefix,
                                 local->message);
        continue;
      }
      /* In memory: re-running the slot is harmless until something
       * refers to what it made; written before that (define, switch). */
      if (!vmsnap_result_save (r, j, group, &local)) {
        vmsnap_result_free (r);
        failure = g_steal_pointer (&local);
        continue;
      }
      vmsnap_journal_note (j, "core", step);
    }
    g_hash_table_insert (results, g_strdup (*t), r);
    if (r->new_source && kind == OP_CREATE) {
      const vmsnap_module *m = vmsnap_find_module (e->ctx, jop (j, bkey));
      if (m && (m->be.caps & VMSNAP_CAP_ONE_TRANSACTION))
        g_hash_table_insert (switched, g_strdup (*t),
                             g_strdup_printf ("%s\n%s", r->new_format ? r->new_format : "qcow2",
                                              r->new_source));
    }
    if (r->new_source)
      g_hash_table_insert (sources, g_strdup (*t),
                           g_strdup_printf ("%s\n%s", r->new_format ? r->new_format : "qcow2",
                                            r->new_source));
  }
  g_hash_table_remove_all (jobs);
  e->w_captured = g_get_monotonic_time ();
  if (failure) {
    g_propagate_error (err, failure);
    goto failed;
  }

  if ((g_strcmp0 (jop (j, "online"), "transaction") == 0
       || g_strcmp0 (jop (j, "online"), "pause") == 0)
      && !vmsnap_journal_done (j, "core", "switch")) {
    /* One libvirt transaction for every disk that has a new overlay.  A
     * domain shut off since (recovery) needs none: the definition below is
     * all it takes.  In a pause window with nothing to switch, nothing is
     * written inside it: the disks' records go out after the resume. */
    gboolean window = g_strcmp0 (jop (j, "online"), "pause") == 0 && kind == OP_CREATE;
    if ((!window || g_hash_table_size (switched) > 0)
        && !vmsnap_journal_flush (j, err))   /* the disks' results first */
      goto failed;
    e->w_flushed = g_get_monotonic_time ();
    if (g_hash_table_size (switched) > 0 && e->dom->dom
        && virDomainIsActive (e->dom->dom) == 1
        && !vmsnap_online_switch (e->dom, jop (j, "name"), switched, err))
      goto failed;
    e->w_switched = g_get_monotonic_time ();
    /* In the window, the switch is found again by window_broken. */
    if (window)
      vmsnap_journal_note (j, "core", "switch");
    else if (!vmsnap_journal_mark (j, "core", "switch", err))
      goto failed;
  }
  if (g_strcmp0 (jop (j, "online"), "pause") == 0
      && !vmsnap_journal_done (j, "core", "resume")) {
    if (!resume_if_paused (e, j, err) || !vmsnap_journal_mark (j, "core", "resume", err))
      goto failed;
  }
  if (!thaw_if_frozen (e, j, TRUE, NULL))
    goto failed;
  if (!vmsnap_journal_done (j, "core", "define")) {
    /* An encrypted disk's definition names its whole chain, which a
     * delete or merge may change without a new active image. */
    for (char **t = disks; t && *t; t++) {
      vmsnap_disk_priv *d = find_disk (e->dom, *t);
      if (d && d->pub.encryption_format && d->pub.source && d->pub.format
          && (d->pub.type == VMSNAP_DISK_TYPE_FILE || d->pub.type == VMSNAP_DISK_TYPE_BLOCK)
          && !g_hash_table_contains (sources, *t))
        g_hash_table_insert (sources, g_strdup (*t),
                             g_strdup_printf ("%s\n%s", d->pub.format, d->pub.source));
    }
    /* Write 2 of a create: every disk's result and step, before the
     * definition names what the steps made (a re-run of a slot after it
     * would see the new sources), and "defining": from here on a
     * recovery never rolls back (the definition may name the new
     * storage).  The define mark itself stays in memory: redoing the
     * rewrite gives the same definition. */
    vmsnap_journal_put (j, "op", "defining", "yes");
    if (!vmsnap_journal_flush (j, err) || !define_sources (e, sources, err))
      goto failed;
    vmsnap_journal_note (j, "core", "define");
  }
  if (kind == OP_REVERT && jop (j, "nvram") && !vmsnap_journal_done (j, "core", "nvram")) {
    /* The domain is shut off here (a revert of a running one stopped it). */
    g_autofree char *copy = state_file (e, j, "nvram");
    if (e->dom->dom && virDomainIsActive (e->dom->dom) == 1) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s is running: its NVRAM file %s cannot be "
                   "reverted under QEMU (stop it, then run vmsnap recover)",
                   e->dom->name, jop (j, "nvram_source"));
      goto failed;
    }
    if (!vmsnap_journal_flush (j, err)
        || !vmsnap_copy_file_inplace (copy, jop (j, "nvram_source"), err)
        || !vmsnap_journal_mark (j, "core", "nvram", err))
      goto failed;
  }
  if (!vmsnap_journal_done (j, "core", "catalog")) {
    /* A failure from here on (a full state directory) leaves the journal:
     * the error says to run vmsnap recover, as any other. */
    if (!apply_catalog (e->cat, j, kind, results, err))
      goto failed;
    /* A create's or a revert's catalog step can be redone (the entry is
     * there already; current is set again), so its mark stays in memory;
     * a delete's or a merge's (points removed, locators renamed) cannot,
     * and is written. */
    if (kind == OP_CREATE || kind == OP_REVERT)
      vmsnap_journal_note (j, "core", "catalog");
    else if (!vmsnap_journal_mark (j, "core", "catalog", err))
      goto failed;
  }
  if (kind == OP_DELETE && !vmsnap_journal_done (j, "core", "state-files")) {
    /* The catalog no longer names them: remove them (repeatable). */
    remove_state_files (e, j);
    if (!vmsnap_journal_mark (j, "core", "state-files", err))
      goto failed;
  }
  if (report) {
    json_builder_set_member_name (report, "warnings");
    json_builder_begin_array (report);
    if (kind == OP_DELETE)
      report_left_behind (e, j, report);
  }
  if (!vmsnap_journal_done (j, "core", "discard")) {
    gboolean garbage = FALSE;
    for (char **t = disks; t && *t; t++) {
      vmsnap_result *r = g_hash_table_lookup (results, *t);
      garbage = garbage || (r && r->garbage->len > 0);
    }
    /* Needed only when there is something to discard: the guard (and the
     * backend's discard slot) must see the domain as defined now and the
     * chains as the disk steps left them, so that nothing a disk now uses
     * is removed; the steps above changed both, and only storage knows
     * how (a commit, a pull, a new overlay). */
    if (garbage && !refresh_domain (e, err)) {
      if (report)
        json_builder_end_array (report);
      return FALSE;
    }
    for (char **t = disks; t && *t; t++) {
      g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
      const vmsnap_module *m = vmsnap_find_module (e->ctx, jop (j, bkey));
      vmsnap_result *r = g_hash_table_lookup (results, *t);
      if (m && r)
        discard_list (e, j, m, *t, r->garbage, report);
    }
    /* Discarding what is gone already is nothing (discard_list); with
     * the same rule as the catalog step above. */
    if (kind == OP_CREATE || kind == OP_REVERT)
      vmsnap_journal_note (j, "core", "discard");
    else if (!vmsnap_journal_mark (j, "core", "discard", err)) {
      if (report)
        json_builder_end_array (report);
      return FALSE;
    }
  }
  if (jop (j, "start") && *jop (j, "start") && !vmsnap_journal_done (j, "core", "start")) {
    g_autofree char *mem = kind == OP_REVERT ? state_file (e, j, "memory") : NULL;
    gboolean paused = !strcmp (jop (j, "start"), "paused");
    e->stale = TRUE;
    if (!vmsnap_journal_flush (j, err)
        || !(mem ? vmsnap_memstate_restore (e->dom, mem, paused, err)
              : vmsnap_online_start (e->dom, paused, err))
        || !vmsnap_journal_mark (j, "core", "start", err)) {
      if (report)
        json_builder_end_array (report);
      return FALSE;
    }
  }
  if (report) {
    json_builder_end_array (report);
    jstr (report, "online", jop (j, "online"));
    {
      g_autofree char *mem = state_file (e, j, "memory");
      g_autofree char *nv = state_file (e, j, "nvram");
      GStatBuf st;
      if (mem && kind == OP_CREATE) {
        jstr (report, "memory", mem);
        json_builder_set_member_name (report, "memory_size");
        json_builder_add_int_value (report, g_stat (mem, &st) == 0 ? (gint64) st.st_size : 0);
      }
      if (nv && kind != OP_MERGE) {
        jstr (report, "nvram", nv);
        jstr (report, "nvram_source", jop (j, "nvram_source"));
      }
    }
    if (g_strcmp0 (jop (j, "online"), "pause") == 0 && e->pause_us > 0) {
      json_builder_set_member_name (report, "pause_ms");
      json_builder_add_double_value (report, (double) e->pause_us / 1000.0);
      if (e->w_suspended && e->w_captured && e->w_switched && e->w_resuming) {
        /* Where the window went: each part up to the next. */
        const struct { const char *k; gint64 us; } parts[] = {
          { "suspend", e->w_suspend_us },
          { "captures", e->w_captured - e->w_suspended },
          { "journal", e->w_flushed - e->w_captured },
          { "switch", e->w_switched - e->w_flushed },
          { "before_resume", e->w_resuming - e->w_switched },
          { "resume", e->w_resume_us },
        };
        json_builder_set_member_name (report, "pause_steps_ms");
        json_builder_begin_object (report);
        for (guint i = 0; i < G_N_ELEMENTS (parts); i++) {
          json_builder_set_member_name (report, parts[i].k);
          json_builder_add_double_value (report, (double) parts[i].us / 1000.0);
        }
        json_builder_end_object (report);
      }
    }
    if (g_strcmp0 (jop (j, "frozen"), "yes") == 0 && e->frozen_us > 0) {
      json_builder_set_member_name (report, "frozen_ms");
      json_builder_add_double_value (report, (double) e->frozen_us / 1000.0);
    }
    if (e->dom->dom) {
      int st = 0, reason = 0;
      if (virDomainGetState (e->dom->dom, &st, &reason, 0) == 0)
        jstr (report, "domain_state", st == VIR_DOMAIN_RUNNING ? "running"
                                      : st == VIR_DOMAIN_PAUSED ? "paused"
                                      : st == VIR_DOMAIN_SHUTOFF ? "shut off" : "other");
    }
    json_builder_set_member_name (report, "disks");
    json_builder_begin_array (report);
    for (char **t = disks; t && *t; t++) {
      vmsnap_result *r = g_hash_table_lookup (results, *t);
      g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
      json_builder_begin_object (report);
      jstr (report, "target", *t);
      jstr (report, "backend", jop (j, bkey));
      jstr (report, "locator", r->locator);
      jstr (report, "new_source", r->new_source);
      jstr (report, "note", r->note);
      json_builder_set_member_name (report, "bytes_copied");
      json_builder_add_int_value (report, (gint64) r->bytes_copied);
      json_builder_set_member_name (report, "kept");
      json_builder_add_boolean_value (report, r->kept);
      json_builder_end_object (report);
    }
    json_builder_end_array (report);
  }
  return vmsnap_journal_remove (j, err);

 failed:
  thaw_if_frozen (e, j, FALSE, err && *err ? (*err)->message : NULL);
  if (!journal_touched (j)) {
    /* Nothing was recorded, so nothing was done: abandon the operation
     * (a memory file an interrupted save left goes too). */
    if (kind == OP_CREATE) {
      if (g_strcmp0 (jop (j, "online"), "pause") == 0)
        resume_if_paused (e, j, NULL);
      remove_state_files (e, j);
    }
    vmsnap_journal_remove (j, NULL);
    if (err && *err)
      g_prefix_error (err, "%s %s failed, nothing changed: ", kind_s,
                      jop (j, "name") ? jop (j, "name") : "");
    return FALSE;
  }
  if ((kind == OP_CREATE || kind == OP_REVERT)
      && !vmsnap_journal_done (j, "core", "define")
      && !(j->recovering && jop (j, "defining"))
      && !(kind == OP_REVERT && g_strcmp0 (jop (j, "online"), "internal") == 0
           && vmsnap_journal_done (j, "core", "vm"))) {
    if (!roll_back (e, j)) {
      /* Something a prepare slot made is still on storage (its cluster
       * went away, say): the journal stays, and recover rolls back again. */
      g_autofree char *msg = g_strdup (err && *err ? (*err)->message : "failed");
      vmsnap_journal_set (j, "op", "failed", msg, NULL);
      if (err && *err)
        g_prefix_error (err, "%s %s failed; the VM runs as before, but what was "
                        "prepared for the snapshot could not all be removed "
                        "(see the warnings). Fix the cause and run 'vmsnap "
                        "recover %s': ", kind_s, jop (j, "name"), e->spec);
      return FALSE;
    }
    vmsnap_journal_remove (j, NULL);
    if (err && *err)
      g_prefix_error (err, "%s %s failed and was rolled back, nothing changed: ",
                      kind_s, jop (j, "name"));
    return FALSE;
  }
  {
    /* The cause alone goes to the journal: `list` adds its own words. */
    g_autofree char *msg = g_strdup (err && *err ? (*err)->message : "failed");
    vmsnap_journal_set (j, "op", "failed", msg, NULL);
  }
  if (err && *err)
    g_prefix_error (err, "%s %s did not finish; nothing is lost (the current "
                    "state and every other snapshot are intact). Fix the cause "
                    "and run 'vmsnap recover %s': ", kind_s,
                    jop (j, "name") ? jop (j, "name") : "", e->spec);
  return FALSE;
}

/* ------------------------------------------------------- journal checks */

static gboolean
journal_kind (vmsnap_journal *j, op_kind *kind)
{
  const char *k = jop (j, "kind");

  for (guint i = 0; k && i < G_N_ELEMENTS (op_names); i++)
    if (strcmp (k, op_names[i]) == 0) {
      *kind = (op_kind) i;
      return TRUE;
    }
  return FALSE;
}

static gboolean
one_of (const char *v, const char *const *allowed)
{
  return v == NULL || g_strv_contains (allowed, v);
}

/* Is V a snapshot id (a decimal number below G_MAXUINT, as begin() writes)? */
static gboolean
valid_id (const char *v)
{
  if (v == NULL || *v == '\0' || strlen (v) > 10 || strspn (v, "0123456789") != strlen (v))
    return FALSE;
  return g_ascii_strtoull (v, NULL, 10) < G_MAXUINT;
}

static gboolean G_GNUC_PRINTF (5, 6)
bad_journal (vmsnap_journal *j, const char *group, const char *key, GError **err,
             const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL, *shown = NULL, *where = NULL, *where_shown = NULL;
  guint line = vmsnap_journal_line (j, group, key);

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  shown = vmsnap_printable (why);
  /* the key may hold a disk name the journal gave: shown, never echoed */
  where = line ? g_strdup_printf (", line %u ([%s] %s)", line, group, key)
               : g_strdup_printf (" ([%s] %s missing)", group, key);
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "journal %s%s: %s: vmsnap never writes such a journal, so it was "
               "damaged or edited; nothing was replayed. Move it away only "
               "after checking the domain's disks by hand", j->path,
               where_shown = vmsnap_printable (where), shown);
  return FALSE;
}

/* Everything run_journal, roll_back and apply_catalog read from a loaded
 * journal, checked before recovery acts on any of it: a journal is only
 * ever written by vmsnap (atomically), so one that lacks a key they use, or
 * names an unknown operation, was damaged or edited by hand.  Replaying it
 * would be worse than refusing: an unknown kind ran as a create, a missing
 * id, name or locator reached strcmp() and the catalog as NULL. */
gboolean
vmsnap_journal_check (vmsnap_journal *j, GError **err)
{
  static const char *const onlines[] = { "internal", "restart", "pause",
                                         "transaction", NULL };
  static const char *const starts[] = { "", "running", "paused", NULL };
  static const char *const afters[] = { "default", "running", "paused",
                                        "stopped", NULL };
  op_kind kind;
  const char *name = jop (j, "name"), *id = jop (j, "id");
  g_auto (GStrv) disks = journal_disks (j);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  if (!journal_kind (j, &kind))
    return bad_journal (j, "op", "kind", err, "unknown operation kind '%s'",
                        jop (j, "kind") ? jop (j, "kind") : "(none)");
  if (disks == NULL)
    return bad_journal (j, "op", "disks", err, "no list of disks");
  if (!one_of (jop (j, "online"), onlines))
    return bad_journal (j, "op", "online", err, "unknown online mode '%s'", jop (j, "online"));
  if (!one_of (jop (j, "start"), starts) || !one_of (jop (j, "after"), afters))
    return bad_journal (j, "op", one_of (jop (j, "start"), starts) ? "after" : "start", err,
                        "unknown state to start the domain in");
  for (guint i = 0; i < 2; i++) {
    const char *f = jop (j, i == 0 ? "memory" : "nvram");
    if (f && (*f == '\0' || strchr (f, '/') || !strcmp (f, "..") || !strcmp (f, ".")))
      return bad_journal (j, "op", i == 0 ? "memory" : "nvram", err,
                          "a state file name that is not a plain name");
  }
  if (jop (j, "nvram") && (jop (j, "nvram_source") == NULL || *jop (j, "nvram_source") != '/'))
    return bad_journal (j, "op", "nvram_source", err,
                        "an NVRAM copy without the file it belongs to");
  if (kind != OP_MERGE) {
    if (!vmsnap_valid_snapshot_name (name, NULL))
      return bad_journal (j, "op", "name", err, "no valid snapshot name");
    if (!valid_id (id))
      return bad_journal (j, "op", "id", err, "no valid snapshot id");
  }
  if (kind == OP_CREATE) {
    const char *created = jop (j, "created");
    if (created == NULL || *created == '\0'
        || strspn (created, "0123456789") != strlen (created))
      return bad_journal (j, "op", "created", err, "no creation time");
  }
  for (char **t = disks; *t; t++) {
    g_autofree char *bkey = g_strconcat ("backend.", *t, NULL);
    g_autofree char *lkey = g_strconcat ("locator.", *t, NULL);
    g_autofree char *step = g_strconcat ("disk-", *t, NULL);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);
    const char *be = jop (j, bkey);

    if (**t == '\0' || g_hash_table_contains (seen, *t))
      return bad_journal (j, "op", "disks", err, "disk '%s' is empty or listed twice", *t);
    g_hash_table_add (seen, *t);
    if (be == NULL || *be == '\0')
      return bad_journal (j, "op", bkey, err, "disk %s has no backend", *t);
    if ((kind == OP_REVERT || kind == OP_DELETE) && jop (j, lkey) == NULL)
      return bad_journal (j, "op", lkey, err, "disk %s has no locator", *t);
    /* The catalog records the locator a finished create step returned
     * (vmsnap_result_load reads it as UTF-8: NULL if it is not). */
    if (kind == OP_CREATE && vmsnap_journal_done (j, "core", step)) {
      g_autofree char *loc = g_key_file_get_string (j->kf, group, "r.locator", NULL);
      if (loc == NULL || *loc == '\0')
        return bad_journal (j, group, "r.locator", err,
                            "disk %s is done but has no locator", *t);
    }
  }
  return TRUE;
}

/* The part of recovery that reads journal J and acts on nothing but the
 * catalog (tests/fuzz/fuzz-journal.c): J is checked, the results of its
 * finished disk steps are loaded and, when every disk step is done and the
 * catalog step is not, the catalog change is applied to CAT and saved to
 * CAT's path, as run_journal does.  No backend, no libvirt, no domain. */
gboolean
vmsnap_journal_replay_catalog (catalog *cat, vmsnap_journal *j, GError **err)
{
  op_kind kind = OP_CREATE;
  g_auto (GStrv) disks = NULL;
  g_autoptr (GHashTable) results =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                           (GDestroyNotify) vmsnap_result_free);

  if (!vmsnap_journal_check (j, err) || !vmsnap_journal_catalog_check (j, cat, err))
    return FALSE;
  journal_kind (j, &kind);
  disks = journal_disks (j);
  (void) journal_touched (j);
  for (char **t = disks; *t; t++) {
    g_autofree char *step = g_strconcat ("disk-", *t, NULL);
    g_autofree char *group = g_strconcat ("disk.", *t, NULL);

    if (!vmsnap_journal_done (j, "core", step))
      return TRUE;       /* a backend would act here */
    g_hash_table_insert (results, g_strdup (*t), vmsnap_result_load (j, group));
  }
  if (vmsnap_journal_done (j, "core", "catalog"))
    return TRUE;
  return apply_catalog (cat, j, kind, results, err);
}

/* ------------------------------------------------------------ opening */

static char *
journal_path (vmsnap_engine *e)
{
  return g_build_filename (e->state_dir, "journal", NULL);
}

/* Read the definition again (the same file, or the same libvirt domain
 * on the connection already open) and, unless the command answers from
 * the catalog, inspect its storage: the one inventory the command works
 * from until it changes the definition or the storage itself. */
static gboolean
refresh_domain (vmsnap_engine *e, GError **err)
{
  const char *uuid = e->dom->uuid;   /* interned: stays valid */

  if (!vmsnap_domain_reread (e->dom, err))
    return FALSE;
  if (g_strcmp0 (uuid, e->dom->uuid) != 0) {
    /* The state directory we locked is another domain's. */
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "%s now defines domain UUID %s instead of %s: another "
                 "domain took its place while vmsnap read it; nothing was done",
                 e->spec, e->dom->uuid ? e->dom->uuid : "(none)", uuid);
    return FALSE;
  }
  if (!e->catalog_only)
    vmsnap_domain_inspect (e->dom);
  /* The guard follows the definition: built again from it when next used. */
  g_clear_pointer (&e->guard, vmsnap_guard_free);
  e->stale = FALSE;
  return TRUE;
}

/* trust.c's checks of the paths a catalog (J NULL) or a journal names.
 * They take the directories of the disks' images from the inventory; a
 * command answering from the catalog alone has only the definition's, a
 * subset of them: only when a path is outside these is storage inspected
 * (its chains' directories then count too) and the check made again, so
 * the answer is the same as with the inventory, and usually no image is
 * opened. */
static gboolean
paths_ok (vmsnap_engine *e, vmsnap_journal *j, GError **err)
{
  g_autoptr (GError) local = NULL;

  for (int pass = 0;; pass++) {
    gboolean ok = j ? vmsnap_journal_paths_check (j, e->dom, e->cat, e->state_dir, &local)
                    : vmsnap_catalog_paths_check (e->cat, e->dom, e->state_dir, &local);
    if (ok)
      return TRUE;
    if (pass > 0 || e->dom->inspected) {
      g_propagate_error (err, g_steal_pointer (&local));
      return FALSE;
    }
    g_clear_error (&local);
    vmsnap_domain_inspect (e->dom);
    g_clear_pointer (&e->guard, vmsnap_guard_free);
  }
}

static gboolean
recover (vmsnap_engine *e, GError **err)
{
  g_autofree char *path = journal_path (e);
  g_autoptr (vmsnap_journal) j = vmsnap_journal_load (path, err);
  g_autoptr (JsonBuilder) b = NULL;
  g_autoptr (GError) local = NULL;
  gboolean ok;

  if (j == NULL)
    return err == NULL || *err == NULL;
  if (!vmsnap_journal_check (j, err)
      || !vmsnap_journal_catalog_check (j, e->cat, err)
      || !paths_ok (e, j, err))
    return FALSE;
  b = json_builder_new ();
  json_builder_begin_object (b);
  jstr (b, "recovered", jop (j, "kind"));
  jstr (b, "snapshot", jop (j, "name"));
  if (g_strcmp0 (jop (j, "kind"), "create") == 0
      && g_strcmp0 (jop (j, "online"), "pause") == 0
      && !vmsnap_journal_done (j, "core", "resume") && window_broken (e, j)) {
    /* The pause window was interrupted before every disk was captured,
     * and the VM runs again (the guard resumed it) or never stopped:
     * finishing the capture now would cut the disks at two instants.
     * The create is rolled back (abort slots for what was prepared). */
    e->stale = TRUE;
    thaw_if_frozen (e, j, FALSE, "interrupted");
    ok = roll_back (e, j);
    if (ok)
      ok = vmsnap_journal_remove (j, &local);
    else
      g_set_error (&local, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "create %s: rolling back its interrupted pause window left "
                   "something it prepared on storage (see the warnings); fix "
                   "the cause and run 'vmsnap recover %s' again",
                   jop (j, "name"), e->spec);
    jstr (b, "result", ok ? "rolled back" : "failed");
  } else {
    ok = run_journal (e, j, b, &local);
    jstr (b, "result", ok ? "finished" : "failed");
  }
  jstr (b, "error", local ? local->message : NULL);
  json_builder_end_object (b);
  e->recover_report = builder_to_json (b);
  if (!ok) {
    g_propagate_prefixed_error (err, g_steal_pointer (&local),
                                "recovering an interrupted operation: ");
    return FALSE;
  }
  /* The definition and storage changed: read them again for the
   * operation that follows. */
  return !e->stale || refresh_domain (e, err);
}

vmsnap_engine *
vmsnap_engine_open (vmsnap_ctx *ctx, const char *spec,
                    const vmsnap_engine_options *opts, GError **err)
{
  g_autoptr (vmsnap_engine) e = g_new0 (vmsnap_engine, 1);
  g_autofree char *root = NULL;
  g_autofree char *catpath = NULL;
  unsigned int flags = opts ? opts->flags : 0;

  e->ctx = ctx;
  e->lock_fd = -1;
  e->state_fd = -1;
  e->spec = g_strdup (spec);
  e->uri = g_strdup (opts ? opts->uri : NULL);
  e->catalog_only = (flags & VMSNAP_ENGINE_READ_ONLY) != 0;
  /* Identity only (name, UUID) before the lock: nothing inspected. */
  e->dom = vmsnap_domain_read (ctx, spec, e->uri, err);
  if (e->dom == NULL)
    return NULL;
  if (e->dom->uuid == NULL) {
    g_autofree char *example = g_uuid_string_random ();
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s has no <uuid>: vmsnap keys its catalog by UUID; "
                 "add one (e.g. <uuid>%s</uuid>)", e->dom->name, example);
    return NULL;
  }
  if (!g_uuid_string_is_valid (e->dom->uuid)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s: '%s' is not a valid UUID", e->dom->name, e->dom->uuid);
    return NULL;
  }
  /* vmsnap.state-dir: -o > $VMSNAP_STATE_DIR > the file > the default. */
  root = g_strdup (opts && opts->state_dir ? opts->state_dir
                   : vmsnap_option_get (ctx->config, "vmsnap.state-dir"));
  e->state_fd = vmsnap_state_dir_open (root, e->dom->uuid, &e->state_dir, err);
  if (e->state_fd < 0 || !take_lock (e, flags, err))
    return NULL;
  /* Another vmsnap may have changed the definition before we got the
   * lock: read it again (cheap), and inspect storage once, now that
   * nobody else changes it (not for list and info: issue 17). */
  if (!refresh_domain (e, err))
    return NULL;
  /* Catalog before recovery: recovery applies its change to it. */
  catpath = g_build_filename (e->state_dir, "catalog.xml", NULL);
  e->cat = vmsnap_catalog_load (catpath, e->dom->uuid, e->dom->name, err);
  if (e->cat == NULL || !paths_ok (e, NULL, err))
    return NULL;
  if (!(flags & VMSNAP_ENGINE_READ_ONLY) && !recover (e, err))
    return NULL;
  return g_steal_pointer (&e);
}

void
vmsnap_engine_free (vmsnap_engine *e)
{
  if (e == NULL)
    return;
  /* Still set: the VM was not resumed (a failed resume): the guard tries. */
  vmsnap_window_guard_abandon (e->wguard);
  if (e->lock_fd >= 0)
    close (e->lock_fd);   /* releases the flock */
  if (e->state_fd >= 0)
    close (e->state_fd);
  vmsnap_catalog_free (e->cat);
  vmsnap_guard_free (e->guard);
  vmsnap_domain_free (e->dom);
  g_free (e->spec);
  g_free (e->uri);
  g_free (e->state_dir);
  g_free (e->recover_report);
  g_free (e);
}

vmsnap_domain *
vmsnap_engine_domain (vmsnap_engine *e)
{
  vmsnap_domain_inspect (e->dom);   /* once: a no-op when done */
  return e->dom;
}

char *
vmsnap_engine_recover_report (vmsnap_engine *e)
{
  return g_strdup (e->recover_report);
}

/* ----------------------------------------------------------- operations */

static gboolean
is_online (vmsnap_engine *e)
{
  return e->dom->state == VMSNAP_STATE_RUNNING || e->dom->state == VMSNAP_STATE_PAUSED;
}

static gboolean
check_state (vmsnap_engine *e, GError **err)
{
  if (e->dom->state != VMSNAP_STATE_OTHER)
    return TRUE;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
               "domain %s is neither running, paused nor shut off (crashed, "
               "suspended to disk, shutting down?); bring it to one of these "
               "states first", e->dom->name);
  return FALSE;
}

/* On a running domain, every backend involved must do SLOT online. */
static gboolean
check_online_cap (vmsnap_engine *e, const char *backend, const char *target,
                  uint64_t cap, const char *slot, GError **err)
{
  const vmsnap_module *m = module_for (e, backend, err);

  if (m == NULL)
    return FALSE;
  if (!is_online (e) || (m->be.caps & cap))
    return TRUE;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
               "disk %s: backend %s cannot %s on a running domain; shut %s "
               "off first (nothing was changed)", target, backend, slot,
               e->dom->name);
  return FALSE;
}

static vmsnap_journal *
begin (vmsnap_engine *e, op_kind kind, const char *name, const char *id)
{
  g_autofree char *path = journal_path (e);
  vmsnap_journal *j = vmsnap_journal_new (path);

  g_key_file_set_string (j->kf, "op", "kind", op_names[kind]);
  g_key_file_set_string (j->kf, "op", "name", name ? name : "");
  g_key_file_set_string (j->kf, "op", "id", id ? id : "");
  return j;
}

static void
set_disks (vmsnap_journal *j, GPtrArray *targets)
{
  g_ptr_array_add (targets, NULL);
  g_key_file_set_string_list (j->kf, "op", "disks",
                              (const char *const *) targets->pdata, targets->len - 1);
  g_ptr_array_remove_index (targets, targets->len - 1);
}

static char *
finish (vmsnap_engine *e, vmsnap_journal *j, const char *name, GError **err)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  g_autoptr (GPtrArray) msgs = g_ptr_array_new_with_free_func (g_free);
  vmsnap_hook_call hc;
  const char *quiesce = vmsnap_option_get (e->ctx->config, "vmsnap.quiesce");
  gboolean ok;

  hooks_init (e, j, &hc, msgs);
  if (g_strcmp0 (jop (j, "kind"), "create") == 0 && quiesce && strcmp (quiesce, "off") != 0
      && !vmsnap_plugin_loaded ("quiesce-qga")) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "--quiesce (vmsnap.quiesce=%s) needs the quiesce-qga plugin, which "
                 "is not installed or did not load (package vmsnap; %s); nothing "
                 "changed", quiesce, VMSNAP_PLUGIN_INSTALL_DIR);
    vmsnap_journal_remove (j, NULL);
    hooks_clear (&hc);
    return NULL;
  }
  if (!vmsnap_plugins_run (&hc, VMSNAP_HOOK_BEFORE, TRUE, NULL, err)) {
    vmsnap_journal_remove (j, NULL);
    g_prefix_error (err, "%s %s not started, nothing changed: ", jop (j, "kind"),
                    name ? name : "");
    hooks_clear (&hc);
    return NULL;
  }
  e->hooks = &hc;
  json_builder_begin_object (b);
  jstr (b, "operation", jop (j, "kind"));
  jstr (b, "domain", e->dom->name);
  jstr (b, "snapshot", name);
  ok = run_journal (e, j, b, err);
  e->hooks = NULL;
  hc.state = state_name (e);
  hc.libvirt_domain = e->dom->dom;
  vmsnap_plugins_run (&hc, VMSNAP_HOOK_AFTER, ok, ok ? NULL : err && *err ? (*err)->message : "failed",
                      NULL);
  hooks_clear (&hc);
  if (!ok) {
    /* The operation's error stands; what the plugins said goes with it. */
    for (guint i = 0; err && *err && i < msgs->len; i++) {
      char *m = g_strdup_printf ("%s\n%s", (*err)->message, (char *) msgs->pdata[i]);
      g_free ((*err)->message);
      (*err)->message = m;
    }
    return NULL;
  }
  json_builder_set_member_name (b, "plugin_messages");
  json_builder_begin_array (b);
  for (guint i = 0; i < msgs->len; i++)
    json_builder_add_string_value (b, msgs->pdata[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
  return builder_to_json (b);
}

/* vmsnap.max-chain-depth: a create must not make a disk's backing chain
 * deeper than this.  Only backends whose create adds a layer
 * (VMSNAP_CAP_CREATE_ADDS_LAYER) grow a chain; its depth now is what
 * inspection found (the active image and every backing file). */
static gboolean
check_chain_depth (vmsnap_engine *e, const vmsnap_plan *plan, GError **err)
{
  const vmsnap_config *cfg = e->ctx->config;
  gint64 max = vmsnap_option_get_int (cfg, "vmsnap.max-chain-depth");

  if (max <= 0)
    return TRUE;
  for (guint i = 0; i < e->dom->disks->len; i++) {
    vmsnap_disk_priv *d = e->dom->disks->pdata[i];
    const char *be = vmsnap_plan_backend (plan, d->pub.target);
    const vmsnap_module *m = be ? vmsnap_find_module (e->ctx, be) : NULL;
    gint64 depth = (gint64) d->pub.n_chain;

    if (m == NULL || !(m->be.caps & VMSNAP_CAP_CREATE_ADDS_LAYER) || depth + 1 <= max)
      continue;
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: its backing chain is %" G_GINT64_FORMAT " image%s deep "
                 "and a snapshot by %s would make it %" G_GINT64_FORMAT ", more "
                 "than the limit of %" G_GINT64_FORMAT " (%s); consolidate it "
                 "first (vmsnap merge %s --disk %s --max-depth %" G_GINT64_FORMAT
                 ", or delete snapshots) or raise vmsnap.max-chain-depth; "
                 "nothing was changed", d->pub.target, depth, depth == 1 ? "" : "s",
                 be, depth + 1, max,
                 vmsnap_option_origin (cfg, "vmsnap.max-chain-depth"),
                 e->spec, d->pub.target, MAX (max - 1, 1));
    return FALSE;
  }
  return TRUE;
}

char *
vmsnap_engine_create (vmsnap_engine *e, const char *name,
                      const vmsnap_create_options *opts, GError **err)
{
  const char *description = opts ? opts->description : NULL;
  const char *mode;
  g_autoptr (vmsnap_plan) plan = NULL;
  g_autoptr (vmsnap_journal) j = NULL;
  g_autoptr (GPtrArray) targets = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *id = NULL, *created = NULL, *xml = NULL;
  vmsnap_plan_options po = { 0 };

  if (!vmsnap_valid_snapshot_name (name, err) || !check_state (e, err))
    return NULL;
  po.memory = opts && opts->memory;
  po.overrides = opts ? opts->overrides : NULL;
  if (vmsnap_catalog_find (e->cat, name)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                 "domain %s already has a snapshot named '%s'", e->dom->name, name);
    return NULL;
  }
  plan = vmsnap_plan_new (e->ctx, e->dom, &po, err);
  if (plan == NULL)
    return NULL;
  if (!vmsnap_plan_possible (plan)) {
    g_propagate_error (err, vmsnap_plan_error (plan));
    return NULL;
  }
  mode = vmsnap_plan_mode (plan);
  if (is_online (e)) {
    if (!strcmp (mode, "internal") && !po.memory) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                   "domain %s is running: internal snapshots of a running "
                   "domain are taken by libvirt together with its memory "
                   "state; add --memory, or let the disks get external "
                   "overlays (drop --backend ...=qcow2-internal)", e->dom->name);
      return NULL;
    }
    /* external or mixed with --memory: libvirt saves the memory state
     * into a file inside vmsnap's pause window (memstate.c, issue 7). */
  }
  if (is_online (e) && strcmp (mode, "internal") != 0)
    for (guint i = 0; i < e->dom->disks->len; i++) {
      vmsnap_disk_priv *d = e->dom->disks->pdata[i];
      const char *be = vmsnap_plan_backend (plan, d->pub.target);
      const vmsnap_module *m = be ? vmsnap_find_module (e->ctx, be) : NULL;
      if (m && (m->be.caps & VMSNAP_CAP_VM_INTERNAL)) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                     "domain %s is running: disk %s would get an internal "
                     "snapshot, which libvirt takes only for every disk at "
                     "once with the memory state; use --memory with all "
                     "disks on qcow2-internal, or another backend for %s",
                     e->dom->name, d->pub.target, d->pub.target);
        return NULL;
      }
    }
  if (!check_chain_depth (e, plan, err))
    return NULL;
  id = g_strdup_printf ("%u", e->cat->next_id);
  j = begin (e, OP_CREATE, name, id);
  {
    /* Issue 7: a memory file and an NVRAM copy need the pause window. */
    g_autofree char *nvram = NULL;
    gboolean memfile = is_online (e) && po.memory && strcmp (mode, "internal") != 0;
    if (e->dom->path)
      g_file_get_contents (e->dom->path, &xml, NULL, NULL);
    else
      xml = virDomainGetXMLDesc (e->dom->dom, VIR_DOMAIN_XML_INACTIVE);
    /* libvirt's internal snapshot with memory keeps a qcow2 NVRAM itself
     * (QEMU refuses it with a raw one, and so does the planner). */
    if (!(is_online (e) && !strcmp (mode, "internal")))
      nvram = vmsnap_nvram_path (xml);
    if (nvram == NULL && is_online (e) && strcmp (mode, "internal") != 0) {
      /* firmware='efi': libvirt may name the NVRAM in the live definition only */
      char *live = virDomainGetXMLDesc (e->dom->dom, 0);
      nvram = vmsnap_nvram_path (live);
      free (live);
    }
    if (is_online (e))
      g_key_file_set_string (j->kf, "op", "online",
                             !strcmp (mode, "internal") ? "internal"
                             : !strcmp (mode, "external") && !vmsnap_plan_needs_pause (plan)
                               && !memfile && nvram == NULL
                             ? "transaction" : "pause");
    if (memfile) {
      g_autofree char *f = g_strdup_printf ("memory-%s.save", id);
      g_key_file_set_string (j->kf, "op", "memory", f);
    }
    if (nvram) {
      g_autofree char *f = g_strdup_printf ("nvram-%s.fd", id);
      g_key_file_set_string (j->kf, "op", "nvram", f);
      g_key_file_set_string (j->kf, "op", "nvram_source", nvram);
      if (!g_file_test (nvram, G_FILE_TEST_IS_REGULAR)) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "domain %s: its UEFI NVRAM file %s is missing, so the "
                     "snapshot cannot capture it; restore the file (or start "
                     "the domain once, which creates it from the template): "
                     "nothing was changed", e->dom->name, nvram);
        return NULL;
      }
    }
  }
  for (guint i = 0; i < e->dom->disks->len; i++) {
    vmsnap_disk_priv *d = e->dom->disks->pdata[i];
    const char *be = vmsnap_plan_backend (plan, d->pub.target);
    g_autofree char *key = g_strconcat ("backend.", d->pub.target, NULL);
    if (be == NULL)
      continue;   /* excluded (cdrom, read-only, ...) */
    g_ptr_array_add (targets, g_strdup (d->pub.target));
    g_key_file_set_string (j->kf, "op", key, be);
  }
  if (targets->len == 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "domain %s has no disk to snapshot (vmsnap plan says why)", e->dom->name);
    return NULL;
  }
  set_disks (j, targets);
  created = g_strdup_printf ("%" G_GINT64_FORMAT, g_get_real_time () / G_USEC_PER_SEC);
  g_key_file_set_string (j->kf, "op", "created", created);
  g_key_file_set_string (j->kf, "op", "parent", e->cat->current ? e->cat->current : "");
  /* Not written yet: with the first record a step needs on disk. */
  vmsnap_journal_put (j, "op", "description", description ? description : "");
  vmsnap_journal_put (j, "op", "domain_xml", xml ? xml : "");
  return finish (e, j, name, err);
}

/* The central guard before an operation starts: a catalog record of
 * disk TARGET must not name storage another disk of the domain uses (a
 * damaged or planted catalog); acting on it would write or remove that
 * disk's data.  Nothing is journaled yet, so a refusal changes nothing. */
static gboolean
guard_record (vmsnap_engine *e, const char *target, const char *locator,
              const char *snapname, GError **err)
{
  unsigned int what = 0;
  g_autofree char *storage = vmsnap_guard_locator_storage (locator, &what);
  gboolean active = FALSE;
  const char *other;

  if (e->guard == NULL)
    e->guard = vmsnap_guard_new (e->dom);
  other = vmsnap_guard_other_user (e->guard, target, storage, &active);
  if (other == NULL)
    return TRUE;
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "%s%s%sthe catalog's record of disk %s names %s, which is %s "
               "disk %s; acting on it would change that disk's data, so "
               "nothing was changed: run `vmsnap check` to compare the "
               "catalog with storage",
               snapname ? "snapshot " : "", snapname ? snapname : "",
               snapname ? ": " : "", target, storage,
               active ? "the active image of" : "in the backing chain of", other);
  return FALSE;
}

static cat_snap *
find_named (vmsnap_engine *e, const char *name, GError **err)
{
  cat_snap *s;

  if (!vmsnap_valid_snapshot_name (name, err))
    return NULL;
  s = vmsnap_catalog_find (e->cat, name);
  if (s == NULL)
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain %s has no snapshot named '%s' (vmsnap list %s shows them)",
                 e->dom->name, name, e->spec);
  return s;
}

static const char *const after_names[] = { "default", "running", "paused", "stopped" };

static char *
per_snapshot_op (vmsnap_engine *e, op_kind kind, const char *name,
                 vmsnap_after_revert after, GError **err)
{
  cat_snap *s;
  g_autoptr (vmsnap_journal) j = NULL;
  g_autoptr (GPtrArray) targets = g_ptr_array_new_with_free_func (g_free);
  gboolean internal = FALSE;

  if (!check_state (e, err) || (s = find_named (e, name, err)) == NULL)
    return NULL;
  if (after != VMSNAP_AFTER_REVERT_DEFAULT && e->dom->dom == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                 "%s is a domain XML file, which vmsnap cannot start or stop: "
                 "--running, --paused and --stopped need a libvirt domain",
                 e->spec);
    return NULL;
  }
  if (kind == OP_REVERT && s->lost->len > 0) {
    g_autofree char *lost = NULL;
    g_ptr_array_add (s->lost, NULL);
    lost = g_strjoinv (", ", (char **) s->lost->pdata);
    g_ptr_array_remove_index (s->lost, s->lost->len - 1);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "snapshot %s is partial: the data of disk(s) %s was found gone "
                 "(`vmsnap check --repair` dropped it), so a revert would put "
                 "the domain's disks at different points in time; nothing was "
                 "changed: revert to another snapshot, or remove this one with "
                 "`vmsnap delete %s %s`", name, lost, e->spec, name);
    return NULL;
  }
  if (kind == OP_REVERT) {
    /* A disk the snapshot does not hold (added to the domain after it) is
     * left as it is: say so. */
    for (guint i = 0; i < e->dom->disks->len; i++) {
      const vmsnap_disk *d = &((vmsnap_disk_priv *) e->dom->disks->pdata[i])->pub;
      gboolean held = FALSE;
      if (d->device != VMSNAP_DEVICE_DISK || d->readonly || d->shareable || d->transient
          || (d->snapshot_mode && !strcmp (d->snapshot_mode, "no")))
        continue;
      for (guint k = 0; k < s->disks->len && !held; k++)
        held = strcmp (((cat_disk *) s->disks->pdata[k])->target, d->target) == 0;
      if (!held)
        fprintf (stderr, "vmsnap: warning: snapshot %s does not hold disk %s "
                 "(added to the domain after it): disk %s is left as it is\n",
                 name, d->target, d->target);
    }
  }
  j = begin (e, kind, name, s->id);
  for (guint k = 0; k < s->disks->len; k++) {
    cat_disk *d = s->disks->pdata[k];
    g_autofree char *bkey = g_strconcat ("backend.", d->target, NULL);
    g_autofree char *lkey = g_strconcat ("locator.", d->target, NULL);
    if (find_disk (e->dom, d->target) == NULL) {
      /* A disk removed from the domain since (issue 16 item 13).  Revert
       * refuses: bringing back the other disks alone would leave the VM's
       * disks at different points in time.  Delete goes on for the other
       * disks; this one's storage is left exactly as it is (nothing tells
       * what uses it now) and its record is kept as an unnamed point, which
       * `vmsnap merge` consolidates once the disk is back (so nothing is
       * orphaned); the report says so. */
      g_autofree char *key = g_strconcat ("left_behind.", d->target, NULL);
      if (kind == OP_REVERT) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                     "snapshot %s holds disk %s (%s %s), which domain %s no "
                     "longer has: reverting the other disks alone would "
                     "leave the VM's disks at different points in time, so "
                     "nothing was changed; put disk %s back into the domain "
                     "definition to revert to %s (vmsnap check %s lists "
                     "every snapshot this affects)", name, d->target,
                     d->backend, d->locator, e->dom->name, d->target, name,
                     e->spec);
        return NULL;
      }
      g_key_file_set_string (j->kf, "op", key, d->locator);
      continue;
    }
    if (module_for (e, d->backend, err) == NULL
        || !guard_record (e, d->target, d->locator, name, err))
      return NULL;
    if (kind == OP_DELETE
        && !check_online_cap (e, d->backend, d->target, VMSNAP_CAP_DELETE_ONLINE,
                              "delete snapshots", err))
      return NULL;
    if (vmsnap_find_module (e->ctx, d->backend)->be.caps & VMSNAP_CAP_VM_INTERNAL)
      internal = TRUE;
    g_ptr_array_add (targets, g_strdup (d->target));
    g_key_file_set_string (j->kf, "op", bkey, d->backend);
    g_key_file_set_string (j->kf, "op", lkey, d->locator);
  }
  set_disks (j, targets);
  if (s->libvirt_xml)
    vmsnap_journal_put (j, "op", "libvirt_xml", s->libvirt_xml);
  if (s->memory)
    g_key_file_set_string (j->kf, "op", "memory", s->memory);
  if (s->nvram) {
    g_key_file_set_string (j->kf, "op", "nvram", s->nvram);
    g_key_file_set_string (j->kf, "op", "nvram_source", s->nvram_source);
  }
  if (kind == OP_REVERT && s->memory && e->dom->dom) {
    /* Issue 7: stop QEMU, revert the disks with the backends, then restore
     * the memory file (libvirt 9 cannot revert external snapshots).  By
     * default the domain runs again, as after an internal one. */
    g_key_file_set_string (j->kf, "op", "after", after_names[after]);
    if (is_online (e)) {
      if (virDomainIsPersistent (e->dom->dom) != 1) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                     "domain %s is transient: a revert stops QEMU, and a "
                     "transient domain would be gone; define it (virsh "
                     "define) first", e->dom->name);
        return NULL;
      }
      g_key_file_set_string (j->kf, "op", "online", "restart");
      g_key_file_set_string (j->kf, "op", "was",
                             e->dom->state == VMSNAP_STATE_PAUSED ? "paused" : "running");
    }
    g_key_file_set_string (j->kf, "op", "start",
                           after == VMSNAP_AFTER_REVERT_STOPPED ? ""
                           : after == VMSNAP_AFTER_REVERT_PAUSED ? "paused" : "running");
  } else if (kind == OP_REVERT) {
    g_key_file_set_string (j->kf, "op", "after", after_names[after]);
    if (s->libvirt_xml && e->dom->dom) {
      /* Memory and disks come back through libvirt, running or not. */
      g_key_file_set_string (j->kf, "op", "online", "internal");
    } else if (is_online (e)) {
      const char *was = e->dom->state == VMSNAP_STATE_PAUSED ? "paused" : "running";
      if (virDomainIsPersistent (e->dom->dom) != 1) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                     "domain %s is transient: a revert stops QEMU, and a "
                     "transient domain would be gone; define it (virsh "
                     "define) first", e->dom->name);
        return NULL;
      }
      g_key_file_set_string (j->kf, "op", "online", "restart");
      g_key_file_set_string (j->kf, "op", "was", was);
      g_key_file_set_string (j->kf, "op", "start",
                             after == VMSNAP_AFTER_REVERT_DEFAULT ? was
                             : after == VMSNAP_AFTER_REVERT_STOPPED ? ""
                             : after_names[after]);
    } else if (after == VMSNAP_AFTER_REVERT_RUNNING || after == VMSNAP_AFTER_REVERT_PAUSED)
      g_key_file_set_string (j->kf, "op", "start", after_names[after]);
  } else if (kind == OP_DELETE && internal && is_online (e))
    g_key_file_set_string (j->kf, "op", "online", "internal");
  return finish (e, j, name, err);   /* written with the first record needed */
}

char *
vmsnap_engine_revert (vmsnap_engine *e, const char *name,
                      vmsnap_after_revert after, GError **err)
{
  if ((unsigned) after >= G_N_ELEMENTS (after_names)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "invalid after-revert state");
    return NULL;
  }
  return per_snapshot_op (e, OP_REVERT, name, after, err);
}

static gboolean
has_hidden (vmsnap_engine *e)
{
  for (guint i = 0; i < e->cat->snaps->len; i++)
    if (((cat_snap *) e->cat->snaps->pdata[i])->hidden)
      return TRUE;
  return FALSE;
}

char *
vmsnap_engine_merge (vmsnap_engine *e, const char *disk, unsigned int max_depth,
                     GError **err)
{
  g_autoptr (vmsnap_journal) j = NULL;
  g_autoptr (GPtrArray) targets = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *md = g_strdup_printf ("%u", max_depth);

  if (!check_state (e, err))
    return NULL;
  if (disk && find_disk (e->dom, disk) == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "domain %s has no disk '%s'",
                 e->dom->name, disk);
    return NULL;
  }
  j = begin (e, OP_MERGE, NULL, NULL);
  g_key_file_set_string (j->kf, "op", "max_depth", md);
  for (guint i = 0; i < e->cat->snaps->len; i++) {
    cat_snap *s = e->cat->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      g_autofree char *bkey = g_strconcat ("backend.", d->target, NULL);
      if ((disk && strcmp (disk, d->target) != 0) || find_disk (e->dom, d->target) == NULL)
        continue;
      /* A merge may act on any point of the disk. */
      if (!guard_record (e, d->target, d->locator, s->hidden ? NULL : s->name, err))
        return NULL;
      if (g_hash_table_contains (seen, d->target))
        continue;
      g_hash_table_add (seen, d->target);
      if (!check_online_cap (e, d->backend, d->target, VMSNAP_CAP_MERGE_ONLINE,
                             "merge", err))
        return NULL;
      g_ptr_array_add (targets, g_strdup (d->target));
      g_key_file_set_string (j->kf, "op", bkey, d->backend);
    }
  }
  set_disks (j, targets);
  return finish (e, j, NULL, err);   /* written with the first record needed */
}

char *
vmsnap_engine_delete (vmsnap_engine *e, const char *name, GError **err)
{
  g_autofree char *report = per_snapshot_op (e, OP_DELETE, name,
                                             VMSNAP_AFTER_REVERT_DEFAULT, err);
  g_autoptr (GError) local = NULL;
  g_autofree char *merged = NULL;

  if (report == NULL)
    return NULL;
  /* A kept (shared) point that is now down to one dependent is merged at
   * once; one that still has several waits for `vmsnap merge`. */
  if (!has_hidden (e))
    return g_steal_pointer (&report);
  /* The merge plans from the chains as the delete left them: read again
   * unless the discard step did so already (nothing changed since). */
  if (e->stale && !refresh_domain (e, &local))
    return g_steal_pointer (&report);
  merged = vmsnap_engine_merge (e, NULL, 0, &local);
  if (merged == NULL) {
    fprintf (stderr, "vmsnap: warning: %s was deleted, but consolidating what "
             "it leaves failed: %s\n", name, local->message);
    return g_steal_pointer (&report);
  }
  {
    /* Append the merge report to the delete report. */
    g_autoptr (JsonParser) p1 = json_parser_new ();
    g_autoptr (JsonParser) p2 = json_parser_new ();
    JsonObject *o;
    g_autoptr (JsonGenerator) g = json_generator_new ();
    if (!json_parser_load_from_data (p1, report, -1, NULL)
        || !json_parser_load_from_data (p2, merged, -1, NULL))
      return g_steal_pointer (&report);
    o = json_node_get_object (json_parser_get_root (p1));
    json_object_set_member (o, "then_merged", json_node_copy (json_parser_get_root (p2)));
    json_generator_set_root (g, json_parser_get_root (p1));
    json_generator_set_pretty (g, TRUE);
    json_generator_set_indent (g, 2);
    return json_generator_to_data (g, NULL);
  }
}

/* ---------------------------------------------------------------- views */

static void
snap_json (vmsnap_engine *e, JsonBuilder *b, cat_snap *s)
{
  cat_snap *par = s->parent ? vmsnap_catalog_visible (e->cat, s->parent) : NULL;
  cat_snap *cur = e->cat->current ? vmsnap_catalog_visible (e->cat, e->cat->current) : NULL;
  g_autofree char *t = iso_time (s->created);

  json_builder_begin_object (b);
  jstr (b, "name", s->name);
  jstr (b, "parent", par ? par->name : NULL);
  jstr (b, "created", t);
  jstr (b, "description", s->description);
  json_builder_set_member_name (b, "current");
  json_builder_add_boolean_value (b, cur == s);
  if (s->memory) {
    g_autofree char *p = g_build_filename (e->state_dir, s->memory, NULL);
    GStatBuf st;
    jstr (b, "memory", p);
    json_builder_set_member_name (b, "memory_size");
    json_builder_add_int_value (b, g_stat (p, &st) == 0 ? (gint64) st.st_size : 0);
  }
  if (s->nvram) {
    g_autofree char *p = g_build_filename (e->state_dir, s->nvram, NULL);
    jstr (b, "nvram", p);
    jstr (b, "nvram_source", s->nvram_source);
  }
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint k = 0; k < s->disks->len; k++) {
    cat_disk *d = s->disks->pdata[k];
    json_builder_begin_object (b);
    jstr (b, "target", d->target);
    jstr (b, "backend", d->backend);
    jstr (b, "locator", d->locator);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  if (s->lost->len > 0) {
    /* A partial snapshot (check --repair found these disks' data gone). */
    json_builder_set_member_name (b, "lost_disks");
    json_builder_begin_array (b);
    for (guint k = 0; k < s->lost->len; k++)
      json_builder_add_string_value (b, s->lost->pdata[k]);
    json_builder_end_array (b);
  }
  json_builder_end_object (b);
}

char *
vmsnap_engine_list (vmsnap_engine *e, GError **err)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *jpath = journal_path (e);
  g_autoptr (GError) jerr = NULL;
  g_autoptr (vmsnap_journal) j = vmsnap_journal_load (jpath, &jerr);
  cat_snap *cur = e->cat->current ? vmsnap_catalog_visible (e->cat, e->cat->current) : NULL;
  guint hidden = 0;

  if (j && (!vmsnap_journal_check (j, &jerr)
            || !vmsnap_journal_catalog_check (j, e->cat, &jerr)
            || !paths_ok (e, j, &jerr)))
    g_clear_pointer (&j, vmsnap_journal_free);

  json_builder_begin_object (b);
  jstr (b, "domain", e->dom->name);
  jstr (b, "uuid", e->dom->uuid);
  jstr (b, "current", cur ? cur->name : NULL);
  json_builder_set_member_name (b, "pending");
  if (j) {
    json_builder_begin_object (b);
    jstr (b, "operation", jop (j, "kind"));
    jstr (b, "snapshot", jop (j, "name"));
    jstr (b, "error", jop (j, "failed"));
    json_builder_end_object (b);
  } else if (jerr) {
    /* A journal recovery refuses is pending too, and says why. */
    json_builder_begin_object (b);
    jstr (b, "operation", NULL);
    jstr (b, "snapshot", NULL);
    jstr (b, "error", jerr->message);
    jstr (b, "journal", jpath);
    json_builder_set_member_name (b, "damaged");
    json_builder_add_boolean_value (b, TRUE);
    json_builder_end_object (b);
  } else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "snapshots");
  json_builder_begin_array (b);
  for (guint i = 0; i < e->cat->snaps->len; i++) {
    cat_snap *s = e->cat->snaps->pdata[i];
    if (s->hidden)
      hidden++;
    else
      snap_json (e, b, s);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "kept_unnamed_points");
  json_builder_add_int_value (b, hidden);
  json_builder_end_object (b);
  return builder_to_json (b);
}

/* Which snapshots (names, or "(unnamed)") hold LOCATOR on TARGET. */
static void
holders (vmsnap_engine *e, const char *target, const char *locator, JsonBuilder *b)
{
  json_builder_begin_array (b);
  for (guint i = 0; i < e->cat->snaps->len; i++) {
    cat_snap *s = e->cat->snaps->pdata[i];
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      if (strcmp (d->target, target) == 0 && strcmp (d->locator, locator) == 0)
        json_builder_add_string_value (b, s->hidden ? "(unnamed, kept)" : s->name);
    }
  }
  json_builder_end_array (b);
}

/* Locators of file backends are FORMAT:PATH; others are shown as they are. */
static gboolean
split_locator (const char *loc, char **fmt, char **path)
{
  const char *c = strchr (loc, ':');

  if (c == NULL || c[1] != '/')
    return FALSE;
  *fmt = g_strndup (loc, c - loc);
  *path = g_strdup (c + 1);
  /* qcow2-internal: "qcow2:/path#TAG" names an entry inside the file. */
  if (!g_file_test (*path, G_FILE_TEST_EXISTS)) {
    char *hash = strrchr (*path, '#');
    if (hash && strchr (hash, '/') == NULL)
      *hash = '\0';
  }
  return TRUE;
}

static void
file_json (vmsnap_engine *e, JsonBuilder *b, const char *target, const char *path,
           const char *fmt, const char *locator, gboolean active)
{
  GStatBuf st;
  g_autofree char *backing = NULL, *bfmt = NULL;
  guint64 vsize = 0;
  g_autoptr (GError) err = NULL;

  json_builder_begin_object (b);
  jstr (b, "path", path);
  jstr (b, "format", fmt);
  jstr (b, "role", active ? "active" : "snapshot");
  if (g_stat (path, &st) == 0) {
    json_builder_set_member_name (b, "size");
    json_builder_add_int_value (b, (gint64) st.st_size);
    json_builder_set_member_name (b, "allocated");
    json_builder_add_int_value (b, (gint64) st.st_blocks * 512);
  } else
    jstr (b, "error", g_strerror (errno));
  if (vmsnap_image_info (path, fmt, &vsize, &backing, &bfmt, &err)) {
    json_builder_set_member_name (b, "virtual_size");
    json_builder_add_int_value (b, (gint64) vsize);
    jstr (b, "backing", backing);
    jstr (b, "backing_format", bfmt);
  } else
    jstr (b, "error", err->message);
  json_builder_set_member_name (b, "holds");
  if (locator)
    holders (e, target, locator, b);
  else {
    json_builder_begin_array (b);
    json_builder_end_array (b);
  }
  json_builder_end_object (b);
}

char *
vmsnap_engine_chain (vmsnap_engine *e, const char *disk, GError **err)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  /* The one inventory (read under the lock); each file's own details
   * below (vmsnap_image_info) are read once per file. */
  vmsnap_domain_inspect (e->dom);

  if (disk && find_disk (e->dom, disk) == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "domain %s has no disk '%s'",
                 e->dom->name, disk);
    return NULL;
  }
  json_builder_begin_object (b);
  jstr (b, "domain", e->dom->name);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < e->dom->disks->len; i++) {
    vmsnap_disk_priv *d = e->dom->disks->pdata[i];
    g_autoptr (GPtrArray) locs = vmsnap_catalog_locators (e->cat, d->pub.target);
    g_autoptr (GHashTable) shown = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

    if (disk && strcmp (disk, d->pub.target) != 0)
      continue;
    if (locs->len == 0 && d->pub.source == NULL)
      continue;
    json_builder_begin_object (b);
    jstr (b, "target", d->pub.target);
    jstr (b, "active", d->pub.source);
    json_builder_set_member_name (b, "files");
    json_builder_begin_array (b);
    /* The active chain first, then every other point the catalog holds. */
    for (size_t k = 0; k < d->pub.n_chain; k++) {
      const vmsnap_layer *l = d->pub.chain[k];
      g_autofree char *loc = g_strdup_printf ("%s:%s", l->format, l->path);
      if (l->is_network)
        continue;
      g_hash_table_add (shown, g_strdup (l->path));
      file_json (e, b, d->pub.target, l->path, l->format, loc, k == 0);
    }
    for (guint k = 0; k < locs->len; k++) {
      g_autofree char *fmt = NULL, *path = NULL;
      if (!split_locator (locs->pdata[k], &fmt, &path)) {
        json_builder_begin_object (b);
        jstr (b, "locator", locs->pdata[k]);
        json_builder_set_member_name (b, "holds");
        holders (e, d->pub.target, locs->pdata[k], b);
        json_builder_end_object (b);
        continue;
      }
      if (g_hash_table_contains (shown, path))
        continue;
      g_hash_table_add (shown, g_strdup (path));
      file_json (e, b, d->pub.target, path, fmt, locs->pdata[k], FALSE);
    }
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return builder_to_json (b);
}
