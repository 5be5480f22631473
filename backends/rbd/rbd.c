/* rbd: Ceph RBD snapshots through librbd/librados, in process.
 *
 * The disk's pool, namespace, image, monitor hosts, auth user and secret
 * come from the domain XML; planning (probe) needs no cluster connection.
 * Every other slot connects with timeouts on monitor and OSD operations
 * (rbd.timeout seconds, default 10), so an unreachable cluster is an
 * error within that time, never a hang.
 *
 * Locators.  "rbd:POOL[/NAMESPACE]/IMAGE@SNAP" names a snapshot (a point in
 * time); "rbd:POOL[/NAMESPACE]/IMAGE" (no @) names an image's head, which
 * only appears as undo/garbage handed to the discard slot.  Snapshots keep
 * the name the user gave them, so `rbd snap ls` reads like `vmsnap list`.
 *
 * Ownership marks (image metadata, rbd_metadata_set), so storage describes
 * itself:
 *   vmsnap.snap.NAME       on the image holding snapshot NAME: domain UUID
 *   vmsnap.protected.NAME  vmsnap protected snapshot NAME (for a clone) and
 *                          will unprotect it; a snapshot protected by
 *                          anyone else is never unprotected by vmsnap
 *   vmsnap.clone           on an image vmsnap cloned for a revert: UUID
 *   vmsnap.abandoned       on an image a clone revert switched the disk
 *                          away from; the image stays only for its
 *                          snapshots and goes when the last one is deleted
 * librbd copies a parent's metadata into a clone: vmsnap drops the inherited
 * vmsnap.* keys of every clone it makes.
 *
 * Revert, two modes (doc/rbd.md): rollback (rbd_snap_rollback, object by
 * object, the same image stays) or clone (the snapshot is protected and
 * cloned to IMAGE-STEM.vmsnap-XXXXXXXX, which becomes the disk's source:
 * O(1)).  The default is chosen by the objects a rollback would touch
 * (rbd.rollback-max-objects, default ROLLBACK_MAX_OBJECTS);
 * rbd.revert-mode=rollback|clone|auto overrides it.  A snapshot that lives in another image than the disk's
 * (after an earlier clone revert) can only be cloned.  The old head is
 * returned as garbage (rbd.keep-old-head=true keeps it): the discard
 * slot removes an image without snapshots, and marks one that still holds
 * snapshots abandoned (discarding its head data unless it is a clone).
 *
 * Delete: clone children of the snapshot are flattened first (with
 * progress), or the delete is refused naming them
 * (rbd.delete-children=refuse); then the snapshot is unprotected (if
 * vmsnap protected it) and removed.  A child that still depends on the
 * snapshot after flattening (no deep-flatten feature and snapshots of its
 * own) makes the point "kept": the core keeps it unnamed and merge removes
 * it once nothing depends on it.  Merge with --max-depth N also flattens
 * the clones vmsnap made until no chain is deeper than N images.
 *
 * Crash safety.  Each slot records its decisions (vmsnap_op_set) before it
 * acts and marks each step done after it; every step is repeatable (an
 * existing snapshot/clone recorded by this operation is adopted, a flatten
 * or an unprotect already done is a no-op).  A vmsnap that died holding an
 * image's exclusive lock would make the next writer wait for its watch to
 * time out (30 s); each slot therefore records its client address
 * ("clients") before acting, and a re-run blocklists the addresses of
 * earlier, dead runs (the per-domain lock guarantees they are gone), which
 * frees their locks at once.  Nothing referenced by the catalog or the
 * domain definition is removed here: it goes through garbage and the
 * discard slot. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <vmsnap/backend.h>
#include "../backend-util.h"

#define NAME "rbd"
#define TAG ".vmsnap-"
#define HEX_LEN 8
#define MD_SNAP "vmsnap.snap."
#define MD_PROT "vmsnap.protected."
#define MD_CLONE "vmsnap.clone"
#define MD_ABANDONED "vmsnap.abandoned"
/* Default revert mode: a rollback works object by object, a clone is O(1).
 * Up to this many objects (8 GiB of 4 MiB objects) rollback keeps the disk
 * on one image; above it a clone is made (doc/rbd.md). */
#define ROLLBACK_MAX_OBJECTS 2048
#define DEFAULT_TIMEOUT 10
#define MAX_DEPTH_WALK 64
#define MAX_CLIENTS_KEPT 16
#define DISCARD_CHUNK (UINT64_C (1) << 30)

/* ============================================================ image names */

typedef struct {
  char *pool, *ns, *image, *snap;  /* ns and snap: NULL when absent */
} rspec;

static void
rspec_clear (rspec *s)
{
  g_clear_pointer (&s->pool, g_free);
  g_clear_pointer (&s->ns, g_free);
  g_clear_pointer (&s->image, g_free);
  g_clear_pointer (&s->snap, g_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (rspec, rspec_clear)

static void
rspec_free (gpointer p)
{
  if (p) {
    rspec_clear (p);
    g_free (p);
  }
}

/* Ceph pool/namespace/image names: no '/', '@', blanks or control chars. */
static gboolean
valid_component (const char *s)
{
  if (*s == '\0')
    return FALSE;
  for (const char *p = s; *p; p++)
    if (*p == '/' || *p == '@' || g_ascii_isspace (*p) || g_ascii_iscntrl (*p))
      return FALSE;
  return TRUE;
}

/* "POOL[/NAMESPACE]/IMAGE[@SNAP]" */
static gboolean
rspec_parse (const char *text, rspec *s)
{
  g_autofree char *name = g_strdup (text ? text : "");
  g_auto (GStrv) parts = NULL;
  char *at = strchr (name, '@');
  guint n;

  memset (s, 0, sizeof *s);
  if (at) {
    *at = '\0';
    if (!valid_component (at + 1))
      return FALSE;
    s->snap = g_strdup (at + 1);
  }
  parts = g_strsplit (name, "/", -1);
  n = g_strv_length (parts);
  if (n < 2 || n > 3) {
    rspec_clear (s);
    return FALSE;
  }
  for (guint i = 0; i < n; i++)
    if (!valid_component (parts[i])) {
      rspec_clear (s);
      return FALSE;
    }
  s->pool = g_strdup (parts[0]);
  s->ns = n == 3 ? g_strdup (parts[1]) : NULL;
  s->image = g_strdup (parts[n - 1]);
  return TRUE;
}

static void
rspec_copy (rspec *dst, const rspec *src, const char *snap)
{
  dst->pool = g_strdup (src->pool);
  dst->ns = g_strdup (src->ns);
  dst->image = g_strdup (src->image);
  dst->snap = g_strdup (snap);
}

/* "POOL[/NS]/IMAGE" */
static char *
rspec_image (const rspec *s)
{
  return s->ns ? g_strdup_printf ("%s/%s/%s", s->pool, s->ns, s->image)
               : g_strdup_printf ("%s/%s", s->pool, s->image);
}

/* The central guard (vmsnap_op_guard) over image S: may this op remove
 * (VMSNAP_GUARD_REMOVE) or write it? */
static gboolean
rspec_guard (vmsnap_op *op, const rspec *s, unsigned int what, GError **err)
{
  g_autofree char *img = rspec_image (s);
  g_autofree char *st = g_strconcat ("rbd:", img, NULL);

  return vmsnap_op_guard (op, st, what, err);
}

/* "POOL[/NS]/IMAGE[@SNAP]" */
static char *
rspec_point (const rspec *s)
{
  g_autofree char *img = rspec_image (s);

  return s->snap ? g_strdup_printf ("%s@%s", img, s->snap) : g_steal_pointer (&img);
}

static char *
rspec_locator (const rspec *s)
{
  g_autofree char *p = rspec_point (s);

  return g_strconcat ("rbd:", p, NULL);
}

static gboolean
same_image (const rspec *a, const rspec *b)
{
  return strcmp (a->pool, b->pool) == 0 && g_strcmp0 (a->ns, b->ns) == 0
         && strcmp (a->image, b->image) == 0;
}

static gboolean
loc_parse (const vmsnap_disk *d, const char *loc, gboolean want_snap, rspec *s,
           GError **err)
{
  if (loc == NULL || !g_str_has_prefix (loc, "rbd:") || !rspec_parse (loc + 4, s)) {
    fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: '%s' is not an %s locator "
          "(rbd:POOL[/NAMESPACE]/IMAGE@SNAPSHOT)", d->target,
          loc ? loc : "(null)", NAME);
    return FALSE;
  }
  if (want_snap && s->snap == NULL) {
    rspec_clear (s);
    fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: locator '%s' names an "
          "image, not a snapshot (internal error)", d->target, loc);
    return FALSE;
  }
  return TRUE;
}

/* The disk's active image. */
static gboolean
disk_spec (const vmsnap_disk *d, rspec *s, GError **err)
{
  if (d->type != VMSNAP_DISK_TYPE_NETWORK || g_strcmp0 (d->protocol, "rbd") != 0) {
    fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: backend %s handles rbd "
          "network disks only (this is a %s disk)", d->target, NAME,
          d->protocol ? d->protocol : d->type_name ? d->type_name : "other");
    return FALSE;
  }
  if (!rspec_parse (d->source, s)) {
    fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: rbd source name '%s' is "
          "not POOL/IMAGE or POOL/NAMESPACE/IMAGE", d->target,
          d->source ? d->source : "");
    return FALSE;
  }
  /* libvirt's <snapshot name='...'/> inside <source> maps a snapshot too */
  if (s->snap == NULL && d->source_snapshot && *d->source_snapshot)
    s->snap = g_strdup (d->source_snapshot);
  if (s->snap) {
    fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: the disk maps snapshot '%s' "
          "of %s/%s, which is read-only", d->target, s->snap, s->pool, s->image);
    rspec_clear (s);
    return FALSE;
  }
  return TRUE;
}

/* "vda.vmsnap-0123abcd" -> "vda" */
static char *
image_stem (const char *image)
{
  size_t len = strlen (image), tl = strlen (TAG);

  if (len > tl + HEX_LEN && strncmp (image + len - tl - HEX_LEN, TAG, tl) == 0) {
    gboolean hex = TRUE;
    for (size_t i = len - HEX_LEN; i < len; i++)
      hex = hex && g_ascii_isxdigit (image[i]);
    if (hex)
      return g_strndup (image, len - tl - HEX_LEN);
  }
  return g_strdup (image);
}

/* ============================================================= settings */

/* [rbd] in vmsnap.conf, -o rbd.KEY=VALUE; the environment variables are
 * the older way to set them and still work.  The core validates them. */
static const char *const revert_modes[] = { "auto", "rollback", "clone", NULL };
static const char *const delete_children_modes[] = { "flatten", "refuse", NULL };

static const vmsnap_option_desc rbd_options[] = {
  { "revert-mode", VMSNAP_OPTION_ENUM, "auto", revert_modes, 0, 0, NULL,
    "VMSNAP_RBD_REVERT_MODE",
    "revert by rollback, by clone, or auto: rollback up to rollback-max-objects" },
  { "rollback-max-objects", VMSNAP_OPTION_INT, G_STRINGIFY (ROLLBACK_MAX_OBJECTS),
    NULL, 0, G_MAXINT64, "objects", "VMSNAP_RBD_ROLLBACK_MAX_OBJECTS",
    "auto revert mode: roll back when at most this many objects change, else clone" },
  { "timeout", VMSNAP_OPTION_INT, G_STRINGIFY (DEFAULT_TIMEOUT), NULL, 1, 3600,
    "seconds", "VMSNAP_RBD_TIMEOUT",
    "limit on every monitor and OSD operation" },
  { "delete-children", VMSNAP_OPTION_ENUM, "flatten", delete_children_modes,
    0, 0, NULL, "VMSNAP_RBD_DELETE_CHILDREN",
    "deleting a snapshot with clones: flatten the clones, or refuse" },
  { "keep-old-head", VMSNAP_OPTION_BOOL, "false", NULL, 0, 0, NULL,
    "VMSNAP_RBD_KEEP_OLD_HEAD",
    "a clone revert keeps the disk's previous image instead of discarding it" },
  { NULL },
};

/* Where a setting came from, for messages ("rbd.KEY, the default" when
 * there is no configuration, as in a slot called without an operation). */
static const char *
origin_of (vmsnap_op *op, const char *key)
{
  const char *o = vmsnap_option_origin (vmsnap_op_config (op), key);

  return o ? o : key;
}

static guint
opt_timeout (vmsnap_op *op)
{
  const vmsnap_config *cfg = vmsnap_op_config (op);

  return cfg ? (guint) vmsnap_option_get_int (cfg, "rbd.timeout") : DEFAULT_TIMEOUT;
}

/* The default revert mode rolls back up to this many objects. */
static guint64
opt_rollback_max (vmsnap_op *op)
{
  const vmsnap_config *cfg = vmsnap_op_config (op);

  return cfg ? (guint64) vmsnap_option_get_int (cfg, "rbd.rollback-max-objects")
             : ROLLBACK_MAX_OBJECTS;
}

/* NULL (auto), "rollback" or "clone". */
static const char *
opt_revert_mode (vmsnap_op *op)
{
  const char *m = vmsnap_option_get (vmsnap_op_config (op), "rbd.revert-mode");

  return m == NULL || strcmp (m, "auto") == 0 ? NULL : m;
}

static gboolean
opt_refuse_children (vmsnap_op *op)
{
  const char *m = vmsnap_option_get (vmsnap_op_config (op), "rbd.delete-children");

  return m && strcmp (m, "refuse") == 0;
}

static gboolean
opt_keep_old_head (vmsnap_op *op)
{
  return vmsnap_option_get_bool (vmsnap_op_config (op), "rbd.keep-old-head");
}

/* ============================================================ connection */

typedef struct {
  rados_t cluster;
  GHashTable *io;          /* "pool/ns" -> rados_ioctx_t */
  const vmsnap_disk *d;
  vmsnap_op *op;
  guint timeout;
  char *addr;              /* our client address */
  char *who;               /* "client.admin" */
  gboolean shared;         /* borrowed from the warm cache: do not close */
} conn;

