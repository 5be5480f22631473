/* Domains: a libvirt domain or a domain XML file, parsed with libxml2 into
 * the model of DESIGN.md §3.  Unknown elements are ignored; malformed or
 * hostile XML is a clear error (file, line), never a crash. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <sys/stat.h>
#include <glib/gstdio.h>

#include "internal.h"

const char *
vmsnap_intern (vmsnap_domain *dom, const char *s)
{
  return s ? g_string_chunk_insert_const (dom->strs, s) : NULL;
}

const char *
vmsnap_state_name (vmsnap_state s)
{
  switch (s) {
  case VMSNAP_STATE_SHUTOFF: return "shut off";
  case VMSNAP_STATE_RUNNING: return "running";
  case VMSNAP_STATE_PAUSED: return "paused";
  case VMSNAP_STATE_OTHER: return "other";
  }
  return "other";
}

/* ---------------------------------------------------------- XML helpers */

static const char *
prop (vmsnap_domain *dom, xmlNodePtr n, const char *name)
{
  xmlChar *v;
  const char *s;

  if (n == NULL)
    return NULL;
  v = xmlGetProp (n, BAD_CAST name);
  if (v == NULL)
    return NULL;
  s = vmsnap_intern (dom, (const char *) v);
  xmlFree (v);
  return s;
}

static const char *
text (vmsnap_domain *dom, xmlNodePtr n)
{
  xmlChar *v;
  const char *s;

  if (n == NULL)
    return NULL;
  v = xmlNodeGetContent (n);
  if (v == NULL)
    return NULL;
  g_strstrip ((char *) v);
  s = *v ? vmsnap_intern (dom, (const char *) v) : NULL;
  xmlFree (v);
  return s;
}

static gboolean
is_elem (xmlNodePtr n, const char *name)
{
  return n && n->type == XML_ELEMENT_NODE && xmlStrEqual (n->name, BAD_CAST name);
}

static xmlNodePtr
child (xmlNodePtr n, const char *name)
{
  if (n == NULL)
    return NULL;
  for (xmlNodePtr c = n->children; c; c = c->next)
    if (is_elem (c, name))
      return c;
  return NULL;
}

static vmsnap_disk_type
parse_disk_type (const char *t)
{
  static const struct {
    const char *name;
    vmsnap_disk_type type;
  } types[] = {
    { "file", VMSNAP_DISK_TYPE_FILE },
    { "block", VMSNAP_DISK_TYPE_BLOCK },
    { "network", VMSNAP_DISK_TYPE_NETWORK },
    { "volume", VMSNAP_DISK_TYPE_VOLUME },
    { "dir", VMSNAP_DISK_TYPE_DIR },
    { "nvme", VMSNAP_DISK_TYPE_NVME },
    { "vhostuser", VMSNAP_DISK_TYPE_VHOSTUSER },
    { "vhostvdpa", VMSNAP_DISK_TYPE_VHOSTVDPA },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (types); i++)
    if (strcmp (t, types[i].name) == 0)
      return types[i].type;
  return VMSNAP_DISK_TYPE_UNKNOWN;
}

static vmsnap_disk_device
parse_device (const char *d)
{
  if (d == NULL || strcmp (d, "disk") == 0)
    return VMSNAP_DEVICE_DISK;
  if (strcmp (d, "cdrom") == 0)
    return VMSNAP_DEVICE_CDROM;
  if (strcmp (d, "floppy") == 0)
    return VMSNAP_DEVICE_FLOPPY;
  if (strcmp (d, "lun") == 0)
    return VMSNAP_DEVICE_LUN;
  return VMSNAP_DEVICE_DISK;
}

