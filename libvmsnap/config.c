/* The configuration: vmsnap.conf (GKeyFile), environment variables and
 * command-line settings, validated against what the core and each loaded
 * backend declare (vmsnap_option_desc, backend.h).
 *
 * Each setting "SECTION.KEY" gets one effective value, highest first:
 * command line > its environment variable > the file > the default.
 * Everything is validated when the context is made, so a slot never sees
 * a bad value and a typo fails before anything is touched.  A section of
 * a backend that is not installed (an optional package) or failed to load
 * is ignored with a note: its keys cannot be checked, and a host without
 * that package shares the file with hosts that have it. */
#include <config.h>

#include <math.h>   /* isfinite: a macro, no libm */
#include <string.h>

#include <json-glib/json-glib.h>

#include "internal.h"

#define CORE_SECTION "vmsnap"
#define MAX_OPTIONS 256

static const char *const quiesce_modes[] = { "off", "on", "best-effort", NULL };

static const vmsnap_option_desc core_options[] = {
  { "state-dir", VMSNAP_OPTION_STRING, VMSNAP_STATE_DIR_DEFAULT, NULL, 0, 0,
    NULL, "VMSNAP_STATE_DIR",
    "where each domain's catalog, journal and lock live" },
  { "max-chain-depth", VMSNAP_OPTION_INT, "0", NULL, 0, 1000, "images", NULL,
    "create refuses when a disk's backing chain would grow deeper (0: no limit)" },
  { "quiesce", VMSNAP_OPTION_ENUM, "off", quiesce_modes, 0, 0, NULL, NULL,
    "freeze the guest's file systems through its agent around a create "
    "(quiesce-qga plugin; create --quiesce): off, on (failure aborts), best-effort" },
  { "quiesce-timeout", VMSNAP_OPTION_INT, "10", NULL, 1, 3600, "seconds", NULL,
    "how long the guest agent gets to answer a freeze or thaw (quiesce-qga)" },
  { "hooks-dir", VMSNAP_OPTION_STRING, VMSNAP_HOOKS_DIR_DEFAULT, NULL, 0, 0, NULL,
    "VMSNAP_HOOKS_DIR",
    "the executables the exec-hooks plugin runs before and after each operation" },
  { "hook-timeout", VMSNAP_OPTION_INT, "30", NULL, 1, 86400, "seconds", NULL,
    "a hook still running after this is killed (a before hook then aborts the operation)" },
  { NULL },
};

typedef enum {
  SRC_DEFAULT = 0,
  SRC_FILE,
  SRC_ENV,
  SRC_CLI,
} cfg_source;

static const char *const source_names[] = { "default", "file", "env", "command-line" };

typedef struct {
  char *name;                     /* "section.key" */
  char *section;
  const vmsnap_option_desc *desc;
  char *value;
  cfg_source source;
  char *origin;                   /* for messages (vmsnap_option_origin) */
  /* The value parsed by its type. */
  gint64 i;
  gboolean b;
  gboolean is_pct;
  double pct;
  guint64 bytes;
} cfg_entry;

struct vmsnap_config {
  char *file;           /* the file looked at */
  int file_named;       /* 1: --config, 2: $VMSNAP_CONFIG (must exist) */
  gboolean file_read;
  GPtrArray *entries;   /* cfg_entry*, core first, then by section */
  GHashTable *by_name;  /* name -> cfg_entry* */
  GPtrArray *notes;     /* char* */
};

static void
entry_free (gpointer p)
{
  cfg_entry *e = p;

  g_free (e->name);
  g_free (e->section);
  g_free (e->value);
  g_free (e->origin);
  g_free (e);
}

void
vmsnap_config_free (vmsnap_config *cfg)
{
  if (cfg == NULL)
    return;
  g_free (cfg->file);
  g_ptr_array_unref (cfg->entries);
  g_hash_table_unref (cfg->by_name);
  g_ptr_array_unref (cfg->notes);
  g_free (cfg);
}

/* ------------------------------------------------------------ values */

static const char *
type_name (vmsnap_option_type t)
{
  switch (t) {
  case VMSNAP_OPTION_STRING: return "string";
  case VMSNAP_OPTION_INT: return "int";
  case VMSNAP_OPTION_BOOL: return "bool";
  case VMSNAP_OPTION_ENUM: return "enum";
  case VMSNAP_OPTION_SIZE_OR_PERCENT: return "size-or-percent";
  }
  return "unknown";
}

