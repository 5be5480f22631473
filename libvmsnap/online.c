/* libvirt glue for running domains: block jobs waited on through libvirt's
 * events, the one-transaction external snapshot, libvirt's internal
 * snapshots with memory (whose metadata vmsnap owns), stop and start.
 *
 * Events: the default libvirt event implementation is registered once,
 * before the first connection is opened (vmsnap_libvirt_events_init), and
 * run in the calling thread only while vmsnap waits for a block job.  No
 * thread is left behind. */
#include <config.h>

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <json-glib/json-glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "internal.h"

void
vmsnap_libvirt_events_init (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once)) {
    virEventRegisterDefaultImpl ();
    g_once_init_leave (&once, 1);
  }
}

static const char *
lv_err (void)
{
  const char *m = virGetLastErrorMessage ();
  return m ? m : "unknown libvirt error";
}

/* ------------------------------------------------------ live chain */

/* The chain libvirt reports for disk TARGET of the running domain: index 0
 * the active image, then its backing files (file or block paths). */
GPtrArray *
vmsnap_live_chain (virDomainPtr dom, const char *target, GError **err)
{
  char *xml = virDomainGetXMLDesc (dom, 0);
  g_autoptr (GPtrArray) chain = g_ptr_array_new_with_free_func (g_free);
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;
  xmlXPathObjectPtr o;
  g_autofree char *expr = NULL;

  if (xml == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot read the live definition of the domain: %s", lv_err ());
    return NULL;
  }
  doc = xmlReadMemory (xml, (int) strlen (xml), "live.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  free (xml);
  if (doc == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "libvirt returned a live definition that is not XML");
    return NULL;
  }
  ctx = xmlXPathNewContext (doc);
  expr = g_strdup_printf ("/domain/devices/disk[target/@dev='%s']", target);
  o = xmlXPathEvalExpression (BAD_CAST expr, ctx);
  if (o && o->nodesetval && o->nodesetval->nodeNr == 1) {
    xmlNodePtr n = o->nodesetval->nodeTab[0];
    /* disk/source, then backingStore/source, backingStore/backingStore... */
    while (n) {
      xmlNodePtr src = NULL, next = NULL;
      for (xmlNodePtr k = n->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE)
          continue;
        if (xmlStrEqual (k->name, BAD_CAST "source"))
          src = k;
        else if (xmlStrEqual (k->name, BAD_CAST "backingStore"))
          next = k;
      }
      if (src == NULL)
        break;
      {
        xmlChar *p = xmlGetProp (src, BAD_CAST "file");
        if (p == NULL)
          p = xmlGetProp (src, BAD_CAST "dev");
        if (p == NULL)
          break;
        g_ptr_array_add (chain, g_strdup ((const char *) p));
        xmlFree (p);
      }
      n = next;
    }
  }
  xmlXPathFreeObject (o);
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  if (chain->len == 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "the running domain has no disk %s with a local source", target);
    return NULL;
  }
  return g_steal_pointer (&chain);
}