/* The source of a disk or backing layer, by type, as one string. */
static const char *
source_string (vmsnap_domain *dom, vmsnap_disk_type type, xmlNodePtr src)
{
  xmlNodePtr addr;

  if (src == NULL)
    return NULL;
  switch (type) {
  case VMSNAP_DISK_TYPE_FILE:
    return prop (dom, src, "file");
  case VMSNAP_DISK_TYPE_BLOCK:
    return prop (dom, src, "dev");
  case VMSNAP_DISK_TYPE_DIR:
    return prop (dom, src, "dir");
  case VMSNAP_DISK_TYPE_NETWORK:
    return prop (dom, src, "name");
  case VMSNAP_DISK_TYPE_VOLUME: {
    const char *pool = prop (dom, src, "pool"), *vol = prop (dom, src, "volume");
    g_autofree char *s = g_strdup_printf ("%s/%s", pool ? pool : "?", vol ? vol : "?");
    return vmsnap_intern (dom, s);
  }
  case VMSNAP_DISK_TYPE_NVME:
    addr = child (src, "address");
    if (addr) {
      g_autofree char *s = g_strdup_printf (
        "pci %s:%s:%s.%s namespace %s",
        prop (dom, addr, "domain") ?: "?", prop (dom, addr, "bus") ?: "?",
        prop (dom, addr, "slot") ?: "?", prop (dom, addr, "function") ?: "?",
        prop (dom, src, "namespace") ?: "1");
      return vmsnap_intern (dom, s);
    }
    return NULL;
  case VMSNAP_DISK_TYPE_VHOSTUSER:
    return prop (dom, src, "path");
  case VMSNAP_DISK_TYPE_VHOSTVDPA:
    return prop (dom, src, "dev");
  case VMSNAP_DISK_TYPE_UNKNOWN:
    break;
  }
  return NULL;
}

static gboolean
parse_backing (vmsnap_domain *dom, vmsnap_disk_priv *d, xmlNodePtr bs,
               const char *where, GError **err)
{
  for (size_t depth = 0; bs != NULL; depth++) {
    vmsnap_layer *l;
    const char *t = prop (dom, bs, "type");
    xmlNodePtr src = child (bs, "source");

    if (t == NULL && src == NULL)
      break;            /* <backingStore/>: explicitly no backing */
    if (depth >= VMSNAP_MAX_CHAIN) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                   "%s: disk %s: <backingStore> chain deeper than %d layers "
                   "(line %ld): refusing a chain this deep", where,
                   d->pub.target, VMSNAP_MAX_CHAIN, xmlGetLineNo (bs));
      return FALSE;
    }
    l = g_new0 (vmsnap_layer, 1);
    l->struct_size = sizeof *l;
    l->path = source_string (dom, t ? parse_disk_type (t) : VMSNAP_DISK_TYPE_FILE, src);
    l->format = prop (dom, child (bs, "format"), "type");
    l->is_network = t && strcmp (t, "network") == 0;
    g_ptr_array_add (d->xml_backing, l);
    bs = child (bs, "backingStore");
  }
  return TRUE;
}

static void
parse_auth (vmsnap_domain *dom, vmsnap_disk_priv *d, xmlNodePtr auth)
{
  xmlNodePtr sec;

  if (auth == NULL)
    return;
  d->pub.auth_username = prop (dom, auth, "username");
  sec = child (auth, "secret");
  d->pub.secret_type = prop (dom, sec, "type");
  d->pub.secret_uuid = prop (dom, sec, "uuid");
  d->pub.secret_usage = prop (dom, sec, "usage");
}

/* <encryption format='luks'><secret type='passphrase' uuid='...'/>. */
static void
parse_encryption (vmsnap_domain *dom, vmsnap_disk_priv *d, xmlNodePtr enc)
{
  xmlNodePtr sec;

  if (enc == NULL)
    return;
  d->pub.encryption_format = prop (dom, enc, "format");
  if (d->pub.encryption_format == NULL)
    d->pub.encryption_format = "default";
  sec = child (enc, "secret");
  d->pub.encryption_secret_uuid = prop (dom, sec, "uuid");
  d->pub.encryption_secret_usage = prop (dom, sec, "usage");
}

static void
disk_priv_free (gpointer p)
{
  vmsnap_disk_priv *d = p;

  g_ptr_array_unref (d->hosts);
  g_ptr_array_unref (d->xml_backing);
  g_ptr_array_unref (d->chain);
  g_ptr_array_unref (d->images);
  g_ptr_array_unref (d->warnings);
  g_free (d);
}

/* Point the public arrays at the private storage (after any append). */
static void
disk_sync (vmsnap_disk_priv *d)
{
  d->pub.hosts = (const vmsnap_host *const *) d->hosts->pdata;
  d->pub.n_hosts = d->hosts->len;
  d->pub.xml_backing = (const vmsnap_layer *const *) d->xml_backing->pdata;
  d->pub.n_xml_backing = d->xml_backing->len;
  d->pub.chain = (const vmsnap_layer *const *) d->chain->pdata;
  d->pub.n_chain = d->chain->len;
}

