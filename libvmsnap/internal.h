/* libvmsnap internals: shared between libvmsnap/ files only. */
#ifndef VMSNAP_INTERNAL_H
#define VMSNAP_INTERNAL_H

#include <ltdl.h>
#include <libvirt/libvirt.h>

#include <vmsnap/vmsnap.h>
#include <vmsnap/backend.h>

/* Limits on hostile input. */
#define VMSNAP_MAX_XML_BYTES (16u * 1024 * 1024)
#define VMSNAP_MAX_DISKS 1024
#define VMSNAP_MAX_CHAIN 64

/* ------------------------------------------------------------- loader */

typedef struct {
  vmsnap_backend_info info;   /* public view; strings point below */
  vmsnap_backend be;          /* copy of the module's struct, zero-filled */
  lt_dlhandle handle;
  char *name;
  char *path;
  char *message;
} vmsnap_module;

struct vmsnap_ctx {
  GPtrArray *modules;         /* vmsnap_module*, in load order */
};

/* Loaded modules only, in a stable order (by name). */
GPtrArray *vmsnap_loaded_backends (const vmsnap_ctx *ctx);
const vmsnap_module *vmsnap_find_module (const vmsnap_ctx *ctx,
                                         const char *name);

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
  GPtrArray *warnings;     /* char*: found by inspection, not fatal */
  gboolean xml_backing_given; /* the XML has <backingStore> (maybe empty) */
} vmsnap_disk_priv;

struct vmsnap_domain {
  GStringChunk *strs;   /* every string of the model lives here */
  const char *name;
  const char *uuid;
  const char *path;     /* domain XML file, or NULL */
  const char *uri;      /* libvirt URI, or NULL */
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
/* Parse domain XML (BUF, LEN) named WHERE for messages into DOM. */
gboolean vmsnap_domain_parse (vmsnap_domain *dom, const char *buf, size_t len,
                              const char *where, GError **err);
const char *vmsnap_state_name (vmsnap_state s);

/* Inspect every disk's storage (files, block devices). */
void vmsnap_inspect_disk (vmsnap_domain *dom, vmsnap_disk_priv *d);
const char *vmsnap_storage_class_name (vmsnap_storage_class c);

/* ----------------------------------------------------------- probing */

struct vmsnap_probe_result {
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

/* Run an external tool with argv (never through a shell); capture stdout.
 * Returns FALSE with *err naming the tool and its stderr on failure. */
gboolean vmsnap_run (const char *const *argv, char **out, GError **err);
/* The qemu-img to run: $VMSNAP_QEMU_IMG or qemu-img from PATH. */
char *vmsnap_find_qemu_img (GError **err);

#endif