static gboolean
same_file (const char *a, const char *b)
{
  GStatBuf sa, sb;

  if (a == NULL || b == NULL)
    return a == b;
  if (strcmp (a, b) == 0)
    return TRUE;
  return g_stat (a, &sa) == 0 && g_stat (b, &sb) == 0
         && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static gint
chain_index (GPtrArray *chain, const char *path)
{
  for (guint i = 0; i < chain->len; i++)
    if (same_file (chain->pdata[i], path))
      return (gint) i;
  return -1;
}

/* ------------------------------------------------------- block jobs */

typedef struct {
  const char *target;
  virDomainPtr dom;
  vmsnap_op *op;
  gboolean show;
  int status;          /* last event: -1 none yet */
  gboolean ended;      /* completed, failed or cancelled */
  gboolean ready;      /* active commit: ready to pivot */
  gboolean gone;       /* the liveness check found no job any more */
} bj_wait;

static void
bj_event (virConnectPtr conn G_GNUC_UNUSED, virDomainPtr dom G_GNUC_UNUSED,
          const char *disk, int type G_GNUC_UNUSED, int status, void *opaque)
{
  bj_wait *w = opaque;

  if (disk == NULL || strcmp (disk, w->target) != 0)
    return;
  w->status = status;
  if (status == VIR_DOMAIN_BLOCK_JOB_READY)
    w->ready = TRUE;
  else
    w->ended = TRUE;
}

/* Every second: progress on a terminal, and a liveness check (a job that
 * vanished without an event we saw is over). */
static void
bj_tick (int timer G_GNUC_UNUSED, void *opaque)
{
  bj_wait *w = opaque;
  virDomainBlockJobInfo info;
  int r = virDomainGetBlockJobInfo (w->dom, w->target, &info, 0);

  if (r == 0)
    w->gone = TRUE;
  else if (r > 0 && w->show && info.end > 0)
    vmsnap_op_progress (w->op, info.cur, info.end);
}

static const char *
job_name (vmsnap_block_job kind)
{
  switch (kind) {
  case VMSNAP_BLOCK_COMMIT: return "block commit";
  case VMSNAP_BLOCK_ACTIVE_COMMIT: return "active block commit";
  case VMSNAP_BLOCK_PULL: return "block pull";
  }
  return "block job";
}

/* Is the job's effect visible in the live chain? */
static gboolean
job_effect_done (GPtrArray *chain, vmsnap_block_job kind, const char *top,
                 const char *base)
{
  switch (kind) {
  case VMSNAP_BLOCK_ACTIVE_COMMIT:
    return same_file (chain->pdata[0], base);
  case VMSNAP_BLOCK_COMMIT:
    return chain_index (chain, top) < 0;
  case VMSNAP_BLOCK_PULL:
    /* active's backing is now BASE (or nothing) */
    if (chain->len < 2)
      return base == NULL;
    return base != NULL && same_file (chain->pdata[1], base);
  }
  return FALSE;
}

/* Run the events until W says the job ended or became ready. */
static void
bj_loop (bj_wait *w, gboolean until_ready)
{
  while (!w->ended && !w->gone && !(until_ready && w->ready))
    if (virEventRunDefaultImpl () < 0)
      break;
}

gboolean
vmsnap_op_block_job (vmsnap_op *op, vmsnap_block_job kind, const char *top,
                     const char *base, GError **err)
{
  const char *target = op->group + strlen ("disk.");
  virConnectPtr conn = op->conn;
  virDomainPtr dom = NULL;
  g_autoptr (GPtrArray) chain = NULL;
  bj_wait w = { .target = target, .op = op, .status = -1 };
  int cb = -1, timer = -1, r;
  virDomainBlockJobInfo info;
  gboolean ok = FALSE;
  const char *what = job_name (kind);

  if (conn == NULL || !op->online) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s: a %s needs a running libvirt domain (internal error)",
                 target, what);
    return FALSE;
  }
  /* The central guard: a commit writes BASE, a pull the active image. */
  if (!vmsnap_op_guard (op, kind == VMSNAP_BLOCK_PULL ? top : base,
                        VMSNAP_GUARD_WRITE, err))
    return FALSE;
  dom = virDomainLookupByUUIDString (conn, op->domain_uuid);
  if (dom == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s is gone: %s", op->domain_name, lv_err ());
    return FALSE;
  }
  w.dom = dom;
  w.show = isatty (STDERR_FILENO) && !op->quiet;
  chain = vmsnap_live_chain (dom, target, err);
  if (chain == NULL)
    goto out;

  /* Listen before anything starts: a short job ends before we could
   * register afterwards. */
  cb = virConnectDomainEventRegisterAny (conn, dom, VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                                         VIR_DOMAIN_EVENT_CALLBACK (bj_event),
                                         &w, NULL);
  if (cb < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s: cannot listen to libvirt's block job events: %s",
                 target, lv_err ());
    goto out;
  }
  timer = virEventAddTimeout (1000, bj_tick, &w, NULL);

  r = virDomainGetBlockJobInfo (dom, target, &info, 0);
  if (r > 0) {
    /* A job of an interrupted run of this very step is still going:
     * wait for it instead of starting another. */
    if (kind == VMSNAP_BLOCK_ACTIVE_COMMIT && info.cur == info.end && info.end > 0)
      w.ready = TRUE;
  } else if (job_effect_done (chain, kind, top, base)) {
    ok = TRUE;   /* done by an interrupted run of this step */
    goto out;
  } else {
    int rc;
    switch (kind) {
    case VMSNAP_BLOCK_COMMIT:
      rc = virDomainBlockCommit (dom, target, base, top, 0, 0);
      break;
    case VMSNAP_BLOCK_ACTIVE_COMMIT:
      rc = virDomainBlockCommit (dom, target, base, top, 0,
                                 VIR_DOMAIN_BLOCK_COMMIT_ACTIVE);
      break;
    case VMSNAP_BLOCK_PULL:
    default:
      rc = base ? virDomainBlockRebase (dom, target, base, 0, 0)
                : virDomainBlockPull (dom, target, 0, 0);
      break;
    }
    if (rc < 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: libvirt refused the %s of %s into %s: %s", target,
                   what, kind == VMSNAP_BLOCK_PULL && base ? base : top,
                   kind == VMSNAP_BLOCK_PULL ? top : base, lv_err ());
      goto out;
    }
  }

  if (kind == VMSNAP_BLOCK_ACTIVE_COMMIT) {
    bj_loop (&w, TRUE);
    if (w.ready && !w.ended) {
      if (virDomainBlockJobAbort (dom, target, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) < 0) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                     "disk %s: switching the running VM from %s to %s (pivot) "
                     "failed: %s", target, top, base, lv_err ());
        goto out;
      }
      w.gone = FALSE;
      bj_loop (&w, FALSE);
    }
  } else
    bj_loop (&w, FALSE);
  if (w.show)
    fprintf (stderr, "\r\033[K");

  /* Judge by the chain, not only by the event. */
  g_ptr_array_unref (chain);
  chain = vmsnap_live_chain (dom, target, err);
  if (chain == NULL)
    goto out;
  if (job_effect_done (chain, kind, top, base)) {
    ok = TRUE;
    goto out;
  }
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
               "disk %s: the %s of %s %s %s %s (QEMU's reason is in the "
               "domain's log, e.g. no space left or a read-only target); the "
               "running VM still uses %s and its data is intact", target, what,
               kind == VMSNAP_BLOCK_PULL ? (base ? base : "the base") : top,
               kind == VMSNAP_BLOCK_PULL ? "into" : "into",
               kind == VMSNAP_BLOCK_PULL ? top : base,
               w.status == VIR_DOMAIN_BLOCK_JOB_CANCELED ? "was cancelled"
               : w.status == VIR_DOMAIN_BLOCK_JOB_FAILED ? "failed"
               : "did not finish", (const char *) chain->pdata[0]);
 out:
  if (timer >= 0)
    virEventRemoveTimeout (timer);
  if (cb >= 0)
    virConnectDomainEventDeregisterAny (conn, cb);
  virDomainFree (dom);
  return ok;
}

