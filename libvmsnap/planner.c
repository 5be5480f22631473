/* The planner: per disk the highest-scoring backend whose probe says it
 * can, then the VM-wide rules of DESIGN.md §4, then user overrides.  The
 * plan is a value: printed for people or as JSON before anything runs. */
#include <config.h>

#include <string.h>

#include <json-glib/json-glib.h>

#include "internal.h"

typedef struct {
  const vmsnap_module *module;
  vmsnap_probe_result *res;
} candidate;

typedef struct {
  vmsnap_disk_priv *disk;
  gboolean included;
  char *excluded;          /* why the disk is left out */
  GPtrArray *candidates;   /* candidate* */
  const candidate *chosen;
  char *why;
  const char *how;         /* score | internal-rule | override | xml-attribute */
  char *problem;           /* why no backend could be chosen */
  char *shared;            /* its image is another disk's too: why that is refused */
} plan_disk;

struct vmsnap_plan {
  vmsnap_domain *dom;      /* borrowed */
  gboolean memory;
  GPtrArray *disks;        /* plan_disk* */
  const char *mode;        /* none | internal | external | mixed */
  const char *memory_method; /* none | internal | external-file */
  gboolean needs_pause;
  gboolean internal_ok;
  char *internal_blocked;  /* why the internal rule does not apply */
  GPtrArray *problems;     /* char* */
  GPtrArray *notes;        /* char* */
};

static void
candidate_free (gpointer p)
{
  candidate *c = p;

  vmsnap_probe_result_free (c->res);
  g_free (c);
}

static void
plan_disk_free (gpointer p)
{
  plan_disk *pd = p;

  g_free (pd->excluded);
  g_free (pd->why);
  g_free (pd->problem);
  g_free (pd->shared);
  g_ptr_array_unref (pd->candidates);
  g_free (pd);
}

void
vmsnap_plan_free (vmsnap_plan *plan)
{
  if (plan == NULL)
    return;
  g_ptr_array_unref (plan->disks);
  g_ptr_array_unref (plan->problems);
  g_ptr_array_unref (plan->notes);
  g_free (plan->internal_blocked);
  g_free (plan);
}

/* Why a disk is not snapshotted at all, or NULL. */
static char *
exclusion (const vmsnap_disk *d)
{
  if (d->device == VMSNAP_DEVICE_CDROM)
    return g_strdup ("cdrom: removable media are not snapshotted");
  if (d->device == VMSNAP_DEVICE_FLOPPY)
    return g_strdup ("floppy: removable media are not snapshotted");
  if (d->device == VMSNAP_DEVICE_LUN)
    return g_strdup ("lun: SCSI commands pass through to the device; "
                     "vmsnap cannot capture it consistently");
  if (d->readonly)
    return g_strdup ("read-only: its contents cannot change");
  if (d->shareable)
    return g_strdup ("shareable: other VMs may write to it, so a snapshot "
                     "of this VM alone would not be consistent");
  if (d->snapshot_mode && strcmp (d->snapshot_mode, "no") == 0)
    return g_strdup ("snapshot='no' in the domain XML");
  if (d->transient)
    return g_strdup ("transient: its changes are discarded when the VM stops");
  return NULL;
}

