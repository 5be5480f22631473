/* libvmsnap internals: shared between libvmsnap/ files only. */
#ifndef VMSNAP_INTERNAL_H
#define VMSNAP_INTERNAL_H

#include <sys/stat.h>

#include <ltdl.h>
#include "virt.h"

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

/* Limits on hostile input. */
#define VMSNAP_MAX_XML_BYTES (16u * 1024 * 1024)
#define VMSNAP_MAX_DISKS 1024
/* A sanity bound against hostile chains, not a policy: QEMU opens far
 * deeper chains, and the depth a create may reach is the user's
 * vmsnap.max-chain-depth (issue 17 item 8). */
#define VMSNAP_MAX_CHAIN 1024
/* Deeper than this, plan warns (a policy hint, not a limit). */
#define VMSNAP_CHAIN_WARN 64

/* ------------------------------------------------------------- loader */

typedef struct {
  vmsnap_backend_info info;   /* public view; strings point below */
  vmsnap_backend be;          /* copy of the module's struct, zero-filled */
  lt_dlhandle handle;
  char *name;
  char *path;
  char *message;
  /* Found but not loaded yet (issue 17): loaded when first asked for
   * (vmsnap_find_module, vmsnap_module_load, vmsnap_backend_get). */
  gboolean pending;
  const char *package;
  /* A pending module's disk filter (modfilter.c), read from its file
   * without loading it, when the planner first needs it (filter_read);
   * NULL: none, or unreadable. */
  gboolean filter_read;
  char *filter;
} vmsnap_module;

struct vmsnap_ctx {
  GPtrArray *modules;         /* vmsnap_module*, in load order */
  vmsnap_config *config;      /* never NULL once made */
};

/* ------------------------------------------------------ configuration */

/* Read and validate the configuration for CTX's loaded backends. */
vmsnap_config *vmsnap_config_load (const vmsnap_ctx *ctx,
                                   const vmsnap_config_options *opts,
                                   GError **err);
void vmsnap_config_free (vmsnap_config *cfg);
/* NULL when BACKEND's declarations are well-formed, else why not. */
char *vmsnap_options_check (const char *backend, const vmsnap_option_desc *opts);

/* Module NAME, loaded now if it was not yet; NULL if there is none. */
const vmsnap_module *vmsnap_find_module (const vmsnap_ctx *ctx,
                                         const char *name);
/* The same without loading it (the configuration's view). */
const vmsnap_module *vmsnap_peek_module (const vmsnap_ctx *ctx,
                                         const char *name);
/* Load every module not loaded yet (vmsnap config, vmsnap backends). */
void vmsnap_ctx_load_all (const vmsnap_ctx *ctx);
/* Load M now if it is not loaded yet. */
void vmsnap_module_load (const vmsnap_ctx *ctx, const vmsnap_module *m);
/* For the planner: while M is not loaded, the reason its disk filter
 * refuses DISK (g_free); NULL when M is loaded, has no filter or the
 * filter lets DISK through (then load M and probe it). */
char *vmsnap_module_unloaded_refusal (const vmsnap_module *m,
                                      const vmsnap_disk *disk);

/* modfilter.c: backend disk filters (VMSNAP_BACKEND_DISK_FILTER). */
#define VMSNAP_FILTER_MAX 1024
/* Is FILTER a well-formed filter of a version this core reads? */
gboolean vmsnap_disk_filter_valid (const char *filter);
/* The filter in a module file's ".vmsnap_filter" ELF section, validated;
 * NULL when there is none or the file is not a consistent ELF file of
 * this process's class and byte order.  Bounded reads only. */
char *vmsnap_module_filter_file (const char *path);
char *vmsnap_module_filter_fd (int fd);
/* config.c: the sections the configuration file (as OPTS and
 * $VMSNAP_CONFIG name it) gives keys in, and those of OPTS's settings:
 * their backends are loaded with the context, to check them. */
GPtrArray *vmsnap_config_named_sections (const vmsnap_config_options *opts);
/* config.c: a backend loaded after the context was made: its settings at
 * their defaults, or their environment variables; FALSE with *WHY on a
 * bad value. */