static void
conn_close (conn *c)
{
  if (c == NULL)
    return;
  if (c->shared) {
    g_free (c);
    return;
  }
  if (c->io)
    g_hash_table_unref (c->io);  /* ioctxs before the cluster */
  if (c->cluster)
    rados_shutdown (c->cluster);
  g_free (c->addr);
  g_free (c->who);
  g_free (c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (conn, conn_close)

static void
io_destroy (gpointer p)
{
  rados_ioctx_destroy (p);
}

static void
img_close (rbd_image_t img)
{
  if (img)
    rbd_close (img);
}
G_DEFINE_AUTO_CLEANUP_FREE_FUNC (rbd_image_t, img_close, NULL)

/* What the user can do about error R. */
static const char *
hint_for (const conn *c, int r)
{
  switch (-r) {
  case ETIMEDOUT:
    return "the Ceph cluster did not answer in time: check that its monitors "
           "and OSDs are up and reachable (ceph -s), or raise "
           "rbd.timeout (VMSNAP_RBD_TIMEOUT)";
  case EACCES:
  case EPERM:
    return "permission denied: check the client's key (keyring in ceph.conf "
           "or the disk's libvirt secret) and its caps (ceph auth get)";
  case EROFS:
    return "the image is read-only (a mirrored non-primary image?)";
  case ESHUTDOWN:               /* Ceph's EBLOCKLISTED */
    return "this client was blocklisted by the cluster; run the command again";
  default:
    (void) c;
    return NULL;
  }
}

/* What the monitors say of the cluster's health when it is not
 * HEALTH_OK ("HEALTH_ERR 1 full osd(s); 1 pool(s) full"), or NULL: asked
 * after a time-out of a connected client, so the message can name a full
 * cluster (which pauses every write instead of failing it). */
static char *
cluster_health (conn *c)
{
  const char *cmd[] = { "{\"prefix\": \"health\"}" };
  char *outbuf = NULL, *outs = NULL;
  size_t outbuf_len = 0, outs_len = 0;
  char *h = NULL;

  if (c == NULL || c->io == NULL)
    return NULL;
  if (rados_mon_command (c->cluster, cmd, 1, "", 0, &outbuf, &outbuf_len,
                         &outs, &outs_len) == 0) {
    if (outbuf_len > 0)
      h = g_strndup (outbuf, outbuf_len);
    else if (outs_len > 0)
      h = g_strndup (outs, outs_len);
  }
  rados_buffer_free (outbuf);
  rados_buffer_free (outs);
  if (h) {
    g_strdelimit (g_strstrip (h), "\n", ' ');
    if (*h == '\0' || g_str_has_prefix (h, "HEALTH_OK"))
      g_clear_pointer (&h, g_free);
  }
  return h;
}

/* An error from librados/librbd: "disk T: WHAT: strerror (HINT)". */
static int rfail (conn *c, GError **err, int r, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);

static int
rfail (conn *c, GError **err, int r, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *what = NULL;
  const char *hint = hint_for (c, r);

  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (-r == ETIMEDOUT && c) {
    g_autofree char *health = cluster_health (c);
    if (health && strstr (health, "full"))
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: %s: timed out after %u s; the Ceph cluster "
                   "reports %s: a full cluster pauses every write (free "
                   "space, add OSDs or raise the pool's quota; ceph health "
                   "detail)", c->d->target, what, c->timeout, health);
    else if (health)
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: %s: timed out after %u s; %s; the cluster "
                   "reports %s", c->d->target, what, c->timeout, hint, health);
    else
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: %s: timed out after %u s; %s", c->d->target, what,
                   c->timeout, hint);
  } else
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "disk %s: %s: %s%s%s",
                 c ? c->d->target : "?", what, g_strerror (-r),
                 hint ? "; " : "", hint ? hint : "");
  return -1;
}

/* The cephx key from the disk's libvirt secret, base64, or NULL (no
 * secret, no libvirt connection, or it could not be read: *why says so). */
static char *
secret_key (vmsnap_op *op, const vmsnap_disk *d, char **why)
{
  virConnectPtr vc = op ? vmsnap_op_libvirt_conn (op) : NULL;
  virSecretPtr s;
  unsigned char *val;
  size_t len = 0;
  char *b64;
  const char *name = d->secret_uuid ? d->secret_uuid : d->secret_usage;

  *why = NULL;
  if (name == NULL)
    return NULL;
  if (vc == NULL) {
    *why = g_strdup_printf ("the key is in libvirt secret %s, which vmsnap "
                            "cannot read for a domain XML file: give a "
                            "keyring for the client in ceph.conf", name);
    return NULL;
  }
  s = d->secret_uuid ? virSecretLookupByUUIDString (vc, d->secret_uuid)
                     : virSecretLookupByUsage (vc, VIR_SECRET_USAGE_TYPE_CEPH,
                                               d->secret_usage);
  if (s == NULL) {
    *why = g_strdup_printf ("libvirt secret %s: %s", name,
                            virGetLastErrorMessage ());
    return NULL;
  }
  val = virSecretGetValue (s, &len, 0);
  if (val == NULL) {
    *why = g_strdup_printf ("libvirt secret %s: %s (a private secret cannot "
                            "be read: give a keyring in ceph.conf)", name,
                            virGetLastErrorMessage ());
    virSecretFree (s);
    return NULL;
  }
  b64 = g_base64_encode (val, len);
  memset (val, 0, len);
  free (val);
  virSecretFree (s);
  return b64;
}

/* mon_host from the disk's <host> elements, as QEMU would pass them. */
static char *
mon_hosts (const vmsnap_disk *d)
{
  GString *h;

  if (d->n_hosts == 0)
    return NULL;
  h = g_string_new (NULL);
  for (size_t i = 0; i < d->n_hosts; i++) {
    const vmsnap_host *x = d->hosts[i];
    gboolean v6 = x->name && strchr (x->name, ':');
    if (x->name == NULL)
      continue;
    if (h->len)
      g_string_append_c (h, ',');
    g_string_append_printf (h, "%s%s%s", v6 ? "[" : "", x->name, v6 ? "]" : "");
    if (x->port)
      g_string_append_printf (h, ":%s", x->port);
  }
  return g_string_free (h, h->len == 0);
}

/* A token that identifies this process in the journal's "clients". */
static const char *
proc_token (void)
{
  static char tok[24];

  if (tok[0] == '\0')
    g_snprintf (tok, sizeof tok, "%08x%08x", g_random_int (), g_random_int ());
  return tok;
}

/* Blocklist the clients of earlier runs of this operation (they are dead:
 * the engine's per-domain lock is ours), so locks and watches they held are
 * released now instead of after the OSDs' watch timeout. */
static void
heal (conn *c)
{
  const char *rec = c->op ? vmsnap_op_get (c->op, "clients") : NULL;
  g_auto (GStrv) lines = NULL;
  gboolean any = FALSE;

  if (rec == NULL)
    return;
  lines = g_strsplit (rec, "\n", -1);
  for (char **l = lines; *l; l++) {
    char *sp = strchr (*l, ' ');
    if (sp == NULL)
      continue;
    *sp = '\0';
    if (strcmp (*l, proc_token ()) == 0)
      continue;                 /* this process: its clients closed cleanly */
    /* Best effort: without the caps to blocklist, the dead client's locks
     * go when the OSDs time its watches out. */
    if (rados_blocklist_add (c->cluster, sp + 1, 3600) == 0)
      any = TRUE;
  }
  if (any)
    rados_wait_for_latest_osdmap (c->cluster);
}

/* Record our client address before this run acts on storage. */
static gboolean
record_client (conn *c, GError **err)
{
  const char *rec = vmsnap_op_get (c->op, "clients");
  g_autofree char *entry = g_strdup_printf ("%s %s", proc_token (), c->addr);
  g_auto (GStrv) lines = rec && *rec ? g_strsplit (rec, "\n", -1) : g_new0 (char *, 1);
  g_autoptr (GPtrArray) keep = g_ptr_array_new ();
  g_autofree char *val = NULL;
  guint n = g_strv_length (lines);

  if (g_strv_contains ((const char *const *) lines, entry))
    return TRUE;
  for (guint i = n > MAX_CLIENTS_KEPT ? n - MAX_CLIENTS_KEPT : 0; i < n; i++)
    g_ptr_array_add (keep, lines[i]);
  g_ptr_array_add (keep, entry);
  g_ptr_array_add (keep, NULL);
  val = g_strjoinv ("\n", (char **) keep->pdata);
  return vmsnap_op_set (c->op, "clients", val, err);
}

/* Record KEY=VALUE (after our client address). */
static gboolean
record (conn *c, const char *key, const char *value, GError **err)
{
  return record_client (c, err) && vmsnap_op_set (c->op, key, value, err);
}

/* A new connection to D's cluster with TIMEOUT (seconds); OP may be NULL
 * (a probe: a key in a libvirt secret cannot be read then). */
static conn *
conn_connect (vmsnap_op *op, const vmsnap_disk *d, guint timeout, GError **err)
{
  g_autoptr (conn) c = g_new0 (conn, 1);
  g_autofree char *hosts = mon_hosts (d);
  g_autofree char *key = NULL, *why_no_key = NULL;
  g_autofree char *t = NULL;
  char mon[1024] = "";
  const char *conf = d->source_config;
  int r;

  c->d = d;
  c->op = op;
  c->timeout = timeout;
  c->who = g_strdup_printf ("client.%s", d->auth_username ? d->auth_username : "admin");
  if ((r = rados_create (&c->cluster, d->auth_username)) < 0) {
    rfail (c, err, r, "cannot set up a Ceph client (%s)", c->who);
    return NULL;
  }
  r = rados_conf_read_file (c->cluster, conf);
  if (r < 0 && (conf || r != -ENOENT || hosts == NULL)) {
    if (conf)
      rfail (c, err, r, "cannot read the Ceph configuration %s (the disk's "
             "<config file>)", conf);
    else if (r == -ENOENT)
      fail (err, VMSNAP_ERR_FAILED, "disk %s: no Ceph configuration found "
            "($CEPH_CONF, /etc/ceph/ceph.conf) and the disk names no monitor "
            "<host>: set CEPH_CONF or add <config file='...'/> to the disk's "
            "<source>", d->target);
    else
      rfail (c, err, r, "cannot read the Ceph configuration (%s)",
             g_getenv ("CEPH_CONF") ? g_getenv ("CEPH_CONF") : "/etc/ceph/ceph.conf");
    return NULL;
  }
  rados_conf_parse_env (c->cluster, NULL);
  if (hosts && (r = rados_conf_set (c->cluster, "mon_host", hosts)) < 0) {
    rfail (c, err, r, "monitor hosts '%s' of the disk's <source>", hosts);
    return NULL;
  }
  key = secret_key (op, d, &why_no_key);
  if (key && (r = rados_conf_set (c->cluster, "key", key)) < 0) {
    memset (key, 0, strlen (key));
    rfail (c, err, r, "the key of libvirt secret %s",
           d->secret_uuid ? d->secret_uuid : d->secret_usage);
    return NULL;
  }
  if (key)
    memset (key, 0, strlen (key));
  t = g_strdup_printf ("%u", c->timeout);
  if ((r = rados_conf_set (c->cluster, "client_mount_timeout", t)) < 0
      || (r = rados_conf_set (c->cluster, "rados_mon_op_timeout", t)) < 0
      || (r = rados_conf_set (c->cluster, "rados_osd_op_timeout", t)) < 0) {
    rfail (c, err, r, "cannot set the Ceph client timeouts");
    return NULL;
  }
  /* Errors are ours to report, once; librados must not print. */
  rados_conf_set (c->cluster, "log_to_stderr", "false");
  rados_conf_set (c->cluster, "err_to_stderr", "false");
  rados_conf_get (c->cluster, "mon_host", mon, sizeof mon);
  if ((r = rados_connect (c->cluster)) < 0) {
    g_autofree char *img = d->source ? g_strdup (d->source) : g_strdup ("?");
    if ((r == -EACCES || r == -EPERM) && why_no_key)
      fail (err, VMSNAP_ERR_FAILED, "disk %s: cannot connect to the Ceph "
            "cluster of rbd image %s as %s (monitors %s): %s; %s", d->target,
            img, c->who, *mon ? mon : "?", g_strerror (-r), why_no_key);
    else
      rfail (c, err, r, "cannot connect to the Ceph cluster of rbd image %s "
             "as %s (monitors %s)", img, c->who, *mon ? mon : "?");
    return NULL;
  }
  c->io = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, io_destroy);
  {
    char *a = NULL;
    if (rados_getaddrs (c->cluster, &a) == 0 && a) {
      c->addr = g_strdup (a);
      free (a);
    } else
      c->addr = g_strdup ("?");
  }
  return g_steal_pointer (&c);
}

static conn *
conn_open (vmsnap_op *op, const vmsnap_disk *d, GError **err)
{
  conn *c = conn_connect (op, d, opt_timeout (op), err);

  if (c)
    heal (c);
  return c;
}

/* ------------------------------------------------- the warm connections
 *
 * A create on a running VM runs inside the pause window, where each
 * connection to a cluster (rados_connect: monitor handshake, maps) used to
 * cost ~100-300 ms per disk.  So connections for creates are shared: one
 * per cluster identity (user, configuration, monitors, secret) for the
 * whole process, opened by the probe of a running domain's disk (the
 * planner probes before the core pauses the VM) when the key does not
 * live in a libvirt secret (a probe cannot read one), else by the first
 * create, and reused by the creates of every other disk of that cluster.
 * They are shut down when the process exits (atexit; modules are never
 * unloaded). */

static GMutex warm_lock;
static GHashTable *warm;        /* identity -> conn (owned) */

static char *
warm_key (const vmsnap_disk *d, guint timeout)
{
  g_autofree char *hosts = mon_hosts (d);
  const char *env = g_getenv ("CEPH_CONF");

  return g_strdup_printf ("%s\n%s\n%s\n%s\n%s\n%s\n%u",
                          d->auth_username ? d->auth_username : "",
                          d->source_config ? d->source_config : "",
                          hosts ? hosts : "",
                          d->secret_uuid ? d->secret_uuid : "",
                          d->secret_usage ? d->secret_usage : "",
                          env ? env : "", timeout);
}