static gboolean
parse_disk (vmsnap_domain *dom, xmlNodePtr n, const char *where, GError **err)
{
  vmsnap_disk_priv *d = g_new0 (vmsnap_disk_priv, 1);
  xmlNodePtr src, drv, tgt;
  const char *t;

  d->hosts = g_ptr_array_new_with_free_func (g_free);
  d->xml_backing = g_ptr_array_new_with_free_func (g_free);
  d->chain = g_ptr_array_new_with_free_func (g_free);
  d->images = g_ptr_array_new_with_free_func ((GDestroyNotify) vmsnap_image_free);
  d->warnings = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (dom->disks, d);
  d->pub.struct_size = sizeof d->pub;

  t = prop (dom, n, "type");
  d->pub.type_name = t ? t : "file";
  d->pub.type = parse_disk_type (d->pub.type_name);
  d->pub.device = parse_device (prop (dom, n, "device"));
  d->pub.snapshot_mode = prop (dom, n, "snapshot");

  tgt = child (n, "target");
  d->pub.target = prop (dom, tgt, "dev");
  d->pub.bus = prop (dom, tgt, "bus");
  if (d->pub.target == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: line %ld: <disk> without <target dev='...'/>", where,
                 xmlGetLineNo (n));
    return FALSE;
  }
  for (guint i = 0; i + 1 < dom->disks->len; i++) {
    vmsnap_disk_priv *o = dom->disks->pdata[i];
    if (strcmp (o->pub.target, d->pub.target) == 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                   "%s: line %ld: two disks with target '%s'", where,
                   xmlGetLineNo (n), d->pub.target);
      return FALSE;
    }
  }

  drv = child (n, "driver");
  d->pub.driver_name = prop (dom, drv, "name");
  d->pub.format = prop (dom, drv, "type");

  src = child (n, "source");
  d->pub.source = source_string (dom, d->pub.type, src);
  if (d->pub.type == VMSNAP_DISK_TYPE_NETWORK)
    d->pub.protocol = prop (dom, src, "protocol");
  if (d->pub.type == VMSNAP_DISK_TYPE_VOLUME) {
    d->pub.pool = prop (dom, src, "pool");
    d->pub.volume = prop (dom, src, "volume");
  }
  if (src) {
    for (xmlNodePtr c = src->children; c; c = c->next) {
      if (is_elem (c, "host")) {
        vmsnap_host *h;
        if (d->hosts->len >= 64) {
          g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                       "%s: line %ld: disk %s lists more than 64 hosts",
                       where, xmlGetLineNo (c), d->pub.target);
          return FALSE;
        }
        h = g_new0 (vmsnap_host, 1);
        h->struct_size = sizeof *h;
        h->name = prop (dom, c, "name");
        h->port = prop (dom, c, "port");
        h->transport = prop (dom, c, "transport");
        h->socket = prop (dom, c, "socket");
        g_ptr_array_add (d->hosts, h);
      }
    }
    d->pub.source_snapshot = prop (dom, child (src, "snapshot"), "name");
    d->pub.source_config = prop (dom, child (src, "config"), "file");
    parse_auth (dom, d, child (src, "auth"));
  }
  if (d->pub.auth_username == NULL)
    parse_auth (dom, d, child (n, "auth"));   /* older placement */
  parse_encryption (dom, d, child (src, "encryption"));
  if (d->pub.encryption_format == NULL)
    parse_encryption (dom, d, child (n, "encryption"));   /* older placement */

  d->pub.readonly = child (n, "readonly") != NULL;
  d->pub.shareable = child (n, "shareable") != NULL;
  d->pub.transient = child (n, "transient") != NULL;
  d->pub.alias = prop (dom, child (n, "alias"), "name");

  d->xml_backing_given = child (n, "backingStore") != NULL;
  if (!parse_backing (dom, d, child (n, "backingStore"), where, err))
    return FALSE;
  disk_sync (d);
  return TRUE;
}