static void
probe_all (vmsnap_plan *plan, const vmsnap_ctx *ctx, plan_disk *pd,
           gboolean online)
{
  vmsnap_probe_request req = {
    .struct_size = sizeof req, .memory = plan->memory, .online = online,
  };

  /* Every module that loads, in name order (ctx->modules is sorted).  One
   * not loaded yet whose disk filter refuses the disk stays unloaded and
   * gets the filter's verdict, which is its probe's first check, so the
   * plan is the same either way (issue 17: load only what is needed). */
  for (guint i = 0; i < ctx->modules->len; i++) {
    const vmsnap_module *m = ctx->modules->pdata[i];
    g_autofree char *refused = vmsnap_module_unloaded_refusal (m, &pd->disk->pub);
    candidate *c;
    g_autoptr (GError) err = NULL;

    if (refused == NULL) {
      vmsnap_module_load (ctx, m);
      if (m->info.status != VMSNAP_BACKEND_LOADED)
        continue;
    }
    c = g_new0 (candidate, 1);
    c->module = m;
    c->res = vmsnap_probe_result_new ();
    c->res->config = ctx->config;
    g_ptr_array_add (pd->candidates, c);
    if (refused != NULL) {
      vmsnap_probe_set (c->res, VMSNAP_FIT_CANNOT, 0, "%s", refused);
      continue;
    }
    if (m->be.probe (&pd->disk->pub, &req, c->res, &err) < 0) {
      vmsnap_probe_set (c->res, VMSNAP_FIT_CANNOT, 0, "probe failed: %s",
                        err ? err->message : "no reason given");
      continue;
    }
    if (!c->res->set)
      vmsnap_probe_set (c->res, VMSNAP_FIT_CANNOT, 0,
                        "backend %s gave no verdict (a bug in the backend)",
                        m->name);
    if (online && c->res->fit != VMSNAP_FIT_CANNOT
        && !(m->be.caps & VMSNAP_CAP_CREATE_ONLINE)) {
      g_autofree char *r = g_strdup (c->res->reason);
      vmsnap_probe_set (c->res, VMSNAP_FIT_CANNOT, 0,
                        "cannot snapshot while the VM runs (%s)", r);
    }
  }
}

/* Best candidate that can, among those with (want_internal) or without
 * the VM_INTERNAL capability; -1 for either. */
static const candidate *
best (const plan_disk *pd, int want_internal)
{
  const candidate *b = NULL;

  for (guint i = 0; i < pd->candidates->len; i++) {
    const candidate *c = pd->candidates->pdata[i];
    gboolean internal = (c->module->be.caps & VMSNAP_CAP_VM_INTERNAL) != 0;
    if (c->res->fit == VMSNAP_FIT_CANNOT)
      continue;
    if (want_internal >= 0 && internal != (gboolean) want_internal)
      continue;
    if (b == NULL || c->res->score > b->res->score)
      b = c;
  }
  return b;
}

static const candidate *
find_candidate (const plan_disk *pd, const char *name)
{
  for (guint i = 0; i < pd->candidates->len; i++) {
    const candidate *c = pd->candidates->pdata[i];
    if (strcmp (c->module->name, name) == 0)
      return c;
  }
  return NULL;
}

static char *
cannot_summary (const plan_disk *pd)
{
  GString *s = g_string_new (NULL);

  if (pd->candidates->len == 0) {
    g_string_free (s, TRUE);
    return g_strdup ("no backend is loaded (vmsnap backends says why)");
  }
  for (guint i = 0; i < pd->candidates->len; i++) {
    const candidate *c = pd->candidates->pdata[i];
    g_string_append_printf (s, "%s%s: %s", i ? "; " : "", c->module->name,
                            c->res->reason);
  }
  return g_string_free (s, FALSE);
}

