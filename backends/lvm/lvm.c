/* lvm: native LVM snapshots through liblvm2cmd, in process (no fork of the
 * lvm binary).  Thin LVs get thin snapshots, thick LVs classic COW snapshots.
 *
 * This issue delivers probe and capabilities: a block disk whose device is
 * an LV (device-mapper uuid "LVM-..." in sysfs) is examined with
 * `lvs --reportformat json` through lvm2_run(); the report arrives through
 * the log callback.  create/revert/merge/delete arrive with the LVM issue. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <json-glib/json-glib.h>
#include <lvm2cmd.h>

#include <vmsnap/backend.h>
#include "../pending.h"

#define NAME "lvm"

static GMutex lvm_lock;
static void *lvm_handle;
static GString *lvm_report;   /* LVM2_LOG_PRINT output of the running command */
static GString *lvm_errors;   /* error messages of the running command */

static void
lvm_log (int level, const char *file, int line, int dm_errno, const char *msg)
{
  if (level == LVM2_LOG_PRINT && lvm_report)
    g_string_append_printf (lvm_report, "%s\n", msg);
  else if (level <= LVM2_LOG_ERROR && level > LVM2_LOG_SUPPRESS && lvm_errors)
    g_string_append_printf (lvm_errors, "%s%s", lvm_errors->len ? "; " : "", msg);
}

/* lvm2_run() splits its command line on blanks itself: only let through
 * device paths made of characters LVM allows in VG/LV names. */
static gboolean
safe_lvm_arg (const char *s)
{
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("/+_.-", *p))
      return FALSE;
  return *s != '\0';
}

/* Run an lvs report and return its first row (a JSON object), or NULL with
 * *err holding LVM's own message. */
static JsonObject *
lvs_row (const char *what, JsonParser **parser, GError **err)
{
  g_autofree char *cmd = g_strdup_printf (
    "lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_attr,"
    "segtype,pool_lv,lv_size,vg_free,data_percent,metadata_percent,lv_tags %s",
    what);
  JsonNode *root;
  JsonObject *o;
  JsonArray *reports, *lvs;
  int rc;

  g_mutex_lock (&lvm_lock);
  if (lvm_handle == NULL) {
    lvm2_log_fn (lvm_log);
    lvm_handle = lvm2_init ();
    if (lvm_handle)
      lvm2_disable_dmeventd_monitoring (lvm_handle);
  }
  if (lvm_handle == NULL) {
    g_mutex_unlock (&lvm_lock);
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "liblvm2cmd: lvm2_init failed (is lvm2 installed and "
                 "/etc/lvm/lvm.conf readable?)");
    return NULL;
  }
  lvm_report = g_string_new (NULL);
  lvm_errors = g_string_new (NULL);
  lvm2_log_level (lvm_handle, LVM2_LOG_PRINT);
  rc = lvm2_run (lvm_handle, cmd);
  g_autofree char *report = g_string_free (lvm_report, FALSE);
  g_autofree char *errors = g_string_free (lvm_errors, FALSE);
  lvm_report = lvm_errors = NULL;
  g_mutex_unlock (&lvm_lock);

  if (rc != LVM2_COMMAND_SUCCEEDED) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED, "lvs %s failed: %s",
                 what, *errors ? errors : "no message from LVM");
    return NULL;
  }
  *parser = json_parser_new ();
  if (!json_parser_load_from_data (*parser, report, -1, err))
    return NULL;
  root = json_parser_get_root (*parser);
  if (!JSON_NODE_HOLDS_OBJECT (root)
      || !(reports = json_object_get_array_member (json_node_get_object (root), "report"))
      || json_array_get_length (reports) == 0
      || !(o = json_array_get_object_element (reports, 0))
      || !(lvs = json_object_get_array_member (o, "lv"))
      || json_array_get_length (lvs) == 0) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "lvs %s: no logical volume in the report", what);
    return NULL;
  }
  return json_array_get_object_element (lvs, 0);
}

static const char *
field (JsonObject *o, const char *k)
{
  const char *v = json_object_get_string_member_with_default (o, k, "");
  return v ? v : "";
}