/* ------------------------------------------- one-transaction create */

/* SOURCES: target -> "format\nsource".  Switch the running domain to the
 * new active images of every disk in SOURCES in one libvirt snapshot call
 * (one QMP transaction): disk-only, atomic, reusing the overlays vmsnap
 * made, without libvirt metadata (vmsnap keeps its own).  Idempotent: if
 * the domain already runs on them, nothing is done. */
gboolean
vmsnap_online_switch (vmsnap_domain *dom, const char *snapname,
                      GHashTable *sources, GError **err)
{
  g_autoptr (GString) x = g_string_new ("<domainsnapshot>");
  g_autofree char *name_esc = g_markup_escape_text (snapname, -1);
  GHashTableIter it;
  gpointer k, v;
  guint n_done = 0;
  virDomainSnapshotPtr s;

  g_hash_table_iter_init (&it, sources);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    g_auto (GStrv) fs = g_strsplit (v, "\n", 2);
    g_autoptr (GPtrArray) chain = vmsnap_live_chain (dom->dom, k, err);
    if (chain == NULL)
      return FALSE;
    if (same_file (chain->pdata[0], fs[1]))
      n_done++;
  }
  if (n_done == g_hash_table_size (sources))
    return TRUE;
  if (n_done > 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s runs on some of the new overlays but not all: "
                 "it was changed by someone else meanwhile", dom->name);
    return FALSE;
  }
  g_string_append_printf (x, "<name>%s</name><description>vmsnap</description><disks>",
                          name_esc);
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    const char *v2 = g_hash_table_lookup (sources, d->pub.target);
    g_autofree char *t = g_markup_escape_text (d->pub.target, -1);
    if (v2 == NULL) {
      g_string_append_printf (x, "<disk name='%s' snapshot='no'/>", t);
      continue;
    }
    {
      g_auto (GStrv) fs = g_strsplit (v2, "\n", 2);
      g_autofree char *f = g_markup_escape_text (fs[0], -1);
      g_autofree char *p = g_markup_escape_text (fs[1], -1);
      g_string_append_printf (x, "<disk name='%s' snapshot='external' type='file'>"
                              "<driver type='%s'/><source file='%s'", t, f, p);
      if (d->pub.encryption_format) {
        /* The new overlay is encrypted with the disk's secret (the
         * backend made it so): libvirt opens it with the same one. */
        g_autofree char *ef = g_markup_escape_text (d->pub.encryption_format, -1);
        g_autofree char *su = g_markup_escape_text (d->pub.encryption_secret_uuid
                                                    ? d->pub.encryption_secret_uuid
                                                    : d->pub.encryption_secret_usage
                                                    ? d->pub.encryption_secret_usage : "", -1);
        g_string_append_printf (x, "><encryption format='%s'><secret "
                                "type='passphrase' %s='%s'/></encryption>"
                                "</source></disk>", ef,
                                d->pub.encryption_secret_uuid ? "uuid" : "usage", su);
      } else
        g_string_append (x, "/></disk>");
    }
  }
  g_string_append (x, "</disks></domainsnapshot>");
  s = virDomainSnapshotCreateXML (dom->dom, x->str,
                                  VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                                  | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                                  | VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                                  | VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT);
  if (s == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: libvirt's snapshot transaction failed (no disk "
                 "was switched): %s", dom->name, lv_err ());
    return FALSE;
  }
  virDomainSnapshotFree (s);
  return TRUE;
}