static void
choose (vmsnap_plan *plan, const vmsnap_ctx *ctx, plan_disk *pd,
        const char *override)
{
  const vmsnap_disk *d = &pd->disk->pub;
  const candidate *c;

  if (override) {
    const vmsnap_module *m = vmsnap_find_module (ctx, override);
    if (m == NULL) {
      pd->problem = g_strdup_printf ("--backend %s=%s: no such backend "
                                     "(vmsnap backends lists them)",
                                     d->target, override);
      return;
    }
    if (m->info.status != VMSNAP_BACKEND_LOADED) {
      pd->problem = g_strdup_printf ("--backend %s=%s: backend %s is %s: %s",
                                     d->target, override, override,
                                     vmsnap_backend_status_name (m->info.status),
                                     m->message);
      return;
    }
    c = find_candidate (pd, override);
    if (c == NULL || c->res->fit == VMSNAP_FIT_CANNOT) {
      pd->problem = g_strdup_printf ("--backend %s=%s refused: %s", d->target,
                                     override, c ? c->res->reason : "not probed");
      return;
    }
    pd->chosen = c;
    pd->how = "override";
    pd->why = g_strdup_printf ("--backend %s=%s: %s", d->target, override,
                               c->res->reason);
    return;
  }

  if (d->snapshot_mode && (strcmp (d->snapshot_mode, "internal") == 0
                           || strcmp (d->snapshot_mode, "external") == 0)) {
    gboolean internal = strcmp (d->snapshot_mode, "internal") == 0;
    c = best (pd, internal);
    if (c == NULL) {
      g_autofree char *all = cannot_summary (pd);
      pd->problem = g_strdup_printf ("snapshot='%s' in the domain XML, but no "
                                     "%s backend can take %s: %s",
                                     d->snapshot_mode, d->snapshot_mode,
                                     d->target, all);
      return;
    }
    pd->chosen = c;
    pd->how = "xml-attribute";
    pd->why = g_strdup_printf ("snapshot='%s' in the domain XML: %s",
                               d->snapshot_mode, c->res->reason);
    return;
  }

  if (plan->internal_ok) {
    c = best (pd, TRUE);
    pd->chosen = c;
    pd->how = "internal-rule";
    pd->why = g_strdup_printf ("memory requested and every disk can keep "
                               "internal snapshots: %s", c->res->reason);
    return;
  }
  c = best (pd, FALSE);
  if (c == NULL) {
    const candidate *ci = best (pd, TRUE);
    if (ci != NULL) {
      /* Only an internal backend can: allowed, as the VM-wide rule is about
       * choosing internal over external, not about refusing a disk. */
      pd->chosen = ci;
      pd->how = "score";
      pd->why = g_strdup_printf ("only %s can take it (score %d): %s",
                                 ci->module->name, ci->res->score, ci->res->reason);
      return;
    }
    g_autofree char *all = cannot_summary (pd);
    pd->problem = g_strdup_printf ("no backend can snapshot %s: %s",
                                   d->target, all);
    return;
  }
  pd->chosen = c;
  pd->how = "score";
  pd->why = g_strdup_printf ("highest score (%d): %s", c->res->score,
                             c->res->reason);
}

/* Does the VM-wide internal rule hold?  Sets plan->internal_blocked. */
static void
internal_rule (vmsnap_plan *plan, const vmsnap_ctx *ctx, GHashTable *overrides)
{
  vmsnap_domain *dom = plan->dom;
  guint n = 0;

  plan->internal_ok = FALSE;
  if (!plan->memory) {
    plan->internal_blocked = g_strdup ("memory state not requested (--memory)");
    return;
  }
  if (dom->loader_type && strcmp (dom->loader_type, "pflash") == 0
      && dom->nvram_path
      && (dom->nvram_format == NULL || strcmp (dom->nvram_format, "raw") == 0)) {
    plan->internal_blocked = g_strdup_printf (
      "UEFI firmware keeps its variables in raw NVRAM %s, which an internal "
      "snapshot cannot capture", dom->nvram_path);
    return;
  }
  for (guint i = 0; i < plan->disks->len; i++) {
    plan_disk *pd = plan->disks->pdata[i];
    if (!pd->included)
      continue;
    n++;
    {
      const char *ov = g_hash_table_lookup (overrides, pd->disk->pub.target);
      const vmsnap_module *m = ov ? vmsnap_find_module (ctx, ov) : NULL;
      const char *mode = pd->disk->pub.snapshot_mode;
      if (ov && !(m && (m->be.caps & VMSNAP_CAP_VM_INTERNAL))) {
        plan->internal_blocked = g_strdup_printf (
          "disk %s is set to --backend %s", pd->disk->pub.target, ov);
        return;
      }
      if (!ov && mode && strcmp (mode, "external") == 0) {
        plan->internal_blocked = g_strdup_printf (
          "disk %s has snapshot='external' in the domain XML", pd->disk->pub.target);
        return;
      }
    }
    if (best (pd, TRUE) == NULL) {
      plan->internal_blocked = g_strdup_printf (
        "disk %s cannot keep an internal snapshot", pd->disk->pub.target);
      return;
    }
  }
  if (n == 0) {
    plan->internal_blocked = g_strdup ("no disk to snapshot");
    return;
  }
  plan->internal_ok = TRUE;
}