static void
parse_os (vmsnap_domain *dom, xmlNodePtr os)
{
  xmlNodePtr loader, nvram;

  if (os == NULL)
    return;
  dom->firmware = prop (dom, os, "firmware");
  loader = child (os, "loader");
  dom->loader_type = prop (dom, loader, "type");
  dom->loader_path = text (dom, loader);
  nvram = child (os, "nvram");
  if (nvram) {
    xmlNodePtr src = child (nvram, "source");
    dom->nvram_path = src ? prop (dom, src, "file") : text (dom, nvram);
    dom->nvram_format = prop (dom, nvram, "format");
  }
}

/* libxml2 reports through global (thread-local) handlers, some messages
 * (e.g. "huge text node") straight to stderr: collect the first error
 * ourselves and print nothing. */
typedef struct {
  int line;
  char *msg;
} first_error;

static void
collect_error (void *data, xmlErrorPtr e)
{
  first_error *fe = data;

  if (fe->msg == NULL && e != NULL && e->level >= XML_ERR_ERROR && e->message) {
    fe->line = e->line;
    fe->msg = g_strstrip (g_strdup (e->message));
  }
}

static void G_GNUC_PRINTF (2, 3)
swallow_generic (void *data, const char *fmt, ...)
{
}

gboolean
vmsnap_domain_parse (vmsnap_domain *dom, const char *buf, size_t len,
                     const char *where, GError **err)
{
  xmlParserCtxtPtr ctxt;
  xmlDocPtr doc;
  xmlNodePtr root, devices;
  gboolean ok = FALSE;
  guint ndisks = 0;
  first_error first = { 0 };

  if (len == 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: empty file: not a libvirt domain XML", where);
    return FALSE;
  }
  if (len > VMSNAP_MAX_XML_BYTES) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: %zu bytes: a domain XML larger than 16 MiB is refused",
                 where, len);
    return FALSE;
  }
  ctxt = xmlNewParserCtxt ();
  if (ctxt == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "out of memory");
    return FALSE;
  }
  /* No network, no entity substitution, no DTD loading; errors are
   * collected, not printed. */
  xmlSetStructuredErrorFunc (&first, collect_error);
  xmlSetGenericErrorFunc (NULL, swallow_generic);
  doc = xmlCtxtReadMemory (ctxt, buf, (int) len, where, NULL,
                           XML_PARSE_NONET | XML_PARSE_NOWARNING
                           | XML_PARSE_NOCDATA);
  xmlSetStructuredErrorFunc (NULL, NULL);
  xmlSetGenericErrorFunc (NULL, NULL);
  if (doc == NULL || !ctxt->wellFormed) {
    const xmlError *e = xmlCtxtGetLastError (ctxt);
    g_autofree char *msg = g_strdup (first.msg ? first.msg
                                     : e && e->message ? e->message
                                     : "not well-formed");
    g_strstrip (msg);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: line %d: malformed XML: %s", where,
                 first.msg ? first.line : e ? e->line : 0, msg);
    goto out;
  }
  root = xmlDocGetRootElement (doc);
  if (!is_elem (root, "domain")) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: root element is <%s>, expected <domain> (a libvirt "
                 "domain XML, as written by virsh dumpxml)", where,
                 root ? (const char *) root->name : "nothing");
    goto out;
  }
  dom->name = text (dom, child (root, "name"));
  dom->uuid = text (dom, child (root, "uuid"));
  if (dom->name == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: <domain> has no <name>", where);
    goto out;
  }
  parse_os (dom, child (root, "os"));
  devices = child (root, "devices");
  if (devices)
    for (xmlNodePtr c = devices->children; c; c = c->next)
      if (is_elem (c, "disk") && ++ndisks > VMSNAP_MAX_DISKS) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                     "%s: more than %d disks: vmsnap handles at most %d disks "
                     "per domain", where, VMSNAP_MAX_DISKS, VMSNAP_MAX_DISKS);
        goto out;
      }
  if (devices)
    for (xmlNodePtr c = devices->children; c; c = c->next)
      if (is_elem (c, "disk") && !parse_disk (dom, c, where, err))
        goto out;
  ok = TRUE;

 out:
  g_free (first.msg);
  if (doc)
    xmlFreeDoc (doc);
  xmlFreeParserCtxt (ctxt);
  return ok;
}

/* ------------------------------------------------------------ opening */

static void
silent_virerror (void *opaque, virErrorPtr e)
{
  /* errors are reported once, by us, from virGetLastErrorMessage() */
}