/* X rounded up, for 0 <= X; G_MAXUINT64 when it does not fit. */
static guint64
ceil_u64 (double x)
{
  guint64 r;

  if (!(x < 18446744073709551615.0))
    return G_MAXUINT64;
  r = (guint64) x;
  return (double) r < x ? r + 1 : r;
}

/* "N%" or "N[bkmgtp][B|iB]" (binary units), N > 0. */
static gboolean
parse_size (const char *v, gboolean *is_pct, double *pct, guint64 *bytes)
{
  static const char units[] = "bkmgtp";
  char *end;
  double n, mult = 1;
  const char *u;

  if (g_ascii_isspace (*v) || *v == '+' || *v == '-')
    return FALSE;
  n = g_ascii_strtod (v, &end);
  if (end == v || !isfinite (n) || !(n > 0))
    return FALSE;
  if (strcmp (end, "%") == 0) {
    if (n > 100)
      return FALSE;
    *is_pct = TRUE;
    *pct = n;
    *bytes = 0;
    return TRUE;
  }
  u = *end ? strchr (units, g_ascii_tolower (*end)) : units;
  if (u == NULL || *u == '\0')
    return FALSE;
  if (*end && end[1] && g_ascii_strcasecmp (end + 1, "iB") != 0
      && g_ascii_strcasecmp (end + 1, "B") != 0)
    return FALSE;
  for (const char *p = units; p < u; p++)
    mult *= 1024;
  if (!(n * mult < 18446744073709551615.0))
    return FALSE;
  *is_pct = FALSE;
  *pct = 0;
  *bytes = ceil_u64 (n * mult);
  return TRUE;
}

static gboolean
parse_bool (const char *v, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1" };
  static const char *const no[] = { "false", "no", "off", "0" };

  for (size_t i = 0; i < G_N_ELEMENTS (yes); i++) {
    if (g_ascii_strcasecmp (v, yes[i]) == 0)
      return *out = TRUE, TRUE;
    if (g_ascii_strcasecmp (v, no[i]) == 0)
      return *out = FALSE, TRUE;
  }
  return FALSE;
}

/* "a, b or c" */
static char *
enum_list (const char *const *values)
{
  GString *s = g_string_new (NULL);

  for (size_t i = 0; values && values[i]; i++)
    g_string_append_printf (s, "%s%s", i == 0 ? "" : values[i + 1] ? ", " : " or ",
                            values[i]);
  return g_string_free (s, FALSE);
}

/* What D accepts, as the tail of a message about a rejected value (with
 * its own leading separator, so "NAME='V'" + tail reads as a sentence). */
