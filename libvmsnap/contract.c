/* The core's side of the backend contract: probe results, operation
 * contexts and operation results, filled by backends through setters. */
#include <config.h>

#include <stdarg.h>

#include "internal.h"

vmsnap_probe_result *
vmsnap_probe_result_new (void)
{
  vmsnap_probe_result *r = g_new0 (vmsnap_probe_result, 1);

  r->limits = g_ptr_array_new_with_free_func (g_free);
  r->detail_keys = g_ptr_array_new_with_free_func (g_free);
  r->detail_values = g_ptr_array_new_with_free_func (g_free);
  return r;
}

void
vmsnap_probe_result_free (vmsnap_probe_result *r)
{
  if (r == NULL)
    return;
  g_free (r->reason);
  g_ptr_array_unref (r->limits);
  g_ptr_array_unref (r->detail_keys);
  g_ptr_array_unref (r->detail_values);
  g_free (r);
}

const char *
vmsnap_fitness_name (vmsnap_fitness f)
{
  switch (f) {
  case VMSNAP_FIT_CANNOT: return "cannot";
  case VMSNAP_FIT_CAN: return "can";
  case VMSNAP_FIT_PREFERRED: return "preferred";
  }
  return "cannot";
}

void
vmsnap_probe_set (vmsnap_probe_result *res, vmsnap_fitness fit, int score,
                  const char *fmt, ...)
{
  va_list ap;

  g_free (res->reason);
  va_start (ap, fmt);
  res->reason = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  res->fit = fit;
  res->score = fit == VMSNAP_FIT_CANNOT ? 0 : CLAMP (score, 0, 100);
  res->set = TRUE;
}

void
vmsnap_probe_set_class (vmsnap_probe_result *res, vmsnap_storage_class cls)
{
  res->cls = cls;
}

void
vmsnap_probe_add_limit (vmsnap_probe_result *res, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_ptr_array_add (res->limits, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

void
vmsnap_probe_add_detail (vmsnap_probe_result *res, const char *key,
                         const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_ptr_array_add (res->detail_keys, g_strdup (key));
  g_ptr_array_add (res->detail_values, g_strdup_vprintf (fmt, ap));
  va_end (ap);
}

/* ----------------------------------------------------------- op context */

struct vmsnap_op {
  char *domain_name;
  char *domain_uuid;
  bool online;
  void *conn;
  uint64_t last_done;
};

const char *
vmsnap_op_domain_name (const vmsnap_op *op)
{
  return op->domain_name;
}

const char *
vmsnap_op_domain_uuid (const vmsnap_op *op)
{
  return op->domain_uuid;
}

bool
vmsnap_op_is_online (const vmsnap_op *op)
{
  return op->online;
}

void *
vmsnap_op_libvirt_conn (const vmsnap_op *op)
{
  return op->conn;
}

void
vmsnap_op_progress (vmsnap_op *op, uint64_t done, uint64_t total)
{
  op->last_done = done;
  (void) total;
}

/* -------------------------------------------------------------- results */

struct vmsnap_result {
  char *locator;
  char *new_source;
  char *new_format;
  GPtrArray *renames;   /* old, new, old, new, ... */
  uint64_t bytes_copied;
  char *note;
};

void
vmsnap_result_set_locator (vmsnap_result *res, const char *locator)
{
  g_free (res->locator);
  res->locator = g_strdup (locator);
}

void
vmsnap_result_set_new_source (vmsnap_result *res, const char *source,
                              const char *format)
{
  g_free (res->new_source);
  g_free (res->new_format);
  res->new_source = g_strdup (source);
  res->new_format = g_strdup (format);
}

void
vmsnap_result_add_rename (vmsnap_result *res, const char *old_locator,
                          const char *new_locator)
{
  if (res->renames == NULL)
    res->renames = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (res->renames, g_strdup (old_locator));
  g_ptr_array_add (res->renames, g_strdup (new_locator));
}

void
vmsnap_result_add_bytes_copied (vmsnap_result *res, uint64_t bytes)
{
  res->bytes_copied += bytes;
}

void
vmsnap_result_set_note (vmsnap_result *res, const char *fmt, ...)
{
  va_list ap;

  g_free (res->note);
  va_start (ap, fmt);
  res->note = g_strdup_vprintf (fmt, ap);
  va_end (ap);
}

void
vmsnap_point_free (vmsnap_point *p)
{
  if (p == NULL)
    return;
  g_free (p->locator);
  g_free (p->name);
  g_free (p->owner);
  g_free (p);
}
