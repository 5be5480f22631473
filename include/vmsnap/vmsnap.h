/* vmsnap — library API for front ends (the vmsnap CLI first).
 *
 * Errors are GErrors in the VMSNAP_ERROR domain; the caller owns them.
 * Every free function accepts NULL.
 */
#ifndef VMSNAP_H
#define VMSNAP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMSNAP_ERROR (vmsnap_error_quark ())
GQuark vmsnap_error_quark (void);

/* Error codes; the CLI maps them to exit codes (doc/vmsnap.1). */
typedef enum {
  VMSNAP_ERR_FAILED = 1,        /* an operation on storage/tools failed */
  VMSNAP_ERR_USAGE,             /* bad option or argument */
  VMSNAP_ERR_INVALID_INPUT,     /* malformed XML, domain not found, ... */
  VMSNAP_ERR_UNSUPPORTED,       /* no backend can do it / refused override */
  VMSNAP_ERR_NOT_IMPLEMENTED,   /* backend slot not delivered yet */
  VMSNAP_ERR_BUSY,              /* another vmsnap holds the domain */
  VMSNAP_ERR_INVALID_FLAGS,     /* unknown flag bits passed to a backend */
  VMSNAP_ERR_BACKEND_LOAD,      /* a module failed to load or was refused */
} vmsnap_error_code;

/* Process exit code for an error (0 for NULL). */
int vmsnap_exit_code (const GError *err);

/* ------------------------------------------------------------ context */

typedef struct vmsnap_ctx vmsnap_ctx;

/* Initialise the library and load every backend that is installed.
 * A backend that fails to load is recorded (see backends), not fatal.
 * Then read the configuration (vmsnap.conf(5)) as vmsnap_ctx_new_full
 * with OPTS NULL does: an invalid configuration is an error. */
vmsnap_ctx *vmsnap_ctx_new (GError **err);

/* Where the configuration comes from.  Each setting's effective value is,
 * highest first: SETTINGS > its environment variable > the file > the
 * built-in default. */
typedef struct {
  /* The configuration file; NULL: $VMSNAP_CONFIG, else the default file
   * ($(sysconfdir)/vmsnap/vmsnap.conf).  A file named here or in
   * $VMSNAP_CONFIG must exist; the default file may be missing. */
  const char *file;
  /* "SECTION.KEY=VALUE" from the command line, NULL-terminated, or NULL;
   * a later one wins over an earlier one for the same key. */
  const char *const *settings;
} vmsnap_config_options;

/* vmsnap_ctx_new with the configuration from OPTS.  An unknown section or
 * key, a bad value or a missing named file fails with VMSNAP_ERR_USAGE,
 * naming the file (or option or environment variable), the section, the
 * key and the allowed values.  A section of a backend that is not
 * installed (or failed to load) is ignored, with a note. */
vmsnap_ctx *vmsnap_ctx_new_full (const vmsnap_config_options *opts,
                                 GError **err);

/* The configuration in force for CTX; read it with vmsnap_option_get*()
 * (backend.h).  Valid as long as CTX. */
typedef struct vmsnap_config vmsnap_config;
const vmsnap_config *vmsnap_ctx_config (const vmsnap_ctx *ctx);

/* Every known setting with its effective value and where it came from,
 * and the notes (ignored sections), as pretty JSON or as text. */
char *vmsnap_config_to_json (const vmsnap_ctx *ctx);
char *vmsnap_config_to_text (const vmsnap_ctx *ctx);
void vmsnap_ctx_free (vmsnap_ctx *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_ctx, vmsnap_ctx_free)

/* ----------------------------------------------------------- backends */

typedef enum {
  VMSNAP_BACKEND_LOADED = 0,
  VMSNAP_BACKEND_NOT_INSTALLED,   /* normal: an optional package */
  VMSNAP_BACKEND_LOAD_FAILED,     /* dlopen failed: message has dlerror */
  VMSNAP_BACKEND_REFUSED,         /* ABI/size/mandatory slot */
} vmsnap_backend_status;

typedef struct {
  const char *name;
  const char *version;      /* NULL unless loaded */
  const char *description;
  const char *path;         /* module file, if one was found */
  vmsnap_backend_status status;
  const char *message;      /* why not loaded; NULL when loaded */
  uint64_t caps;            /* VMSNAP_CAP_* (backend.h) */
} vmsnap_backend_info;

size_t vmsnap_backend_count (const vmsnap_ctx *ctx);
const vmsnap_backend_info *vmsnap_backend_get (const vmsnap_ctx *ctx, size_t i);
const char *vmsnap_backend_status_name (vmsnap_backend_status s);
/* Names of the capability bits set in CAPS, NULL-terminated; g_strfreev. */
char **vmsnap_caps_names (uint64_t caps);

/* ------------------------------------------------------------ domains */

typedef struct vmsnap_domain vmsnap_domain;

/* SPEC is a path to a domain XML file (contains '/' or names an existing
 * file) or a libvirt domain name/UUID on URI (NULL: LIBVIRT_DEFAULT_URI). */
vmsnap_domain *vmsnap_domain_open (vmsnap_ctx *ctx, const char *spec,
                                   const char *uri, GError **err);