gboolean vmsnap_config_add_backend (vmsnap_config *cfg, const vmsnap_module *m,
                                    char **why);
/* The loader's pieces, shared by backends and plugins (plugin.c). */
GPtrArray *vmsnap_module_dirs (const char *env, const char *kind,
                               const char *install_dir);
char *vmsnap_module_find_in (const char *dir, const char *name);
gboolean vmsnap_module_valid_name (const char *name);
void vmsnap_module_scan_dir (const char *dir, GPtrArray *names);
void *vmsnap_module_open (const char *base, char **why);
void *vmsnap_module_sym (void *handle, const char *symbol);

/* ------------------------------------------------------------ domains */

typedef enum {
  VMSNAP_STATE_SHUTOFF = 0,
  VMSNAP_STATE_RUNNING,
  VMSNAP_STATE_PAUSED,
  VMSNAP_STATE_OTHER,
} vmsnap_state;

typedef struct {
  vmsnap_disk pub;
  GPtrArray *hosts;        /* vmsnap_host*, owned */
  GPtrArray *xml_backing;  /* vmsnap_layer*, owned */
  GPtrArray *chain;        /* vmsnap_layer*, owned */
  GPtrArray *images;       /* vmsnap_image*, owned: the chain's headers */
  GPtrArray *warnings;     /* char*: found by inspection, not fatal */
  gboolean xml_backing_given; /* the XML has <backingStore> (maybe empty) */
} vmsnap_disk_priv;

struct vmsnap_domain {
  GStringChunk *strs;   /* every string of the model lives here */
  const char *name;
  const char *uuid;
  const char *spec;     /* as given: file path, name or UUID */
  const char *path;     /* domain XML file, or NULL */
  const char *uri;      /* libvirt URI, or NULL */
  gboolean inspected;   /* vmsnap_domain_inspect ran on these disks */
  vmsnap_state state;
  const char *firmware;     /* <os firmware=> */
  const char *loader_type;  /* <loader type=> (pflash, rom) */
  const char *loader_path;
  const char *nvram_path;
  const char *nvram_format;
  GPtrArray *disks;     /* vmsnap_disk_priv* */
  virConnectPtr conn;
  virDomainPtr dom;
};

const char *vmsnap_intern (vmsnap_domain *dom, const char *s);
/* An empty domain model (no disks), for vmsnap_domain_parse. */
vmsnap_domain *vmsnap_domain_new (void);
/* Parse domain XML (BUF, LEN) named WHERE for messages into DOM. */
gboolean vmsnap_domain_parse (vmsnap_domain *dom, const char *buf, size_t len,
                              const char *where, GError **err);
const char *vmsnap_state_name (vmsnap_state s);

/* Inspect every disk's storage (files, block devices). */
void vmsnap_inspect_disk (vmsnap_domain *dom, vmsnap_disk_priv *d);
/* vmsnap_domain_open in two steps (issue 17): the definition alone (no
 * process, no image opened; a domain XML file opens no libvirt
 * connection), then the inventory of its storage (every disk, once). */
vmsnap_domain *vmsnap_domain_read (vmsnap_ctx *ctx, const char *spec,
                                   const char *uri, GError **err);
void vmsnap_domain_inspect (vmsnap_domain *dom);
/* The definition again, from the same file or libvirt domain (on the
 * connection already open); not inspected. */
gboolean vmsnap_domain_reread (vmsnap_domain *dom, GError **err);

/* ------------------------------------------------ image header names
 * (imagehdr.c): what a header names outside the image, read by vmsnap
 * before any qemu-img run on it.  Names are as the header writes them. */
typedef struct {
  char *backing;        /* backing file name, or NULL */
  char *backing_fmt;    /* backing format, or NULL (none recorded) */
  char *data_file;      /* qcow2 external data file name, or NULL */
  GPtrArray *extents;   /* vmdk: extent file names (char*), or NULL */
} vmsnap_hdr_refs;