static void
warm_free (gpointer p)
{
  conn *c = p;

  c->shared = FALSE;
  conn_close (c);
}

static void
warm_shutdown (void)
{
  g_mutex_lock (&warm_lock);
  g_clear_pointer (&warm, g_hash_table_unref);
  g_mutex_unlock (&warm_lock);
}

/* The warm connection for D with TIMEOUT, opened now if there is none
 * (OP may be NULL); NULL with *err if it cannot be opened. */
static conn *
warm_get (vmsnap_op *op, const vmsnap_disk *d, guint timeout, GError **err)
{
  g_autofree char *key = warm_key (d, timeout);
  conn *c;

  g_mutex_lock (&warm_lock);
  if (warm == NULL)
    warm = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, warm_free);
  c = g_hash_table_lookup (warm, key);
  if (c == NULL && (c = conn_connect (op, d, timeout, err)) != NULL) {
    static gboolean registered;
    c->shared = TRUE;
    c->d = NULL;                /* each handle names its own disk */
    c->op = NULL;
    g_hash_table_insert (warm, g_steal_pointer (&key), c);
    /* atexit, not a destructor, and only after a connection exists: the
     * handlers run in reverse order, so this one runs before the cleanup
     * of what connecting initialised (OpenSSL's atexit: a rados_shutdown
     * after it leaks) and before librados' static objects are destroyed
     * (a module destructor runs after them: a crash in rados_shutdown). */
    if (!registered) {
      registered = TRUE;
      atexit (warm_shutdown);
    }
  }
  g_mutex_unlock (&warm_lock);
  return c;
}

/* For a create: a handle on the warm connection of D's cluster (closing
 * it leaves the connection open), healed for OP. */
static conn *
conn_open_shared (vmsnap_op *op, const vmsnap_disk *d, GError **err)
{
  conn *w = warm_get (op, d, opt_timeout (op), err);
  conn *c;

  if (w == NULL)
    return NULL;
  c = g_new0 (conn, 1);
  c->cluster = w->cluster;
  c->io = w->io;
  c->d = d;
  c->op = op;
  c->timeout = w->timeout;
  c->addr = w->addr;
  c->who = w->who;
  c->shared = TRUE;
  heal (c);
  return c;
}

static rados_ioctx_t
conn_io (conn *c, const rspec *s, GError **err)
{
  g_autofree char *k = g_strdup_printf ("%s/%s", s->pool, s->ns ? s->ns : "");
  rados_ioctx_t io = g_hash_table_lookup (c->io, k);
  int r;

  if (io)
    return io;
  if ((r = rados_ioctx_create (c->cluster, s->pool, &io)) < 0) {
    if (r == -ENOENT)
      fail (err, VMSNAP_ERR_FAILED, "disk %s: Ceph pool '%s' does not exist "
            "(ceph osd pool ls)", c->d->target, s->pool);
    else
      rfail (c, err, r, "cannot open Ceph pool '%s'", s->pool);
    return NULL;
  }
  if (s->ns)
    rados_ioctx_set_namespace (io, s->ns);
  g_hash_table_insert (c->io, g_steal_pointer (&k), io);
  return io;
}

/* 0 if image NAME exists in IO (its id object: format 2; its header:
 * format 1), -ENOENT if not, another -errno if RADOS cannot say. */
static int
image_exists (rados_ioctx_t io, const char *name)
{
  g_autofree char *id = g_strconcat ("rbd_id.", name, NULL);
  g_autofree char *v1 = g_strconcat (name, ".rbd", NULL);
  uint64_t size;
  time_t mtime;
  int r = rados_stat (io, id, &size, &mtime);

  if (r == -ENOENT)
    r = rados_stat (io, v1, &size, &mtime);
  return r;
}

/* Open S's image (at SNAP if not NULL).  Returns 0, or -errno with *err
 * set unless QUIET_ENOENT and the image (or snapshot) does not exist. */
static int
img_open (conn *c, const rspec *s, const char *snap, gboolean ro,
          gboolean quiet_enoent, rbd_image_t *out, GError **err)
{
  rados_ioctx_t io = conn_io (c, s, err);
  g_autofree char *name = rspec_image (s);
  int r;

  *out = NULL;
  if (io == NULL)
    return -EIO;
  /* librbd 16.2 must never be asked to open what is not there: after a
   * read-write open of a missing image (or snapshot), or a read-only open
   * of a missing image, a later open at a snapshot in the same process
   * makes a librados thread lock a freed mutex (abort: "terminate called
   * after throwing std::system_error", or a hang).  So an image's
   * existence is checked first, on its RADOS objects.
   *
   * Nor is an image ever opened at a snapshot (rbd_open* with a snapshot
   * name): a snapshot is reached by opening the head read-only and
   * switching that handle to the snapshot (rbd_snap_set), which fails
   * with -ENOENT for a missing snapshot without tearing an image context
   * down.  Opening at a snapshot right after an image context of the same
   * image was torn down (a failed open, or the read-only head opened and
   * closed to look the snapshot up) is the pattern that aborts; no
   * context is ever torn down here before the one the caller gets. */
  r = image_exists (io, s->image);
  if (r == 0 && snap) {
    r = rbd_open_read_only (io, s->image, out, NULL);
    if (r == 0) {
      bool e = false;
      r = rbd_snap_exists (*out, snap, &e);
      if (r == 0 && !e)
        r = -ENOENT;
      if (r == 0)
        r = rbd_snap_set (*out, snap);
      if (r < 0) {
        rbd_close (*out);
        *out = NULL;
      }
    }
  } else if (r == 0)
    r = ro ? rbd_open_read_only (io, s->image, out, NULL)
           : rbd_open (io, s->image, out, NULL);
  if (r == 0)
    return 0;
  *out = NULL;
  if (r == -ENOENT && quiet_enoent)
    return r;
  if (r == -ENOENT && snap)
    fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s@%s does not exist "
          "(rbd snap ls %s)", c->d->target, name, snap, name);
  else if (r == -ENOENT)
    fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s does not exist "
          "(rbd ls %s%s%s)", c->d->target, name, s->pool, s->ns ? " --namespace " : "",
          s->ns ? s->ns : "");
  else
    rfail (c, err, r, "cannot open rbd image %s%s%s", name, snap ? "@" : "",
           snap ? snap : "");
  return r;
}

/* ====================================================== image metadata */

/* *VAL: the value of KEY; returns 0, -ENOENT or another -errno. */
static int
md_get (rbd_image_t img, const char *key, char **val)
{
  size_t len = 64;

  *val = NULL;
  for (int i = 0; i < 8; i++) {
    g_autofree char *buf = g_malloc0 (len + 1);
    int r = rbd_metadata_get (img, key, buf, &len);
    if (r == -ERANGE)
      continue;
    if (r < 0)
      return r;
    *val = g_steal_pointer (&buf);
    return 0;
  }
  return -ERANGE;
}

static gboolean
md_is (rbd_image_t img, const char *key, const char *want)
{
  g_autofree char *v = NULL;

  return md_get (img, key, &v) == 0 && strcmp (v, want) == 0;
}

static int
md_remove (rbd_image_t img, const char *key)
{
  int r = rbd_metadata_remove (img, key);

  return r == -ENOENT ? 0 : r;
}

/* Remove every vmsnap.* key of IMG: librbd copies a parent's metadata
 * into a new clone, and marks describe the image they are on. */
static int
md_remove_ours (rbd_image_t img)
{
  size_t klen = 4096, vlen = 4096;
  g_autofree char *keys = NULL, *vals = NULL;
  int r;

  for (int i = 0; i < 8; i++) {
    g_free (keys);
    g_free (vals);
    keys = g_malloc0 (klen + 1);
    vals = g_malloc0 (vlen + 1);
    r = rbd_metadata_list (img, "", 0, keys, &klen, vals, &vlen);
    if (r != -ERANGE)
      break;
  }
  if (r < 0)
    return r;
  for (const char *k = keys; k < keys + klen && *k; k += strlen (k) + 1)
    if (g_str_has_prefix (k, "vmsnap.") && (r = md_remove (img, k)) < 0)
      return r;
  return 0;
}

/* ====================================================== image queries */

static int
snap_exists (rbd_image_t img, const char *snap, gboolean *exists)
{
  bool e = false;
  int r = rbd_snap_exists (img, snap, &e);

  *exists = e;
  return r;
}

/* Snapshot names of IMG, oldest first (user snapshots only). */
static int
snap_names (rbd_image_t img, GPtrArray **out)
{
  int max = 16, n;
  rbd_snap_info_t *snaps = NULL;

  for (;;) {
    snaps = g_new0 (rbd_snap_info_t, max);
    n = rbd_snap_list (img, snaps, &max);
    if (n != -ERANGE)
      break;
    g_free (snaps);
    snaps = NULL;
  }
  if (n < 0) {
    g_free (snaps);
    return n;
  }
  *out = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n; i++)
    g_ptr_array_add (*out, g_strdup (snaps[i].name));
  rbd_snap_list_end (snaps);
  g_free (snaps);
  return 0;
}

/* The clone children of S (an image at a snapshot), as rspec* (with
 * trash set in ->snap to "trash" for an image in the RBD trash). */
static int
children_of (conn *c, const rspec *s, GPtrArray **out, GError **err)
{
  g_auto (rbd_image_t) img = NULL;
  rbd_linked_image_spec_t *kids = NULL;
  size_t max = 8;
  int r;

  *out = NULL;
  if ((r = img_open (c, s, s->snap, TRUE, FALSE, &img, err)) < 0)
    return r;
  for (;;) {
    kids = g_new0 (rbd_linked_image_spec_t, max);
    r = rbd_list_children3 (img, kids, &max);
    if (r != -ERANGE)
      break;
    g_free (kids);
  }
  if (r < 0) {
    g_autofree char *p = rspec_point (s);
    g_free (kids);
    return rfail (c, err, r, "cannot list the clones of %s", p);
  }
  *out = g_ptr_array_new_with_free_func (rspec_free);
  for (size_t i = 0; i < max; i++) {
    rspec *k = g_new0 (rspec, 1);
    k->pool = g_strdup (kids[i].pool_name);
    k->ns = kids[i].pool_namespace && *kids[i].pool_namespace
            ? g_strdup (kids[i].pool_namespace) : NULL;
    k->image = g_strdup (kids[i].image_name);
    k->snap = kids[i].trash ? g_strdup ("trash") : NULL;
    g_ptr_array_add (*out, k);
  }
  rbd_linked_image_spec_list_cleanup (kids, max);
  g_free (kids);
  return 0;
}

static char *
names_of (GPtrArray *specs)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < specs->len; i++) {
    const rspec *k = g_ptr_array_index (specs, i);
    g_autofree char *n = rspec_image (k);
    g_string_append_printf (s, "%s%s%s", i ? ", " : "", n,
                            k->snap ? " (in the RBD trash)" : "");
  }
  return g_string_free (s, FALSE);
}

/* The parent (image@snapshot) of IMG as opened; -ENOENT if none. */
static int
parent_of (rbd_image_t img, rspec *out)
{
  rbd_linked_image_spec_t pi;
  rbd_snap_spec_t ps;
  int r;

  memset (out, 0, sizeof *out);
  memset (&pi, 0, sizeof pi);
  memset (&ps, 0, sizeof ps);
  r = rbd_get_parent (img, &pi, &ps);
  if (r < 0)
    return r;
  out->pool = g_strdup (pi.pool_name);
  out->ns = pi.pool_namespace && *pi.pool_namespace ? g_strdup (pi.pool_namespace) : NULL;
  out->image = g_strdup (pi.image_name);
  out->snap = g_strdup (ps.name);
  rbd_linked_image_spec_cleanup (&pi);
  rbd_snap_spec_cleanup (&ps);
  return 0;
}

/* Number of images in the chain of S (S itself counts 1), read through
 * the parents of each image (at its snapshot, if S names one). */
static int
chain_depth (conn *c, const rspec *s, guint *depth, GError **err)
{
  rspec cur;
  int r = 0;

  *depth = 0;
  rspec_copy (&cur, s, s->snap);
  for (guint i = 0; i < MAX_DEPTH_WALK; i++) {
    g_auto (rbd_image_t) img = NULL;
    rspec par;
    (*depth)++;
    if ((r = img_open (c, &cur, cur.snap, TRUE, FALSE, &img, err)) < 0)
      break;
    r = parent_of (img, &par);
    if (r == -ENOENT) {
      r = 0;
      break;
    }
    if (r < 0) {
      g_autofree char *p = rspec_point (&cur);
      rfail (c, err, r, "cannot read the parent of %s", p);
      break;
    }
    rspec_clear (&cur);
    cur = par;
  }
  rspec_clear (&cur);
  return r;
}

/* Others than us (and earlier runs of this operation) with S open. */
static gboolean
not_in_use (conn *c, rbd_image_t img, const rspec *s, GError **err)
{
  rbd_image_watcher_t w[32];
  size_t n = G_N_ELEMENTS (w);
  uint64_t me = rados_get_instance_id (c->cluster);
  const char *rec = c->op ? vmsnap_op_get (c->op, "clients") : NULL;
  g_autofree char *who = NULL, *name = rspec_image (s);
  int r = rbd_watchers_list (img, w, &n);

  if (r == -ERANGE)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s is open by "
                 "more than %zu clients (rbd status %s): is the VM running "
                 "elsewhere? Stop it first", c->d->target,
                 name, G_N_ELEMENTS (w), name), FALSE;
  if (r < 0)
    return rfail (c, err, r, "cannot list the clients of rbd image %s", name), FALSE;
  for (size_t i = 0; i < n; i++) {
    if ((uint64_t) w[i].id == me || (rec && w[i].addr && strstr (rec, w[i].addr)))
      continue;
    if (who == NULL)
      who = g_strdup_printf ("client.%" G_GINT64_FORMAT " at %s", w[i].id,
                             w[i].addr ? w[i].addr : "?");
  }
  rbd_watchers_list_cleanup (w, n);
  if (who == NULL)
    return TRUE;
  fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s is open by another "
        "client (%s), but the domain is shut off: is the VM running elsewhere, "
        "or another program using the image (rbd status %s)? Stop it first",
        c->d->target, name, who, name);
  return FALSE;
}

