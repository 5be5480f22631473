/* Backend loader (libltdl).
 *
 * lt_dlinit once, loads serialised under one mutex, modules never unloaded.
 * Search order: $VMSNAP_BACKEND_DIR (colon-separated), the build tree (only
 * when the running program lives in it), then $(pkglibdir)/backends.
 * Outcomes kept apart: not installed (normal for optional packages), failed
 * to load (dlerror text + hint), refused (ABI, size, mandatory slot).
 */
#include <config.h>

#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* The backends this project ships: a missing one is "not installed". */
static const struct {
  const char *name;
  const char *package;
} shipped[] = {
  { "qcow2-external", "vmsnap" },
  { "qcow2-internal", "vmsnap" },
  { "lvm", "vmsnap-backend-lvm" },
  { "rbd", "vmsnap-backend-rbd" },
};

static GMutex load_lock;
static gboolean ltdl_ready;

static void
module_free (gpointer p)
{
  vmsnap_module *m = p;

  /* The handle is deliberately never closed: backends may have registered
   * atexit handlers or threads (librados), and unloading buys nothing. */
  g_free (m->name);
  g_free (m->path);
  g_free (m->message);
  g_free (m->filter);
  g_free (m);
}

/* Directories to search for modules of KIND ("backends" or "plugins"), in
 * order: ENV (the value of its variable, colon-separated), the build tree,
 * INSTALL_DIR. */
GPtrArray *
vmsnap_module_dirs (const char *env, const char *kind, const char *install_dir)
{
  GPtrArray *dirs = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);

  if (env != NULL && *env != '\0') {
    g_auto (GStrv) parts = g_strsplit (env, ":", -1);
    for (char **p = parts; *p; p++)
      if (**p)
        g_ptr_array_add (dirs, g_strdup (*p));
  }
  /* The build tree, only for programs run from it (tools/, tests/), so an
   * installed vmsnap never picks up a stale build. */
  if (exe != NULL && g_str_has_prefix (exe, VMSNAP_ABS_BUILDDIR "/"))
    g_ptr_array_add (dirs, g_strconcat (VMSNAP_ABS_BUILDDIR "/", kind, NULL));
  g_ptr_array_add (dirs, g_strdup (install_dir));
  return dirs;
}

/* Where a module file for NAME may sit inside DIR: DIR/NAME.{la,so} (install
 * dir, VMSNAP_BACKEND_DIR) or DIR/NAME/NAME.{la,so} (the build tree). */
char *
vmsnap_module_find_in (const char *dir, const char *name)
{
  for (int i = 0; i < 2; i++) {
    g_autofree char *base = i == 0 ? g_strdup_printf ("%s/%s", dir, name)
                                   : g_strdup_printf ("%s/%s/%s", dir, name, name);
    g_autofree char *la = g_strconcat (base, ".la", NULL);
    g_autofree char *so = g_strconcat (base, ".so", NULL);
    if (g_file_test (la, G_FILE_TEST_IS_REGULAR)
        || g_file_test (so, G_FILE_TEST_IS_REGULAR))
      return g_steal_pointer (&base);
  }
  return NULL;
}

gboolean
vmsnap_module_valid_name (const char *name)
{
  if (name == NULL || *name == '\0' || strlen (name) > 64)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '-')
      return FALSE;
  return TRUE;
}

