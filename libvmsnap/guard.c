/* The central guard (DESIGN.md §10, doc/security.md): no operation removes
 * an image that a disk of the domain uses as its active image or inside
 * its active chain, and no operation on one disk writes an image another
 * disk of the domain uses that way.
 *
 * The core builds the guard from the domain inventory it already holds
 * (one per command, rebuilt when the definition is read again) and checks
 * it itself where it acts or runs a tool for a backend: every discard
 * (locator -> storage), every qemu-img that writes (its target, and a
 * commit's base), every block job.  Backends that act in process (LVM
 * through liblvm2cmd, RBD through librbd) ask it through
 * vmsnap_op_guard () before each removal and each write of an image that
 * is not their own new one.
 *
 * Identity, not names: a local file is its device and inode (its resolved
 * path when it does not exist), a block device its device number, an LV
 * "lvm:VG/LV" (a /dev/VG/LV source names the same LV), an RBD image
 * "rbd:POOL[/NAMESPACE]/IMAGE". */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "internal.h"

typedef struct {
  char *keys[3];     /* identities of one piece of storage, NULL-ended */
  char *shown;       /* as the domain names it */
  char *target;      /* the disk using it */
  gboolean active;   /* the disk's active image (else a layer below it) */
} guard_entry;

struct vmsnap_guard {
  gint refs;
  GPtrArray *entries;
};

static void
entry_free (gpointer p)
{
  guard_entry *e = p;

  for (guint i = 0; i < G_N_ELEMENTS (e->keys); i++)
    g_free (e->keys[i]);
  g_free (e->shown);
  g_free (e->target);
  g_free (e);
}

/* "/dev/VG/LV" -> "lvm:VG/LV"; NULL for any other path.  (Device-mapper
 * names under /dev/mapper are matched by device number instead.) */
static char *
lvm_key_of_dev (const char *path)
{
  g_auto (GStrv) parts = NULL;

  if (!g_str_has_prefix (path, "/dev/"))
    return NULL;
  parts = g_strsplit (path + 5, "/", -1);
  if (g_strv_length (parts) != 2 || !*parts[0] || !*parts[1]
      || !strcmp (parts[0], "mapper") || !strcmp (parts[0], "disk"))
    return NULL;
  return g_strdup_printf ("lvm:%s/%s", parts[0], parts[1]);
}

/* The identities of STORAGE: an absolute path, "lvm:VG/LV" or
 * "rbd:POOL[/NS]/IMAGE" (a "@SNAP" or "?..." suffix is not part of it). */
static void
storage_keys (const char *storage, char **keys)
{
  struct stat st;

  keys[0] = keys[1] = keys[2] = NULL;
  if (storage == NULL || *storage == '\0')
    return;
  if (g_str_has_prefix (storage, "rbd:") || g_str_has_prefix (storage, "lvm:")) {
    size_t n = strcspn (storage, "@?#");
    keys[0] = g_strndup (storage, n);
    if (g_str_has_prefix (storage, "lvm:")) {
      g_autofree char *dev = g_strdup_printf ("/dev/%s", keys[0] + 4);
      if (stat (dev, &st) == 0 && S_ISBLK (st.st_mode))
        keys[1] = g_strdup_printf ("blk:%u:%u", major (st.st_rdev), minor (st.st_rdev));
    }
    return;
  }
  if (storage[0] != '/')
    return;
  if (stat (storage, &st) == 0) {
    if (S_ISBLK (st.st_mode))
      keys[0] = g_strdup_printf ("blk:%u:%u", major (st.st_rdev), minor (st.st_rdev));
    else
      keys[0] = g_strdup_printf ("ino:%ju:%ju", (uintmax_t) st.st_dev, (uintmax_t) st.st_ino);
  } else {
    /* Not there (yet): the resolved path of its directory and its name. */
    g_autofree char *dir = g_path_get_dirname (storage);
    g_autofree char *base = g_path_get_basename (storage);
    char *rdir = realpath (dir, NULL);
    keys[0] = g_strdup_printf ("path:%s/%s", rdir ? rdir : dir, base);
    free (rdir);
  }
  keys[1] = lvm_key_of_dev (storage);
}

static void
add_entry (vmsnap_guard *g, const char *storage, const char *target,
           gboolean active)
{
  guard_entry *e = g_new0 (guard_entry, 1);

  storage_keys (storage, e->keys);
  if (e->keys[0] == NULL) {
    entry_free (e);
    return;
  }
  e->shown = g_strdup (storage);
  e->target = g_strdup (target);
  e->active = active;
  g_ptr_array_add (g->entries, e);
}