/* ---------------------------------- internal snapshots with memory */

/* Take libvirt's full-system internal snapshot TAG (memory included) of
 * the running domain, or find the one an interrupted run took; *XML: its
 * snapshot XML (what a later revert redefines). */
gboolean
vmsnap_online_internal_take (vmsnap_domain *dom, const char *tag, char **xml,
                             GError **err)
{
  virDomainSnapshotPtr s = virDomainSnapshotLookupByName (dom->dom, tag, 0);

  if (s) {
    /* An interrupted run's snapshot carries our description; anything
     * else of that name is someone else's. */
    char *x = virDomainSnapshotGetXMLDesc (s, 0);
    gboolean ours = x && strstr (x, "<description>vmsnap</description>") != NULL;
    free (x);
    if (!ours) {
      virDomainSnapshotFree (s);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: libvirt has a snapshot named '%s' that vmsnap "
                   "did not take; remove or rename it, then run vmsnap "
                   "recover", dom->name, tag);
      return FALSE;
    }
  }
  if (s == NULL) {
    g_autofree char *t = g_markup_escape_text (tag, -1);
    g_autofree char *x = g_strdup_printf ("<domainsnapshot><name>%s</name>"
                                          "<description>vmsnap</description>"
                                          "<memory snapshot='internal'/>"
                                          "</domainsnapshot>", t);
    s = virDomainSnapshotCreateXML (dom->dom, x, 0);
    if (s == NULL) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: libvirt's internal snapshot with memory failed "
                   "(nothing was taken): %s", dom->name, lv_err ());
      return FALSE;
    }
  }
  *xml = virDomainSnapshotGetXMLDesc (s, VIR_DOMAIN_SNAPSHOT_XML_SECURE);
  virDomainSnapshotFree (s);
  if (*xml == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot read snapshot %s back from libvirt: %s",
                 dom->name, tag, lv_err ());
    return FALSE;
  }
  return TRUE;
}

/* Drop libvirt's metadata of TAG (the images keep the snapshot): vmsnap's
 * catalog owns it.  Absent metadata is success. */
gboolean
vmsnap_online_internal_forget (vmsnap_domain *dom, const char *tag, GError **err)
{
  virDomainSnapshotPtr s = virDomainSnapshotLookupByName (dom->dom, tag, 0);
  int r;

  if (s == NULL)
    return TRUE;
  r = virDomainSnapshotDelete (s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY);
  virDomainSnapshotFree (s);
  if (r < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot drop libvirt's metadata of snapshot %s: %s",
                 dom->name, tag, lv_err ());
    return FALSE;
  }
  return TRUE;
}

static virDomainSnapshotPtr
redefine (vmsnap_domain *dom, const char *tag, const char *xml, GError **err)
{
  virDomainSnapshotPtr s = virDomainSnapshotLookupByName (dom->dom, tag, 0);

  if (s)
    return s;
  s = virDomainSnapshotCreateXML (dom->dom, xml, VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE);
  if (s == NULL)
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: libvirt refused to take back snapshot %s from "
                 "vmsnap's catalog: %s", dom->name, tag, lv_err ());
  return s;
}

/* Revert through libvirt to the internal snapshot TAG whose XML the
 * catalog kept: memory and disks.  FLAGS: virDomainRevertToSnapshot's. */