vmsnap_domain *
vmsnap_domain_new (void)
{
  vmsnap_domain *dom = g_new0 (vmsnap_domain, 1);

  dom->strs = g_string_chunk_new (4096);
  dom->disks = g_ptr_array_new_with_free_func (disk_priv_free);
  return dom;
}

void
vmsnap_domain_free (vmsnap_domain *dom)
{
  if (dom == NULL)
    return;
  if (dom->dom)
    virDomainFree (dom->dom);
  if (dom->conn)
    virConnectClose (dom->conn);
  g_ptr_array_unref (dom->disks);
  g_string_chunk_free (dom->strs);
  g_free (dom);
}

static gboolean
looks_like_file (const char *spec)
{
  return strchr (spec, '/') != NULL
    || (g_str_has_suffix (spec, ".xml") && g_file_test (spec, G_FILE_TEST_EXISTS));
}

static gboolean
open_file (vmsnap_domain *dom, const char *path, GError **err)
{
  g_autofree char *buf = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;
  GStatBuf st;

  if (g_stat (path, &st) != 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain XML file %s: %s", path, g_strerror (errno));
    return FALSE;
  }
  if (!S_ISREG (st.st_mode)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain XML file %s: not a regular file", path);
    return FALSE;
  }
  if ((guint64) st.st_size > VMSNAP_MAX_XML_BYTES) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "%s: %" G_GUINT64_FORMAT " bytes: a domain XML larger than "
                 "16 MiB is refused", path, (guint64) st.st_size);
    return FALSE;
  }
  if (!g_file_get_contents (path, &buf, &len, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain XML file %s: %s", path, local->message);
    return FALSE;
  }
  dom->path = vmsnap_intern (dom, path);
  dom->state = VMSNAP_STATE_SHUTOFF;
  return vmsnap_domain_parse (dom, buf, len, path, err);
}

/* The state and the definition of the libvirt domain DOM->dom (looked up
 * already), parsed into DOM. */
static gboolean
load_libvirt (vmsnap_domain *dom, const char *spec, GError **err)
{
  int state = 0, reason = 0;
  char *xml;
  gboolean ok;

  if (virDomainGetState (dom->dom, &state, &reason, 0) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot get state: %s", spec, virGetLastErrorMessage ());
    return FALSE;
  }
  switch (state) {
  case VIR_DOMAIN_RUNNING: dom->state = VMSNAP_STATE_RUNNING; break;
  case VIR_DOMAIN_PAUSED: dom->state = VMSNAP_STATE_PAUSED; break;
  case VIR_DOMAIN_SHUTOFF: dom->state = VMSNAP_STATE_SHUTOFF; break;
  default: dom->state = VMSNAP_STATE_OTHER; break;
  }
  xml = virDomainGetXMLDesc (dom->dom, 0);
  if (xml == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot get its XML: %s", spec, virGetLastErrorMessage ());
    return FALSE;
  }
  {
    g_autofree char *where = g_strdup_printf ("libvirt domain %s", spec);
    ok = vmsnap_domain_parse (dom, xml, strlen (xml), where, err);
  }
  free (xml);
  return ok;
}

static gboolean
open_libvirt (vmsnap_domain *dom, const char *spec, const char *uri,
              GError **err)
{
  /* The first libvirt domain of the process loads libvirt (virt.h). */
  if (!vmsnap_virt_load (err)) {
    g_prefix_error (err, "domain %s: ", spec);
    return FALSE;
  }
  virSetErrorFunc (NULL, silent_virerror);
  /* Block jobs of running domains are waited for on events, which need an
   * event implementation registered before the connection opens. */
  vmsnap_libvirt_events_init ();
  dom->conn = virConnectOpen (uri);
  if (dom->conn == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot connect to libvirt at %s: %s (use --connect URI or "
                 "LIBVIRT_DEFAULT_URI; a domain XML file needs no daemon)",
                 uri ? uri : "the default URI", virGetLastErrorMessage ());
    return FALSE;
  }
  {
    char *u = virConnectGetURI (dom->conn);
    dom->uri = vmsnap_intern (dom, u ? u : uri);
    free (u);
  }
  dom->dom = NULL;
  if (strlen (spec) == VIR_UUID_STRING_BUFLEN - 1)
    dom->dom = virDomainLookupByUUIDString (dom->conn, spec);
  if (dom->dom == NULL)
    dom->dom = virDomainLookupByName (dom->conn, spec);
  if (dom->dom == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "domain '%s' not found on %s (virsh list --all shows the "
                 "defined domains; a path to a domain XML file also works)",
                 spec, dom->uri);
    return FALSE;
  }
  return load_libvirt (dom, spec, err);
}