static int
count_cb (uint64_t off, size_t len, int exists, void *arg)
{
  (void) off;
  if (exists)
    *(guint64 *) arg += len;
  return 0;
}

/* Bytes allocated in IMG (as opened) since FROM (NULL: since creation),
 * object granularity; only with a valid fast-diff map (cheap), else
 * -EOPNOTSUPP. */
static int
used_bytes (rbd_image_t img, const char *from, gboolean with_parent, guint64 *out)
{
  uint64_t features = 0, flags = 0, size = 0;

  *out = 0;
  if (rbd_get_features (img, &features) < 0 || !(features & RBD_FEATURE_FAST_DIFF)
      || rbd_get_flags (img, &flags) < 0 || (flags & RBD_FLAG_FAST_DIFF_INVALID)
      || rbd_get_size (img, &size) < 0)
    return -EOPNOTSUPP;
  return rbd_diff_iterate2 (img, from, 0, size, with_parent ? 1 : 0, 1, count_cb, out);
}

/* The objects a rollback of HEAD to SNAP (both open) works on: with a
 * valid fast-diff map librbd skips objects that exist in neither, so the
 * objects allocated in the head plus those in the snapshot (an upper
 * bound); without one, every object of the image.  *HOW says which. */
static guint64
rollback_objects (rbd_image_t head, rbd_image_t snap, const rbd_image_info_t *info,
                  const char **how)
{
  guint64 h = 0, s = 0;

  if (info->obj_size > 0 && used_bytes (head, NULL, FALSE, &h) == 0
      && used_bytes (snap, NULL, FALSE, &s) == 0) {
    *how = "allocated in the image and the snapshot";
    return (h + s) / info->obj_size;
  }
  *how = "all of the image's: no fast-diff map";
  return info->num_objs;
}

typedef struct {
  vmsnap_op *op;
  uint64_t total;
} progress_ctx;

/* librbd reports the objects started, not finished: the last call says
 * N-1 of N.  progress_done says 100% once the operation returned. */
static int
progress_cb (uint64_t done, uint64_t total, void *arg)
{
  progress_ctx *p = arg;

  p->total = total;
  if (p->op)
    vmsnap_op_progress (p->op, done, total);
  return 0;
}

static void
progress_done (progress_ctx *p)
{
  if (p->op && p->total)
    vmsnap_op_progress (p->op, p->total, p->total);
}

/* ============================================================ slot setup */

static gboolean
slot_begin (vmsnap_op *op, const vmsnap_disk *d, const char *slot,
            unsigned int flags, rspec *active, GError **err)
{
  if (!vmsnap_check_flags (NAME, slot, flags, 0, err))
    return FALSE;
  if (d == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: %s called without a "
                 "disk (internal error)", NAME, slot), FALSE;
  if (!disk_spec (d, active, err))
    return FALSE;
  if (op == NULL) {
    rspec_clear (active);
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: %s called without an "
                 "operation context (internal error)", NAME, slot), FALSE;
  }
  return TRUE;
}

/* ================================================================ probe */

/* Connect to D's cluster now, before any pause window, for the creates
 * to reuse (see "the warm connections").  Best effort and silent: a
 * create that finds no warm connection connects itself and reports what
 * fails.  Not when the key is in a libvirt secret (no libvirt connection
 * here), nor with a timeout set in a configuration file (unknown here:
 * only VMSNAP_RBD_TIMEOUT is seen). */
static void
warm_up (const vmsnap_disk *d)
{
  const char *t = g_getenv ("VMSNAP_RBD_TIMEOUT");
  guint64 timeout = DEFAULT_TIMEOUT;
  g_autoptr (GError) ignored = NULL;

  if (d->secret_uuid || d->secret_usage)
    return;
  if (t && *t && (!g_ascii_string_to_unsigned (t, 10, 1, 3600, &timeout, NULL)))
    return;
  warm_get (NULL, d, (guint) timeout, &ignored);
}

/* The disks this backend can take at all: read by the core from this
 * file without loading the module (and librbd, librados), and the probe's
 * first check, so both say the same. */
VMSNAP_BACKEND_DISK_FILTER (rbd_disk_filter, "network", "rbd",
                            "not an rbd network disk");

static int
vrbd_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
            vmsnap_probe_result *res, GError **err)
{
  g_auto (rspec) s = { 0 };
  g_autofree char *refused = vmsnap_disk_filter_refuses (rbd_disk_filter, d);

  (void) err;
  if (refused != NULL) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s", refused);
    return 0;
  }
  if (!rspec_parse (d->source, &s)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "rbd source name '%s' is not POOL/IMAGE or "
                      "POOL/NAMESPACE/IMAGE, or has an empty or invalid "
                      "component", d->source ? d->source : "");
    return 0;
  }
  /* libvirt's <snapshot name='...'/> inside <source> maps a snapshot too */
  if (s.snap == NULL && d->source_snapshot && *d->source_snapshot)
    s.snap = g_strdup (d->source_snapshot);
  vmsnap_probe_add_detail (res, "pool", "%s", s.pool);
  if (s.ns)
    vmsnap_probe_add_detail (res, "namespace", "%s", s.ns);
  vmsnap_probe_add_detail (res, "image", "%s", s.image);
  if (d->n_hosts > 0) {
    g_autofree char *h = mon_hosts (d);
    vmsnap_probe_add_detail (res, "monitors", "%s", h ? h : "?");
  } else {
    vmsnap_probe_add_detail (res, "monitors", "from %s",
                             d->source_config ? d->source_config
                             : "ceph.conf (CEPH_CONF or /etc/ceph/ceph.conf)");
  }
  if (d->auth_username)
    vmsnap_probe_add_detail (res, "auth_user", "%s", d->auth_username);
  if (d->secret_uuid || d->secret_usage)
    vmsnap_probe_add_detail (res, "secret", "libvirt secret %s",
                             d->secret_uuid ? d->secret_uuid : d->secret_usage);
  if (d->source_config)
    vmsnap_probe_add_detail (res, "config", "%s", d->source_config);

  if (s.snap) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "the disk maps snapshot '%s' of %s/%s, which is read-only",
                      s.snap, s.pool, s.image);
    return 0;
  }
  vmsnap_probe_set_class (res, VMSNAP_CLASS_RBD);
  vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 90,
                    "rbd image %s/%s: native RBD snapshot; revert by rollback "
                    "or O(1) clone", s.pool, s.image);
  vmsnap_probe_add_limit (res, "revert needs the VM shut off (a running VM is "
                          "stopped and started again); a clone revert "
                          "switches the disk to a new image");
  if (req->online) {
    vmsnap_probe_add_limit (res, "the VM is paused while the snapshot is taken");
    warm_up (d);
  }
  if (req->memory)
    vmsnap_probe_add_limit (res, "memory state goes to an external file");
  return 0;
}

/* ================================================================ create */

/* Undo what an interrupted or failed create of NAME made on S's image:
 * the snapshot (ours: its name was recorded before it was made) and the
 * mark.  Best effort. */
static void
drop_created (conn *c, const rspec *s, const char *name)
{
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *key = g_strconcat (MD_SNAP, name, NULL);
  gboolean exists = FALSE;

  if (img_open (c, s, NULL, FALSE, TRUE, &img, NULL) < 0)
    return;
  if (snap_exists (img, name, &exists) == 0 && exists)
    rbd_snap_remove (img, name);
  md_remove (img, key);
}

static int
noop_progress (uint64_t a, uint64_t b, void *c)
{
  (void) a;
  (void) b;
  (void) c;
  return 0;
}

/* rbd_snap_create on the active image.  Journal: key "snap" (the name,
 * recorded before anything is written), step "snap". */
/* A snapshot SNAP of IMG that a killed `rbd_snap_create` left half made:
 * librbd adds the snapshot to the image header, then creates its object
 * map; killed in between, the snapshot is listed but cannot be opened
 * ("error reading header ... No such file or directory": found by the
 * crash matrix's random kills).  TRUE when the image has an object map and
 * the snapshot's object is missing. */
static gboolean
half_made_snapshot (conn *c, const rspec *a, rbd_image_t img, const char *snap)
{
  rados_ioctx_t io = conn_io (c, a, NULL);
  uint64_t features = 0, sid = 0, size = 0;
  time_t mtime = 0;
  char id[96];
  g_autofree char *obj = NULL;

  if (io == NULL || rbd_get_features (img, &features) < 0
      || !(features & RBD_FEATURE_OBJECT_MAP)
      || rbd_snap_get_id (img, snap, &sid) < 0
      || rbd_get_id (img, id, sizeof id) < 0)
    return FALSE;
  obj = g_strdup_printf ("rbd_object_map.%s.%016" G_GINT64_MODIFIER "x", id,
                         (guint64) sid);
  return rados_stat (io, obj, &size, &mtime) == -ENOENT;
}

/* ============================================== the pause window (create) */

/* What prepare opened for the create of one disk that follows in this
 * process: the connection (shared), the image open read-write, its spec.
 * Keyed by domain UUID and disk target; taken by create or abort. */
typedef struct {
  conn *c;
  rbd_image_t img;
  rspec a;
} prepared;

static GMutex prep_lock;
static GHashTable *prep_table;   /* "uuid/target" -> prepared* */

static void
prepared_free (prepared *p)
{
  if (p == NULL)
    return;
  img_close (p->img);
  conn_close (p->c);
  rspec_clear (&p->a);
  g_free (p);
}

static char *
prep_key (vmsnap_op *op, const vmsnap_disk *d)
{
  const char *uuid = vmsnap_op_domain_uuid (op);

  return g_strdup_printf ("%s/%s", uuid ? uuid : "", d->target);
}

static void
prep_put (vmsnap_op *op, const vmsnap_disk *d, prepared *p)
{
  g_mutex_lock (&prep_lock);
  if (prep_table == NULL)
    prep_table = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) prepared_free);
  g_hash_table_replace (prep_table, prep_key (op, d), p);
  g_mutex_unlock (&prep_lock);
}

static prepared *
prep_take (vmsnap_op *op, const vmsnap_disk *d)
{
  g_autofree char *k = prep_key (op, d);
  gpointer key = NULL, val = NULL;

  g_mutex_lock (&prep_lock);
  if (prep_table && g_hash_table_steal_extended (prep_table, k, &key, &val))
    g_free (key);
  g_mutex_unlock (&prep_lock);
  return val;
}

/* Everything of a create before the snapshot itself: the connection, the
 * image open read-write, the name checked free and recorded ("snap", step
 * "named"), the ownership mark written.  On a running VM this is the
 * prepare slot's work, before the pause; offline (or in a recovery) the
 * create's own first part. */
static int
create_begin (vmsnap_op *op, const vmsnap_disk *d, const char *name,
              rspec *a, conn **cp, rbd_image_t *imgp, GError **err)
{
  g_autoptr (conn) c = NULL;
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *key = NULL, *img_name = NULL;
  const char *rec;
  gboolean exists = FALSE;
  int r;

  if (name == NULL || !valid_component (name))
    return fail (err, VMSNAP_ERR_INVALID_INPUT, "disk %s: '%s' cannot be an "
                 "RBD snapshot name", d->target, name ? name : "(null)");
  img_name = rspec_image (a);
  key = g_strconcat (MD_SNAP, name, NULL);
  /* On a running VM: the shared connection (usually opened by the probe). */
  c = vmsnap_op_is_online (op) ? conn_open_shared (op, d, err) : conn_open (op, d, err);
  if (c == NULL)
    return -1;
  /* Our client is in the journal before the read-write open registers a
   * watch: a run killed after the open is blocklisted by recover instead
   * of holding the image "open by another client" until the OSDs time the
   * watch out (found by the crash matrix's random SIGKILLs). */
  if (!record_client (c, err))
    return -1;
  if (img_open (c, a, NULL, FALSE, FALSE, &img, err) < 0)
    return -1;
  rec = vmsnap_op_get (op, "snap");
  if (rec && strcmp (rec, name) != 0)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal records "
                 "snapshot '%s', not '%s' (internal error)", d->target, rec, name);
  if (rec == NULL) {
    if (!vmsnap_op_is_online (op) && !not_in_use (c, img, a, err))
      return -1;
    if ((r = snap_exists (img, name, &exists)) < 0)
      return rfail (c, err, r, "cannot read the snapshots of rbd image %s",
                    img_name);
    if (exists) {
      const char *uuid = vmsnap_op_domain_uuid (op);
      if (uuid && md_is (img, key, uuid))
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s already "
                     "has a snapshot '%s' made by vmsnap for this domain but "
                     "unknown to its catalog (left by an interrupted run?); "
                     "remove it (rbd snap rm %s@%s) or choose another name",
                     d->target, img_name, name,
                     img_name, name);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s already has "
                   "a snapshot named '%s' that vmsnap did not make for this "
                   "domain (rbd snap ls %s); choose another name",
                   d->target, img_name, name, img_name);
    }
    /* A step of its own, so that the crash hook can stop a create with
     * its snapshot named and not made (tests/integration/rbd-half-clone.sh). */
    if (!record (c, "snap", name, err) || !vmsnap_op_mark_done (op, "named", err))
      return -1;
  }
  if (!vmsnap_op_step_done (op, "snap")) {
    const char *uuid = vmsnap_op_domain_uuid (op);
    if ((r = rbd_metadata_set (img, key, uuid ? uuid : "?")) < 0) {
      rfail (c, err, r, "cannot mark rbd image %s (metadata %s)", img_name, key);
      md_remove (img, key);
      return -1;
    }
  }
  *cp = g_steal_pointer (&c);
  *imgp = g_steal_pointer (&img);
  return 0;
}

/* The prepare slot: create_begin before the pause, its connection and
 * open image kept for the create inside the window. */