gboolean vmsnap_header_refs (const char *path, const char *fmt,
                             vmsnap_hdr_refs *r, GError **err);
void vmsnap_hdr_refs_clear (vmsnap_hdr_refs *r);
/* NULL when NAME is a local file name; else why not (json:, nbd:, ...). */
char *vmsnap_ref_not_local (const char *name);
/* NAME resolved as QEMU does: relative to IMAGE's directory. */
char *vmsnap_ref_resolve (const char *image, const char *name);
/* The same without canonicalising (QEMU's path_combine: what qemu-img
 * shows as full-backing-filename, and what the chain walk follows). */
char *vmsnap_ref_resolve_qemu (const char *image, const char *name);
const char *vmsnap_storage_class_name (vmsnap_storage_class c);
/* One layer's header (vmsnap_image_read: in process for the formats it
 * reads, else one qemu-img info), the format given. */
gboolean vmsnap_image_info (const char *path, const char *fmt, guint64 *vsize,
                            char **backing, char **backing_fmt, GError **err);

/* ----------------------------------------------------------- probing */

struct vmsnap_probe_result {
  const vmsnap_config *config;
  bool set;
  vmsnap_fitness fit;
  int score;
  char *reason;
  vmsnap_storage_class cls;
  GPtrArray *limits;        /* char* */
  GPtrArray *detail_keys;   /* char* */
  GPtrArray *detail_values; /* char* */
};

vmsnap_probe_result *vmsnap_probe_result_new (void);
void vmsnap_probe_result_free (vmsnap_probe_result *r);
const char *vmsnap_fitness_name (vmsnap_fitness f);
/* The backend the plan chose for TARGET, or NULL (excluded, no backend). */
const char *vmsnap_plan_backend (const vmsnap_plan *plan, const char *target);

/* Run an external tool with argv (never through a shell); capture stdout.
 * Returns FALSE with *err naming the tool and its stderr on failure. */
gboolean vmsnap_run (const char *const *argv, char **out, GError **err);
/* The same for a short tool that only reads (qemu-img info): no
 * child-setup hook (vmsnap_run's die-with-parent is for tools that write:
 * data copies, commits, rebases). */
gboolean vmsnap_run_short (const char *const *argv, char **out, GError **err);
/* TRUE for an argv vmsnap_run_short may run: `qemu-img info ...`. */
gboolean vmsnap_argv_reads_only (const char *const *argv);
/* The qemu-img to run: $VMSNAP_QEMU_IMG or qemu-img from PATH. */
char *vmsnap_find_qemu_img (GError **err);

/* ------------------------------------------------------ durable state */

gboolean vmsnap_write_atomic (const char *path, const char *data, size_t len,
                              int mode, GError **err);
/* Like vmsnap_write_atomic; the new file gets OWNER's uid and gid. */
gboolean vmsnap_write_atomic_as (const char *path, const char *data, size_t len,
                                 int mode, const struct stat *owner, GError **err);
/* A state file: regular, ours, no symbolic link, at most MAX bytes.  FALSE
 * with errno ENOENT and no error if it does not exist. */
gboolean vmsnap_read_state_file (const char *path, size_t max, char **data,
                                 size_t *len, GError **err);
/* S fit for a message: valid UTF-8, control characters as \xNN. */
char *vmsnap_printable (const char *s);
/* The state directory ROOT/UUID, checked (ours, private), as a directory fd. */
int vmsnap_state_dir_open (const char *root, const char *uuid, char **dir,
                           GError **err);
/* Like vmsnap_run; with SHOW the tool's stdout (progress) goes to stderr. */
gboolean vmsnap_run_progress (const char *const *argv, gboolean show, GError **err);
/* Start ARGV (no shell) not tied to this process: it outlives a killed
 * vmsnap.  STDIN_FD/STDOUT_FD become its stdin/stdout, stderr is
 * inherited, no other descriptor.  Its pid (reap it with waitpid), or -1. */
GPid vmsnap_spawn_untied (const char *const *argv, int stdin_fd, int stdout_fd,
                          GError **err);