/* Check the registered struct; on refusal say which module and slot. */
static gboolean
accept_module (vmsnap_module *m, const vmsnap_backend *be)
{
  static const struct {
    const char *slot;
    size_t offset;
  } mandatory[] = {
    { "probe", offsetof (vmsnap_backend, probe) },
    { "create", offsetof (vmsnap_backend, create) },
    { "revert", offsetof (vmsnap_backend, revert) },
    { "delete", offsetof (vmsnap_backend, delete) },
  };
  size_t n;

  if (be->abi_version != VMSNAP_BACKEND_ABI_VERSION) {
    m->message = g_strdup_printf (
      "module %s was built for backend ABI %u, this vmsnap speaks ABI %u: "
      "rebuild the module against this vmsnap's headers",
      m->path, be->abi_version, VMSNAP_BACKEND_ABI_VERSION);
    return FALSE;
  }
  if (be->struct_size < VMSNAP_BACKEND_MIN_SIZE) {
    m->message = g_strdup_printf (
      "module %s registers a struct of %u bytes, smaller than the %zu "
      "bytes every ABI %u backend must provide",
      m->path, be->struct_size, (size_t) VMSNAP_BACKEND_MIN_SIZE,
      VMSNAP_BACKEND_ABI_VERSION);
    return FALSE;
  }
  /* Copy what the module has, zero-fill slots it predates. */
  n = MIN ((size_t) be->struct_size, sizeof m->be);
  memset (&m->be, 0, sizeof m->be);
  memcpy (&m->be, be, n);

  if (m->be.name == NULL || m->be.version == NULL) {
    m->message = g_strdup_printf ("module %s: mandatory field '%s' is NULL",
                                  m->path, m->be.name ? "version" : "name");
    return FALSE;
  }
  if (!vmsnap_module_valid_name (m->be.name) || strcmp (m->be.name, m->name) != 0) {
    m->message = g_strdup_printf (
      "module %s registers the name '%s'; a module file NAME.so must "
      "register NAME, made of a-z, 0-9 and '-'", m->path, m->be.name);
    return FALSE;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (mandatory); i++) {
    void *slot;
    memcpy (&slot, (const char *) &m->be + mandatory[i].offset, sizeof slot);
    if (slot == NULL) {
      m->message = g_strdup_printf ("module %s (backend %s): mandatory slot "
                                    "'%s' is NULL", m->path, m->be.name,
                                    mandatory[i].slot);
      return FALSE;
    }
  }
  if (m->be.prepare && m->be.abort == NULL) {
    m->message = g_strdup_printf ("module %s (backend %s): it has a 'prepare' "
                                  "slot but no 'abort' slot, which prepare "
                                  "needs", m->path, m->be.name);
    return FALSE;
  }
  {
    g_autofree char *why = vmsnap_options_check (m->be.name, m->be.options);
    if (why) {
      m->message = g_strdup_printf ("module %s (backend %s): bad settings "
                                    "declaration: %s", m->path, m->be.name, why);
      return FALSE;
    }
  }
  if (m->be.init) {
    g_autoptr (GError) err = NULL;
    if (m->be.init (&err) < 0) {
      m->message = g_strdup_printf ("module %s (backend %s): init failed: %s",
                                    m->path, m->be.name,
                                    err ? err->message : "no reason given");
      return FALSE;
    }
  }
  return TRUE;
}

/* The module file libltdl loads for BASE: BASE.so (an install dir), or
 * DIR/.libs/NAME.so next to a libtool BASE.la (the build tree). */
static char *
module_so (const char *base)
{
  g_autofree char *dir = g_path_get_dirname (base);
  g_autofree char *name = g_path_get_basename (base);
  g_autofree char *so = g_strconcat (base, ".so", NULL);
  g_autofree char *libs_so = g_strdup_printf ("%s/.libs/%s.so", dir, name);

  if (g_file_test (so, G_FILE_TEST_IS_REGULAR))
    return g_steal_pointer (&so);
  if (g_file_test (libs_so, G_FILE_TEST_IS_REGULAR))
    return g_steal_pointer (&libs_so);
  return NULL;
}

/* libltdl reports only its last attempt ("file not found") when a module
 * exists but cannot be loaded: ask the dynamic loader itself for the real
 * reason (missing library, undefined symbol). */
static char *
real_dlerror (const char *base)
{
  g_autofree char *so = module_so (base);
  void *h;

  if (so == NULL)
    return NULL;
  h = dlopen (so, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL)
    return g_strdup (dlerror ());
  dlclose (h);
  return NULL;
}

/* Open the module at BASE (libltdl, initialised here if needed), under the
 * loader's lock.  NULL with *WHY set (the dynamic loader's real reason). */
void *
vmsnap_module_open (const char *base, char **why)
{
  lt_dlhandle h = NULL;

  g_mutex_lock (&load_lock);
  if (!ltdl_ready) {
    if (lt_dlinit () != 0) {
      *why = g_strdup_printf ("cannot initialise libltdl: %s", lt_dlerror ());
      g_mutex_unlock (&load_lock);
      return NULL;
    }
    ltdl_ready = TRUE;
  }
  h = lt_dlopenext (base);
  if (h == NULL) {
    const char *e = lt_dlerror ();
    g_autofree char *real = real_dlerror (base);
    *why = g_strdup (real ? real : e ? e : "unknown error");
  }
  g_mutex_unlock (&load_lock);
  return h;
}

