/* Encrypted disks (issue 16 item 5): the secret, read from libvirt, and
 * the backing chain an encrypted disk's definition must spell out.
 *
 * The secret never goes on a command line: a backend writes it to a 0600
 * file of the domain's private state directory for the one qemu-img call
 * that needs it (`--object secret,id=...,file=...`) and removes it after. */
#include <config.h>

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include <json-glib/json-glib.h>
#include <libxml/tree.h>

#include "internal.h"

void
vmsnap_secret_free (GBytes *secret)
{
  gsize n = 0;
  guint8 *p;

  if (secret == NULL)
    return;
  p = g_bytes_unref_to_data (secret, &n);
  if (p) {
    volatile guint8 *v = p;
    for (gsize i = 0; i < n; i++)
      v[i] = 0;
    g_free (p);
  }
}

GBytes *
vmsnap_op_encryption_secret (vmsnap_op *op, const vmsnap_disk *d,
                             GError **err)
{
  virConnectPtr conn = op ? op->conn : NULL;
  virSecretPtr s = NULL;
  unsigned char *v;
  size_t n = 0;
  const char *which;
  GBytes *b;

  if (d == NULL || d->encryption_format == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s is not encrypted: it has no secret (internal error)",
                 d ? d->target : "?");
    return NULL;
  }
  which = d->encryption_secret_uuid ? d->encryption_secret_uuid
                                    : d->encryption_secret_usage;
  if (conn == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s is encrypted (<encryption format='%s'>) and its "
                 "secret %s is kept by libvirt, but this domain is a domain "
                 "XML file and vmsnap has no libvirt daemon to read the "
                 "secret from: without it a new image could only be "
                 "unencrypted. Nothing was changed: define the domain and "
                 "its secret in libvirt and give vmsnap the domain's name",
                 d->target, d->encryption_format, which ? which : "(none named)");
    return NULL;
  }
  if (d->encryption_secret_uuid)
    s = virSecretLookupByUUIDString (conn, d->encryption_secret_uuid);
  else if (d->encryption_secret_usage)
    s = virSecretLookupByUsage (conn, VIR_SECRET_USAGE_TYPE_VOLUME,
                                d->encryption_secret_usage);
  else {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                 "disk %s: its <encryption> names no <secret uuid=...> (or "
                 "usage=...): vmsnap cannot encrypt a new image with it; fix "
                 "the domain definition", d->target);
    return NULL;
  }
  if (s == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s: libvirt has no secret %s (%s): define it (virsh "
                 "secret-define, secret-set-value) and run the command again",
                 d->target, which, virGetLastErrorMessage ());
    return NULL;
  }
  v = virSecretGetValue (s, &n, 0);
  virSecretFree (s);
  if (v == NULL || n == 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                 "disk %s: vmsnap cannot read the value of libvirt secret %s "
                 "(%s); a secret defined with private='yes' is never given "
                 "to clients, and without it a new image could only be "
                 "unencrypted. Nothing was changed", d->target, which,
                 v ? "it has no value" : virGetLastErrorMessage ());
    free (v);
    return NULL;
  }
  b = g_bytes_new (v, n);
  {
    volatile unsigned char *w = v;
    for (size_t i = 0; i < n; i++)
      w[i] = 0;
  }
  free (v);
  return b;
}

/* ------------------------------------------------- <backingStore> */

typedef struct {
  char *path;
  char *fmt;
  gboolean encrypted;
  gboolean block;
} chain_layer;

static void
chain_layer_free (gpointer p)
{
  chain_layer *l = p;

  g_free (l->path);
  g_free (l->fmt);
  g_free (l);
}

gboolean
vmsnap_encrypted_chain_set (xmlNodePtr disk, xmlNodePtr enc,
                            const char *source, const char *format,
                            GError **err)
{
  g_autoptr (GPtrArray) chain = g_ptr_array_new_with_free_func (chain_layer_free);
  g_autofree char *path = g_strdup (source);
  g_autofree char *fmt = g_strdup (format);
  xmlNodePtr at = disk;

  for (guint depth = 0;; depth++) {
    g_autoptr (vmsnap_image) img = NULL;
    const char *b, *bf;
    chain_layer *l;

    if (depth > VMSNAP_MAX_CHAIN) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT,
                   "the backing chain of %s is deeper than %d layers",
                   source, VMSNAP_MAX_CHAIN);
      return FALSE;
    }
    /* Each header read in process (issue 17): no process per layer. */
    if ((img = vmsnap_image_read (path, fmt, err)) == NULL)
      return FALSE;
    if (depth > 0) {
      GStatBuf st;
      l = g_new0 (chain_layer, 1);
      l->path = g_strdup (path);
      l->fmt = g_strdup (fmt);
      l->encrypted = img->encrypted;
      l->block = g_stat (path, &st) == 0 && S_ISBLK (st.st_mode);
      g_ptr_array_add (chain, l);
    }
    b = img->backing;
    bf = img->backing_fmt;
    if (b == NULL || *b == '\0')
      break;
    /* vmsnap_image_read refused a name that is not a local file and
     * resolved the rest to an absolute path: only the format can lack. */
    if (bf == NULL) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                   "%s is backed by '%s'%s: the definition of an encrypted "
                   "disk must name every backing file with its format, and "
                   "vmsnap names local files with a recorded format only",
                   path, b, bf ? "" : " without a format");
      return FALSE;
    }
    g_free (path);
    g_free (fmt);
    path = g_strdup (b);
    fmt = g_strdup (bf);
  }

  for (xmlNodePtr k = disk->children, next; k; k = next) {
    next = k->next;
    if (k->type == XML_ELEMENT_NODE && xmlStrEqual (k->name, BAD_CAST "backingStore")) {
      xmlUnlinkNode (k);
      xmlFreeNode (k);
    }
  }
  for (guint i = 0; i < chain->len; i++) {
    chain_layer *l = chain->pdata[i];
    xmlNodePtr bs = xmlNewChild (at, NULL, BAD_CAST "backingStore", NULL);
    xmlNodePtr f, s;

    xmlSetProp (bs, BAD_CAST "type", BAD_CAST (l->block ? "block" : "file"));
    f = xmlNewChild (bs, NULL, BAD_CAST "format", NULL);
    xmlSetProp (f, BAD_CAST "type", BAD_CAST l->fmt);
    s = xmlNewChild (bs, NULL, BAD_CAST "source", NULL);
    xmlSetProp (s, BAD_CAST (l->block ? "dev" : "file"), BAD_CAST l->path);
    if (l->encrypted)
      xmlAddChild (s, xmlCopyNode (enc, 1));
    at = bs;
  }
  xmlNewChild (at, NULL, BAD_CAST "backingStore", NULL);
  return TRUE;
}