static char *
expected (const vmsnap_option_desc *d)
{
  switch (d->type) {
  case VMSNAP_OPTION_STRING:
    return g_strdup (" is empty: give a value");
  case VMSNAP_OPTION_INT: {
    g_autofree char *what = d->unit == NULL ? g_strdup ("an integer")
                            : strcmp (d->unit, "%") == 0 ? g_strdup ("a percentage")
                            : g_strdup_printf ("a number of %s", d->unit);
    if (d->max == G_MAXINT64)
      return g_strdup_printf (" is not %s (%" G_GINT64_FORMAT " or more)", what, d->min);
    return g_strdup_printf (" is not %s from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                            what, d->min, d->max);
  }
  case VMSNAP_OPTION_BOOL:
    return g_strdup (": use true or false (also yes/no, on/off, 1/0)");
  case VMSNAP_OPTION_ENUM: {
    g_autofree char *l = enum_list (d->values);
    return g_strdup_printf (": use %s", l);
  }
  case VMSNAP_OPTION_SIZE_OR_PERCENT:
    return g_strdup (" is neither a percentage (e.g. 20%, at most 100%) nor a "
                     "size (e.g. 512M, 2G)");
  }
  return g_strdup (" is not valid");
}

/* Parse V for D into E (may be NULL: only check). */
static gboolean
parse_value (const vmsnap_option_desc *d, const char *v, cfg_entry *e)
{
  cfg_entry tmp = { 0 };

  if (e == NULL)
    e = &tmp;
  if (v == NULL)
    return FALSE;
  switch (d->type) {
  case VMSNAP_OPTION_STRING:
    return *v != '\0';
  case VMSNAP_OPTION_INT:
    return g_ascii_string_to_signed (v, 10, d->min, d->max, &e->i, NULL);
  case VMSNAP_OPTION_BOOL:
    return parse_bool (v, &e->b);
  case VMSNAP_OPTION_ENUM:
    for (size_t i = 0; d->values && d->values[i]; i++)
      if (strcmp (v, d->values[i]) == 0)
        return TRUE;
    return FALSE;
  case VMSNAP_OPTION_SIZE_OR_PERCENT:
    return parse_size (v, &e->is_pct, &e->pct, &e->bytes);
  }
  return FALSE;
}

static gboolean
valid_key (const char *k)
{
  if (k == NULL || *k == '\0' || strlen (k) > 64)
    return FALSE;
  for (const char *p = k; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '-')
      return FALSE;
  return TRUE;
}

char *
vmsnap_options_check (const char *backend, const vmsnap_option_desc *opts)
{
  size_t n;

  if (opts == NULL)
    return NULL;
  if (strcmp (backend, CORE_SECTION) == 0)
    return g_strdup ("the section [" CORE_SECTION "] belongs to the core: a "
                     "backend of that name cannot declare settings");
  for (n = 0; n < MAX_OPTIONS && opts[n].key; n++) {
    const vmsnap_option_desc *d = &opts[n];
    if (!valid_key (d->key))
      return g_strdup_printf ("setting %zu: key '%s' is not made of a-z, 0-9 "
                              "and '-'", n, d->key);
    for (size_t k = 0; k < n; k++)
      if (strcmp (opts[k].key, d->key) == 0)
        return g_strdup_printf ("setting '%s' is declared twice", d->key);
    if ((unsigned) d->type > VMSNAP_OPTION_SIZE_OR_PERCENT)
      return g_strdup_printf ("setting '%s' has an unknown type %d", d->key,
                              (int) d->type);
    if (d->type == VMSNAP_OPTION_ENUM && (d->values == NULL || d->values[0] == NULL))
      return g_strdup_printf ("setting '%s' is an enum without values", d->key);
    if (d->type == VMSNAP_OPTION_INT && d->min > d->max)
      return g_strdup_printf ("setting '%s': min %" G_GINT64_FORMAT " > max %"
                              G_GINT64_FORMAT, d->key, d->min, d->max);
    if (!parse_value (d, d->default_value, NULL))
      return g_strdup_printf ("setting '%s': the default '%s' is not a valid %s",
                              d->key, d->default_value ? d->default_value : "(null)",
                              type_name (d->type));
  }
  if (n == MAX_OPTIONS)
    return g_strdup_printf ("more than %d settings (is the array terminated "
                            "by an entry with a NULL key?)", MAX_OPTIONS);
  return NULL;
}

/* -------------------------------------------------------------- loading */

static void
add_section (vmsnap_config *cfg, const char *section, const vmsnap_option_desc *opts)
{
  for (size_t i = 0; opts && opts[i].key; i++) {
    cfg_entry *e = g_new0 (cfg_entry, 1);
    e->section = g_strdup (section);
    e->name = g_strdup_printf ("%s.%s", section, opts[i].key);
    e->desc = &opts[i];
    e->value = g_strdup (opts[i].default_value);
    e->source = SRC_DEFAULT;
    e->origin = g_strdup_printf ("%s, the default", e->name);
    parse_value (e->desc, e->value, e);
    g_ptr_array_add (cfg->entries, e);
    g_hash_table_insert (cfg->by_name, e->name, e);
  }
}

static void
set_value (cfg_entry *e, const char *v, cfg_source src, char *origin)
{
  g_free (e->value);
  e->value = g_strdup (v);
  e->source = src;
  g_free (e->origin);
  e->origin = origin;
  parse_value (e->desc, e->value, e);
}

/* The keys of SECTION, for messages. */
static char *
known_keys (vmsnap_config *cfg, const char *section)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < cfg->entries->len; i++) {
    cfg_entry *e = cfg->entries->pdata[i];
    if (strcmp (e->section, section) == 0)
      g_string_append_printf (s, "%s%s", s->len ? ", " : "", e->desc->key);
  }
  if (s->len == 0) {
    g_string_free (s, TRUE);
    return g_strdup_printf ("backend %s has no settings", section);
  }
  g_string_prepend (s, "known keys: ");
  return g_string_free (s, FALSE);
}