static void
summarise (vmsnap_plan *plan)
{
  guint n = 0, n_internal = 0, n_transaction = 0;
  gboolean pause_cap = FALSE;
  gboolean online = plan->dom->state == VMSNAP_STATE_RUNNING
                    || plan->dom->state == VMSNAP_STATE_PAUSED;

  for (guint i = 0; i < plan->disks->len; i++) {
    plan_disk *pd = plan->disks->pdata[i];
    uint64_t caps;
    if (!pd->included || pd->chosen == NULL)
      continue;
    caps = pd->chosen->module->be.caps;
    n++;
    if (caps & VMSNAP_CAP_VM_INTERNAL)
      n_internal++;
    if (caps & VMSNAP_CAP_ONE_TRANSACTION)
      n_transaction++;
    if (caps & VMSNAP_CAP_CREATE_NEEDS_PAUSE)
      pause_cap = TRUE;
  }
  if (n == 0)
    plan->mode = "none";
  else if (n_internal == n)
    plan->mode = "internal";
  else if (n_transaction == n)
    plan->mode = "external";
  else
    plan->mode = "mixed";

  if (!plan->memory)
    plan->memory_method = "none";
  else if (strcmp (plan->mode, "internal") == 0)
    plan->memory_method = "internal";
  else
    plan->memory_method = "external-file";

  /* Saving the memory state stops the vCPUs (internal or external file). */
  plan->needs_pause = online && n > 0
    && (strcmp (plan->mode, "mixed") == 0 || pause_cap || plan->memory
        || plan->dom->nvram_path != NULL);   /* NVRAM copied while paused */

  if (plan->memory && !online)
    g_ptr_array_add (plan->notes, g_strdup (
      "the domain is shut off: it has no memory state; a snapshot taken now "
      "holds the disks only"));
  if (online && strcmp (plan->mode, "external") == 0 && !plan->memory)
    g_ptr_array_add (plan->notes, g_strdup (
      "all disks are captured in one libvirt transaction; the guest does not pause"));
  if (online && strcmp (plan->mode, "external") == 0 && plan->memory)
    g_ptr_array_add (plan->notes, g_strdup (
      "all disks are captured in one libvirt transaction; the guest pauses "
      "while its memory is saved"));
  if (online && strcmp (plan->mode, "mixed") == 0)
    g_ptr_array_add (plan->notes, g_strdup (
      "backends differ: the VM is paused while every backend creates its snapshot"));
}