static int
vrbd_prepare (vmsnap_op *op, const vmsnap_disk *d, const char *name,
              unsigned int flags, GError **err)
{
  prepared *p = g_new0 (prepared, 1);

  if (!slot_begin (op, d, "prepare", flags, &p->a, err)) {
    g_free (p);
    return -1;
  }
  if (create_begin (op, d, name, &p->a, &p->c, &p->img, err) < 0) {
    prepared_free (p);
    return -1;
  }
  prep_put (op, d, p);
  return 0;
}

/* The abort slot: the pause never came.  Removes the snapshot (if a
 * capture made it after all) and the ownership mark, from the name
 * prepare recorded; nothing recorded, nothing made. */
static int
vrbd_abort (vmsnap_op *op, const vmsnap_disk *d, const char *name,
            unsigned int flags, GError **err)
{
  prepared *p = NULL;
  g_auto (rspec) a = { 0 };
  g_autoptr (conn) c = NULL;
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *key = NULL, *img_name = NULL;
  const char *rec = NULL;
  gboolean exists = FALSE;
  int r;

  if (!vmsnap_check_flags (NAME, "abort", flags, 0, err))
    return -1;
  if (op == NULL || d == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "backend %s: abort called without "
                 "an operation context or a disk (internal error)", NAME);
  p = prep_take (op, d);
  rec = vmsnap_op_get (op, "snap");
  if (p) {
    c = g_steal_pointer (&p->c);
    img = g_steal_pointer (&p->img);
    a = p->a;
    memset (&p->a, 0, sizeof p->a);
    prepared_free (p);
  }
  if (rec == NULL)
    return 0;
  if (c) {
    c->op = op;
    c->d = d;
  }
  if (img == NULL) {
    if (!slot_begin (op, d, "abort", flags, &a, err))
      return -1;
    if (c == NULL && (c = conn_open (op, d, err)) == NULL)
      return -1;
    if ((r = img_open (c, &a, NULL, FALSE, TRUE, &img, err)) == -ENOENT)
      return 0;   /* the image is gone, and with it what we made */
    if (r < 0)
      return -1;
  }
  img_name = rspec_image (&a);
  key = g_strconcat (MD_SNAP, rec, NULL);
  if ((r = snap_exists (img, rec, &exists)) < 0)
    return rfail (c, err, r, "cannot read the snapshots of rbd image %s", img_name);
  if (exists && (r = rbd_snap_remove (img, rec)) < 0 && r != -ENOENT)
    return rfail (c, err, r, "cannot remove snapshot %s@%s", img_name, rec);
  if ((r = md_remove (img, key)) < 0)
    return rfail (c, err, r, "cannot remove the mark %s of rbd image %s", key,
                  img_name);
  (void) name;
  return 0;
}

static int
vrbd_create (vmsnap_op *op, const vmsnap_disk *d, const char *name,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_auto (rspec) a = { 0 };
  g_autoptr (conn) c = NULL;
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *key = NULL, *img_name = NULL, *loc = NULL, *usage = NULL;
  prepared *p = op && d && vmsnap_op_is_online (op) ? prep_take (op, d) : NULL;
  gboolean exists = FALSE, attempted = FALSE, windowed = p != NULL;
  int r;

  if (windowed) {
    /* Inside the pause window, in a thread of its own: what prepare opened,
     * and nothing but the snapshot itself. */
    if (!vmsnap_check_flags (NAME, "create", flags, 0, err)) {
      prepared_free (p);
      return -1;
    }
    c = g_steal_pointer (&p->c);
    img = g_steal_pointer (&p->img);
    a = p->a;
    memset (&p->a, 0, sizeof p->a);
    prepared_free (p);
    c->op = op;
    c->d = d;
  } else {
    if (!slot_begin (op, d, "create", flags, &a, err))
      return -1;
    if (create_begin (op, d, name, &a, &c, &img, err) < 0)
      return -1;
  }
  img_name = rspec_image (&a);
  key = g_strconcat (MD_SNAP, name, NULL);
  if (!vmsnap_op_step_done (op, "snap")) {
    if (!windowed && (r = snap_exists (img, name, &exists)) < 0) {
      rfail (c, err, r, "cannot read the snapshots of rbd image %s", img_name);
      goto failed;
    }
    /* The name is ours (recorded after checking it was free): a snapshot
     * under it that a killed run left half made goes, and is made again. */
    if (exists && vmsnap_op_is_recovering (op)
        && half_made_snapshot (c, &a, img, name)) {
      if ((r = rbd_snap_remove (img, name)) < 0 && r != -ENOENT) {
        rfail (c, err, r, "cannot remove snapshot %s@%s, which an "
               "interrupted run left half made (no object map)", img_name,
               name);
        goto failed;
      }
      exists = FALSE;
    }
    if (!exists) {
      /* vmsnap paused the VM (or it is shut off): skip librbd's own quiesce
       * round trip.  With QEMU holding the exclusive lock, librbd asks it
       * to take the snapshot. */
      attempted = TRUE;
      r = rbd_snap_create2 (img, name, RBD_SNAP_CREATE_SKIP_QUIESCE,
                            noop_progress, NULL);
      if (r < 0) {
        rfail (c, err, r, "cannot create snapshot %s@%s", img_name, name);
        goto failed;
      }
    }
    if (!vmsnap_op_mark_done (op, "snap", err)) {
      attempted = TRUE;
      goto failed;
    }
  }
  {
    rspec s;
    rspec_copy (&s, &a, name);
    loc = rspec_locator (&s);
    rspec_clear (&s);
  }
  vmsnap_result_set_locator (res, loc);
  /* Rolled back (another disk failed): the core discards the snapshot. */
  vmsnap_result_add_undo (res, loc);
  /* On a running VM this runs inside the pause window: no usage scan
   * (opening the snapshot and walking its object map) there. */
  if (!vmsnap_op_is_online (op)) {
    g_auto (rbd_image_t) si = NULL;
    g_autoptr (GPtrArray) names = NULL;
    guint64 bytes = 0;
    const char *prev = NULL;
    if (img_open (c, &a, name, TRUE, TRUE, &si, NULL) == 0
        && snap_names (si, &names) == 0) {
      for (guint i = 0; i + 1 < names->len; i++)
        if (strcmp (g_ptr_array_index (names, i + 1), name) == 0)
          prev = g_ptr_array_index (names, i);
      if (used_bytes (si, prev, FALSE, &bytes) == 0) {
        g_autofree char *sz = fmt_size (bytes);
        usage = prev ? g_strdup_printf ("; ~%s written since %s", sz, prev)
                     : g_strdup_printf ("; ~%s allocated", sz);
      }
    }
  }
  vmsnap_result_set_note (res, "RBD snapshot %s@%s%s", img_name, name,
                          usage ? usage : "");
  return 0;

failed:
  if (windowed) {
    /* In the window: with the image prepare opened (another thread may
     * be using the shared connection's pools). */
    gboolean e2 = FALSE;
    if (attempted && snap_exists (img, name, &e2) == 0 && e2)
      rbd_snap_remove (img, name);
    md_remove (img, key);
  } else if (attempted)
    drop_created (c, &a, name);
  else if (img)
    md_remove (img, key);
  return -1;
}

/* ================================================================ revert */

/* Protect T (image@snap) for a clone, marking it as ours first, unless it
 * is protected already (by us or by anyone). */
/* T (vmsnap's: on the garbage list, or a name vmsnap recorded) does not
 * open.  An `rbd_remove` killed midway leaves it so, still listed by `rbd
 * ls`: either moved to the trash as "removing" (librbd's first step), or
 * with its header removed and its name still in the pool's directory
 * (`rbd ls -l` then fails for the whole pool: "listing images failed: (2)
 * No such file or directory").  The removal is finished: from the trash,
 * or by librbd's remove, which takes such an image. */
/* Whether NAME is in the pool's image directory (a format-2 image's name
 * entry, the key "name_NAME" of the rbd_directory object's omap). */
static gboolean
in_directory (rados_ioctx_t io, const char *name)
{
  g_autofree char *key = g_strconcat ("name_", name, NULL);
  char const *keys[] = { key };
  rados_omap_iter_t it = NULL;
  rados_read_op_t op = rados_create_read_op ();
  int prval = 0, r;
  gboolean found = FALSE;

  rados_read_op_omap_get_vals_by_keys (op, keys, 1, &it, &prval);
  r = rados_read_op_operate (op, io, "rbd_directory", 0);
  if (r == 0 && prval == 0 && it) {
    char *k = NULL, *v = NULL;
    size_t len = 0;
    found = rados_omap_get_next (it, &k, &v, &len) == 0 && k != NULL;
  }
  if (it)
    rados_omap_get_end (it);
  rados_release_read_op (op);
  return found;
}

/* The trash id of NAME if librbd's remove had moved it to the trash as
 * "removing" (rbd_remove does that first; `rbd ls` still lists such an
 * image, rbd_trash_list does not) when a kill stopped it; NULL if not
 * there.  The trash object's omap keys are "id_<ID>". */
static char *
removing_in_trash (rados_ioctx_t io, const char *name)
{
  g_autofree char *after = g_strdup ("");
  char *found = NULL;

  for (int rounds = 0; found == NULL && rounds < 64; rounds++) {
    rados_read_op_t op = rados_create_read_op ();
    rados_omap_iter_t it = NULL;
    unsigned char more = 0;
    int prval = 0, r;
    char *k = NULL, *v = NULL;
    size_t len = 0;

    rados_read_op_omap_get_keys2 (op, after, 256, &it, &more, &prval);
    r = rados_read_op_operate (op, io, "rbd_trash", 0);
    while (r == 0 && prval == 0 && it && found == NULL
           && rados_omap_get_next (it, &k, &v, &len) == 0 && k) {
      rbd_trash_image_info_t info;
      g_free (after);
      after = g_strdup (k);
      if (!g_str_has_prefix (k, "id_"))
        continue;
      memset (&info, 0, sizeof info);
      if (rbd_trash_get (io, k + 3, &info) == 0) {
        if (info.source == RBD_TRASH_IMAGE_SOURCE_REMOVING
            && g_strcmp0 (info.name, name) == 0)
          found = g_strdup (k + 3);
        rbd_trash_get_cleanup (&info);
      }
    }
    if (it)
      rados_omap_get_end (it);
    rados_release_read_op (op);
    if (r != 0 || prval != 0 || !more)
      break;
  }
  return found;
}

static int
finish_removal (conn *c, const rspec *t, GError **err)
{
  rados_ioctx_t io;
  int r;

  g_clear_error (err);
  if ((io = conn_io (c, t, err)) == NULL)
    return -1;
  if (!in_directory (io, t->image) && image_exists (io, t->image) == -ENOENT) {
    g_autofree char *id = removing_in_trash (io, t->image);
    if (id == NULL)
      return 0;
    r = rbd_trash_remove (io, id, true);
    if (r < 0 && r != -ENOENT) {
      g_autofree char *tn = rspec_image (t);
      return rfail (c, err, r, "cannot remove rbd image %s from the trash "
                    "(id %s), where an interrupted removal left it", tn, id);
    }
    return 0;
  }
  if (c->op && !rspec_guard (c->op, t, VMSNAP_GUARD_REMOVE, err))
    return -1;
  r = rbd_remove (io, t->image);
  if (r < 0 && r != -ENOENT) {
    g_autofree char *tn = rspec_image (t);
    return rfail (c, err, r, "cannot remove what is left of rbd image %s "
                  "(listed, but its header is gone)", tn);
  }
  return 0;
}

static int
protect (conn *c, const rspec *t, GError **err)
{
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *key = g_strconcat (MD_PROT, t->snap, NULL);
  g_autofree char *p = rspec_point (t);
  int prot = 0, r;

  if (img_open (c, t, NULL, FALSE, FALSE, &img, err) < 0)
    return -1;
  if ((r = rbd_snap_is_protected (img, t->snap, &prot)) < 0)
    return rfail (c, err, r, "cannot read whether %s is protected", p);
  if (prot)
    return 0;
  if ((r = rbd_metadata_set (img, key, vmsnap_op_domain_uuid (c->op))) < 0)
    return rfail (c, err, r, "cannot mark %s as protected by vmsnap", p);
  if ((r = rbd_snap_protect (img, t->snap)) < 0 && r != -EBUSY)
    return rfail (c, err, r, "cannot protect %s for a clone", p);
  return 0;
}

/* Unprotect T if vmsnap protected it and no clone depends on it any more.
 * Best effort (tidiness): errors are ignored. */
static void
release_parent (conn *c, const rspec *t)
{
  g_auto (rbd_image_t) img = NULL;
  g_autoptr (GPtrArray) kids = NULL;
  g_autofree char *key = g_strconcat (MD_PROT, t->snap, NULL);
  int prot = 0;

  if (children_of (c, t, &kids, NULL) < 0 || kids->len > 0)
    return;
  if (img_open (c, t, NULL, FALSE, TRUE, &img, NULL) < 0)
    return;
  if (!md_is (img, key, vmsnap_op_domain_uuid (c->op)))
    return;
  if (rbd_snap_is_protected (img, t->snap, &prot) == 0 && prot
      && rbd_snap_unprotect (img, t->snap) < 0)
    return;
  md_remove (img, key);
}

/* IMG (a recorded clone name, open) is an image librbd created for a clone
 * but never linked to its parent: no snapshot, no vmsnap mark, no data. */
static gboolean
half_made_clone (rbd_image_t img)
{
  g_autoptr (GPtrArray) names = NULL;
  g_autofree char *mark = NULL;
  uint64_t size = 0;
  guint64 bytes = 0;

  if (snap_names (img, &names) < 0 || names->len > 0)
    return FALSE;
  if (md_get (img, MD_CLONE, &mark) == 0)
    return FALSE;
  if (rbd_get_size (img, &size) < 0
      || rbd_diff_iterate2 (img, NULL, 0, size, 0, 0, count_cb, &bytes) < 0)
    return FALSE;
  return bytes == 0;
}

/* Clone T (image@snap) as CHILD, with deep-flatten so that a later flatten
 * frees the parent even when the clone has snapshots of its own.  An
 * existing CHILD made by an interrupted run (recorded name) is adopted if
 * its parent is T. */