static char *
known_sections (const vmsnap_ctx *ctx)
{
  GString *s = g_string_new ("known sections: " CORE_SECTION);

  for (guint i = 0; i < ctx->modules->len; i++) {
    const vmsnap_module *m = ctx->modules->pdata[i];
    g_string_append_printf (s, ", %s", m->name);
  }
  return g_string_free (s, FALSE);
}

/* Is SECTION one the configuration may hold?  TRUE: yes (its keys are
 * checked); FALSE with *note: a backend that is not loaded (ignored);
 * FALSE without: unknown. */
static gboolean
section_known (const vmsnap_ctx *ctx, const char *section, const char **why_not)
{
  const vmsnap_module *m;

  *why_not = NULL;
  if (strcmp (section, CORE_SECTION) == 0)
    return TRUE;
  m = vmsnap_peek_module (ctx, section);
  if (m == NULL)
    return FALSE;
  if (m->pending) {
    /* Only for a section without keys: one with keys had it loaded. */
    *why_not = "not loaded (this command does not use it)";
    return FALSE;
  }
  if (m->info.status == VMSNAP_BACKEND_LOADED)
    return TRUE;
  *why_not = m->message ? m->message : vmsnap_backend_status_name (m->info.status);
  return FALSE;
}

/* A value from WHERE was rejected: the error, and FALSE. */
static gboolean
bad_value (GError **err, cfg_source src, const char *file, const cfg_entry *e,
           const char *v)
{
  g_autofree char *tail = expected (e->desc);

  switch (src) {
  case SRC_FILE:
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "%s: [%s] %s='%s'%s",
                 file, e->section, e->desc->key, v, tail);
    break;
  case SRC_ENV:
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                 "%s='%s'%s (the environment variable for %s)",
                 e->desc->env, v, tail, e->name);
    break;
  default:
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "option %s='%s'%s",
                 e->name, v, tail);
    break;
  }
  return FALSE;
}

static gboolean
load_file (vmsnap_config *cfg, const vmsnap_ctx *ctx, GError **err)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_auto (GStrv) groups = NULL;

  if (!g_key_file_load_from_file (kf, cfg->file, G_KEY_FILE_NONE, &local)) {
    if (!cfg->file_named && g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return TRUE;
    if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "configuration file %s does not exist (named by %s)", cfg->file,
                   cfg->file_named == 1 ? "--config" : "VMSNAP_CONFIG");
    else
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "configuration file %s: %s", cfg->file, local->message);
    return FALSE;
  }
  cfg->file_read = TRUE;
  groups = g_key_file_get_groups (kf, NULL);
  for (char **g = groups; *g; g++) {
    g_auto (GStrv) keys = g_key_file_get_keys (kf, *g, NULL, NULL);
    const char *why_not;

    if (!section_known (ctx, *g, &why_not)) {
      g_autofree char *known = NULL;
      if (why_not) {
        /* An empty section (as the shipped file has) is not worth a note. */
        if (keys && keys[0])
          g_ptr_array_add (cfg->notes,
                           g_strdup_printf ("section [%s] of %s ignored: backend "
                                            "%s: %s", *g, cfg->file, *g, why_not));
        continue;
      }
      known = known_sections (ctx);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "%s: unknown section [%s] (%s)", cfg->file, *g, known);
      return FALSE;
    }
    for (char **k = keys; keys && *k; k++) {
      g_autofree char *name = g_strdup_printf ("%s.%s", *g, *k);
      g_autofree char *v = NULL;
      cfg_entry *e = g_hash_table_lookup (cfg->by_name, name);

      if (e == NULL) {
        g_autofree char *known = known_keys (cfg, *g);
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                     "%s: unknown key '%s' in section [%s] (%s)", cfg->file, *k,
                     *g, known);
        return FALSE;
      }
      v = g_key_file_get_string (kf, *g, *k, &local);
      if (v == NULL) {
        g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE, "%s: [%s] %s: %s",
                     cfg->file, *g, *k, local->message);
        return FALSE;
      }
      if (!parse_value (e->desc, v, NULL))
        return bad_value (err, SRC_FILE, cfg->file, e, v);
      set_value (e, v, SRC_FILE, g_strdup_printf ("%s in %s", e->name, cfg->file));
    }
  }
  return TRUE;
}

