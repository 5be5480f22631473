/* rbd: Ceph RBD snapshots through librbd/librados, in process.
 *
 * This issue delivers probe and capabilities: the disk's pool, namespace,
 * image, mapped snapshot, monitor hosts, auth user and secret come from the
 * domain XML (no cluster connection is needed to plan).  create/revert/
 * merge/delete arrive with the RBD issue. */
#include <config.h>

#include <string.h>

#include <rbd/librbd.h>

#include <vmsnap/backend.h>
#include "../pending.h"

#define NAME "rbd"

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

static int
vrbd_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
           vmsnap_probe_result *res, GError **err)
{
  g_auto (GStrv) parts = NULL;
  g_autofree char *name = NULL;
  const char *snap = d->source_snapshot, *pool, *ns = NULL, *image;
  char *at;
  guint n;

  if (d->type != VMSNAP_DISK_TYPE_NETWORK || d->protocol == NULL
      || strcmp (d->protocol, "rbd") != 0) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "not an rbd network disk");
    return 0;
  }
  name = g_strdup (d->source ? d->source : "");
  if ((at = strchr (name, '@')) != NULL) {
    *at = '\0';
    snap = at + 1;
  }
  parts = g_strsplit (name, "/", -1);
  n = g_strv_length (parts);
  if (n < 2 || n > 3) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "rbd source name '%s' is not POOL/IMAGE or "
                      "POOL/NAMESPACE/IMAGE", d->source ? d->source : "");
    return 0;
  }
  pool = parts[0];
  image = parts[n - 1];
  if (n == 3)
    ns = parts[1];
  if (!valid_component (pool) || !valid_component (image)
      || (ns && !valid_component (ns))) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "rbd source name '%s' has an empty or invalid component",
                      d->source);
    return 0;
  }
  vmsnap_probe_add_detail (res, "pool", "%s", pool);
  if (ns)
    vmsnap_probe_add_detail (res, "namespace", "%s", ns);
  vmsnap_probe_add_detail (res, "image", "%s", image);
  if (d->n_hosts > 0) {
    GString *h = g_string_new (NULL);
    for (size_t i = 0; i < d->n_hosts; i++)
      g_string_append_printf (h, "%s%s%s%s", i ? "," : "",
                              d->hosts[i]->name ? d->hosts[i]->name : "?",
                              d->hosts[i]->port ? ":" : "",
                              d->hosts[i]->port ? d->hosts[i]->port : "");
    vmsnap_probe_add_detail (res, "monitors", "%s", h->str);
    g_string_free (h, TRUE);
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

  if (snap) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "the disk maps snapshot '%s' of %s/%s, which is read-only",
                      snap, pool, image);
    return 0;
  }
  vmsnap_probe_set_class (res, VMSNAP_CLASS_RBD);
  vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 90,
                    "rbd image %s/%s: native RBD snapshot; revert by rollback "
                    "or O(1) clone", pool, image);
  vmsnap_probe_add_limit (res, "rollback revert needs the VM shut off; clone "
                          "revert switches the disk to a new image");
  if (req->memory)
    vmsnap_probe_add_limit (res, "memory state goes to an external file");
  return 0;
}

VMSNAP_PENDING_CREATE (vrbd_create, NAME)
VMSNAP_PENDING_REVERT (vrbd_revert, NAME)
VMSNAP_PENDING_MERGE (vrbd_merge, NAME)
VMSNAP_PENDING_DELETE (vrbd_delete, NAME)

static vmsnap_backend rbd_backend = {
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
  .revert = vrbd_revert,
  .merge = vrbd_merge,
  .delete = vrbd_delete,
};

VMSNAP_REGISTER_BACKEND (rbd_backend)
