/* vmsnap — the backend module contract.
 *
 * A backend is a libtool module (-module -avoid-version) installed under
 * $(pkglibdir)/backends.  It exports exactly one symbol, vmsnap_backend_entry,
 * defined by VMSNAP_REGISTER_BACKEND(); a version script hides the rest.
 *
 * Compatibility rules:
 *  - struct vmsnap_backend opens with abi_version and struct_size.  New slots
 *    are only ever appended.  The core copies min(struct_size, its own size)
 *    and zero-fills the rest, so an older module loads in a newer core.
 *  - The core refuses a module whose abi_version differs from
 *    VMSNAP_BACKEND_ABI_VERSION, whose struct_size is smaller than
 *    VMSNAP_BACKEND_MIN_SIZE, or that leaves a mandatory slot NULL; the
 *    message names the module and the slot.
 *  - vmsnap_disk and vmsnap_probe_request are owned by the core, read-only to
 *    backends, and also only grow at the end (check struct_size before reading
 *    a field added later than the one your module was built against).
 *  - Results travel through opaque objects (vmsnap_probe_result,
 *    vmsnap_result) filled with the setter functions below, which libvmsnap
 *    exports; modules link against libvmsnap.
 *
 * Errors: every slot returns 0 on success and -1 on failure, having set
 * *err (GError, domain VMSNAP_ERROR) exactly once, at the place the failure
 * happened, with a message that names the disk target, the file/volume/image
 * and what the user can do.  Never print; never exit.
 *
 * A backend never touches the catalog, the journal or the domain definition:
 * it acts on storage and returns what changed (new locators, renames, a new
 * active source); the core records it.
 */
#ifndef VMSNAP_BACKEND_H
#define VMSNAP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include <vmsnap/vmsnap.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMSNAP_BACKEND_ABI_VERSION 1

/* ------------------------------------------------------------------ model */

typedef enum {
  VMSNAP_DISK_TYPE_UNKNOWN = 0,
  VMSNAP_DISK_TYPE_FILE,
  VMSNAP_DISK_TYPE_BLOCK,
  VMSNAP_DISK_TYPE_NETWORK,
  VMSNAP_DISK_TYPE_VOLUME,
  VMSNAP_DISK_TYPE_DIR,
  VMSNAP_DISK_TYPE_NVME,
  VMSNAP_DISK_TYPE_VHOSTUSER,
  VMSNAP_DISK_TYPE_VHOSTVDPA,
} vmsnap_disk_type;

typedef enum {
  VMSNAP_DEVICE_DISK = 0,
  VMSNAP_DEVICE_CDROM,
  VMSNAP_DEVICE_FLOPPY,
  VMSNAP_DEVICE_LUN,
} vmsnap_disk_device;

/* What the storage under a disk is, as found by inspection and probing. */
typedef enum {
  VMSNAP_CLASS_UNKNOWN = 0,
  VMSNAP_CLASS_NONE,          /* no medium (empty cdrom) */
  VMSNAP_CLASS_QCOW2_FILE,
  VMSNAP_CLASS_IMAGE_FILE,    /* raw, vmdk, vdi, vpc, vhdx file */
  VMSNAP_CLASS_LVM_THICK,
  VMSNAP_CLASS_LVM_THIN,
  VMSNAP_CLASS_BLOCK_DEVICE,  /* a block device that is not an LV */
  VMSNAP_CLASS_RBD,
  VMSNAP_CLASS_NETWORK_OTHER,
  VMSNAP_CLASS_MISSING,       /* the source does not exist or cannot be read */
} vmsnap_storage_class;

/* A network host of a disk source (<host name= port= transport= socket=>).
 * Model structs are handed out as arrays of pointers, so they can grow. */
typedef struct {
  uint32_t struct_size;
  const char *name;
  const char *port;
  const char *transport;
  const char *socket;
} vmsnap_host;

typedef struct vmsnap_image vmsnap_image;

/* One layer of a backing chain.  Index 0 is the active image. */
typedef struct {
  uint32_t struct_size;
  const char *path;         /* file/device path, or a protocol URI */
  const char *format;       /* recorded format; NULL if none was recorded */
  uint64_t virtual_size;    /* bytes; 0 if unknown */
  unsigned int n_internal_snapshots; /* qcow2 snapshot table entries */
  bool is_network;          /* path is not a local file (rbd:, nbd:, json:) */
  const char *data_file;    /* qcow2 external data file, or NULL */
  /* The core's inventory (read once, after the lock): the image's header
   * as vmsnap_image_read() gave it, or NULL (devices, network, <backingStore>
   * layers of the XML). */
  const vmsnap_image *image;
} vmsnap_layer;

/* A disk of a domain, parsed from the domain XML and inspected by the core.
 * Strings are NULL when absent.  Read-only for backends. */