/* windowguard.c: the window guard (tools/vmsnap-window-guard.c) resumes a
 * VM left paused by a vmsnap that died inside the pause window.  Start it
 * right before virDomainSuspend, with the URI of the connection
 * (virConnectGetURI) and the domain's UUID: it returns once the guard is
 * connected and watching (NULL and *err if it cannot be started; nothing
 * was started then).  _done right after virDomainResume: the guard exits
 * without touching the VM and is reaped.  NULL-safe. */
typedef struct vmsnap_window_guard vmsnap_window_guard;
vmsnap_window_guard *vmsnap_window_guard_start (const char *uri, const char *uuid,
                                                GError **err);
void vmsnap_window_guard_done (vmsnap_window_guard *g);
/* Let the guard go without "done": it resumes the VM if it is still
 * paused (the engine ends without having resumed it), then is reaped. */
void vmsnap_window_guard_abandon (vmsnap_window_guard *g);
/* The guard's process id (tests; 0 for NULL). */
GPid vmsnap_window_guard_pid (const vmsnap_window_guard *g);
/* The program started: $VMSNAP_WINDOW_GUARD, else the build tree's (for a
 * program run from there), else the installed one. */
char *vmsnap_window_guard_path (void);
/* Count a process about to be started (VMSNAP_DEBUG_SPAWNS, error.c):
 * every function that starts one calls this first. */
void vmsnap_note_spawn (const char *const *argv);

/* The start of the last line of a journal, then the SHA-256 (hex) of all
 * that precedes it (contract.c). */
#define VMSNAP_JOURNAL_END "#vmsnap-journal-end sha256="

typedef struct {
  char *path;
  GKeyFile *kf;
  gboolean recovering;
  gboolean dirty;       /* changed since it was last written */
  GHashTable *strs;     /* the values vmsnap_journal_get handed out */
} vmsnap_journal;

vmsnap_journal *vmsnap_journal_new (const char *path);
vmsnap_journal *vmsnap_journal_load (const char *path, GError **err);
void vmsnap_journal_free (vmsnap_journal *j);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_journal, vmsnap_journal_free)
/* Writes: _save, _set and _mark write the journal (atomically, fsync'd)
 * before they return; _put and _note only change it in memory, and
 * _flush writes it if anything changed since.  Which records must be on
 * disk before which action: doc/architecture.md, "What must be on disk
 * before each step". */
gboolean vmsnap_journal_save (vmsnap_journal *j, GError **err);
gboolean vmsnap_journal_flush (vmsnap_journal *j, GError **err);
gboolean vmsnap_journal_remove (vmsnap_journal *j, GError **err);
const char *vmsnap_journal_get (vmsnap_journal *j, const char *group, const char *key);
void vmsnap_journal_put (vmsnap_journal *j, const char *group, const char *key,
                         const char *value);
gboolean vmsnap_journal_set (vmsnap_journal *j, const char *group,
                             const char *key, const char *value, GError **err);
gboolean vmsnap_journal_done (vmsnap_journal *j, const char *group, const char *step);
void vmsnap_journal_note (vmsnap_journal *j, const char *group, const char *step);
gboolean vmsnap_journal_mark (vmsnap_journal *j, const char *group,
                              const char *step, GError **err);

/* The central guard (guard.c). */
typedef struct vmsnap_guard vmsnap_guard;
vmsnap_guard *vmsnap_guard_new (const vmsnap_domain *dom);
vmsnap_guard *vmsnap_guard_ref (vmsnap_guard *g);
void vmsnap_guard_free (vmsnap_guard *g);   /* drops one reference */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_guard, vmsnap_guard_free)
gboolean vmsnap_guard_check (const vmsnap_guard *g, const char *target,
                             const char *storage, unsigned int what, GError **err);
/* The storage a locator names and what discarding it does to that storage
 * (remove it, or write it: an internal snapshot or an RBD snapshot). */
char *vmsnap_guard_locator_storage (const char *locator, unsigned int *what);
char *vmsnap_guard_disk_storage (const vmsnap_disk *d);
const char *vmsnap_guard_other_user (const vmsnap_guard *g, const char *target,
                                     const char *storage, gboolean *active);