static int
make_clone (conn *c, const rspec *t, const rspec *child, GError **err)
{
  g_auto (rbd_image_t) pimg = NULL, cimg = NULL;
  g_autofree char *cname = rspec_image (child), *p = rspec_point (t);
  rados_ioctx_t pio, cio;
  rbd_image_options_t opts;
  uint64_t features = 0;
  int r;

  r = img_open (c, child, NULL, FALSE, TRUE, &cimg, err);
  if (r < 0 && r != -ENOENT)
    return -1;
  /* A removal of a half-made clone killed midway can leave the name taken. */
  if (r == -ENOENT && finish_removal (c, child, err) < 0)
    return -1;
  if (r == 0) {
    rspec par;
    int pr = parent_of (cimg, &par);
    gboolean ok = pr == 0 && same_image (&par, t)
                  && g_strcmp0 (par.snap, t->snap) == 0;
    rspec_clear (&par);
    if (!ok && pr == -ENOENT && half_made_clone (cimg)) {
      /* librbd creates a clone's image before it attaches the parent: a
       * run killed in between left, under the name vmsnap recorded, an
       * image with no parent, no snapshot and no data.  It is ours and
       * holds nothing: remove it and clone again.  (Found by the crash
       * matrix's random SIGKILLs, tests/conformance.) */
      img_close (g_steal_pointer (&cimg));
      if ((cio = conn_io (c, child, err)) == NULL)
        return -1;
      if ((r = rbd_remove (cio, child->image)) < 0)
        return rfail (c, err, r, "cannot remove %s, the half-made clone of an "
                      "interrupted revert", cname);
      r = -ENOENT;
    } else if (!ok) {
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s exists "
                   "but is not a clone of %s: vmsnap recorded that name for "
                   "this revert; rename or remove that image and run vmsnap "
                   "recover", c->d->target, cname, p);
    }
  }
  if (r != 0) {
    if ((pio = conn_io (c, t, err)) == NULL || (cio = conn_io (c, child, err)) == NULL)
      return -1;
    if (img_open (c, t, t->snap, TRUE, FALSE, &pimg, err) < 0)
      return -1;
    if ((r = rbd_get_features (pimg, &features)) < 0)
      return rfail (c, err, r, "cannot read the features of %s", p);
    features &= RBD_FEATURE_LAYERING | RBD_FEATURE_STRIPINGV2
                | RBD_FEATURE_EXCLUSIVE_LOCK | RBD_FEATURE_OBJECT_MAP
                | RBD_FEATURE_FAST_DIFF | RBD_FEATURE_DEEP_FLATTEN
                | RBD_FEATURE_JOURNALING;
    features |= RBD_FEATURE_LAYERING | RBD_FEATURE_DEEP_FLATTEN;
    img_close (g_steal_pointer (&pimg));
    rbd_image_options_create (&opts);
    rbd_image_options_set_uint64 (opts, RBD_IMAGE_OPTION_FEATURES, features);
    r = rbd_clone3 (pio, t->image, t->snap, cio, child->image, opts);
    rbd_image_options_destroy (opts);
    if (r < 0)
      return rfail (c, err, r, "cannot clone %s as %s", p, cname);
    if (img_open (c, child, NULL, FALSE, FALSE, &cimg, err) < 0)
      return -1;
  }
  if ((r = md_remove_ours (cimg)) < 0)
    return rfail (c, err, r, "cannot drop the vmsnap marks %s inherited from %s",
                  cname, p);
  if ((r = rbd_metadata_set (cimg, MD_CLONE, vmsnap_op_domain_uuid (c->op))) < 0)
    return rfail (c, err, r, "cannot mark clone %s as made by vmsnap", cname);
  return 0;
}

/* A failed revert is rolled back by the core, which knows only the undo
 * storage of disks that finished: a clone recorded by this slot is removed
 * here (it is ours: its name was recorded before it was made). */
static void
drop_recorded_clone (conn *c, const rspec *t)
{
  const char *rec = c ? vmsnap_op_get (c->op, "clone") : NULL;
  g_auto (rspec) ch = { 0 };
  g_autoptr (GPtrArray) names = NULL;
  rados_ioctx_t io;
  gboolean ours = FALSE;

  if (rec == NULL || !rspec_parse (rec, &ch))
    return;
  {
    /* Only a clone of T without snapshots: never an image someone else
     * made under the recorded name since. */
    g_auto (rbd_image_t) img = NULL;
    rspec par;
    int r = img_open (c, &ch, NULL, TRUE, TRUE, &img, NULL);
    if (r == -ENOENT) {
      /* Our recorded name: a removal of it killed midway is finished. */
      if (finish_removal (c, &ch, NULL) == 0)
        release_parent (c, t);
      return;
    }
    if (r < 0)
      return;
    if (parent_of (img, &par) == 0) {
      ours = same_image (&par, t) && g_strcmp0 (par.snap, t->snap) == 0
             && snap_names (img, &names) == 0 && names->len == 0;
      rspec_clear (&par);
    }
  }
  if (ours && (io = conn_io (c, &ch, NULL)) != NULL && rbd_remove (io, ch.image) == 0)
    release_parent (c, t);
}

/* Before a rollback an earlier, killed run may have started (recover):
 * rebuild IMG's object map from its objects.  librbd's rollback
 * (SnapshotRollbackRequest, pacific) first overwrites the head's object
 * map with the snapshot's, then rolls the objects back, skipping every
 * object that both the head map it loaded and the snapshot's map call
 * absent.  Killed between the two, the head map calls absent the objects
 * written since the snapshot although they still hold that data, and a
 * second rollback trusting it would leave them so: the disk would hold
 * neither the snapshot nor its old contents.  Rebuilding costs a stat per
 * object (like the rollback itself), only in recovery.  Images without
 * the object-map feature need nothing. */
static int
rebuild_map_if_stale (conn *c, rbd_image_t img, const char *aname, GError **err)
{
  uint64_t features = 0;
  int r;

  if ((r = rbd_get_features (img, &features)) < 0)
    return rfail (c, err, r, "cannot read the features of rbd image %s", aname);
  if ((features & RBD_FEATURE_OBJECT_MAP) == 0)
    return 0;
  if ((r = rbd_rebuild_object_map (img, noop_progress, NULL)) < 0)
    return rfail (c, err, r, "cannot rebuild the object map of rbd image %s "
                  "before rolling it back again (an interrupted rollback "
                  "leaves it stale); run `rbd object-map rebuild %s`, then "
                  "vmsnap recover", aname, aname);
  return 0;
}

static int
revert_1 (conn *c, const rspec *a, const rspec *t, vmsnap_result *res,
          GError **err)
{
  vmsnap_op *op = c->op;
  const vmsnap_disk *d = c->d;
  g_autofree char *aname = rspec_image (a), *tp = rspec_point (t);
  g_autofree char *why = NULL;
  const char *mode = vmsnap_op_get (op, "mode");
  gboolean decided_before = mode != NULL;   /* an earlier run chose it */
  int r;

  if (mode == NULL) {
    g_auto (rbd_image_t) aimg = NULL, timg = NULL;
    const char *forced = opt_revert_mode (op);
    rbd_image_info_t info;

    if ((r = img_open (c, t, t->snap, TRUE, TRUE, &timg, err)) == -ENOENT)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s is no longer "
                   "in the cluster, so it cannot be reverted to (rbd snap ls "
                   "%s/%s; vmsnap delete removes it from the catalog)",
                   d->target, tp, t->pool, t->image);
    if (r < 0)
      return -1;
    if (img_open (c, a, NULL, FALSE, FALSE, &aimg, err) < 0)
      return -1;
    if (!not_in_use (c, aimg, a, err))
      return -1;
    if ((r = rbd_stat (aimg, &info, sizeof info)) < 0)
      return rfail (c, err, r, "cannot read the size of rbd image %s", aname);
    if (!same_image (a, t)) {
      mode = "clone";
      g_autofree char *tname = rspec_image (t);
      why = g_strdup_printf ("%s lives in image %s, not in the disk's %s "
                             "(an earlier clone revert): only a clone can "
                             "bring it back", tp, tname, aname);
    } else if (forced) {
      mode = forced;
      why = g_strdup (origin_of (op, "rbd.revert-mode"));
    } else {
      guint64 limit = opt_rollback_max (op), touched;
      const char *how;
      touched = rollback_objects (aimg, timg, &info, &how);
      mode = touched <= limit ? "rollback" : "clone";
      why = g_strdup_printf ("a rollback touches %" G_GUINT64_FORMAT " objects "
                             "(%s), %s %" G_GUINT64_FORMAT,
                             touched, how, touched <= limit ? "at most" : "more than",
                             limit);
    }
    if (strcmp (mode, "clone") == 0) {
      g_autofree char *stem = image_stem (a->image);
      g_autofree char *cn = NULL;
      rspec ch = { 0 };
      rados_ioctx_t io = conn_io (c, a, err);
      if (io == NULL)
        return -1;
      for (int tries = 0; tries < 64 && cn == NULL; tries++) {
        g_auto (rbd_image_t) probe = NULL;
        g_autofree char *cand = g_strdup_printf ("%s" TAG "%08x", stem, g_random_int ());
        ch.pool = a->pool;
        ch.ns = a->ns;
        ch.image = cand;
        r = img_open (c, &ch, NULL, TRUE, TRUE, &probe, err);
        if (r == -ENOENT)
          cn = rspec_image (&ch);
        else if (r < 0)
          return -1;
      }
      if (cn == NULL)
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: no free clone name "
                     "%s" TAG "XXXXXXXX in pool %s", d->target, stem, a->pool);
      if (!record (c, "clone", cn, err))
        return -1;
    }
    if (!record (c, "why", why, err) || !record (c, "mode", mode, err))
      return -1;
    /* A step of its own: the point where a rollback is chosen but not
     * started, all the journal knows of a run killed inside librbd's
     * rollback (rbd-crash.sh stops there). */
    if (strcmp (mode, "rollback") == 0
        && !vmsnap_op_mark_done (op, "decided", err))
      return -1;
  }
  g_free (why);
  why = g_strdup (vmsnap_op_get (op, "why"));

  if (strcmp (mode, "rollback") == 0) {
    g_auto (rbd_image_t) img = NULL;
    progress_ctx pc = { op, 0 };
    rbd_image_info_t info = { 0 };
    if (!same_image (a, t))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: %s is not a snapshot of "
                   "the disk's image %s: rollback is impossible; run the "
                   "revert with --rbd-revert-mode clone (rbd.revert-mode)",
                   d->target, tp, aname);
    if (img_open (c, a, NULL, FALSE, FALSE, &img, err) < 0)
      return -1;
    rbd_stat (img, &info, sizeof info);
    if (!vmsnap_op_step_done (op, "rollback")) {
      if (!rspec_guard (op, a, VMSNAP_GUARD_WRITE, err))
        return -1;
      if (decided_before && rebuild_map_if_stale (c, img, aname, err) < 0)
        return -1;
      r = rbd_snap_rollback_with_progress (img, t->snap, progress_cb, &pc);
      progress_done (&pc);
      if (r < 0)
        return rfail (c, err, r, "cannot roll %s back to %s", aname, t->snap);
      if (!vmsnap_op_mark_done (op, "rollback", err))
        return -1;
    }
    {
      g_autofree char *sz = fmt_size (info.size);
      vmsnap_result_set_note (res, "rolled %s back to snapshot %s (%s in %"
                              G_GUINT64_FORMAT " objects; %s)", aname, t->snap,
                              sz, (guint64) info.num_objs, why ? why : "rollback");
    }
    return 0;
  }

  /* clone */
  {
    const char *cn = vmsnap_op_get (op, "clone");
    rspec ch;
    g_autofree char *cloc = NULL, *old = NULL, *depth_note = NULL;
    gboolean keep = opt_keep_old_head (op);
    guint depth = 0;

    if (cn == NULL || !rspec_parse (cn, &ch))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: the journal records "
                   "clone mode without a valid clone name (internal error)",
                   d->target);
    if (!vmsnap_op_step_done (op, "protect")) {
      if (protect (c, t, err) < 0 || !vmsnap_op_mark_done (op, "protect", err)) {
        rspec_clear (&ch);
        return -1;
      }
    }
    if (!vmsnap_op_step_done (op, "clone")) {
      if (make_clone (c, t, &ch, err) < 0 || !vmsnap_op_mark_done (op, "clone", err)) {
        rspec_clear (&ch);
        return -1;
      }
    }
    cloc = rspec_locator (&ch);
    old = rspec_locator (a);
    vmsnap_result_set_new_source (res, cn, d->format ? d->format : "raw");
    vmsnap_result_add_undo (res, cloc);
    if (!keep)
      vmsnap_result_add_garbage (res, old);
    if (chain_depth (c, &ch, &depth, NULL) == 0 && depth > 2)
      depth_note = g_strdup_printf ("; the disk's chain is now %u images deep "
                                    "(vmsnap merge --max-depth N flattens it)",
                                    depth);
    vmsnap_result_set_note (res, "cloned %s as %s, the disk's new image (%s); "
                            "previous image %s %s%s", tp, cn,
                            why ? why : "clone", aname,
                            keep ? "kept (rbd.keep-old-head)"
                                 : "discarded after the switch",
                            depth_note ? depth_note : "");
    rspec_clear (&ch);
  }
  return 0;
}

static int
vrbd_revert (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_auto (rspec) a = { 0 };
  g_auto (rspec) t = { 0 };
  g_autoptr (conn) c = NULL;

  if (!slot_begin (op, d, "revert", flags, &a, err))
    return -1;
  if (!loc_parse (d, locator, TRUE, &t, err))
    return -1;
  if (vmsnap_op_is_online (op))
    return fail (err, VMSNAP_ERR_UNSUPPORTED, "disk %s: backend %s reverts "
                 "with the VM shut off (internal error: the core stops it "
                 "first)", d->target, NAME);
  if ((c = conn_open (op, d, err)) == NULL)
    return -1;
  if (!record_client (c, err))   /* before any watch: see vrbd_create */
    return -1;
  if (revert_1 (c, &a, &t, res, err) == 0)
    return 0;
  drop_recorded_clone (c, &t);
  return -1;
}

/* ========================================================= delete/merge */