typedef struct vmsnap_disk {
  uint32_t struct_size;
  const char *target;        /* <target dev>, e.g. "vda"; never NULL */
  const char *bus;
  vmsnap_disk_device device;
  vmsnap_disk_type type;
  const char *type_name;     /* the type attribute as written */
  const char *driver_name;   /* <driver name>, usually "qemu" */
  const char *format;        /* <driver type> as declared in the XML */
  const char *source;        /* file path, device path, dir, or network name */
  const char *protocol;      /* network: rbd, nbd, iscsi, gluster, http, ... */
  const char *pool;          /* volume disks: storage pool */
  const char *volume;        /* volume disks: volume name */
  const char *source_snapshot;   /* network: <snapshot name> */
  const char *source_config;     /* network: <config file> (ceph.conf) */
  const vmsnap_host *const *hosts;
  size_t n_hosts;
  const char *auth_username;
  const char *secret_type;   /* "ceph", "iscsi" */
  const char *secret_uuid;
  const char *secret_usage;
  bool readonly;
  bool shareable;
  bool transient;
  const char *snapshot_mode; /* the disk's snapshot= attribute, if any */
  const char *alias;         /* <alias name> */

  /* <backingStore> chain as written in the XML (index 0 = first backing). */
  const vmsnap_layer *const *xml_backing;
  size_t n_xml_backing;

  /* Inspection by the core, once per command after the lock (files: every
   * layer's header read in process, vmsnap_image_read, the format always
   * given; block devices: stat). */
  bool inspected;            /* the source was found and examined */
  const char *inspect_error; /* why inspection failed, or NULL */
  const char *detected_format; /* from the image header; "raw" = no magic */
  bool is_block_device;
  uint64_t virtual_size;
  const vmsnap_layer *const *chain; /* actual chain, index 0 = the active image */
  size_t n_chain;
  /* The class inferred from inspection; a backend's probe may refine it. */
  vmsnap_storage_class storage_class;

  /* <encryption format='...'> of the source (or, older placement, of the
   * disk): "luks" on a qcow2 disk is QEMU's qcow2 LUKS encryption, on a raw
   * disk a LUKS volume.  NULL when the disk is not encrypted.  The secret
   * (<secret type='passphrase' uuid= or usage=>) is libvirt's; a backend
   * reads it with vmsnap_op_encryption_secret(). */
  const char *encryption_format;
  const char *encryption_secret_uuid;
  const char *encryption_secret_usage;
} vmsnap_disk;

/* What the planner asks a backend about one disk. */
typedef struct {
  uint32_t struct_size;
  bool memory;   /* the user asked for the VM's memory state */
  bool online;   /* the domain is running (or paused) */
} vmsnap_probe_request;

/* --------------------------------------------------------- capabilities */

/* Bits of vmsnap_backend.caps: the contract this backend declares. */
#define VMSNAP_CAP_CREATE_OFFLINE   (UINT64_C(1) << 0)
#define VMSNAP_CAP_CREATE_ONLINE    (UINT64_C(1) << 1)
#define VMSNAP_CAP_REVERT_OFFLINE   (UINT64_C(1) << 2)
#define VMSNAP_CAP_REVERT_ONLINE    (UINT64_C(1) << 3)
#define VMSNAP_CAP_MERGE_OFFLINE    (UINT64_C(1) << 4)
#define VMSNAP_CAP_MERGE_ONLINE     (UINT64_C(1) << 5)
#define VMSNAP_CAP_DELETE_OFFLINE   (UINT64_C(1) << 6)
#define VMSNAP_CAP_DELETE_ONLINE    (UINT64_C(1) << 7)
/* Can keep the VM's memory state inside the snapshot itself. */
#define VMSNAP_CAP_MEMORY           (UINT64_C(1) << 8)
/* create on a running VM needs the VM paused (or frozen) around it. */
#define VMSNAP_CAP_CREATE_NEEDS_PAUSE (UINT64_C(1) << 9)
/* revert needs the VM shut off (the core stops/starts it if asked). */
#define VMSNAP_CAP_REVERT_NEEDS_SHUTOFF (UINT64_C(1) << 10)
/* Snapshots live inside the disk image (qcow2 internal): the planner uses
 * such a backend only when memory is requested and every disk can. */
#define VMSNAP_CAP_VM_INTERNAL      (UINT64_C(1) << 11)
/* Several disks of this backend can be captured in one libvirt transaction. */
#define VMSNAP_CAP_ONE_TRANSACTION  (UINT64_C(1) << 12)
/* create puts a new image on top of the disk's backing chain (an external
 * overlay): the chain grows by one, which vmsnap.max-chain-depth limits. */
#define VMSNAP_CAP_CREATE_ADDS_LAYER (UINT64_C(1) << 13)