/* The address of SYMBOL in a handle from vmsnap_module_open. */
void *
vmsnap_module_sym (void *handle, const char *symbol)
{
  return lt_dlsym ((lt_dlhandle) handle, symbol);
}

/* Load module M (its name, package and file base PATH set), under the
 * loader's lock. */
static void
load_into (vmsnap_module *m)
{
  g_autofree char *base = g_strdup (m->path);
  const char *package = m->package;
  lt_dlhandle h;
  const vmsnap_backend *(*entry) (void);
  const vmsnap_backend *be;

  m->pending = FALSE;
  m->info.status = VMSNAP_BACKEND_LOADED;
  if (base == NULL) {
    m->info.status = VMSNAP_BACKEND_NOT_INSTALLED;
    m->message = g_strdup_printf ("not installed (package %s)",
                                  package ? package : "unknown");
    goto out;
  }
  h = lt_dlopenext (base);
  if (h == NULL) {
    const char *e = lt_dlerror ();
    g_autofree char *real = real_dlerror (base);
    m->info.status = VMSNAP_BACKEND_LOAD_FAILED;
    m->message = g_strdup_printf (
      "failed to load %s: %s (run ldd(1) on the module to find a missing "
      "library or symbol; reinstall %s)", base,
      real ? real : e ? e : "unknown error",
      package ? package : "the module's package");
    goto out;
  }
  m->handle = h;
  {
    const lt_dlinfo *li = lt_dlgetinfo (h);
    if (li && li->filename) {
      g_free (m->path);
      m->path = g_strdup (li->filename);
    }
  }
  entry = (const vmsnap_backend *(*) (void)) lt_dlsym (h, "vmsnap_backend_entry");
  if (entry == NULL || (be = entry ()) == NULL) {
    m->info.status = VMSNAP_BACKEND_REFUSED;
    m->message = g_strdup_printf ("module %s does not export "
                                  "vmsnap_backend_entry (use "
                                  "VMSNAP_REGISTER_BACKEND)", m->path);
    goto out;
  }
  if (!accept_module (m, be))
    m->info.status = VMSNAP_BACKEND_REFUSED;

 out:
  m->info.name = m->name;
  m->info.path = m->path;
  m->info.message = m->message;
  if (m->info.status == VMSNAP_BACKEND_LOADED) {
    m->info.version = m->be.version;
    m->info.description = m->be.description;
    m->info.caps = m->be.caps;
  }
}

static vmsnap_module *
module_new (const char *name, const char *base, const char *package)
{
  vmsnap_module *m = g_new0 (vmsnap_module, 1);

  m->name = g_strdup (name);
  m->path = g_strdup (base);
  m->package = package;
  m->info.name = m->name;
  m->info.path = m->path;
  return m;
}

/* Load M now if it was left for later (issue 17: a command loads the
 * backends it uses).  Its settings join the configuration at their
 * defaults: a backend is left for later only when the configuration
 * names none of its settings (vmsnap_ctx_new_full). */
static void
ensure_loaded (const vmsnap_ctx *ctx, vmsnap_module *m)
{
  if (!m->pending)
    return;
  g_mutex_lock (&load_lock);
  if (m->pending) {
    load_into (m);
    if (m->info.status == VMSNAP_BACKEND_LOADED && ctx->config) {
      g_autofree char *why = NULL;
      if (!vmsnap_config_add_backend (ctx->config, m, &why)) {
        m->info.status = VMSNAP_BACKEND_REFUSED;
        g_free (m->message);
        m->message = g_steal_pointer (&why);
        m->info.message = m->message;
      }
    }
  }
  g_mutex_unlock (&load_lock);
}

void
vmsnap_module_load (const vmsnap_ctx *ctx, const vmsnap_module *m)
{
  ensure_loaded (ctx, (vmsnap_module *) m);
}

/* The disk filter is read from the module file when the planner first
 * asks (not with the context: list, info and revert open no module file),
 * under the loader's lock, once. */