static int
lvm_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
           vmsnap_probe_result *res, GError **err)
{
  struct stat st;
  g_autofree char *sys = NULL;
  g_autofree char *uuid = NULL;
  g_autoptr (JsonParser) p = NULL;
  g_autoptr (JsonParser) pp = NULL;
  g_autoptr (GError) local = NULL;
  JsonObject *lv;
  const char *attr;

  if (d->type != VMSNAP_DISK_TYPE_BLOCK || !d->is_block_device) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "not a block device, so not an LVM logical volume");
    return 0;
  }
  if (stat (d->source, &st) != 0 || !S_ISBLK (st.st_mode)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s: %s", d->source,
                      g_strerror (errno));
    return 0;
  }
  sys = g_strdup_printf ("/sys/dev/block/%u:%u/dm/uuid", major (st.st_rdev),
                         minor (st.st_rdev));
  if (!g_file_get_contents (sys, &uuid, NULL, NULL)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s is not a device-mapper device, so not an LVM "
                      "logical volume (left to other backends)", d->source);
    return 0;
  }
  g_strstrip (uuid);
  if (!g_str_has_prefix (uuid, "LVM-")) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s is a device-mapper device not owned by LVM (uuid %s)",
                      d->source, uuid);
    return 0;
  }
  if (strchr (uuid + 4, '-') != NULL) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s is an LVM-internal device (uuid %s), not a usable LV",
                      d->source, uuid);
    return 0;
  }
  if (!safe_lvm_arg (d->source)) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s: path has characters LVM does not use in VG/LV "
                      "names; refer to the LV as /dev/VG/LV", d->source);
    return 0;
  }
  lv = lvs_row (d->source, &p, &local);
  if (lv == NULL) {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s", local->message);
    return 0;
  }
  attr = field (lv, "lv_attr");
  vmsnap_probe_add_detail (res, "lv", "%s/%s", field (lv, "vg_name"), field (lv, "lv_name"));
  vmsnap_probe_add_detail (res, "lv_size", "%s", field (lv, "lv_size"));
  vmsnap_probe_add_detail (res, "vg_free", "%s", field (lv, "vg_free"));
  if (attr[0] == 's' || attr[0] == 'S') {
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0,
                      "%s is itself a classic snapshot LV", d->source);
    return 0;
  }
  if (strcmp (field (lv, "segtype"), "thin") == 0) {
    g_autofree char *pool = g_strdup_printf ("%s/%s", field (lv, "vg_name"),
                                             field (lv, "pool_lv"));
    JsonObject *po = safe_lvm_arg (pool) ? lvs_row (pool, &pp, NULL) : NULL;

    vmsnap_probe_set_class (res, VMSNAP_CLASS_LVM_THIN);
    vmsnap_probe_add_detail (res, "thin_pool", "%s", pool);
    if (po) {
      vmsnap_probe_add_detail (res, "pool_data_percent", "%s", field (po, "data_percent"));
      vmsnap_probe_add_detail (res, "pool_metadata_percent", "%s",
                               field (po, "metadata_percent"));
    }
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 90,
                      "thin LV %s in pool %s: thin snapshots, revert to any "
                      "snapshot without copying data", d->source, pool);
    vmsnap_probe_add_limit (res, "creation is refused when pool %s is fuller "
                            "than the configured limit", pool);
  } else {
    vmsnap_probe_set_class (res, VMSNAP_CLASS_LVM_THICK);
    vmsnap_probe_set (res, VMSNAP_FIT_PREFERRED, 85,
                      "thick LV %s: classic COW snapshot sized by policy",
                      d->source);
    vmsnap_probe_add_limit (res, "a COW snapshot that fills up is invalidated; "
                            "revert merges into the origin with the VM shut off");
  }
  if (req->memory)
    vmsnap_probe_add_limit (res, "memory state goes to an external file");
  return 0;
}

VMSNAP_PENDING_CREATE (lvm_create, NAME)
VMSNAP_PENDING_REVERT (lvm_revert, NAME)
VMSNAP_PENDING_MERGE (lvm_merge, NAME)
VMSNAP_PENDING_DELETE (lvm_delete, NAME)

static vmsnap_backend lvm = {
  .name = NAME,
  .version = PACKAGE_VERSION,
  .description = "LVM thin and classic snapshots through liblvm2cmd",
  .caps = VMSNAP_CAP_CREATE_OFFLINE | VMSNAP_CAP_CREATE_ONLINE
        | VMSNAP_CAP_REVERT_OFFLINE | VMSNAP_CAP_MERGE_OFFLINE
        | VMSNAP_CAP_DELETE_OFFLINE | VMSNAP_CAP_DELETE_ONLINE
        | VMSNAP_CAP_CREATE_NEEDS_PAUSE | VMSNAP_CAP_REVERT_NEEDS_SHUTOFF,
  .probe = lvm_probe,
  .create = lvm_create,
  .revert = lvm_revert,
  .merge = lvm_merge,
  .delete = lvm_delete,
};

VMSNAP_REGISTER_BACKEND (lvm)