/* Volume disks name a pool and a volume: ask libvirt for the path. */
static void
resolve_volume (vmsnap_domain *dom, vmsnap_disk_priv *d)
{
  virStoragePoolPtr pool;
  virStorageVolPtr vol;
  char *path;
  virStorageVolInfo info;

  if (dom->conn == NULL || d->pub.pool == NULL || d->pub.volume == NULL)
    return;
  pool = virStoragePoolLookupByName (dom->conn, d->pub.pool);
  if (pool == NULL)
    return;
  vol = virStorageVolLookupByName (pool, d->pub.volume);
  if (vol && (path = virStorageVolGetPath (vol)) != NULL) {
    d->pub.source = vmsnap_intern (dom, path);
    if (virStorageVolGetInfo (vol, &info) == 0)
      d->pub.type = info.type == VIR_STORAGE_VOL_BLOCK ? VMSNAP_DISK_TYPE_BLOCK
                                                       : VMSNAP_DISK_TYPE_FILE;
    free (path);
  }
  if (vol)
    virStorageVolFree (vol);
  virStoragePoolFree (pool);
}

/* Volume disks get their path from libvirt (no image is opened). */
static void
resolve_volumes (vmsnap_domain *dom)
{
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    if (d->pub.type == VMSNAP_DISK_TYPE_VOLUME)
      resolve_volume (dom, d);
  }
}

/* The definition only (issue 17): identity, disks, sources, formats, as
 * the XML says.  A domain XML file is read and parsed: no libvirt
 * connection, no process, no image opened.  A libvirt domain: one
 * connection, kept for vmsnap_domain_reread. */
vmsnap_domain *
vmsnap_domain_read (vmsnap_ctx *ctx, const char *spec, const char *uri,
                    GError **err)
{
  g_autoptr (vmsnap_domain) dom = vmsnap_domain_new ();
  gboolean ok;

  if (spec == NULL || *spec == '\0') {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "no domain given");
    return NULL;
  }
  dom->spec = vmsnap_intern (dom, spec);
  ok = looks_like_file (spec) ? open_file (dom, spec, err)
                              : open_libvirt (dom, spec, uri, err);
  if (!ok)
    return NULL;
  resolve_volumes (dom);
  return g_steal_pointer (&dom);
}

/* Read DOM's definition again from where it came from (the same file, or
 * the same libvirt domain on the connection already open), dropping the
 * disks and whatever inspection found: a definition someone changed since
 * (another vmsnap we waited for, a define step) is seen as it is now. */
gboolean
vmsnap_domain_reread (vmsnap_domain *dom, GError **err)
{
  g_ptr_array_set_size (dom->disks, 0);
  dom->inspected = FALSE;
  dom->firmware = dom->loader_type = dom->loader_path = NULL;
  dom->nvram_path = dom->nvram_format = NULL;
  if (dom->dom != NULL) {
    if (!load_libvirt (dom, dom->spec, err))
      return FALSE;
  } else if (!open_file (dom, dom->path, err))
    return FALSE;
  resolve_volumes (dom);
  return TRUE;
}

/* Inspect every disk's storage (vmsnap_inspect_disk), once. */
void
vmsnap_domain_inspect (vmsnap_domain *dom)
{
  if (dom->inspected)
    return;
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    vmsnap_inspect_disk (dom, d);
    disk_sync (d);
  }
  dom->inspected = TRUE;
}

vmsnap_domain *
vmsnap_domain_open (vmsnap_ctx *ctx, const char *spec, const char *uri,
                    GError **err)
{
  vmsnap_domain *dom = vmsnap_domain_read (ctx, spec, uri, err);

  if (dom)
    vmsnap_domain_inspect (dom);
  return dom;
}

const char *
vmsnap_domain_name (const vmsnap_domain *dom)
{
  return dom->name;
}

const char *
vmsnap_domain_uuid (const vmsnap_domain *dom)
{
  return dom->uuid;
}