static gboolean
load_env (vmsnap_config *cfg, GError **err)
{
  for (guint i = 0; i < cfg->entries->len; i++) {
    cfg_entry *e = cfg->entries->pdata[i];
    const char *v = e->desc->env ? g_getenv (e->desc->env) : NULL;

    /* Empty is unset, as it always was for these variables. */
    if (v == NULL || *v == '\0')
      continue;
    if (!parse_value (e->desc, v, NULL))
      return bad_value (err, SRC_ENV, NULL, e, v);
    set_value (e, v, SRC_ENV, g_strdup (e->desc->env));
  }
  return TRUE;
}

static gboolean
load_settings (vmsnap_config *cfg, const vmsnap_ctx *ctx,
               const char *const *settings, GError **err)
{
  for (size_t i = 0; settings && settings[i]; i++) {
    const char *s = settings[i], *eq = strchr (s, '='), *dot;
    g_autofree char *name = eq ? g_strndup (s, eq - s) : NULL;
    g_autofree char *section = NULL;
    const char *why_not;
    cfg_entry *e;

    dot = name ? strchr (name, '.') : NULL;
    if (dot == NULL || dot == name || dot[1] == '\0') {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "option '%s': expected SECTION.KEY=VALUE (e.g. "
                   "lvm.snapshot-size=10%%; vmsnap config lists them)", s);
      return FALSE;
    }
    section = g_strndup (name, dot - name);
    if (!section_known (ctx, section, &why_not)) {
      g_autofree char *known = NULL;
      if (why_not) {
        g_ptr_array_add (cfg->notes,
                         g_strdup_printf ("option %s ignored: backend %s: %s",
                                          name, section, why_not));
        continue;
      }
      known = known_sections (ctx);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "option %s: unknown section [%s] (%s)", name, section, known);
      return FALSE;
    }
    e = g_hash_table_lookup (cfg->by_name, name);
    if (e == NULL) {
      g_autofree char *known = known_keys (cfg, section);
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "option %s: unknown key '%s' in section [%s] (%s)", name,
                   dot + 1, section, known);
      return FALSE;
    }
    if (!parse_value (e->desc, eq + 1, NULL))
      return bad_value (err, SRC_CLI, NULL, e, eq + 1);
    set_value (e, eq + 1, SRC_CLI, g_strdup_printf ("%s on the command line", e->name));
  }
  return TRUE;
}

vmsnap_config *
vmsnap_config_load (const vmsnap_ctx *ctx, const vmsnap_config_options *opts,
                    GError **err)
{
  vmsnap_config *cfg = g_new0 (vmsnap_config, 1);
  const char *env = g_getenv ("VMSNAP_CONFIG");

  cfg->entries = g_ptr_array_new_with_free_func (entry_free);
  cfg->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  cfg->notes = g_ptr_array_new_with_free_func (g_free);
  if (opts && opts->file) {
    cfg->file = g_strdup (opts->file);
    cfg->file_named = 1;
  } else if (env && *env) {
    cfg->file = g_strdup (env);
    cfg->file_named = 2;
  } else
    cfg->file = g_strdup (VMSNAP_CONFIG_FILE_DEFAULT);

  add_section (cfg, CORE_SECTION, core_options);
  for (guint i = 0; i < ctx->modules->len; i++) {
    const vmsnap_module *m = ctx->modules->pdata[i];
    if (!m->pending && m->info.status == VMSNAP_BACKEND_LOADED)
      add_section (cfg, m->name, m->be.options);
  }
  if (!load_file (cfg, ctx, err) || !load_env (cfg, err)
      || !load_settings (cfg, ctx, opts ? opts->settings : NULL, err)) {
    vmsnap_config_free (cfg);
    return NULL;
  }
  return cfg;
}

/* The file vmsnap_config_load reads for OPTS. */
static char *
config_file (const vmsnap_config_options *opts)
{
  const char *env = g_getenv ("VMSNAP_CONFIG");

  if (opts && opts->file)
    return g_strdup (opts->file);
  if (env && *env)
    return g_strdup (env);
  return g_strdup (VMSNAP_CONFIG_FILE_DEFAULT);
}