/* --------------------------------------------------------------- probe */

typedef enum {
  VMSNAP_FIT_CANNOT = 0,
  VMSNAP_FIT_CAN,
  VMSNAP_FIT_PREFERRED,
} vmsnap_fitness;

typedef struct vmsnap_probe_result vmsnap_probe_result;

/* Set the verdict.  score: 0-100, highest wins among backends that can;
 * reason: one line saying why (shown by `vmsnap plan`). */
void vmsnap_probe_set (vmsnap_probe_result *res, vmsnap_fitness fit,
                       int score, const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* Refine the storage class the core inferred (e.g. an LV is thin). */
void vmsnap_probe_set_class (vmsnap_probe_result *res, vmsnap_storage_class cls);
/* Add a limitation that applies if this backend is chosen. */
void vmsnap_probe_add_limit (vmsnap_probe_result *res, const char *fmt, ...)
  G_GNUC_PRINTF (2, 3);
/* Add a key/value detail the backend found (e.g. "vg_free"="10.0 GiB"). */
void vmsnap_probe_add_detail (vmsnap_probe_result *res, const char *key,
                              const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* ---------------------------------------------------------- disk filter */

/* Optional: which disks the backend can take at all, declared so the core
 * can tell without loading the module (and its libraries).  The planner
 * reads it from the module file (ELF section ".vmsnap_filter") and, for a
 * disk the filter refuses, records the backend as "cannot", score 0, with
 * REFUSE as the reason, without loading it (for now the backends vmsnap
 * ships: other modules are loaded with the context).  A module without a
 * filter, or with one the core cannot read, is loaded and probed as always.
 *
 *   VMSNAP_BACKEND_DISK_FILTER (my_filter, "block", "", "not a block device");
 *   VMSNAP_BACKEND_DISK_FILTER (my_filter, "network", "rbd,sheepdog",
 *                               "not an rbd network disk");
 *
 * TYPES: comma-separated disk types as libvirt writes them (file, block,
 * network, volume, dir, nvme, vhostuser, vhostvdpa).  PROTOCOLS: for
 * network disks, comma-separated protocols ("" = any).  REFUSE: the
 * reason, one line.  All three are string literals.  At most one filter
 * per module.  The probe must make it its first check, with
 * vmsnap_disk_filter_refuses() on the same variable, so the planner's
 * verdict without the module and the module's own verdict are the same.
 * The text it produces is format version 1 (doc/vmsnap-backend.7). */
#define VMSNAP_BACKEND_DISK_FILTER(var, types, protocols, refuse)          \
  __attribute__ ((used, section (".vmsnap_filter"), aligned (1)))          \
  static const char var[] = "vmsnap-filter 1\ntypes=" types               \
    "\nprotocols=" protocols "\nrefuse=" refuse "\n"

/* NULL when FILTER (a VMSNAP_BACKEND_DISK_FILTER variable) lets DISK
 * through, or is malformed (then it filters nothing, as for the core);
 * else its refusal reason, to free with g_free(). */
char *vmsnap_disk_filter_refuses (const char *filter, const vmsnap_disk *disk);

/* --------------------------------------------------- operation context */

/* Every state-changing slot runs inside one journaled VM operation; the op
 * is scoped to one disk.  Strings returned stay valid for the slot call. */
typedef struct vmsnap_op vmsnap_op;

const char *vmsnap_op_domain_name (const vmsnap_op *op);
const char *vmsnap_op_domain_uuid (const vmsnap_op *op);
/* true when the domain is running or paused: use the online paths. */
bool vmsnap_op_is_online (const vmsnap_op *op);
/* The libvirt connection (virConnectPtr) or NULL for a domain XML file. */
void *vmsnap_op_libvirt_conn (const vmsnap_op *op);
/* A private directory (0700) of this domain's state where a backend may
 * keep files of its own. */
const char *vmsnap_op_state_dir (const vmsnap_op *op);
/* Every locator the catalog holds for this disk: the points of named
 * snapshots and the unnamed points kept because others depend on them.
 * A backend finds with them which points depend on which. */
size_t vmsnap_op_n_locators (const vmsnap_op *op);
const char *vmsnap_op_locator (const vmsnap_op *op, size_t i);
/* Report progress of a long operation; the core draws it on a terminal
 * (not with --quiet/--json).  Call it with DONE == TOTAL when the work ends,
 * also on an error path: that erases the line. */
void vmsnap_op_progress (vmsnap_op *op, uint64_t done, uint64_t total);

/* Durable state: the write-ahead journal.
 *
 * A slot that takes several steps on storage records what it decided
 * (vmsnap_op_set: a direction, a new file name) BEFORE acting on it, and
 * marks each step done AFTER it (vmsnap_op_mark_done).  Both are on disk
 * (fsync) when they return.  After a crash the core calls the same slot
 * again with the same arguments and the recorded state
 * (vmsnap_op_is_recovering): the slot must skip the steps marked done,
 * reuse what it recorded, finish the rest and return the same result.  A
 * step must be safe to repeat (the crash may come after the step and before
 * its mark).  A slot that fails before it recorded anything must have
 * changed nothing: the core then abandons the whole operation.  Keys and
 * step names: [a-z0-9_-], unique within the slot. */
const char *vmsnap_op_get (const vmsnap_op *op, const char *key);
gboolean vmsnap_op_set (vmsnap_op *op, const char *key, const char *value,
                        GError **err);
bool vmsnap_op_step_done (const vmsnap_op *op, const char *step);
gboolean vmsnap_op_mark_done (vmsnap_op *op, const char *step, GError **err);
bool vmsnap_op_is_recovering (const vmsnap_op *op);

/* Run an external tool: argv is exec'd directly (never a shell, no PATH
 * search: argv[0] is a full path, e.g. what vmsnap_op_qemu_img () returns), LC_ALL=C.
 * vmsnap_op_run captures stdout into *out (may be NULL).  The _progress
 * variant is for tools that print progress on stdout (qemu-img -p): it is
 * shown on the user's terminal when there is one and discarded otherwise.
 * On failure *err names the tool and carries its stderr. */
gboolean vmsnap_op_run (vmsnap_op *op, const char *const *argv, char **out,
                        GError **err);
gboolean vmsnap_op_run_progress (vmsnap_op *op, const char *const *argv,
                                 GError **err);
/* The qemu-img to run ($VMSNAP_QEMU_IMG or PATH), or NULL with *err. */
char *vmsnap_op_qemu_img (vmsnap_op *op, GError **err);

/* The central guard (DESIGN.md §10): may this op remove (VMSNAP_GUARD_REMOVE)
 * or write (VMSNAP_GUARD_WRITE) STORAGE?  STORAGE is an absolute path (file
 * or block device), "lvm:VG/LV" or "rbd:POOL[/NAMESPACE]/IMAGE" (a trailing
 * "@SNAP" is ignored: it names the image).  Removing is refused for any
 * image a disk of the domain uses as its active image or in its active
 * backing chain; writing is refused for one another disk uses that way.
 * The core checks every discard, every qemu-img it runs that writes and
 * every block job itself; a backend acting in process (a library call)
 * asks before each removal and each write of an image it did not just
 * create.  FALSE with *err naming the disk, the image and its user. */
#define VMSNAP_GUARD_REMOVE 1u
#define VMSNAP_GUARD_WRITE  2u
gboolean vmsnap_op_guard (vmsnap_op *op, const char *storage, unsigned int what,
                          GError **err);

/* Image headers are untrusted (DESIGN.md §10): call this before any
 * qemu-img run on an image a header named.  Reads PATH's header itself (as
 * format FMT) and fails, saying why, when the backing file, a qcow2 data
 * file or a VMDK extent is not a local file name (json:, nbd:, http:, ...)
 * or the backing format is not an image format.  Opens nothing else. */
gboolean vmsnap_image_refs_check (const char *path, const char *fmt,
                                  GError **err);

/* One image as its header describes it, read by vmsnap itself (DESIGN.md
 * §9 "read once", issue 17): qcow2, qcow, raw, vdi and vmdk in process,
 * bounded and checked like any untrusted input (every name passed
 * vmsnap_image_refs_check first); the other formats with one `qemu-img
 * info` (the format given, -U).  Never more than one process per image. */
typedef struct {
  char *id;                 /* qcow2 snapshot table: the entry's id ... */
  char *name;               /* ... and its name (tag) */
  guint64 vm_state_size;    /* bytes of saved VM state, 0 if disk-only */
  gint64 date_sec;
} vmsnap_image_snapshot;

struct vmsnap_image {
  size_t struct_size;       /* sizeof (vmsnap_image) of the library */
  char *format;             /* as given */
  guint64 virtual_size;
  char *backing;            /* the backing file, resolved as QEMU does
                               (relative to the image's directory), or NULL */
  char *backing_fmt;        /* its recorded format, or NULL if none */
  char *data_file;          /* qcow2 external data file (resolved), or NULL */
  gboolean encrypted;       /* qcow2 crypt_method != 0, or a luks image */
  gboolean corrupt;         /* qcow2 incompatible bit 1 */
  gboolean dirty;           /* qcow2 incompatible bit 0 (lazy refcounts) */
  guint64 incompatible;     /* qcow2 v3 incompatible feature bits */
  char *write_once;         /* why QEMU cannot overwrite it in place (vmdk
                               streamOptimized / compressed grains), or NULL */
  GPtrArray *snapshots;     /* qcow2: vmsnap_image_snapshot*, table order;
                               empty for other formats */
  gboolean in_process;      /* read by vmsnap (FALSE: one qemu-img info) */
};

/* Read PATH as format FMT (never probed).  NULL with *err naming the file
 * and what is wrong with it. */
vmsnap_image *vmsnap_image_read (const char *path, const char *fmt,
                                 GError **err);
void vmsnap_image_free (vmsnap_image *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (vmsnap_image, vmsnap_image_free)

/* Does another process hold QEMU's image locks on PATH (QEMU takes OFD
 * locks on bytes 100-163 and 200-263 of every image it opens, unless told
 * to share without locking)?  1: yes, someone (a QEMU, qemu-img, qemu-nbd)
 * has it open; 0: no; -1 with *err: PATH cannot be opened.  In process: no
 * `qemu-img` run. */
int vmsnap_image_in_use (const char *path, GError **err);

/* Write a new qcow2 overlay into FD (a regular file open for writing;
 * whatever it held is replaced), in process: the bytes `qemu-img create
 * -f qcow2 -u -F BACKING_FMT -b BACKING_NAME PATH VIRTUAL_SIZE` writes with
 * QEMU's defaults (version 3, 64 KiB clusters, 16-bit refcounts, zlib, no
 * lazy refcounts; the size rounded up to 512 bytes).  BACKING_NAME is
 * stored as given and never opened: the caller has checked it.  Nothing is
 * synced: the caller makes the file durable when its order needs it.
 * FLAGS: none yet, 0.  FALSE with *err, and FD untouched, for what it does
 * not write (VMSNAP_ERR_UNSUPPORTED: no name, a name longer than QEMU's
 * 1023 bytes, a format not in QEMU's list of image formats, a size beyond
 * qcow2's 2 PiB with 64 KiB clusters, FD not a regular file): the caller
 * runs qemu-img instead.  FALSE with VMSNAP_ERR_FAILED: a write failed,
 * FD holds part of an overlay. */
gboolean vmsnap_qcow2_overlay_write (int fd, const char *backing_name,
                                     const char *backing_fmt,
                                     guint64 virtual_size, unsigned int flags,
                                     GError **err);

/* Point the qcow2 image PATH at BACKING_NAME (stored as given: a name
 * relative to PATH's directory, or absolute) with format BACKING_FMT, as
 * `qemu-img rebase -u -F BACKING_FMT -b BACKING_NAME` does, in process: one
 * write of the header area in the first cluster, then fdatasync.  Every
 * header extension but the backing format is kept byte for byte (a LUKS
 * image's crypto header too: no key is needed); data is neither read nor
 * written.  BACKING_NAME NULL or "": no backing file (and no format);
 * BACKING_FMT NULL: no backing format extension.  On FALSE nothing was
 * written (unless the write itself failed), and *err says why:
 *  VMSNAP_ERR_USAGE        bad arguments (a name over 1023 bytes, a format
 *                          name over 15): qemu-img refuses them too;
 *  VMSNAP_ERR_BUSY         a QEMU process holds the image's locks;
 *  VMSNAP_ERR_UNSUPPORTED  not one this writer rewrites: not qcow2 v2/v3,
 *                          marked dirty or corrupt, an unknown incompatible
 *                          feature, the new header does not fit in the
 *                          first cluster (`qemu-img rebase -u` may still);
 *  VMSNAP_ERR_INVALID_INPUT / VMSNAP_ERR_FAILED  a malformed header, or
 *                          the file cannot be read or written. */
gboolean vmsnap_qcow2_set_backing (const char *path, const char *backing_name,
                                   const char *backing_fmt, GError **err);

/* The passphrase of DISK's <encryption> secret, read from libvirt
 * (virSecretGetValue), or NULL with *err saying why vmsnap cannot have it:
 * the disk is not encrypted, the domain is a domain XML file (no libvirt
 * daemon to ask), the secret is unknown, private or has no value.  Keep it
 * off command lines; wipe it before freeing (vmsnap_secret_free). */
GBytes *vmsnap_op_encryption_secret (vmsnap_op *op, const vmsnap_disk *disk,
                                     GError **err);
/* Overwrite the bytes of SECRET with zeros, then unref it (NULL: nothing). */
void vmsnap_secret_free (GBytes *secret);

/* Block jobs on a running domain (online slots only).  The core runs the
 * job on the op's disk through libvirt, waits for it on libvirt's block job
 * events, shows progress on a terminal, and pivots an active commit.
 *  VMSNAP_BLOCK_COMMIT         commit TOP (an inner layer) into BASE; QEMU
 *                              points TOP's overlay in the chain at BASE
 *  VMSNAP_BLOCK_ACTIVE_COMMIT  commit the active image TOP into BASE, then
 *                              pivot: the VM runs on BASE
 *  VMSNAP_BLOCK_PULL           pull into the active image everything above
 *                              BASE (NULL: everything); its backing file
 *                              becomes BASE
 * Repeatable: a job an interrupted run started is waited for, and a job
 * whose effect the live chain already shows is not started again.  On
 * failure the running chain is unchanged and *err says so. */
typedef enum {
  VMSNAP_BLOCK_COMMIT = 0,
  VMSNAP_BLOCK_ACTIVE_COMMIT,
  VMSNAP_BLOCK_PULL,
} vmsnap_block_job;

gboolean vmsnap_op_block_job (vmsnap_op *op, vmsnap_block_job kind,
                              const char *top, const char *base, GError **err);

/* ------------------------------------------------- results of an op */

typedef struct vmsnap_result vmsnap_result;

/* create: the locator of the new point in time (opaque to the core). */
void vmsnap_result_set_locator (vmsnap_result *res, const char *locator);
/* The disk's active source changed (new overlay, LV, clone): the core puts
 * it in the domain definition.  format is the new driver type. */
void vmsnap_result_set_new_source (vmsnap_result *res, const char *source,
                                   const char *format);
/* delete/merge: another point in time now lives under a new locator. */
void vmsnap_result_add_rename (vmsnap_result *res, const char *old_locator,
                               const char *new_locator);
/* Bytes of guest data copied (commit/pull/flatten), for the report. */
void vmsnap_result_add_bytes_copied (vmsnap_result *res, uint64_t bytes);
/* One line for the user: the direction chosen, what was done. */
void vmsnap_result_set_note (vmsnap_result *res, const char *fmt, ...)
  G_GNUC_PRINTF (2, 3);
/* delete: the point's storage must stay because other points still depend
 * on it; the core keeps it as an unnamed point (merge consolidates it). */
void vmsnap_result_set_kept (vmsnap_result *res, bool kept);
/* merge: an unnamed point the catalog held is gone (consolidated). */
void vmsnap_result_add_removed (vmsnap_result *res, const char *locator);
/* Storage that is no longer needed once the core has recorded this result
 * (the old active image after a revert, a committed file): a slot never
 * removes what the catalog or the domain definition may still reference.
 * The core calls the discard slot for each after its own journaled step. */
void vmsnap_result_add_garbage (vmsnap_result *res, const char *locator);
/* create/revert: storage this call made (a new overlay, a new LV) that the
 * core discards, through the discard slot, if the VM operation is rolled
 * back because another disk failed. */
void vmsnap_result_add_undo (vmsnap_result *res, const char *locator);

/* What merge consolidates.  Points whose locator is in KEEP (named
 * snapshots) must stay addressable (possibly under a new locator, reported
 * as a rename); the other locators of vmsnap_op_locator() are unnamed points
 * that may be consolidated away (reported with vmsnap_result_add_removed). */
typedef struct {
  uint32_t struct_size;
  /* 0: only consolidate what copies no data twice (an unnamed point with at
   * most one dependent).  N > 0: also copy a shared unnamed point into each
   * of its dependents until every chain is at most N layers deep, as far as
   * named points allow. */
  unsigned int max_depth;
  const char *const *keep;
  size_t n_keep;
} vmsnap_merge_spec;

/* A point in time the storage itself holds (list). */
typedef struct {
  char *locator;
  char *name;        /* the name the storage knows it by, if any */
  char *owner;       /* ownership mark (tag, metadata) if vmsnap made it */
} vmsnap_point;

void vmsnap_point_free (vmsnap_point *p);

/* ------------------------------------------------------ configuration */

/* Settings a backend declares (the `options` slot) and reads.
 *
 * The section of the configuration file (vmsnap.conf(5)) named after the
 * backend holds its keys; `-o BACKEND.KEY=VALUE` sets them on the command
 * line.  The core validates the file, the environment and the command line
 * against the declarations before any slot runs (an unknown key or a bad
 * value is an error that names the file or option, the section, the key
 * and the allowed values), and resolves each key's effective value:
 * command line > environment variable (desc.env) > configuration file >
 * desc.default_value.  A slot therefore never sees a value that does not
 * fit its declaration.
 *
 * An array of vmsnap_option_desc ends with an entry whose key is NULL.
 * The layout of vmsnap_option_desc is fixed for ABI 1 (it sits in arrays,
 * so it cannot grow); a later need gets a new slot. */
typedef enum {
  VMSNAP_OPTION_STRING = 0,     /* any non-empty text */
  VMSNAP_OPTION_INT,            /* a decimal integer from min to max */
  VMSNAP_OPTION_BOOL,           /* true/false (also yes/no, on/off, 1/0) */
  VMSNAP_OPTION_ENUM,           /* one of values[] */
  /* "N%" (0 < N <= 100, a share of something the backend knows) or a size
   * "N[bkmgtp][B|iB]" (binary units, N > 0, decimals allowed: "1.5G"). */
  VMSNAP_OPTION_SIZE_OR_PERCENT,
} vmsnap_option_type;

typedef struct {
  const char *key;            /* [a-z0-9-], unique in its section */
  vmsnap_option_type type;
  const char *default_value;  /* as text; must itself be valid */
  const char *const *values;  /* ENUM: allowed values, NULL-terminated */
  int64_t min, max;           /* INT: the inclusive range */
  const char *unit;           /* INT: "seconds", "objects", "%" or NULL,
                                 for messages and `vmsnap config` */
  const char *env;            /* environment variable that sets it, or NULL */
  const char *help;           /* one line for `vmsnap config` */
} vmsnap_option_desc;

/* The configuration in force (vmsnap_config, vmsnap.h): a backend gets it
 * from the operation or from the probe result, and keeps no copy (it lives
 * as long as the context the front end opened). */

const vmsnap_config *vmsnap_op_config (const vmsnap_op *op);
const vmsnap_config *vmsnap_probe_config (const vmsnap_probe_result *res);

/* Read a setting by its full name, "SECTION.KEY" (e.g. "lvm.snapshot-size",
 * the same spelling as -o).  These never fail for a declared key (the core
 * validated the value); for a NULL CFG or an undeclared key they return
 * NULL, 0 or FALSE.  Strings stay valid as long as CFG. */
const char *vmsnap_option_get (const vmsnap_config *cfg, const char *key);
int64_t vmsnap_option_get_int (const vmsnap_config *cfg, const char *key);
bool vmsnap_option_get_bool (const vmsnap_config *cfg, const char *key);
/* SIZE_OR_PERCENT: the size in bytes; a percentage is taken of WHOLE and
 * rounded up.  *is_percent (may be NULL) says which form was given. */
uint64_t vmsnap_option_get_size (const vmsnap_config *cfg, const char *key,
                                 uint64_t whole, bool *is_percent);
/* Where the value came from, to cite in a message: the environment
 * variable's name ("VMSNAP_LVM_SNAPSHOT_SIZE"), "KEY in FILE",
 * "KEY on the command line" or "KEY, the default". */
const char *vmsnap_option_origin (const vmsnap_config *cfg, const char *key);

/* ------------------------------------------------------- the contract */

typedef struct vmsnap_backend {
  /* Filled by VMSNAP_REGISTER_BACKEND; never set by hand. */
  uint32_t abi_version;
  uint32_t struct_size;

  /* Mandatory: short unique name, [a-z0-9-], used in --backend and plans. */
  const char *name;
  /* Mandatory: the module's version string. */
  const char *version;
  /* Optional: one line for `vmsnap backends`. */
  const char *description;
  /* VMSNAP_CAP_* bits: what this backend supports. */
  uint64_t caps;

  /* Optional.  Called once, serialised, right after loading; return -1 with
   * *err to refuse (e.g. a needed runtime tool is missing entirely). */
  int (*init) (GError **err);

  /* Mandatory.  Decide whether this backend can snapshot DISK for REQ:
   * call vmsnap_probe_set() exactly once.  Must not change anything on
   * storage; may read it (headers, sysfs, LVM/RBD metadata).  May assume
   * disk->target is set and inspection has run (check inspect_error).
   * Return -1 only for an internal failure (then the core records the
   * error as this backend's reason); "cannot" is a verdict, not an error. */
  int (*probe) (const vmsnap_disk *disk, const vmsnap_probe_request *req,
                vmsnap_probe_result *res, GError **err);

  /* Mandatory.  Capture the disk's current contents as a new point in time
   * named NAME (already validated by the core: 1 to 128 characters from
   * [A-Za-z0-9._+-], the first a letter or digit) and set the locator with
   * vmsnap_result_set_locator().  If the active source changes, say so with
   * vmsnap_result_set_new_source().  May assume the VM is shut off, or
   * paused/frozen when the backend has CREATE_NEEDS_PAUSE and is online.
   * On failure nothing it created may remain. */
  int (*create) (vmsnap_op *op, const vmsnap_disk *disk, const char *name,
                 unsigned int flags, vmsnap_result *res, GError **err);

  /* Mandatory.  Make the disk's contents equal LOCATOR's point in time.
   * The snapshot must still exist afterwards and be revertable again.
   * May set a new active source.  May assume the VM is shut off when the
   * backend has REVERT_NEEDS_SHUTOFF. */
  int (*revert) (vmsnap_op *op, const vmsnap_disk *disk, const char *locator,
                 unsigned int flags, vmsnap_result *res, GError **err);

  /* Optional (NULL: nothing to consolidate).  Shorten chains / flatten
   * clones per SPEC.  Guest-visible contents and every remaining point in
   * time stay the same; every locator that moved is reported with
   * vmsnap_result_add_rename(). */
  int (*merge) (vmsnap_op *op, const vmsnap_disk *disk,
                const vmsnap_merge_spec *spec, unsigned int flags,
                vmsnap_result *res, GError **err);

  /* Mandatory.  Remove LOCATOR's point in time and reclaim its space; the
   * current contents and every other point in time are unchanged, and any
   * of their locators that moved is reported as a rename. */
  int (*delete) (vmsnap_op *op, const vmsnap_disk *disk, const char *locator,
                 unsigned int flags, vmsnap_result *res, GError **err);

  /* Optional.  The points in time the storage itself holds for DISK, for
   * catalog rebuild and drift checks.  *points: GPtrArray of vmsnap_point*
   * with vmsnap_point_free as free function. */
  int (*list) (vmsnap_op *op, const vmsnap_disk *disk, GPtrArray **points,
               GError **err);

  /* Optional (mandatory for a backend that returns garbage).  Remove the
   * storage of LOCATOR, which the core no longer references.  Idempotent:
   * storage already gone is success. */
  int (*discard) (vmsnap_op *op, const vmsnap_disk *disk, const char *locator,
                  unsigned int flags, GError **err);

  /* Optional (NULL: no settings; modules built before this slot load with
   * it NULL).  The keys of the configuration section named after the
   * backend, terminated by an entry with a NULL key (see "configuration"
   * above).  Must stay valid while the module is loaded (a static array).
   * The core refuses a module whose declarations are malformed (bad key,
   * a default that does not fit its type, an ENUM without values), naming
   * the module and the key.  Read the values with vmsnap_option_get*(). */
  const vmsnap_option_desc *options;

  /* Optional (NULL: create does all the work inside the pause window;
   * modules built before this slot load with it NULL).  The pause window
   * of a create of a running VM (doc/consistency.md): called for every
   * disk before the VM is paused, with the OP, DISK and NAME of the create
   * that follows.  Does all that can be done before the instant: connect,
   * open, resolve secrets, check the name is free, record names and write
   * ownership marks, make files that are only referenced after the
   * capture.  It records (vmsnap_op_set) what it makes before making it,
   * as create does.  It may keep per-disk state in memory for the create
   * that follows in this process; a create without that state (a
   * recovery, in a new process) must work from the journal alone.
   *
   * A backend with prepare promises, for its create on a running VM:
   *  - it may run at the same time as other disks' creates (each in its
   *    own thread): it is thread-safe against itself on other disks, and
   *    calls only the vmsnap_op_* functions among the core's;
   *  - its journal records (vmsnap_op_set, vmsnap_op_mark_done) are kept
   *    in memory and written once after the window: whatever it makes
   *    inside the window must be found and undone (create on recovery,
   *    abort, discard) from what prepare recorded. */
  int (*prepare) (vmsnap_op *op, const vmsnap_disk *disk, const char *name,
                  unsigned int flags, GError **err);

  /* Mandatory with prepare.  The pause never came for this disk (another
   * disk's prepare failed, the VM could not be paused, or a recovery rolls
   * the create back): undo what prepare made, from its records, and drop
   * its in-memory state.  Idempotent.  A failure returns -1 with ERR;
   * the core then keeps the journal (vmsnap recover calls abort again). */
  int (*abort) (vmsnap_op *op, const vmsnap_disk *disk, const char *name,
                unsigned int flags, GError **err);
} vmsnap_backend;

/* Smallest struct a module may register: everything up to and including
 * the last mandatory slot. */
#define VMSNAP_BACKEND_MIN_SIZE \
  (offsetof (vmsnap_backend, delete) + sizeof (void *))

/* Flags every state-changing slot must check: reject bits it does not know
 * with VMSNAP_ERR_INVALID_FLAGS (see vmsnap_check_flags). */
gboolean vmsnap_check_flags (const char *backend, const char *slot,
                             unsigned int flags, unsigned int known,
                             GError **err);

#if defined(__GNUC__)
# define VMSNAP_BACKEND_EXPORT __attribute__ ((visibility ("default")))
#else
# define VMSNAP_BACKEND_EXPORT
#endif

/* Register a backend.  VAR is a non-const static vmsnap_backend; the macro
 * fills abi_version and struct_size and defines the module's entry symbol. */
#define VMSNAP_REGISTER_BACKEND(var)                                     \
  VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void); \
  VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void) \
  {                                                                      \
    (var).abi_version = VMSNAP_BACKEND_ABI_VERSION;                      \
    (var).struct_size = sizeof (var);                                    \
    return &(var);                                                       \
  }

#ifdef __cplusplus
}
#endif
#endif /* VMSNAP_BACKEND_H */