/* The storage string the guard keys a disk's active source by. */
char *
vmsnap_guard_disk_storage (const vmsnap_disk *d)
{
  if (d->source == NULL)
    return NULL;
  if (d->type == VMSNAP_DISK_TYPE_NETWORK) {
    if (d->protocol && !strcmp (d->protocol, "rbd"))
      return g_strconcat ("rbd:", d->source, NULL);
    return NULL;
  }
  return g_strdup (d->source);
}

vmsnap_guard *
vmsnap_guard_new (const vmsnap_domain *dom)
{
  vmsnap_guard *g = g_new0 (vmsnap_guard, 1);

  g->refs = 1;
  g->entries = g_ptr_array_new_with_free_func (entry_free);
  for (guint i = 0; dom && i < dom->disks->len; i++) {
    const vmsnap_disk *d = &((vmsnap_disk_priv *) dom->disks->pdata[i])->pub;
    g_autofree char *src = vmsnap_guard_disk_storage (d);

    if (src)
      add_entry (g, src, d->target, TRUE);
    /* chain[0] is the active image itself. */
    for (size_t k = 1; k < d->n_chain; k++) {
      const vmsnap_layer *l = d->chain[k];
      if (l->path && !l->is_network)
        add_entry (g, l->path, d->target, FALSE);
      if (l->data_file && l->data_file[0] == '/')
        add_entry (g, l->data_file, d->target, FALSE);
    }
    if (d->n_chain > 0 && d->chain[0]->data_file && d->chain[0]->data_file[0] == '/')
      add_entry (g, d->chain[0]->data_file, d->target, TRUE);
  }
  return g;
}

vmsnap_guard *
vmsnap_guard_ref (vmsnap_guard *g)
{
  if (g)
    g_atomic_int_inc (&g->refs);
  return g;
}

void
vmsnap_guard_free (vmsnap_guard *g)
{
  if (g == NULL || !g_atomic_int_dec_and_test (&g->refs))
    return;
  g_ptr_array_unref (g->entries);
  g_free (g);
}

static gboolean
same (const guard_entry *e, char *const *keys)
{
  for (guint i = 0; i < G_N_ELEMENTS (e->keys) && e->keys[i]; i++)
    for (guint k = 0; k < 3 && keys[k]; k++)
      if (strcmp (e->keys[i], keys[k]) == 0)
        return TRUE;
  return FALSE;
}

gboolean
vmsnap_guard_check (const vmsnap_guard *g, const char *target,
                    const char *storage, unsigned int what, GError **err)
{
  char *keys[3];
  gboolean ok = TRUE;

  if (g == NULL || storage == NULL)
    return TRUE;
  if (what & ~(VMSNAP_GUARD_REMOVE | VMSNAP_GUARD_WRITE)) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "disk %s: guard: unknown flags 0x%x (internal error)",
                 target ? target : "?", what);
    return FALSE;
  }
  storage_keys (storage, keys);
  for (guint i = 0; ok && i < g->entries->len; i++) {
    const guard_entry *e = g->entries->pdata[i];
    gboolean mine = target && strcmp (e->target, target) == 0;
    if (!same (e, keys))
      continue;
    if (what & VMSNAP_GUARD_REMOVE) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: refusing to remove %s: it is %s disk %s%s "
                   "(vmsnap never removes an image a disk of the domain "
                   "uses; run `vmsnap check` to compare the catalog with "
                   "storage)", target ? target : "?", storage,
                   e->active ? "the active image of" : "a layer of the backing chain of",
                   e->target, e->active ? "" : " uses");
      ok = FALSE;
    } else if ((what & VMSNAP_GUARD_WRITE) && !mine) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "disk %s: refusing to write %s: disk %s uses it as %s; "
                   "an operation on disk %s must not change another disk's "
                   "data (two disks share this image: give each disk its own "
                   "image, or mark the disks <shareable/>/<readonly/>)",
                   target ? target : "?", storage, e->target,
                   e->active ? "its active image" : "a layer of its backing chain",
                   target ? target : "?");
      ok = FALSE;
    }
  }
  for (guint k = 0; k < 3; k++)
    g_free (keys[k]);
  return ok;
}