GPtrArray *
vmsnap_config_named_sections (const vmsnap_config_options *opts)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *file = config_file (opts);

  /* A file that cannot be read is vmsnap_config_load's to report. */
  if (g_key_file_load_from_file (kf, file, G_KEY_FILE_NONE, NULL)) {
    g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
    for (char **g = groups; g && *g; g++) {
      g_auto (GStrv) keys = g_key_file_get_keys (kf, *g, NULL, NULL);
      if (keys && keys[0])
        g_ptr_array_add (out, g_strdup (*g));
    }
  }
  for (size_t i = 0; opts && opts->settings && opts->settings[i]; i++) {
    const char *dot = strchr (opts->settings[i], '.');
    if (dot)
      g_ptr_array_add (out, g_strndup (opts->settings[i], dot - opts->settings[i]));
  }
  return out;
}

/* Core first, then the backends by name, each in declaration order. */
static gint
cmp_entry (gconstpointer a, gconstpointer b)
{
  const cfg_entry *ea = *(cfg_entry *const *) a;
  const cfg_entry *eb = *(cfg_entry *const *) b;
  gboolean ca = strcmp (ea->section, CORE_SECTION) == 0;
  gboolean cb = strcmp (eb->section, CORE_SECTION) == 0;

  if (ca != cb)
    return ca ? -1 : 1;
  return strcmp (ea->section, eb->section);
}

gboolean
vmsnap_config_add_backend (vmsnap_config *cfg, const vmsnap_module *m, char **why)
{
  g_autoptr (GError) err = NULL;
  guint first = cfg->entries->len;

  add_section (cfg, m->name, m->be.options);
  for (guint i = first; i < cfg->entries->len; i++) {
    cfg_entry *e = cfg->entries->pdata[i];
    const char *v = e->desc->env ? g_getenv (e->desc->env) : NULL;
    if (v == NULL || *v == '\0')
      continue;
    if (!parse_value (e->desc, v, NULL)) {
      bad_value (&err, SRC_ENV, NULL, e, v);
      *why = g_strdup (err->message);
      return FALSE;
    }
    set_value (e, v, SRC_ENV, g_strdup (e->desc->env));
  }
  /* g_ptr_array_sort is stable: each section keeps its order. */
  g_ptr_array_sort (cfg->entries, cmp_entry);
  return TRUE;
}

/* -------------------------------------------------------------- getters */

const vmsnap_config *
vmsnap_ctx_config (const vmsnap_ctx *ctx)
{
  return ctx ? ctx->config : NULL;
}

static const cfg_entry *
lookup (const vmsnap_config *cfg, const char *key)
{
  return cfg && key ? g_hash_table_lookup (cfg->by_name, key) : NULL;
}

const char *
vmsnap_option_get (const vmsnap_config *cfg, const char *key)
{
  const cfg_entry *e = lookup (cfg, key);

  return e ? e->value : NULL;
}

int64_t
vmsnap_option_get_int (const vmsnap_config *cfg, const char *key)
{
  const cfg_entry *e = lookup (cfg, key);

  return e && e->desc->type == VMSNAP_OPTION_INT ? e->i : 0;
}

bool
vmsnap_option_get_bool (const vmsnap_config *cfg, const char *key)
{
  const cfg_entry *e = lookup (cfg, key);

  return e && e->desc->type == VMSNAP_OPTION_BOOL && e->b;
}

uint64_t
vmsnap_option_get_size (const vmsnap_config *cfg, const char *key,
                        uint64_t whole, bool *is_percent)
{
  const cfg_entry *e = lookup (cfg, key);

  if (is_percent)
    *is_percent = e && e->is_pct;
  if (e == NULL || e->desc->type != VMSNAP_OPTION_SIZE_OR_PERCENT)
    return 0;
  if (e->is_pct)
    return ceil_u64 ((double) whole * e->pct / 100.0);
  return e->bytes;
}

const char *
vmsnap_option_origin (const vmsnap_config *cfg, const char *key)
{
  const cfg_entry *e = lookup (cfg, key);

  return e ? e->origin : NULL;
}

/* --------------------------------------------------------------- output */

