/* Small helpers shared by the backends (a header, so each module stays one
 * self-contained .so): errors in the contract's form. */
#ifndef VMSNAP_BACKEND_UTIL_H
#define VMSNAP_BACKEND_UTIL_H

#include <stdarg.h>
#include <glib.h>
#include <vmsnap/backend.h>

/* Set *ERR (VMSNAP_ERROR, CODE) from FMT; returns -1 for `return fail (...)`. */
static inline int fail (GError **err, int code, const char *fmt, ...)
  G_GNUC_PRINTF (3, 4);

static inline int
fail (GError **err, int code, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (err, VMSNAP_ERROR, code, msg);
  return -1;
}

/* A tool (or journal) error E, with what was being done before it and what
 * the user can do after it (HINT, may be NULL).  Keeps E's code when it is
 * a vmsnap error.  Consumes E. */
static inline int fail_with (GError **err, GError *e, const char *hint,
                             const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static inline int
fail_with (GError **err, GError *e, const char *hint, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *what = NULL;
  int code = e && e->domain == VMSNAP_ERROR ? e->code : VMSNAP_ERR_FAILED;

  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (err, VMSNAP_ERROR, code, "%s: %s%s%s", what,
               e ? e->message : "failed", hint ? ". " : "", hint ? hint : "");
  if (e)
    g_error_free (e);
  return -1;
}

/* "1.0 MiB (1048576 bytes)", "0 bytes" */
static inline char *
fmt_size (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS
                                    | G_FORMAT_SIZE_LONG_FORMAT);
}

#endif