char *
vmsnap_module_unloaded_refusal (const vmsnap_module *cm, const vmsnap_disk *disk)
{
  vmsnap_module *m = (vmsnap_module *) cm;
  char *why = NULL;

  g_mutex_lock (&load_lock);
  if (m->pending) {
    if (!m->filter_read) {
      g_autofree char *so = module_so (m->path);
      m->filter = so ? vmsnap_module_filter_file (so) : NULL;
      m->filter_read = TRUE;
    }
    if (m->filter)
      why = vmsnap_disk_filter_refuses (m->filter, disk);
  }
  g_mutex_unlock (&load_lock);
  return why;
}

void
vmsnap_ctx_load_all (const vmsnap_ctx *ctx)
{
  for (guint i = 0; i < ctx->modules->len; i++)
    ensure_loaded (ctx, ctx->modules->pdata[i]);
}

/* Is an environment variable of backend NAME's settings set?  The
 * shipped backends name theirs VMSNAP_<NAME>_<KEY> (NAME upper-cased,
 * '-' as '_'). */
static gboolean
env_names_backend (const char *name)
{
  g_autofree char *prefix = g_strdup_printf ("VMSNAP_%s_", name);
  g_auto (GStrv) env = g_get_environ ();

  for (char *p = prefix; *p; p++)
    *p = *p == '-' ? '_' : g_ascii_toupper (*p);
  for (char **e = env; e && *e; e++)
    if (g_str_has_prefix (*e, prefix) && strchr (*e, '=')[1] != '\0')
      return TRUE;
  return FALSE;
}

static gint
cmp_module (gconstpointer a, gconstpointer b)
{
  const vmsnap_module *ma = *(vmsnap_module *const *) a;
  const vmsnap_module *mb = *(vmsnap_module *const *) b;
  return strcmp (ma->name, mb->name);
}

/* Module names found as NAME.la / NAME.so directly in DIR. */
void
vmsnap_module_scan_dir (const char *dir, GPtrArray *names)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *ent;

  if (d == NULL)
    return;
  while ((ent = g_dir_read_name (d)) != NULL) {
    g_autofree char *n = NULL;
    if (g_str_has_suffix (ent, ".la"))
      n = g_strndup (ent, strlen (ent) - 3);
    else if (g_str_has_suffix (ent, ".so"))
      n = g_strndup (ent, strlen (ent) - 3);
    if (n && vmsnap_module_valid_name (n)
        && !g_ptr_array_find_with_equal_func (names, n, g_str_equal, NULL))
      g_ptr_array_add (names, g_steal_pointer (&n));
  }
}

vmsnap_ctx *
vmsnap_ctx_new (GError **err)
{
  return vmsnap_ctx_new_full (NULL, err);
}

vmsnap_ctx *
vmsnap_ctx_new_full (const vmsnap_config_options *opts, GError **err)
{
  g_autoptr (GPtrArray) dirs = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) named = vmsnap_config_named_sections (opts);
  vmsnap_ctx *ctx;

  g_mutex_lock (&load_lock);
  if (!ltdl_ready) {
    if (lt_dlinit () != 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_BACKEND_LOAD,
                   "cannot initialise libltdl: %s", lt_dlerror ());
      g_mutex_unlock (&load_lock);
      return NULL;
    }
    ltdl_ready = TRUE;
  }

  ctx = g_new0 (vmsnap_ctx, 1);
  ctx->modules = g_ptr_array_new_with_free_func (module_free);
  dirs = vmsnap_module_dirs (g_getenv ("VMSNAP_BACKEND_DIR"), "backends", VMSNAP_BACKEND_INSTALL_DIR);
  for (size_t i = 0; i < G_N_ELEMENTS (shipped); i++)
    g_ptr_array_add (names, g_strdup (shipped[i].name));
  /* Out-of-tree backends dropped into a search dir are found too. */
  for (guint i = 0; i < dirs->len; i++)
    vmsnap_module_scan_dir (dirs->pdata[i], names);

  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    const char *package = NULL;
    g_autofree char *base = NULL;

    for (size_t k = 0; k < G_N_ELEMENTS (shipped); k++)
      if (strcmp (shipped[k].name, name) == 0)
        package = shipped[k].package;
    vmsnap_module *m;

    for (guint d = 0; d < dirs->len && base == NULL; d++)
      base = vmsnap_module_find_in (dirs->pdata[d], name);
    m = module_new (name, base, package);
    /* Loaded now: a module the configuration sets something for (its
     * settings are checked with the configuration), one not shipped with
     * vmsnap (its environment variables are unknown until it is loaded),
     * and a missing one (nothing to load).  The others when a command
     * first asks for them. */
    if (base != NULL && package != NULL && !env_names_backend (name)
        && !g_ptr_array_find_with_equal_func (named, name, g_str_equal, NULL))
      m->pending = TRUE;
    else
      load_into (m);
    g_ptr_array_add (ctx->modules, m);
  }
  g_ptr_array_sort (ctx->modules, cmp_module);
  g_mutex_unlock (&load_lock);
  ctx->config = vmsnap_config_load (ctx, opts, err);
  if (ctx->config == NULL) {
    vmsnap_ctx_free (ctx);
    return NULL;
  }
  return ctx;
}