/* The images a qemu-img command line (argv) writes. */
GPtrArray *vmsnap_guard_qemu_img_targets (const char *const *argv);

struct vmsnap_op {
  vmsnap_journal *j;
  char *group;
  char *domain_name;
  char *domain_uuid;
  bool online;
  void *conn;
  char *state_dir;
  GPtrArray *locators;
  gboolean quiet;
  const vmsnap_config *config;
  vmsnap_guard *guard;   /* a reference to the engine's; NULL: nothing is guarded */
  /* Inside the pause window (a backend with a prepare slot): the records
   * stay in memory, written by the core after the window; and the
   * journal is shared with other disks' threads (op_lock). */
  gboolean in_window;
};

vmsnap_op *vmsnap_op_new (vmsnap_journal *j, const char *target,
                          const char *domain_name, const char *domain_uuid,
                          bool online, void *conn, const char *state_dir,
                          GPtrArray *locators);
void vmsnap_op_free (vmsnap_op *op);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_op, vmsnap_op_free)

struct _xmlNode;
/* encryption.c: replace the <backingStore> of domain XML node DISK with the
 * chain the images under SOURCE (format FORMAT) name, each encrypted layer
 * carrying a copy of ENC (the disk's <encryption>). */
gboolean vmsnap_encrypted_chain_set (struct _xmlNode *disk, struct _xmlNode *enc,
                                     const char *source, const char *format,
                                     GError **err);

struct vmsnap_result {
  char *locator;
  char *new_source;
  char *new_format;
  GPtrArray *renames;   /* old, new, old, new, ... */
  GPtrArray *removed;
  GPtrArray *garbage;
  GPtrArray *undo;
  uint64_t bytes_copied;
  gboolean kept;
  char *note;
};

vmsnap_result *vmsnap_result_new (void);
void vmsnap_result_free (vmsnap_result *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_result, vmsnap_result_free)
gboolean vmsnap_result_save (const vmsnap_result *r, vmsnap_journal *j,
                             const char *group, GError **err);
vmsnap_result *vmsnap_result_load (vmsnap_journal *j, const char *group);
/* Recovery's check of a loaded journal, before anything is replayed. */
gboolean vmsnap_journal_check (vmsnap_journal *j, GError **err);

/* ------------------------------------------------------------ catalog */

typedef struct {
  char *target;
  char *backend;
  char *locator;
  long line;             /* in the catalog file, for messages (0: new) */
} cat_disk;

typedef struct {
  char *id;
  char *name;
  char *parent;          /* id or NULL */
  gboolean hidden;       /* name deleted, storage kept for dependents */
  gint64 created;
  char *description;
  char *domain_xml;
  char *libvirt_xml;   /* libvirt's snapshot XML (internal with memory) */
  GPtrArray *disks;      /* cat_disk* */
  GPtrArray *lost;       /* char*: targets whose data `check --repair` found
                            gone and dropped (a partial snapshot: revert refuses) */
  char *memory;          /* memory file, a name in the state dir, or NULL */
  char *nvram;           /* copy of the NVRAM, a name in the state dir, or NULL */
  char *nvram_source;    /* the domain's NVRAM file it was copied from */
  long line;             /* in the catalog file, for messages (0: new) */
} cat_snap;

typedef struct {
  char *path;
  char *uuid;
  char *name;
  char *current;         /* id or NULL */
  guint next_id;
  GPtrArray *snaps;      /* cat_snap*, creation order */
  long current_line;     /* of the root element, for messages */
  /* vmsnap_catalog_find_id's index: id (owned copy) -> position in snaps,
   * checked on every hit and rebuilt when stale. */
  GHashTable *by_id;
  guint by_id_len;
} catalog;

cat_disk *vmsnap_cat_disk_new (const char *target, const char *backend,
                               const char *locator);