gboolean
vmsnap_online_internal_revert (vmsnap_domain *dom, const char *tag,
                               const char *xml, unsigned int flags, GError **err)
{
  virDomainSnapshotPtr s = redefine (dom, tag, xml, err);
  int r;

  if (s == NULL)
    return FALSE;
  r = virDomainRevertToSnapshot (s, flags);
  virDomainSnapshotFree (s);
  if (r < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: libvirt could not revert to snapshot %s: %s",
                 dom->name, tag, lv_err ());
    vmsnap_online_internal_forget (dom, tag, NULL);
    return FALSE;
  }
  return vmsnap_online_internal_forget (dom, tag, err);
}

/* Does any active image of DISKS (targets) of the running domain still
 * hold internal snapshot TAG?  Unknown (unreadable) counts as yes. */
gboolean
vmsnap_online_tag_somewhere (vmsnap_domain *dom, const char *tag, const char *const *disks,
                             gboolean unknown)
{
  for (const char *const *d = disks; d && *d; d++) {
    g_autoptr (GPtrArray) chain = vmsnap_live_chain (dom->dom, *d, NULL);
    g_autoptr (vmsnap_image) img = NULL;

    /* The table read in process (issue 17), as -U would: QEMU holds it. */
    if (chain == NULL
        || (img = vmsnap_image_read (chain->pdata[0], "qcow2", NULL)) == NULL)
      return unknown;
    for (guint i = 0; i < img->snapshots->len; i++) {
      const vmsnap_image_snapshot *s = img->snapshots->pdata[i];
      if (g_strcmp0 (s->name, tag) == 0)
        return TRUE;
    }
  }
  return FALSE;
}

/* Delete internal snapshot TAG from every image of the running domain
 * through libvirt (QEMU holds the images).  XML: the snapshot's libvirt
 * XML, or NULL for one vmsnap took offline: then a disk-only description
 * of DISKS (targets) is given to libvirt. */
gboolean
vmsnap_online_internal_delete (vmsnap_domain *dom, const char *tag,
                               const char *xml, const char *const *disks,
                               GError **err)
{
  g_autofree char *made = NULL;
  virDomainSnapshotPtr s;
  int r;

  if (xml == NULL) {
    g_autoptr (GString) x = g_string_new ("<domainsnapshot>");
    g_autofree char *t = g_markup_escape_text (tag, -1);
    char *def = virDomainGetXMLDesc (dom->dom, VIR_DOMAIN_XML_INACTIVE
                                               | VIR_DOMAIN_XML_SECURE);
    if (def == NULL) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: cannot read its definition: %s", dom->name, lv_err ());
      return FALSE;
    }
    g_string_append_printf (x, "<name>%s</name><state>shutoff</state>"
                            "<creationTime>%" G_GINT64_FORMAT "</creationTime>"
                            "<memory snapshot='no'/><disks>", t,
                            g_get_real_time () / G_USEC_PER_SEC);
    for (const char *const *d = disks; d && *d; d++) {
      g_autofree char *de = g_markup_escape_text (*d, -1);
      g_string_append_printf (x, "<disk name='%s' snapshot='internal'/>", de);
    }
    g_string_append_printf (x, "</disks>%s</domainsnapshot>", def);
    free (def);
    made = g_string_free (g_steal_pointer (&x), FALSE);
    xml = made;
  }
  /* An interrupted run may have deleted it already. */
  if (!vmsnap_online_tag_somewhere (dom, tag, disks, TRUE))
    return vmsnap_online_internal_forget (dom, tag, err);
  s = redefine (dom, tag, xml, err);
  if (s == NULL)
    return FALSE;
  r = virDomainSnapshotDelete (s, 0);
  virDomainSnapshotFree (s);
  if (r < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: libvirt could not delete internal snapshot %s: %s",
                 dom->name, tag, lv_err ());
    vmsnap_online_internal_forget (dom, tag, NULL);
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------ stop, start */

gboolean
vmsnap_online_stop (vmsnap_domain *dom, GError **err)
{
  if (virDomainIsActive (dom->dom) == 0)
    return TRUE;
  if (virDomainDestroy (dom->dom) < 0 && virDomainIsActive (dom->dom) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot stop QEMU: %s", dom->name, lv_err ());
    return FALSE;
  }
  return TRUE;
}

gboolean
vmsnap_online_start (vmsnap_domain *dom, gboolean paused, GError **err)
{
  if (virDomainIsActive (dom->dom) == 1)
    return TRUE;
  if (virDomainCreateWithFlags (dom->dom, paused ? VIR_DOMAIN_START_PAUSED : 0) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: the disks were reverted, but starting it again "
                 "failed: %s (start it with virsh start %s)", dom->name,
                 lv_err (), dom->name);
    return FALSE;
  }
  return TRUE;
}
