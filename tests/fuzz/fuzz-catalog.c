/* Fuzz harness: the catalog of a domain (STATE/UUID/catalog.xml).
 *
 * The input is written as catalog.xml in the per-process directory and read
 * by vmsnap_catalog_load, as vmsnap_engine_open does; then what the engine
 * does with a loaded catalog without touching storage: the lookups of
 * `vmsnap list` (every snapshot's visible parent, the current one), the
 * locators per disk, a save, and a load of what was saved, which must give
 * the same catalog (the catalog round-trips: vmsnap reads what it wrote). */
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

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("catalog.xml", data, size);
  g_autoptr (GError) err = NULL;
  g_autoptr (catalog) c = vmsnap_catalog_load (path, "uuid", "fuzz", &err);
  g_autoptr (catalog) again = NULL;

  if (c == NULL) {
    FUZZ_ASSERT (err != NULL);
    return 0;
  }
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
  again = vmsnap_catalog_load (path, "uuid", "fuzz", &err);
  FUZZ_ASSERT (again != NULL);
  same_catalog (c, again);
  return 0;
}