/* "FMT:/path" -> the file, removed; "FMT:/path#TAG" (an entry inside the
 * file) -> the file, written; "lvm:VG/LV?restore=..." (the undo of a thin
 * revert: an LV put back, nothing removed) -> NULL; "lvm:VG/LV" removed;
 * "rbd:P/I@S" -> the image, written; "rbd:P/I" removed. */
char *
vmsnap_guard_locator_storage (const char *loc, unsigned int *what)
{
  const char *c;

  *what = VMSNAP_GUARD_REMOVE;
  if (loc == NULL)
    return NULL;
  if (g_str_has_prefix (loc, "lvm:")) {
    if (strchr (loc, '?'))
      return NULL;
    return g_strdup (loc);
  }
  if (g_str_has_prefix (loc, "rbd:")) {
    if (strchr (loc, '@'))
      *what = VMSNAP_GUARD_WRITE;
    return g_strndup (loc, strcspn (loc, "@"));
  }
  c = strchr (loc, ':');
  if (c == NULL || c[1] != '/')
    return NULL;
  if (strchr (c, '#')) {
    *what = VMSNAP_GUARD_WRITE;
    return g_strndup (c + 1, strcspn (c + 1, "#"));
  }
  return g_strdup (c + 1);
}

/* The image a qemu-img --image-opts string names (file.filename=). */
static char *
image_opts_file (const char *opts)
{
  g_auto (GStrv) kv = g_strsplit (opts, ",", -1);

  for (char **p = kv; *p; p++)
    if (g_str_has_prefix (*p, "file.filename="))
      return g_strdup (*p + strlen ("file.filename="));
  return NULL;
}

/* The images a qemu-img command line writes, for the guard: the image of
 * the subcommands that change one (its last argument: vmsnap always ends
 * with "-- FILE"), and a commit's base (-b).  Read-only subcommands (info,
 * map, compare, measure, check without -r) write nothing. */
GPtrArray *
vmsnap_guard_qemu_img_targets (const char *const *argv)
{
  static const char *const writers[] = { "commit", "rebase", "create",
    "convert", "amend", "resize", "snapshot", "bitmap", "dd", NULL };
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *prog = NULL;
  const char *sub, *last = NULL;
  gboolean image_opts = FALSE, writes, repair = FALSE;
  size_t n = 0;

  if (argv == NULL || argv[0] == NULL)
    return out;
  prog = g_path_get_basename (argv[0]);
  if (strcmp (prog, "qemu-img") != 0 || (sub = argv[1]) == NULL)
    return out;
  while (argv[n])
    n++;
  for (size_t i = 2; i < n; i++) {
    if (!strcmp (argv[i], "--image-opts"))
      image_opts = TRUE;
    if (!strcmp (argv[i], "-r") || g_str_has_prefix (argv[i], "-r"))
      repair = TRUE;
    if (!strcmp (argv[i], "-b") && i + 1 < n && !strcmp (sub, "commit"))
      g_ptr_array_add (out, g_strdup (argv[i + 1]));
  }
  writes = g_strv_contains (writers, sub) || (!strcmp (sub, "check") && repair);
  if (!writes) {
    g_ptr_array_set_size (out, 0);
    return out;
  }
  last = argv[n - 1];
  /* create FILE [SIZE] */
  if (!strcmp (sub, "create") && last[0] != '/' && n > 3 && argv[n - 2][0] == '/')
    last = argv[n - 2];
  if (!strcmp (sub, "dd")) {
    for (size_t i = 2; i < n; i++)
      if (g_str_has_prefix (argv[i], "of="))
        last = argv[i] + 3;
  }
  if (image_opts) {
    char *f = image_opts_file (last);
    if (f)
      g_ptr_array_add (out, f);
  } else if (last[0] == '/')
    g_ptr_array_add (out, g_strdup (last));
  return out;
}

/* The disk other than TARGET that uses STORAGE (its active image when
 * *ACTIVE), or NULL if none does. */
const char *
vmsnap_guard_other_user (const vmsnap_guard *g, const char *target,
                         const char *storage, gboolean *active)
{
  char *keys[3];
  const char *who = NULL;

  if (g == NULL || storage == NULL)
    return NULL;
  storage_keys (storage, keys);
  for (guint i = 0; who == NULL && i < g->entries->len; i++) {
    const guard_entry *e = g->entries->pdata[i];
    if ((target == NULL || strcmp (e->target, target) != 0) && same (e, keys)) {
      who = e->target;
      *active = e->active;
    }
  }
  for (guint k = 0; k < 3; k++)
    g_free (keys[k]);
  return who;
}