vmsnap_plan *
vmsnap_plan_new (vmsnap_ctx *ctx, vmsnap_domain *dom,
                 const vmsnap_plan_options *opts, GError **err)
{
  g_autoptr (vmsnap_plan) plan = g_new0 (vmsnap_plan, 1);
  g_autoptr (GHashTable) overrides = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean online = dom->state == VMSNAP_STATE_RUNNING
                    || dom->state == VMSNAP_STATE_PAUSED;

  plan->dom = dom;
  plan->memory = opts && opts->memory;
  plan->disks = g_ptr_array_new_with_free_func (plan_disk_free);
  plan->problems = g_ptr_array_new_with_free_func (g_free);
  plan->notes = g_ptr_array_new_with_free_func (g_free);

  /* Overrides: TARGET=NAME, TARGET must be a disk of the domain. */
  for (const char *const *o = opts ? opts->overrides : NULL; o && *o; o++) {
    const char *eq = strchr (*o, '=');
    g_autofree char *target = NULL;
    gboolean found = FALSE;

    if (eq == NULL || eq == *o || eq[1] == '\0') {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "--backend %s: expected TARGET=BACKEND, e.g. vda=qcow2-external", *o);
      return NULL;
    }
    target = g_strndup (*o, eq - *o);
    for (guint i = 0; i < dom->disks->len; i++)
      if (strcmp (((vmsnap_disk_priv *) dom->disks->pdata[i])->pub.target, target) == 0)
        found = TRUE;
    if (!found) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "--backend %s: domain %s has no disk '%s'", *o, dom->name, target);
      return NULL;
    }
    g_hash_table_insert (overrides, g_string_chunk_insert_const (dom->strs, target),
                         (gpointer) (eq + 1));
  }

  for (guint i = 0; i < dom->disks->len; i++) {
    plan_disk *pd = g_new0 (plan_disk, 1);
    pd->disk = dom->disks->pdata[i];
    pd->candidates = g_ptr_array_new_with_free_func (candidate_free);
    g_ptr_array_add (plan->disks, pd);
    pd->excluded = exclusion (&pd->disk->pub);
    pd->included = pd->excluded == NULL;
    if (pd->included && pd->disk->pub.inspect_error == NULL)
      probe_all (plan, ctx, pd, online);
  }

  internal_rule (plan, ctx, overrides);

  {
    /* Two disks on one image: a later delete would commit both disks'
     * changes into it and one disk would get the other's data.  Only
     * read-only or shareable disks (which vmsnap leaves alone) may share
     * a file; a base image shared below two disks' own images is fine
     * (the guard keeps every operation from writing it). */
    g_autoptr (vmsnap_guard) g = vmsnap_guard_new (dom);
    for (guint i = 0; i < plan->disks->len; i++) {
      plan_disk *pd = plan->disks->pdata[i];
      g_autofree char *st = NULL;
      const char *other;
      gboolean active = FALSE;
      if (!pd->included || pd->disk->pub.inspect_error)
        continue;
      st = vmsnap_guard_disk_storage (&pd->disk->pub);
      other = vmsnap_guard_other_user (g, pd->disk->pub.target, st, &active);
      if (other && pd->shared == NULL)
        pd->shared = g_strdup_printf (
            "its image %s is also %s disk %s: a snapshot would mix the two "
            "disks' data; give each disk its own image (only <readonly/> or "
            "<shareable/> disks, which vmsnap leaves alone, may share one)",
            pd->disk->pub.source, active ? "the active image of"
            : "in the backing chain of", other);
    }
  }

  for (guint i = 0; i < plan->disks->len; i++) {
    plan_disk *pd = plan->disks->pdata[i];
    const char *ov = g_hash_table_lookup (overrides, pd->disk->pub.target);
    if (!pd->included) {
      if (ov)
        pd->problem = g_strdup_printf ("--backend %s=%s: the disk is excluded "
                                       "(%s)", pd->disk->pub.target, ov, pd->excluded);
    } else if (pd->disk->pub.inspect_error) {
      pd->problem = g_strdup (pd->disk->pub.inspect_error);
    } else if (pd->shared) {
      pd->problem = g_strdup (pd->shared);
    } else {
      choose (plan, ctx, pd, ov);
    }
    if (pd->problem)
      g_ptr_array_add (plan->problems, g_strdup_printf ("%s: %s", pd->disk->pub.target,
                                                        pd->problem));
  }
  summarise (plan);
  return g_steal_pointer (&plan);
}

bool
vmsnap_plan_possible (const vmsnap_plan *plan)
{
  return plan->problems->len == 0;
}

GError *
vmsnap_plan_error (const vmsnap_plan *plan)
{
  g_autofree char *all = NULL;

  if (plan->problems->len == 0)
    return NULL;
  g_ptr_array_add (plan->problems, NULL);
  all = g_strjoinv ("\n  ", (char **) plan->problems->pdata);
  g_ptr_array_remove_index (plan->problems, plan->problems->len - 1);
  return g_error_new (VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED,
                      "domain %s cannot be snapshotted as asked:\n  %s",
                      plan->dom->name, all);
}

/* ------------------------------------------------------------- output */

static const char *
device_name (vmsnap_disk_device d)
{
  switch (d) {
  case VMSNAP_DEVICE_DISK: return "disk";
  case VMSNAP_DEVICE_CDROM: return "cdrom";
  case VMSNAP_DEVICE_FLOPPY: return "floppy";
  case VMSNAP_DEVICE_LUN: return "lun";
  }
  return "disk";
}

static vmsnap_storage_class
disk_class (const plan_disk *pd)
{
  if (pd->chosen && pd->chosen->res->cls != VMSNAP_CLASS_UNKNOWN)
    return pd->chosen->res->cls;
  return pd->disk->pub.storage_class;
}

static void
add_str (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
add_strv (JsonBuilder *b, const char *key, GPtrArray *v)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (guint i = 0; v && i < v->len; i++)
    json_builder_add_string_value (b, v->pdata[i]);
  json_builder_end_array (b);
}

static void
add_bool (JsonBuilder *b, const char *key, gboolean v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_boolean_value (b, v);
}