/* Remove snapshot T (no clone may depend on it): unprotect it if vmsnap
 * protected it, remove it, drop its marks.  Already gone: success. */
static int
remove_snapshot (conn *c, const rspec *t, GError **err)
{
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *kp = g_strconcat (MD_PROT, t->snap, NULL);
  g_autofree char *ks = g_strconcat (MD_SNAP, t->snap, NULL);
  g_autofree char *p = rspec_point (t);
  gboolean exists = FALSE;
  int prot = 0, r;

  r = img_open (c, t, NULL, FALSE, TRUE, &img, err);
  if (r == -ENOENT)
    return 0;
  if (r < 0)
    return -1;
  if ((r = snap_exists (img, t->snap, &exists)) < 0)
    return rfail (c, err, r, "cannot read the snapshots of %s/%s", t->pool, t->image);
  if (exists) {
    if ((r = rbd_snap_is_protected (img, t->snap, &prot)) < 0)
      return rfail (c, err, r, "cannot read whether %s is protected", p);
    if (prot) {
      if (!md_is (img, kp, vmsnap_op_domain_uuid (c->op)))
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s is "
                     "protected, and not by vmsnap: unprotect it (rbd snap "
                     "unprotect %s) if it may go", c->d->target, p, p);
      if ((r = rbd_snap_unprotect (img, t->snap)) < 0 && r != -EINVAL)
        return rfail (c, err, r, "cannot unprotect %s", p);
    }
    if (!rspec_guard (c->op, t, VMSNAP_GUARD_WRITE, err))
      return -1;
    if ((r = rbd_snap_remove (img, t->snap)) < 0 && r != -ENOENT)
      return rfail (c, err, r, "cannot remove snapshot %s", p);
  }
  if ((r = md_remove (img, ks)) < 0 || (r = md_remove (img, kp)) < 0)
    return rfail (c, err, r, "cannot remove the vmsnap marks of %s", p);
  return 0;
}

/* After T's snapshot went: T's image is garbage when it is not the disk's
 * image, vmsnap abandoned its head, and no snapshot is left in it. */
static void
collect_image (conn *c, const rspec *a, const rspec *t, vmsnap_result *res,
               GString *note)
{
  g_auto (rbd_image_t) img = NULL;
  g_autoptr (GPtrArray) names = NULL;
  rspec head;
  g_autofree char *loc = NULL, *name = NULL;

  if (same_image (a, t) || img_open (c, t, NULL, TRUE, TRUE, &img, NULL) < 0)
    return;
  if (!md_is (img, MD_ABANDONED, vmsnap_op_domain_uuid (c->op))
      || snap_names (img, &names) < 0 || names->len > 0)
    return;
  rspec_copy (&head, t, NULL);
  loc = rspec_locator (&head);
  name = rspec_image (&head);
  rspec_clear (&head);
  vmsnap_result_add_garbage (res, loc);
  g_string_append_printf (note, "; image %s (abandoned by an earlier clone "
                          "revert) holds no snapshot any more and is "
                          "removed", name);
}

/* About how many bytes a (deep) flatten of KID (open as IMG) copies: what
 * its head or a snapshot of it reads from the parent chain, the most of
 * them (object granularity; 0 without fast-diff). */
static guint64
parent_bytes (conn *c, const rspec *kid, rbd_image_t img)
{
  g_autoptr (GPtrArray) names = NULL;
  guint64 most = 0, with = 0, own = 0;

  if (used_bytes (img, NULL, TRUE, &with) == 0 && used_bytes (img, NULL, FALSE, &own) == 0
      && with > own)
    most = with - own;
  if (snap_names (img, &names) < 0)
    return most;
  for (guint i = 0; i < names->len; i++) {
    g_auto (rbd_image_t) si = NULL;
    if (img_open (c, kid, g_ptr_array_index (names, i), TRUE, TRUE, &si, NULL) < 0)
      continue;
    if (used_bytes (si, NULL, TRUE, &with) == 0 && used_bytes (si, NULL, FALSE, &own) == 0
        && with > own)
      most = MAX (most, with - own);
  }
  return most;
}

/* Flatten KID if it still depends on T; adds the bytes copied. */
static int
flatten_child (conn *c, const rspec *kid, const rspec *t, guint64 *copied,
               GError **err)
{
  g_auto (rbd_image_t) img = NULL;
  g_autofree char *kn = rspec_image (kid);
  progress_ctx pc = { c->op, 0 };
  rspec par;
  int r;

  r = img_open (c, kid, NULL, FALSE, TRUE, &img, err);
  if (r == -ENOENT)
    return 0;                   /* removed since */
  if (r < 0)
    return -1;
  r = parent_of (img, &par);
  if (r == -ENOENT)
    return 0;                   /* flattened already */
  if (r < 0)
    return rfail (c, err, r, "cannot read the parent of %s", kn);
  r = t == NULL || (same_image (&par, t) && g_strcmp0 (par.snap, t->snap) == 0);
  rspec_clear (&par);
  if (!r)
    return 0;
  /* A clone child another disk of the domain runs on is that disk's
   * data: never written by an operation on this one. */
  if (!rspec_guard (c->op, kid, VMSNAP_GUARD_WRITE, err))
    return -1;
  *copied += parent_bytes (c, kid, img);
  r = rbd_flatten_with_progress (img, progress_cb, &pc);
  progress_done (&pc);
  if (r < 0 && r != -EINVAL)
    return rfail (c, err, r, "cannot flatten clone %s", kn);
  return 0;
}

/* Journal: key "children" (the clones found, one per line, recorded before
 * any is flattened), steps "flatten-K"; unprotect/remove repeat safely. */
static int
delete_1 (conn *c, const rspec *a, const rspec *t, vmsnap_result *res,
          GError **err)
{
  vmsnap_op *op = c->op;
  const vmsnap_disk *d = c->d;
  g_autofree char *tp = rspec_point (t);
  g_autoptr (GString) note = g_string_new (NULL);
  g_auto (GStrv) kids = NULL;
  const char *rec = vmsnap_op_get (op, "children");
  guint64 copied = 0;
  int r;

  if (rec == NULL) {
    g_auto (rbd_image_t) img = NULL;
    g_autoptr (GPtrArray) found = NULL;
    g_autofree char *kp = g_strconcat (MD_PROT, t->snap, NULL);
    g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
    gboolean exists = FALSE, refuse = opt_refuse_children (op);
    int prot = 0;

    r = img_open (c, t, NULL, TRUE, TRUE, &img, err);
    if (r < 0 && r != -ENOENT)
      return -1;
    if (r == 0 && (r = snap_exists (img, t->snap, &exists)) < 0)
      return rfail (c, err, r, "cannot read the snapshots of %s/%s", t->pool, t->image);
    if (!exists) {
      vmsnap_result_set_note (res, "snapshot %s was already gone", tp);
      collect_image (c, a, t, res, note);
      return 0;
    }
    if ((r = rbd_snap_is_protected (img, t->snap, &prot)) < 0)
      return rfail (c, err, r, "cannot read whether %s is protected", tp);
    if (prot && !md_is (img, kp, vmsnap_op_domain_uuid (op)))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s is protected, "
                   "and not by vmsnap: unprotect it (rbd snap unprotect %s) if "
                   "it may go", d->target, tp, tp);
    if (children_of (c, t, &found, err) < 0)
      return -1;
    if (found->len > 0) {
      g_autofree char *list = names_of (found);
      for (guint i = 0; i < found->len; i++)
        if (((rspec *) g_ptr_array_index (found, i))->snap)
          return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s has clones "
                       "in the RBD trash (%s); restore or purge them (rbd trash "
                       "ls) first", d->target, tp, list);
      if (refuse)
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s has %u "
                     "clone(s) that depend on it: %s; flatten them (rbd flatten "
                     "IMAGE), or let vmsnap flatten them (%s is refuse: "
                     "make rbd.delete-children flatten)",
                     d->target, tp, found->len, list,
                     origin_of (op, "rbd.delete-children"));
    }
    /* A clone another disk of the domain runs on is that disk's data:
     * refused before anything is recorded (flatten_child asks again). */
    for (guint i = 0; i < found->len; i++)
      if (!rspec_guard (op, g_ptr_array_index (found, i), VMSNAP_GUARD_WRITE, err))
        return -1;
    for (guint i = 0; i < found->len; i++)
      g_ptr_array_add (names, rspec_image (g_ptr_array_index (found, i)));
    g_ptr_array_add (names, NULL);
    {
      g_autofree char *joined = g_strjoinv ("\n", (char **) names->pdata);
      if (!record (c, "children", joined, err))
        return -1;
    }
    rec = vmsnap_op_get (op, "children");
  }
  kids = *rec ? g_strsplit (rec, "\n", -1) : g_new0 (char *, 1);
  for (guint i = 0; kids[i]; i++) {
    g_autofree char *step = g_strdup_printf ("flatten-%u", i);
    rspec k;
    if (vmsnap_op_step_done (op, step))
      continue;
    if (!rspec_parse (kids[i], &k))
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: bad clone name '%s' in "
                   "the journal (internal error)", d->target, kids[i]);
    r = flatten_child (c, &k, t, &copied, err);
    rspec_clear (&k);
    if (r < 0 || !vmsnap_op_mark_done (op, step, err))
      return -1;
  }
  if (kids[0]) {
    g_autofree char *list = g_strjoinv (", ", kids);
    g_autofree char *sz = fmt_size (copied);
    g_string_append_printf (note, "; flattened its clone(s) %s first (~%s copied)",
                            list, sz);
  }
  vmsnap_result_add_bytes_copied (res, copied);
  {
    g_autoptr (GPtrArray) left = NULL;
    gboolean gone = FALSE;
    {
      /* A re-run after the removal itself (interrupted before the core
       * recorded the result): the snapshot is gone, nothing to list. */
      g_auto (rbd_image_t) img = NULL;
      gboolean exists = FALSE;
      r = img_open (c, t, NULL, TRUE, TRUE, &img, err);
      if (r < 0 && r != -ENOENT)
        return -1;
      if (r == -ENOENT)
        gone = TRUE;
      else if ((r = snap_exists (img, t->snap, &exists)) < 0)
        return rfail (c, err, r, "cannot read the snapshots of %s/%s", t->pool, t->image);
      else
        gone = !exists;
    }
    if (!gone && children_of (c, t, &left, err) < 0)
      return -1;
    if (left && left->len > 0) {
      /* Clones without deep-flatten that have snapshots of their own still
       * need T after a flatten: T stays until they are gone. */
      g_autofree char *list = names_of (left);
      vmsnap_result_set_kept (res, TRUE);
      vmsnap_result_set_note (res, "snapshot %s kept as an unnamed point: "
                              "clone(s) %s still depend on it (no deep-flatten "
                              "feature, and snapshots of their own); vmsnap "
                              "merge removes it once they are gone%s", tp, list,
                              note->str);
      return 0;
    }
  }
  if (remove_snapshot (c, t, err) < 0)
    return -1;
  collect_image (c, a, t, res, note);
  vmsnap_result_set_note (res, "removed RBD snapshot %s%s", tp, note->str);
  return 0;
}

static int
vrbd_delete (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
             unsigned int flags, vmsnap_result *res, GError **err)
{
  g_auto (rspec) a = { 0 };
  g_auto (rspec) t = { 0 };
  g_autoptr (conn) c = NULL;

  if (!slot_begin (op, d, "delete", flags, &a, err))
    return -1;
  if (!loc_parse (d, locator, TRUE, &t, err))
    return -1;
  if ((c = conn_open (op, d, err)) == NULL)
    return -1;
  return delete_1 (c, &a, &t, res, err);
}

static gboolean
is_kept (const vmsnap_merge_spec *spec, const char *loc)
{
  for (size_t i = 0; i < spec->n_keep; i++)
    if (strcmp (spec->keep[i], loc) == 0)
      return TRUE;
  return FALSE;
}

/* The images of the disk: the active one and those of every locator the
 * catalog holds for it (rspec*, no snapshot, unique). */
static GPtrArray *
family (vmsnap_op *op, const rspec *a)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (rspec_free);
  rspec *x = g_new0 (rspec, 1);

  rspec_copy (x, a, NULL);
  g_ptr_array_add (out, x);
  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    const char *l = vmsnap_op_locator (op, i);
    rspec s;
    gboolean seen = FALSE;
    if (l == NULL || !g_str_has_prefix (l, "rbd:") || !rspec_parse (l + 4, &s))
      continue;
    for (guint k = 0; k < out->len && !seen; k++)
      seen = same_image (g_ptr_array_index (out, k), &s);
    if (!seen) {
      x = g_new0 (rspec, 1);
      rspec_copy (x, &s, NULL);
      g_ptr_array_add (out, x);
    }
    rspec_clear (&s);
  }
  return out;
}

/* The next consolidation: "drop LOCATOR" (an unnamed point nothing depends
 * on) or "flatten POOL/IMAGE" (a clone vmsnap made, deeper than
 * max_depth), or NULL when done.  SKIP: unnamed points left as they are. */