void vmsnap_domain_free (vmsnap_domain *dom);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_domain, vmsnap_domain_free)
const char *vmsnap_domain_name (const vmsnap_domain *dom);
const char *vmsnap_domain_uuid (const vmsnap_domain *dom);

/* --------------------------------------------------------------- plan */

typedef struct {
  bool memory;                  /* --memory */
  const char *const *overrides; /* "vda=qcow2-external", NULL-terminated */
} vmsnap_plan_options;

typedef struct vmsnap_plan vmsnap_plan;

/* Build the plan.  Fails (NULL) only on usage errors (an override naming
 * no disk); a disk no backend can take makes a plan that is not possible. */
vmsnap_plan *vmsnap_plan_new (vmsnap_ctx *ctx, vmsnap_domain *dom,
                              const vmsnap_plan_options *opts, GError **err);
void vmsnap_plan_free (vmsnap_plan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_plan, vmsnap_plan_free)
/* true when every disk to snapshot has a backend. */
bool vmsnap_plan_possible (const vmsnap_plan *plan);
/* The plan as pretty JSON, or as text for people. */
char *vmsnap_plan_to_json (const vmsnap_plan *plan);
char *vmsnap_plan_to_text (const vmsnap_plan *plan);
/* If the plan is not possible: an error describing why (exit code 4). */
GError *vmsnap_plan_error (const vmsnap_plan *plan);

/* ------------------------------------------------------------- engine */

/* One domain opened for snapshot operations: its lock is held (flock in
 * the state directory) and any operation a crash interrupted has been
 * recovered, until vmsnap_engine_free. */
typedef struct vmsnap_engine vmsnap_engine;

#define VMSNAP_ENGINE_NO_WAIT   (1u << 0)  /* fail (BUSY) if the domain is locked */
#define VMSNAP_ENGINE_READ_ONLY (1u << 1)  /* list/info/chain: no recovery */

typedef struct {
  const char *uri;        /* libvirt URI or NULL */
  const char *state_dir;  /* NULL: the setting vmsnap.state-dir */
  unsigned int flags;     /* VMSNAP_ENGINE_* */
} vmsnap_engine_options;

vmsnap_engine *vmsnap_engine_open (vmsnap_ctx *ctx, const char *spec,
                                   const vmsnap_engine_options *opts,
                                   GError **err);
void vmsnap_engine_free (vmsnap_engine *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_engine, vmsnap_engine_free)

/* Operations return a report as JSON text (the CLI prints it or renders
 * it), or NULL with *err.  Names: [A-Za-z0-9._+-], starting with a letter
 * or digit, at most 128 bytes. */
gboolean vmsnap_valid_snapshot_name (const char *name, GError **err);

/* Create refuses (VMSNAP_ERR_UNSUPPORTED) when a disk's backing chain
 * would grow deeper than the setting vmsnap.max-chain-depth (0: no limit). */
typedef struct {
  const char *description;      /* kept with the snapshot, or NULL */
  bool memory;                  /* --memory: keep the VM's memory state */
  const char *const *overrides; /* "vda=qcow2-internal", NULL-terminated */
} vmsnap_create_options;

char *vmsnap_engine_create (vmsnap_engine *e, const char *name,
                            const vmsnap_create_options *opts, GError **err);

/* What a running domain does after a revert (see vmsnap(1)). */
typedef enum {
  VMSNAP_AFTER_REVERT_DEFAULT = 0, /* as before the revert (memory snapshot:
                                      as it was when taken) */
  VMSNAP_AFTER_REVERT_RUNNING,
  VMSNAP_AFTER_REVERT_PAUSED,
  VMSNAP_AFTER_REVERT_STOPPED,
} vmsnap_after_revert;

char *vmsnap_engine_revert (vmsnap_engine *e, const char *name,
                            vmsnap_after_revert after, GError **err);
char *vmsnap_engine_delete (vmsnap_engine *e, const char *name, GError **err);
/* DISK: one target or NULL for all; MAX_DEPTH 0: only what copies nothing twice. */
char *vmsnap_engine_merge (vmsnap_engine *e, const char *disk,
                           unsigned int max_depth, GError **err);
/* What vmsnap_engine_open recovered (JSON), or NULL if nothing was pending. */
char *vmsnap_engine_recover_report (vmsnap_engine *e);
char *vmsnap_engine_list (vmsnap_engine *e, GError **err);
char *vmsnap_engine_chain (vmsnap_engine *e, const char *disk, GError **err);

/* ------------------------------------------------------------- check */

/* Drift between the catalog and storage (vmsnap check).  Compares what
 * each disk's backend finds on storage (its list slot) with the catalog.
 * Without VMSNAP_CHECK_REPAIR nothing is created, written or locked.
 * With it the domain is opened as by vmsnap_engine_open (lock, recovery;
 * OPTS->flags NO_WAIT applies) and the catalog is corrected from storage
 * (written atomically); storage itself is never changed.  Returns a JSON
 * report (differences, changes, remaining, notes), or NULL with *err;
 * *DRIFT_LEFT: whether differences remain. */
#define VMSNAP_CHECK_REPAIR (1u << 0)
char *vmsnap_check_domain (vmsnap_ctx *ctx, const char *spec,
                    const vmsnap_engine_options *opts, unsigned int flags,
                    bool *drift_left, GError **err);

#ifdef __cplusplus
}
#endif
#endif /* VMSNAP_H */
