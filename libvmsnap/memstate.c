/* The memory state of a running domain whose disks are not all on
 * qcow2-internal, and the UEFI NVRAM file of a domain (issue 7).
 *
 * Memory: inside vmsnap's pause window (the vCPUs are stopped, no disk is
 * written), libvirt saves the memory and device state into an external
 * file with one snapshot that has no metadata and no disk at all
 * (<memory snapshot='external'/>, every disk snapshot='no'): libvirt
 * migrates QEMU's state to the file and leaves the domain paused, since it
 * was paused.  Then vmsnap's backends capture every disk, still inside the
 * same pause window, so memory and disks are of the same instant.  A
 * revert stops QEMU, reverts the disks with the backends, then restores
 * the file with virDomainRestoreFlags() and the domain's CURRENT
 * definition (the disk sources of today, not of the capture).
 *
 * NVRAM: a copy of the file named by <os><nvram>, made while the domain is
 * paused or shut off, and copied back while it is shut off. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "internal.h"

static const char *
lv_err (void)
{
  const char *m = virGetLastErrorMessage ();
  return m ? m : "unknown libvirt error";
}

/* Targets of the disks libvirt lists for the live domain (every <disk>). */
static GPtrArray *
live_targets (virDomainPtr dom)
{
  GPtrArray *t = g_ptr_array_new_with_free_func (g_free);
  char *xml = virDomainGetXMLDesc (dom, 0);
  xmlDocPtr doc = xml ? xmlReadMemory (xml, (int) strlen (xml), "live.xml", NULL,
                                       XML_PARSE_NONET | XML_PARSE_NOERROR
                                       | XML_PARSE_NOWARNING) : NULL;
  free (xml);
  if (doc) {
    xmlXPathContextPtr ctx = xmlXPathNewContext (doc);
    xmlXPathObjectPtr o = xmlXPathEvalExpression (BAD_CAST "/domain/devices/disk/target", ctx);
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
      xmlChar *d = xmlGetProp (o->nodesetval->nodeTab[i], BAD_CAST "dev");
      if (d)
        g_ptr_array_add (t, g_strdup ((const char *) d));
      xmlFree (d);
    }
    xmlXPathFreeObject (o);
    xmlXPathFreeContext (ctx);
    xmlFreeDoc (doc);
  }
  return t;
}

gboolean
vmsnap_memstate_save (vmsnap_domain *dom, const char *tag, const char *path,
                      GError **err)
{
  g_autoptr (GPtrArray) targets = NULL;
  g_autoptr (GString) x = g_string_new (NULL);
  g_autofree char *t = g_markup_escape_text (tag, -1);
  g_autofree char *p = g_markup_escape_text (path, -1);
  virDomainSnapshotPtr s;

  if (dom->dom == NULL || virDomainIsActive (dom->dom) != 1) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s is no longer running: its memory state cannot be "
                 "saved", dom->name);
    return FALSE;
  }
  /* A file left by an interrupted run is incomplete: libvirt refuses to
   * write over an existing file, so it goes first. */
  if (g_unlink (path) < 0 && errno != ENOENT) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot remove the incomplete memory file %s: %s", path,
                 g_strerror (errno));
    return FALSE;
  }
  targets = live_targets (dom->dom);
  g_string_append_printf (x, "<domainsnapshot><name>%s</name>"
                          "<description>vmsnap memory</description>"
                          "<memory snapshot='external' file='%s'/><disks>", t, p);
  for (guint i = 0; i < targets->len; i++) {
    g_autofree char *d = g_markup_escape_text (targets->pdata[i], -1);
    g_string_append_printf (x, "<disk name='%s' snapshot='no'/>", d);
  }
  g_string_append (x, "</disks></domainsnapshot>");
  s = virDomainSnapshotCreateXML (dom->dom, x->str, VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
  if (s == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: libvirt could not save the memory state to %s: %s",
                 dom->name, path, lv_err ());
    g_unlink (path);
    return FALSE;
  }
  virDomainSnapshotFree (s);
  if (g_chmod (path, 0600) < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "cannot make the memory file %s private: %s", path, g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

gboolean
vmsnap_memstate_restore (vmsnap_domain *dom, const char *path, gboolean paused,
                         GError **err)
{
  char *xml;
  int r;

  if (virDomainIsActive (dom->dom) == 1)
    return TRUE;   /* an interrupted run restored it already */
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: the disks were reverted, but the memory file %s "
                 "is missing (start the domain with virsh start %s)",
                 dom->name, path, dom->name);
    return FALSE;
  }
  /* The current definition: the disks' sources of today (a new overlay,
   * a new clone head) are what QEMU must open. */
  xml = virDomainGetXMLDesc (dom->dom, VIR_DOMAIN_XML_INACTIVE
                             | VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_MIGRATABLE);
  if (xml == NULL) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: cannot read its definition: %s", dom->name, lv_err ());
    return FALSE;
  }
  r = virDomainRestoreFlags (virDomainGetConnect (dom->dom), path, xml,
                             paused ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING);
  free (xml);
  if (r < 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: the disks were reverted, but restoring the memory "
                 "state from %s failed: %s (start the domain with virsh start "
                 "%s to boot it afresh)", dom->name, path, lv_err (), dom->name);
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------- NVRAM */

char *
vmsnap_nvram_path (const char *domain_xml)
{
  xmlDocPtr doc;
  xmlXPathContextPtr ctx;
  xmlXPathObjectPtr o;
  char *path = NULL;

  if (domain_xml == NULL)
    return NULL;
  doc = xmlReadMemory (domain_xml, (int) strlen (domain_xml), "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == NULL)
    return NULL;
  ctx = xmlXPathNewContext (doc);
  o = xmlXPathEvalExpression (BAD_CAST "/domain/os/nvram", ctx);
  if (o && o->nodesetval && o->nodesetval->nodeNr == 1) {
    xmlChar *c = xmlNodeGetContent (o->nodesetval->nodeTab[0]);
    if (c && *c)
      path = g_strstrip (g_strdup ((const char *) c));
    xmlFree (c);
  }
  xmlXPathFreeObject (o);
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  if (path && *path != '/') {
    g_free (path);
    path = NULL;
  }
  return path;
}

/* Copy FROM to TO (mode MODE) through a temporary file renamed into place,
 * fsync'd: TO is either the old or the whole new content. */
gboolean
vmsnap_copy_file_atomic (const char *from, const char *to, int mode, GError **err)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;

  if (!g_file_get_contents (from, &data, &len, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 from, local->message);
    return FALSE;
  }
  return vmsnap_write_atomic (to, data, len, mode, err);
}

/* Copy FROM over TO in place (TO keeps its owner, mode and labels, which
 * libvirt set), fsync'd.  Repeatable: an interrupted copy is redone. */
gboolean
vmsnap_copy_file_inplace (const char *from, const char *to, GError **err)
{
  g_autofree char *data = NULL;
  gsize len = 0, off = 0;
  g_autoptr (GError) local = NULL;
  int fd;

  if (!g_file_get_contents (from, &data, &len, &local)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot read %s: %s",
                 from, local->message);
    return FALSE;
  }
  fd = g_open (to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    goto fail;
  while (off < len) {
    ssize_t w = write (fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      close (fd);
      goto fail;
    }
    off += (gsize) w;
  }
  if (fsync (fd) < 0 || close (fd) < 0)
    goto fail;
  return TRUE;
 fail:
  g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "cannot write %s: %s", to,
               g_strerror (errno));
  return FALSE;
}