static char *
merge_next (conn *c, const rspec *a, const vmsnap_merge_spec *spec,
            GHashTable *done_locs, GHashTable *skip, GString *skipped,
            GHashTable *flat, GError **err)
{
  vmsnap_op *op = c->op;
  g_autoptr (GPtrArray) fam = NULL;
  const char *uuid = vmsnap_op_domain_uuid (op);
  char *best = NULL;
  guint best_depth = G_MAXUINT;

  for (size_t i = 0; i < vmsnap_op_n_locators (op); i++) {
    const char *l = vmsnap_op_locator (op, i);
    g_autoptr (GPtrArray) kids = NULL;
    rspec s;
    if (l == NULL || is_kept (spec, l) || g_hash_table_contains (done_locs, l)
        || g_hash_table_contains (skip, l))
      continue;
    if (!g_str_has_prefix (l, "rbd:") || !rspec_parse (l + 4, &s) || s.snap == NULL) {
      rspec_clear (&s);
      continue;
    }
    {
      g_auto (rbd_image_t) img = NULL;
      gboolean exists = FALSE;
      int r = img_open (c, &s, NULL, TRUE, TRUE, &img, err);
      if (r < 0 && r != -ENOENT) {
        rspec_clear (&s);
        return NULL;
      }
      if (r == -ENOENT || snap_exists (img, s.snap, &exists) < 0 || !exists) {
        rspec_clear (&s);
        return g_strdup_printf ("drop %s", l);
      }
    }
    if (children_of (c, &s, &kids, err) < 0) {
      rspec_clear (&s);
      return NULL;
    }
    if (kids->len == 0) {
      rspec_clear (&s);
      return g_strdup_printf ("drop %s", l);
    }
    {
      g_autofree char *list = names_of (kids);
      g_autofree char *p = rspec_point (&s);
      g_hash_table_add (skip, g_strdup (l));
      g_string_append_printf (skipped, "%sunnamed point %s kept: clone(s) %s "
                              "depend on it", skipped->len ? "; " : "", p, list);
    }
    rspec_clear (&s);
  }
  if (spec->max_depth == 0)
    return NULL;
  fam = family (op, a);
  for (guint i = 0; i < fam->len; i++) {
    const rspec *x = g_ptr_array_index (fam, i);
    g_auto (rbd_image_t) img = NULL;
    g_autofree char *xn = rspec_image (x);
    rspec par;
    guint depth = 0;
    int r;
    if (g_hash_table_contains (flat, xn))
      continue;
    r = img_open (c, x, NULL, TRUE, TRUE, &img, err);
    if (r == -ENOENT)
      continue;
    if (r < 0)
      return NULL;
    if (!md_is (img, MD_CLONE, uuid) || parent_of (img, &par) < 0)
      continue;
    rspec_clear (&par);
    if (chain_depth (c, x, &depth, err) < 0)
      return NULL;
    if (depth > spec->max_depth && depth < best_depth) {
      g_free (best);
      best = rspec_image (x);
      best_depth = depth;
    }
  }
  if (best == NULL)
    return NULL;
  {
    char *act = g_strdup_printf ("flatten %s", best);
    g_free (best);
    return act;
  }
}

/* Merge.  Each consolidation K is recorded ("mK", the action) before it
 * runs and marked done ("mK") after; a re-run replays the recorded ones in
 * order (each is repeatable), then goes on deciding from storage. */
static int
vrbd_merge (vmsnap_op *op, const vmsnap_disk *d, const vmsnap_merge_spec *spec,
            unsigned int flags, vmsnap_result *res, GError **err)
{
  g_auto (rspec) a = { 0 };
  g_autoptr (conn) c = NULL;
  g_autoptr (GHashTable) done_locs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) skip = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GString) skipped = g_string_new (NULL);
  g_autoptr (GString) log = g_string_new (NULL);
  g_autoptr (GString) gc = g_string_new (NULL);
  g_autoptr (GHashTable) flat = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint64 copied = 0;
  guint dropped = 0, flattened = 0;

  if (!slot_begin (op, d, "merge", flags, &a, err))
    return -1;
  if (spec == NULL)
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: merge without a spec "
                 "(internal error)", d->target);
  if ((c = conn_open (op, d, err)) == NULL)
    return -1;
  {
    /* The disk's image must be there (and the cluster answer) before
     * anything is said about it. */
    g_auto (rbd_image_t) img = NULL;
    if (img_open (c, &a, NULL, TRUE, FALSE, &img, err) < 0)
      return -1;
  }
  for (guint k = 0;; k++) {
    g_autofree char *key = g_strdup_printf ("m%u", k);
    g_autofree char *act = g_strdup (vmsnap_op_get (op, key));

    if (k >= 1000)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: merge does not converge "
                   "(internal error)", d->target);
    if (act == NULL) {
      GError *e = NULL;
      act = merge_next (c, &a, spec, done_locs, skip, skipped, flat, &e);
      if (e) {
        g_propagate_error (err, e);
        return -1;
      }
      if (act == NULL)
        break;
      if (!record (c, key, act, err))
        return -1;
    }
    if (g_str_has_prefix (act, "drop ")) {
      const char *l = act + 5;
      rspec s;
      if (!loc_parse (d, l, TRUE, &s, err))
        return -1;
      if (!vmsnap_op_step_done (op, key)) {
        if (remove_snapshot (c, &s, err) < 0 || !vmsnap_op_mark_done (op, key, err)) {
          rspec_clear (&s);
          return -1;
        }
      }
      collect_image (c, &a, &s, res, gc);
      vmsnap_result_add_removed (res, l);
      g_hash_table_add (done_locs, g_strdup (l));
      g_string_append_printf (log, "%sremoved unnamed point %s", log->len ? "; " : "", l + 4);
      dropped++;
      rspec_clear (&s);
    } else if (g_str_has_prefix (act, "flatten ")) {
      rspec s, par = { 0 };
      gboolean had_parent = FALSE;
      guint64 before = copied;
      if (!rspec_parse (act + 8, &s))
        return fail (err, VMSNAP_ERR_FAILED, "disk %s: bad merge step '%s' in "
                     "the journal (internal error)", d->target, act);
      {
        g_auto (rbd_image_t) img = NULL;
        if (img_open (c, &s, NULL, TRUE, TRUE, &img, NULL) == 0)
          had_parent = parent_of (img, &par) == 0;
      }
      if (!vmsnap_op_step_done (op, key)) {
        if (flatten_child (c, &s, NULL, &copied, err) < 0
            || !vmsnap_op_mark_done (op, key, err)) {
          rspec_clear (&s);
          rspec_clear (&par);
          return -1;
        }
      }
      if (had_parent)
        release_parent (c, &par);
      {
        g_autofree char *sz = fmt_size (copied - before);
        g_string_append_printf (log, "%sflattened clone %s (~%s copied)",
                                log->len ? "; " : "", act + 8, sz);
      }
      flattened++;
      g_hash_table_add (flat, g_strdup (act + 8));
      rspec_clear (&s);
      rspec_clear (&par);
    } else
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: unknown merge step '%s' "
                   "in the journal (internal error)", d->target, act);
  }
  vmsnap_result_add_bytes_copied (res, copied);
  if (dropped + flattened == 0) {
    g_autofree char *hint = NULL;
    guint depth = 0;
    if (spec->max_depth == 0 && chain_depth (c, &a, &depth, NULL) == 0 && depth > 1)
      hint = g_strdup_printf ("the disk's image is %u images deep "
                              "(vmsnap merge --max-depth N flattens the clones "
                              "vmsnap made)", depth);
    vmsnap_result_set_note (res, "nothing to consolidate%s%s%s%s",
                            skipped->len || hint ? ": " : "", skipped->str,
                            skipped->len && hint ? "; " : "", hint ? hint : "");
  } else
    vmsnap_result_set_note (res, "%s%s%s%s", log->str, gc->str,
                            skipped->len ? "; " : "", skipped->str);
  return 0;
}

/* ================================================================== list */

/* Every snapshot of the disk's images (the active one and those the
 * catalog names), with vmsnap's ownership mark as owner. */
static int
vrbd_list (vmsnap_op *op, const vmsnap_disk *d, GPtrArray **points,
           GError **err)
{
  g_auto (rspec) a = { 0 };
  g_autoptr (conn) c = NULL;
  g_autoptr (GPtrArray) fam = NULL;
  g_autoptr (GPtrArray) out =
    g_ptr_array_new_with_free_func ((GDestroyNotify) vmsnap_point_free);

  if (!slot_begin (op, d, "list", 0, &a, err))
    return -1;
  if ((c = conn_open (op, d, err)) == NULL)
    return -1;
  fam = family (op, &a);
  for (guint i = 0; i < fam->len; i++) {
    const rspec *x = g_ptr_array_index (fam, i);
    g_auto (rbd_image_t) img = NULL;
    g_autoptr (GPtrArray) names = NULL;
    int r = img_open (c, x, NULL, TRUE, TRUE, &img, err);
    if (r == -ENOENT)
      continue;
    if (r < 0)
      return -1;
    if ((r = snap_names (img, &names)) < 0) {
      g_autofree char *n = rspec_image (x);
      return rfail (c, err, r, "cannot list the snapshots of rbd image %s", n);
    }
    for (guint k = 0; k < names->len; k++) {
      const char *sn = g_ptr_array_index (names, k);
      g_autofree char *key = g_strconcat (MD_SNAP, sn, NULL), *owner = NULL;
      vmsnap_point *pt = g_new0 (vmsnap_point, 1);
      rspec s;
      rspec_copy (&s, x, sn);
      pt->locator = rspec_locator (&s);
      pt->name = g_strdup (sn);
      if (md_get (img, key, &owner) == 0)
        pt->owner = g_strdup_printf ("vmsnap:%s", owner);
      rspec_clear (&s);
      g_ptr_array_add (out, pt);
    }
  }
  *points = g_steal_pointer (&out);
  return 0;
}

/* =============================================================== discard */

/* Storage the core no longer references: a snapshot (undo of a create), or
 * an image head (the old image after a clone revert, a clone whose revert
 * was rolled back, an abandoned image without snapshots).  An image
 * without snapshots is removed (and the protection vmsnap put on its
 * parent snapshot released); one that still holds snapshots keeps them and
 * is marked abandoned, and its head data is discarded unless it is a clone.
 * Never the disk's active image.  Already gone: success. */
static int
vrbd_discard (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
              unsigned int flags, GError **err)
{
  g_auto (rspec) a = { 0 };
  g_auto (rspec) t = { 0 };
  g_autoptr (conn) c = NULL;
  g_auto (rbd_image_t) img = NULL;
  g_autoptr (GPtrArray) names = NULL;
  g_autofree char *tn = NULL;
  rspec par = { 0 };
  gboolean has_parent;
  int r;

  if (!slot_begin (op, d, "discard", flags, &a, err))
    return -1;
  if (!loc_parse (d, locator, FALSE, &t, err))
    return -1;
  tn = rspec_image (&t);
  if (t.snap == NULL && same_image (&a, &t))
    return fail (err, VMSNAP_ERR_FAILED, "disk %s: refusing to discard rbd "
                 "image %s: it is the disk's active image (internal error)",
                 d->target, tn);
  if ((c = conn_open (op, d, err)) == NULL)
    return -1;
  if (t.snap) {
    g_autoptr (GPtrArray) kids = NULL;
    r = children_of (c, &t, &kids, err);
    if (r == -ENOENT) {
      g_clear_error (err);
      return 0;
    }
    if (r < 0)
      return -1;
    if (kids->len > 0) {
      g_autofree char *list = names_of (kids), *p = rspec_point (&t);
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: snapshot %s has clones "
                   "(%s) and stays", d->target, p, list);
    }
    if (!record_client (c, err))
      return -1;
    return remove_snapshot (c, &t, err);
  }
  /* The client is recorded before the read-write open, which registers a
   * watch: a run killed after it leaves that watch for 30 s, and a re-run
   * frees it only by blocklisting a recorded client (else rbd_remove
   * refuses: "still open by a client"; seen in the crash matrix). */
  if (!record_client (c, err))
    return -1;
  r = img_open (c, &t, NULL, FALSE, TRUE, &img, err);
  if (r == -ENOENT)
    return finish_removal (c, &t, err);
  if (r < 0)
    return -1;
  if ((r = snap_names (img, &names)) < 0)
    return rfail (c, err, r, "cannot list the snapshots of rbd image %s", tn);
  has_parent = parent_of (img, &par) == 0;
  if (names->len > 0) {
    uint64_t size = 0;
    rspec_clear (&par);
    if ((r = rbd_metadata_set (img, MD_ABANDONED, vmsnap_op_domain_uuid (op))) < 0)
      return rfail (c, err, r, "cannot mark rbd image %s as abandoned", tn);
    /* A clone's head is left as it is: discarding an object its snapshots
     * read from the parent makes librbd copy the parent's data up first,
     * which costs far more than the head holds. */
    if (has_parent)
      return 0;
    if ((r = rbd_get_size (img, &size)) < 0)
      return rfail (c, err, r, "cannot read the size of rbd image %s", tn);
    /* rbd_discard returns the byte count as an int: 1 GiB at a time. */
    for (uint64_t off = 0; off < size; off += DISCARD_CHUNK)
      if ((r = rbd_discard (img, off, MIN (DISCARD_CHUNK, size - off))) < 0)
        return rfail (c, err, r, "cannot discard the head data of rbd image "
                      "%s (it stays for its snapshots)", tn);
    return 0;
  }
  img_close (g_steal_pointer (&img));
  {
    rados_ioctx_t io = conn_io (c, &t, err);
    if (io == NULL) {
      rspec_clear (&par);
      return -1;
    }
    r = rspec_guard (op, &t, VMSNAP_GUARD_REMOVE, err) ? rbd_remove (io, t.image) : 1;
  }
  if (r == 1) {
    rspec_clear (&par);
    return -1;
  }
  if (r < 0 && r != -ENOENT) {
    rspec_clear (&par);
    if (r == -EBUSY)
      return fail (err, VMSNAP_ERR_FAILED, "disk %s: rbd image %s is still "
                   "open by a client (rbd status %s)", d->target, tn, tn);
    return rfail (c, err, r, "cannot remove rbd image %s", tn);
  }
  if (has_parent)
    release_parent (c, &par);
  rspec_clear (&par);
  return 0;
}

static vmsnap_backend rbd_backend = {
  .options = rbd_options,
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "Ceph RBD snapshots, rollback or clone revert, through librbd",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_MERGE_OFFLINE
        | VMSNAP_CAP_MERGE_ONLINE | VMSNAP_CAP_DELETE_OFFLINE
        | VMSNAP_CAP_DELETE_ONLINE | VMSNAP_CAP_CREATE_NEEDS_PAUSE
        | VMSNAP_CAP_REVERT_NEEDS_SHUTOFF,
  .probe = vrbd_probe,
  .create = vrbd_create,
  .prepare = vrbd_prepare,
  .abort = vrbd_abort,
  .revert = vrbd_revert,
  .merge = vrbd_merge,
  .delete = vrbd_delete,
  .list = vrbd_list,
  .discard = vrbd_discard,
};

VMSNAP_REGISTER_BACKEND (rbd_backend)