static const char *
entry_from (const vmsnap_config *cfg, const cfg_entry *e, char **buf)
{
  switch (e->source) {
  case SRC_FILE:
    return *buf = g_strdup_printf ("file %s", cfg->file);
  case SRC_ENV:
    return *buf = g_strdup_printf ("env %s", e->desc->env);
  case SRC_CLI:
    return "command line";
  case SRC_DEFAULT:
    break;
  }
  return "default";
}

char *
vmsnap_config_to_json (const vmsnap_ctx *ctx)
{
  const vmsnap_config *cfg = ctx->config;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) g = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  /* Every backend's settings: load those no command needed yet. */
  vmsnap_ctx_load_all (ctx);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "file");
  json_builder_add_string_value (b, cfg->file);
  json_builder_set_member_name (b, "file_read");
  json_builder_add_boolean_value (b, cfg->file_read);
  json_builder_set_member_name (b, "settings");
  json_builder_begin_array (b);
  for (guint i = 0; i < cfg->entries->len; i++) {
    const cfg_entry *e = cfg->entries->pdata[i];
    const vmsnap_option_desc *d = e->desc;
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "key");
    json_builder_add_string_value (b, e->name);
    json_builder_set_member_name (b, "section");
    json_builder_add_string_value (b, e->section);
    json_builder_set_member_name (b, "value");
    json_builder_add_string_value (b, e->value);
    json_builder_set_member_name (b, "source");
    json_builder_add_string_value (b, source_names[e->source]);
    json_builder_set_member_name (b, "origin");
    json_builder_add_string_value (b, e->source == SRC_FILE ? cfg->file
                                   : e->source == SRC_ENV ? d->env : NULL);
    json_builder_set_member_name (b, "default");
    json_builder_add_string_value (b, d->default_value);
    json_builder_set_member_name (b, "type");
    json_builder_add_string_value (b, type_name (d->type));
    if (d->type == VMSNAP_OPTION_ENUM) {
      json_builder_set_member_name (b, "values");
      json_builder_begin_array (b);
      for (size_t k = 0; d->values[k]; k++)
        json_builder_add_string_value (b, d->values[k]);
      json_builder_end_array (b);
    }
    if (d->type == VMSNAP_OPTION_INT) {
      json_builder_set_member_name (b, "min");
      json_builder_add_int_value (b, d->min);
      json_builder_set_member_name (b, "max");
      json_builder_add_int_value (b, d->max);
      json_builder_set_member_name (b, "unit");
      json_builder_add_string_value (b, d->unit);
    }
    json_builder_set_member_name (b, "env");
    json_builder_add_string_value (b, d->env);
    json_builder_set_member_name (b, "help");
    json_builder_add_string_value (b, d->help);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "notes");
  json_builder_begin_array (b);
  for (guint i = 0; i < cfg->notes->len; i++)
    json_builder_add_string_value (b, cfg->notes->pdata[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  json_generator_set_pretty (g, TRUE);
  json_generator_set_indent (g, 2);
  return json_generator_to_data (g, NULL);
}

char *
vmsnap_config_to_text (const vmsnap_ctx *ctx)
{
  const vmsnap_config *cfg = ctx->config;
  GString *s = g_string_new (NULL);
  size_t w = 3, vw = 5;

  /* Every backend's settings: load those no command needed yet. */
  vmsnap_ctx_load_all (ctx);

  g_string_append_printf (s, "Configuration file: %s (%s)\n", cfg->file,
                          cfg->file_read ? "read" : "not found: built-in defaults");
  for (guint i = 0; i < cfg->entries->len; i++) {
    const cfg_entry *e = cfg->entries->pdata[i];
    w = MAX (w, strlen (e->name));
    vw = MAX (vw, MIN (strlen (e->value), 40));
  }
  g_string_append_printf (s, "%-*s  %-*s  %s\n", (int) w, "KEY", (int) vw, "VALUE", "FROM");
  for (guint i = 0; i < cfg->entries->len; i++) {
    const cfg_entry *e = cfg->entries->pdata[i];
    g_autofree char *buf = NULL;
    g_string_append_printf (s, "%-*s  %-*s  %s\n", (int) w, e->name, (int) vw,
                            e->value, entry_from (cfg, e, &buf));
  }
  for (guint i = 0; i < cfg->notes->len; i++)
    g_string_append_printf (s, "note: %s\n", (char *) cfg->notes->pdata[i]);
  return g_string_free (s, FALSE);
}