cat_snap *vmsnap_cat_snap_new (const char *id, const char *name);
catalog *vmsnap_catalog_new (const char *path, const char *uuid, const char *name);
void vmsnap_catalog_free (catalog *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (catalog, vmsnap_catalog_free)
catalog *vmsnap_catalog_load (const char *path, const char *uuid,
                              const char *name, GError **err);
gboolean vmsnap_catalog_save (catalog *c, GError **err);
cat_snap *vmsnap_catalog_find (catalog *c, const char *name);
cat_snap *vmsnap_catalog_find_id (catalog *c, const char *id);
cat_snap *vmsnap_catalog_visible (catalog *c, const char *id);
GPtrArray *vmsnap_catalog_locators (catalog *c, const char *target);
void vmsnap_catalog_remove (catalog *c, cat_snap *s);
void vmsnap_catalog_rename (catalog *c, const char *target, const char *from,
                            const char *to);
void vmsnap_catalog_drop_hidden_locator (catalog *c, const char *target,
                                         const char *locator);
/* trust.c: every file a catalog or a journal names for a disk lies where
 * the disk's images live (issue 16, items 10 and 12). */
gboolean vmsnap_catalog_paths_check (catalog *c, vmsnap_domain *dom,
                                     const char *state_dir, GError **err);
gboolean vmsnap_journal_paths_check (vmsnap_journal *j, vmsnap_domain *dom,
                                     catalog *cat, const char *state_dir,
                                     GError **err);
gboolean vmsnap_journal_catalog_check (vmsnap_journal *j, catalog *c, GError **err);
/* The line of KEY in [GROUP] of J's file (for messages), or 0. */
guint vmsnap_journal_line (vmsnap_journal *j, const char *group, const char *key);
/* Recovery up to where it would act on storage: check journal J and apply
 * its catalog step to CAT if every disk step is done (engine.c). */
gboolean vmsnap_journal_replay_catalog (catalog *cat, vmsnap_journal *j,
                                        GError **err);

/* The engine's domain: its one inventory, read under the lock (check.c
 * --repair); owned by the engine. */
vmsnap_domain *vmsnap_engine_domain (vmsnap_engine *e);

/* ------------------------------------------------- running domains */

void vmsnap_libvirt_events_init (void);
GPtrArray *vmsnap_live_chain (virDomainPtr dom, const char *target, GError **err);
gboolean vmsnap_online_switch (vmsnap_domain *dom, const char *snapname,
                               GHashTable *sources, GError **err);
gboolean vmsnap_online_internal_take (vmsnap_domain *dom, const char *tag,
                                      char **xml, GError **err);
gboolean vmsnap_online_internal_forget (vmsnap_domain *dom, const char *tag,
                                        GError **err);
gboolean vmsnap_online_internal_revert (vmsnap_domain *dom, const char *tag,
                                        const char *xml, unsigned int flags,
                                        GError **err);
gboolean vmsnap_online_internal_delete (vmsnap_domain *dom, const char *tag,
                                        const char *xml, const char *const *disks,
                                        GError **err);
/* UNKNOWN: the answer when an image cannot be read. */
gboolean vmsnap_online_tag_somewhere (vmsnap_domain *dom, const char *tag,
                                      const char *const *disks, gboolean unknown);
gboolean vmsnap_online_stop (vmsnap_domain *dom, GError **err);
gboolean vmsnap_online_start (vmsnap_domain *dom, gboolean paused, GError **err);

/* memstate.c: memory state of a mixed VM, UEFI NVRAM (issue 7) */
gboolean vmsnap_memstate_save (vmsnap_domain *dom, const char *tag, const char *path,
                               GError **err);
gboolean vmsnap_memstate_restore (vmsnap_domain *dom, const char *path, gboolean paused,
                                  GError **err);
char *vmsnap_nvram_path (const char *domain_xml);
gboolean vmsnap_copy_file_atomic (const char *from, const char *to, int mode, GError **err);
gboolean vmsnap_copy_file_inplace (const char *from, const char *to, GError **err);
/* "internal", "external", "mixed" or "none" */
const char *vmsnap_plan_mode (const vmsnap_plan *plan);
gboolean vmsnap_plan_needs_pause (const vmsnap_plan *plan);

#endif
