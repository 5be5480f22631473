/* Fuzz harness: the catalog of a domain (STATE/UUID/catalog.xml).
 *
 * The input is written as catalog.xml in the per-process directory and read
 * by vmsnap_catalog_load, as vmsnap_engine_open does; then what the engine
 * does with a loaded catalog without touching storage: the lookups of
 * `vmsnap list` (every snapshot's visible parent, the current one), the
 * locators per disk, a save, and a load of what was saved, which must give
 * the same catalog (the catalog round-trips: vmsnap reads what it wrote).
 *
 * The loader's invariants (issue 16, item 12), checked here independently
 * of the loader: a catalog it accepts has unique snapshot ids, one visible
 * snapshot per name, only valid names, parents that exist and lead to a
 * root, a current snapshot that exists, and belongs to the domain it was
 * loaded for (the same input loaded for another UUID is refused). */
#include <config.h>

#include <string.h>

#include "../../libvmsnap/internal.h"
#include "fuzz-common.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_tmpdir_init ("fuzz-catalog");
  return 0;
}

static void
same_catalog (const catalog *a, const catalog *b)
{
  FUZZ_ASSERT (a->next_id == b->next_id);
  FUZZ_ASSERT (g_strcmp0 (a->current, b->current) == 0);
  FUZZ_ASSERT (a->snaps->len == b->snaps->len);
  for (guint i = 0; i < a->snaps->len; i++) {
    const cat_snap *x = a->snaps->pdata[i], *y = b->snaps->pdata[i];
    FUZZ_ASSERT (strcmp (x->id, y->id) == 0 && strcmp (x->name, y->name) == 0);
    FUZZ_ASSERT (g_strcmp0 (x->parent, y->parent) == 0);
    FUZZ_ASSERT (x->hidden == y->hidden && x->created == y->created);
    FUZZ_ASSERT (g_strcmp0 (x->description, y->description) == 0);
    FUZZ_ASSERT (g_strcmp0 (x->domain_xml, y->domain_xml) == 0);
    FUZZ_ASSERT (g_strcmp0 (x->libvirt_xml, y->libvirt_xml) == 0);
    FUZZ_ASSERT (x->disks->len == y->disks->len);
    for (guint k = 0; k < x->disks->len; k++) {
      const cat_disk *p = x->disks->pdata[k], *q = y->disks->pdata[k];
      FUZZ_ASSERT (strcmp (p->target, q->target) == 0);
      FUZZ_ASSERT (strcmp (p->backend, q->backend) == 0);
      FUZZ_ASSERT (strcmp (p->locator, q->locator) == 0);
    }
  }
}

/* The UUID of the seed catalogs (tests/fuzz/corpus/catalog). */
#define SEED_UUID "6a0c5c1e-8f3c-4b2d-9d1e-2f7a1b3c4d5e"

static void
loader_invariants (catalog *c)
{
  g_autoptr (GHashTable) ids = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    FUZZ_ASSERT (vmsnap_valid_snapshot_name (s->name, NULL));
    FUZZ_ASSERT (!g_hash_table_contains (ids, s->id));
    g_hash_table_insert (ids, s->id, s);
    FUZZ_ASSERT (c->next_id > (guint) g_ascii_strtoull (s->id, NULL, 10));
    if (!s->hidden) {
      FUZZ_ASSERT (!g_hash_table_contains (names, s->name));
      g_hash_table_add (names, s->name);
    }
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      FUZZ_ASSERT (*d->target && *d->backend && *d->locator);
      for (guint m = 0; m < k; m++)
        FUZZ_ASSERT (strcmp (d->target, ((cat_disk *) s->disks->pdata[m])->target) != 0);
    }
  }
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    guint steps = 0;
    while (s->parent) {
      FUZZ_ASSERT (++steps <= c->snaps->len);
      s = g_hash_table_lookup (ids, s->parent);
      FUZZ_ASSERT (s != NULL);
    }
  }
  FUZZ_ASSERT (c->current == NULL || g_hash_table_contains (ids, c->current));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("catalog.xml", data, size);
  g_autoptr (GError) err = NULL;
  g_autoptr (catalog) c = vmsnap_catalog_load (path, SEED_UUID, "fuzz", &err);
  g_autoptr (catalog) again = NULL;
  g_autoptr (catalog) other = NULL;
  g_autoptr (GError) other_err = NULL;

  if (c == NULL) {
    FUZZ_ASSERT (err != NULL);
    /* named: the file; shown, never echoed: no control character */
    FUZZ_ASSERT (strstr (err->message, path) != NULL);
    for (const char *p = err->message; *p; p++)
      FUZZ_ASSERT ((unsigned char) *p >= 0x20 && (unsigned char) *p != 0x7f);
    return 0;
  }
  loader_invariants (c);
  other = vmsnap_catalog_load (path, "00000000-0000-0000-0000-000000000000", "other",
                               &other_err);
  FUZZ_ASSERT (other == NULL && other_err != NULL);
  /* vmsnap list */
  if (c->current)
    vmsnap_catalog_visible (c, c->current);
  for (guint i = 0; i < c->snaps->len; i++) {
    cat_snap *s = c->snaps->pdata[i];
    FUZZ_ASSERT (s->id && s->name && s->disks);
    FUZZ_ASSERT (vmsnap_catalog_find_id (c, s->id) != NULL);
    if (!s->hidden)
      FUZZ_ASSERT (vmsnap_catalog_find (c, s->name) != NULL);
    if (s->parent)
      vmsnap_catalog_visible (c, s->parent);
    for (guint k = 0; k < s->disks->len; k++) {
      cat_disk *d = s->disks->pdata[k];
      g_autoptr (GPtrArray) locs = vmsnap_catalog_locators (c, d->target);
      FUZZ_ASSERT (locs->len > 0);
    }
  }
  /* What vmsnap writes, vmsnap reads back the same. */
  FUZZ_ASSERT (vmsnap_catalog_save (c, &err));
  again = vmsnap_catalog_load (path, SEED_UUID, "fuzz", &err);
  FUZZ_ASSERT (again != NULL);
  loader_invariants (again);
  same_catalog (c, again);
  return 0;
}