void
vmsnap_ctx_free (vmsnap_ctx *ctx)
{
  if (ctx == NULL)
    return;
  g_ptr_array_unref (ctx->modules);
  vmsnap_config_free (ctx->config);
  g_free (ctx);
}

size_t
vmsnap_backend_count (const vmsnap_ctx *ctx)
{
  return ctx->modules->len;
}

const vmsnap_backend_info *
vmsnap_backend_get (const vmsnap_ctx *ctx, size_t i)
{
  if (i >= ctx->modules->len)
    return NULL;
  ensure_loaded (ctx, ctx->modules->pdata[i]);
  return &((vmsnap_module *) ctx->modules->pdata[i])->info;
}

const vmsnap_module *
vmsnap_peek_module (const vmsnap_ctx *ctx, const char *name)
{
  for (guint i = 0; i < ctx->modules->len; i++) {
    vmsnap_module *m = ctx->modules->pdata[i];
    if (strcmp (m->name, name) == 0)
      return m;
  }
  return NULL;
}

const vmsnap_module *
vmsnap_find_module (const vmsnap_ctx *ctx, const char *name)
{
  vmsnap_module *m = (vmsnap_module *) vmsnap_peek_module (ctx, name);

  if (m)
    ensure_loaded (ctx, m);
  return m;
}

const char *
vmsnap_backend_status_name (vmsnap_backend_status s)
{
  switch (s) {
  case VMSNAP_BACKEND_LOADED: return "loaded";
  case VMSNAP_BACKEND_NOT_INSTALLED: return "not-installed";
  case VMSNAP_BACKEND_LOAD_FAILED: return "load-failed";
  case VMSNAP_BACKEND_REFUSED: return "refused";
  }
  return "unknown";
}

char **
vmsnap_caps_names (uint64_t caps)
{
  static const struct {
    uint64_t bit;
    const char *name;
  } names[] = {
    { VMSNAP_CAP_CREATE_OFFLINE, "create-offline" },
    { VMSNAP_CAP_CREATE_ONLINE, "create-online" },
    { VMSNAP_CAP_REVERT_OFFLINE, "revert-offline" },
    { VMSNAP_CAP_REVERT_ONLINE, "revert-online" },
    { VMSNAP_CAP_MERGE_OFFLINE, "merge-offline" },
    { VMSNAP_CAP_MERGE_ONLINE, "merge-online" },
    { VMSNAP_CAP_DELETE_OFFLINE, "delete-offline" },
    { VMSNAP_CAP_DELETE_ONLINE, "delete-online" },
    { VMSNAP_CAP_MEMORY, "memory" },
    { VMSNAP_CAP_CREATE_NEEDS_PAUSE, "create-needs-pause" },
    { VMSNAP_CAP_REVERT_NEEDS_SHUTOFF, "revert-needs-shutoff" },
    { VMSNAP_CAP_VM_INTERNAL, "vm-internal" },
    { VMSNAP_CAP_ONE_TRANSACTION, "one-transaction" },
    { VMSNAP_CAP_CREATE_ADDS_LAYER, "create-adds-layer" },
  };
  GPtrArray *out = g_ptr_array_new ();

  for (size_t i = 0; i < G_N_ELEMENTS (names); i++)
    if (caps & names[i].bit)
      g_ptr_array_add (out, g_strdup (names[i].name));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}