static void
disk_json (JsonBuilder *b, const plan_disk *pd)
{
  const vmsnap_disk *d = &pd->disk->pub;

  json_builder_begin_object (b);
  add_str (b, "target", d->target);
  add_str (b, "device", device_name (d->device));
  add_str (b, "type", d->type_name);
  add_str (b, "source", d->source);
  if (d->protocol)
    add_str (b, "protocol", d->protocol);
  add_str (b, "format", d->format);
  add_str (b, "detected_format", d->detected_format);
  add_str (b, "storage_class", vmsnap_storage_class_name (disk_class (pd)));
  if (d->encryption_format) {
    json_builder_set_member_name (b, "encryption");
    json_builder_begin_object (b);
    add_str (b, "format", d->encryption_format);
    add_str (b, "secret_uuid", d->encryption_secret_uuid);
    add_str (b, "secret_usage", d->encryption_secret_usage);
    json_builder_end_object (b);
  }
  add_bool (b, "included", pd->included);
  add_str (b, "backend", pd->chosen ? pd->chosen->module->name : NULL);
  add_str (b, "chosen_by", pd->chosen ? pd->how : NULL);
  add_str (b, "why", pd->chosen ? pd->why : pd->excluded ? pd->excluded : pd->problem);
  add_str (b, "problem", pd->problem);
  add_strv (b, "limitations", pd->chosen ? pd->chosen->res->limits : NULL);
  add_strv (b, "warnings", pd->disk->warnings);

  json_builder_set_member_name (b, "details");
  json_builder_begin_object (b);
  if (pd->chosen)
    for (guint i = 0; i < pd->chosen->res->detail_keys->len; i++)
      add_str (b, pd->chosen->res->detail_keys->pdata[i],
               pd->chosen->res->detail_values->pdata[i]);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "chain");
  json_builder_begin_array (b);
  for (size_t i = 0; i < d->n_chain; i++) {
    json_builder_begin_object (b);
    add_str (b, "path", d->chain[i]->path);
    add_str (b, "format", d->chain[i]->format);
    json_builder_set_member_name (b, "virtual_size");
    json_builder_add_int_value (b, (gint64) d->chain[i]->virtual_size);
    json_builder_set_member_name (b, "internal_snapshots");
    json_builder_add_int_value (b, d->chain[i]->n_internal_snapshots);
    if (d->chain[i]->data_file)
      add_str (b, "data_file", d->chain[i]->data_file);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);

  json_builder_set_member_name (b, "candidates");
  json_builder_begin_array (b);
  for (guint i = 0; i < pd->candidates->len; i++) {
    const candidate *c = pd->candidates->pdata[i];
    json_builder_begin_object (b);
    add_str (b, "backend", c->module->name);
    add_str (b, "fitness", vmsnap_fitness_name (c->res->fit));
    json_builder_set_member_name (b, "score");
    json_builder_add_int_value (b, c->res->score);
    add_str (b, "reason", c->res->reason);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

char *
vmsnap_plan_to_json (const vmsnap_plan *plan)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  const vmsnap_domain *dom = plan->dom;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "domain");
  json_builder_begin_object (b);
  add_str (b, "name", dom->name);
  add_str (b, "uuid", dom->uuid);
  add_str (b, "kind", dom->path ? "xml-file" : "libvirt");
  if (dom->path)
    add_str (b, "path", dom->path);
  else
    add_str (b, "uri", dom->uri);
  add_str (b, "state", vmsnap_state_name (dom->state));
  add_str (b, "firmware_loader", dom->loader_type);
  add_str (b, "nvram", dom->nvram_path);
  json_builder_end_object (b);

  add_str (b, "mode", plan->mode);
  json_builder_set_member_name (b, "memory");
  json_builder_begin_object (b);
  add_bool (b, "requested", plan->memory);
  add_str (b, "method", plan->memory_method);
  json_builder_end_object (b);
  add_bool (b, "needs_pause", plan->needs_pause);
  add_str (b, "internal_rule", plan->internal_ok ? "applies" : plan->internal_blocked);
  add_bool (b, "possible", plan->problems->len == 0);
  add_strv (b, "problems", plan->problems);
  add_strv (b, "notes", plan->notes);
  json_builder_set_member_name (b, "disks");
  json_builder_begin_array (b);
  for (guint i = 0; i < plan->disks->len; i++)
    disk_json (b, plan->disks->pdata[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  json_generator_set_pretty (g, TRUE);
  json_generator_set_indent (g, 2);
  return json_generator_to_data (g, NULL);
}

char *
vmsnap_plan_to_text (const vmsnap_plan *plan)
{
  GString *s = g_string_new (NULL);
  const vmsnap_domain *dom = plan->dom;

  g_string_append_printf (s, "Domain %s (%s, %s)\n", dom->name,
                          dom->path ? dom->path : dom->uri,
                          vmsnap_state_name (dom->state));
  g_string_append_printf (s, "Mode: %s   Memory: %s   Needs pause: %s\n",
                          plan->mode, plan->memory_method,
                          plan->needs_pause ? "yes" : "no");
  for (guint i = 0; i < plan->notes->len; i++)
    g_string_append_printf (s, "Note: %s\n", (char *) plan->notes->pdata[i]);
  g_string_append (s, "\n");
  g_string_append_printf (s, "%-6s %-16s %-13s %-7s %s\n", "DISK", "BACKEND",
                          "CLASS", "FORMAT", "SOURCE");
  for (guint i = 0; i < plan->disks->len; i++) {
    const plan_disk *pd = plan->disks->pdata[i];
    const vmsnap_disk *d = &pd->disk->pub;
    const char *be = pd->chosen ? pd->chosen->module->name
                     : pd->excluded ? "(excluded)" : "(none)";

    g_string_append_printf (s, "%-6s %-16s %-13s %-7s %s\n", d->target, be,
                            vmsnap_storage_class_name (disk_class (pd)),
                            d->format ? d->format : "-",
                            d->source ? d->source : "-");
    if (d->encryption_format)
      g_string_append_printf (s, "       encryption: %s, secret %s%s\n",
                              d->encryption_format,
                              d->encryption_secret_uuid ? d->encryption_secret_uuid
                              : d->encryption_secret_usage ? d->encryption_secret_usage
                              : "(none named)",
                              !d->encryption_secret_uuid && d->encryption_secret_usage
                              ? " (usage)" : "");
    if (pd->chosen)
      g_string_append_printf (s, "       why: %s\n", pd->why);
    else if (pd->excluded)
      g_string_append_printf (s, "       excluded: %s\n", pd->excluded);
    if (pd->problem)
      g_string_append_printf (s, "       PROBLEM: %s\n", pd->problem);
    for (guint k = 0; k < pd->disk->warnings->len; k++)
      g_string_append_printf (s, "       warning: %s\n",
                              (char *) pd->disk->warnings->pdata[k]);
    for (guint k = 0; pd->chosen && k < pd->chosen->res->limits->len; k++)
      g_string_append_printf (s, "       limit: %s\n",
                              (char *) pd->chosen->res->limits->pdata[k]);
    for (size_t k = 1; k < d->n_chain; k++)
      g_string_append_printf (s, "       backing %zu: %s (%s)\n", k,
                              d->chain[k]->path, d->chain[k]->format);
    for (size_t k = 0; k < d->n_chain; k++)
      if (d->chain[k]->data_file)
        g_string_append_printf (s, "       data file: %s (of %s)\n",
                                d->chain[k]->data_file, d->chain[k]->path);
  }
  if (plan->problems->len)
    g_string_append_printf (s, "\nNot possible: %u disk(s) cannot be "
                            "snapshotted as asked (see PROBLEM above).\n",
                            plan->problems->len);
  return g_string_free (s, FALSE);
}

const char *
vmsnap_plan_backend (const vmsnap_plan *plan, const char *target)
{
  for (guint i = 0; i < plan->disks->len; i++) {
    const plan_disk *pd = plan->disks->pdata[i];
    if (strcmp (pd->disk->pub.target, target) == 0)
      return pd->included && pd->chosen ? pd->chosen->module->name : NULL;
  }
  return NULL;
}

const char *
vmsnap_plan_mode (const vmsnap_plan *plan)
{
  return plan->mode ? plan->mode : "none";
}

gboolean
vmsnap_plan_needs_pause (const vmsnap_plan *plan)
{
  return plan->needs_pause;
}
