/* Fuzz harness: a libvirt domain XML string -> the disk inventory.
 *
 * What `vmsnap plan|create|... FILE.xml` does to the XML, up to where it
 * would look at storage: vmsnap_domain_parse (libxml2 into the model of
 * DESIGN.md §3), then the inspection of every disk that needs no storage
 * (network, volume, nvme, ... and disks without a source; file and block
 * disks would stat their source and run qemu-img), then a plan with no
 * backend loaded, printed as JSON and as text. */
#include <config.h>

#include <string.h>

#include "../../libvmsnap/internal.h"
#include "fuzz-common.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_fatal_warnings ();
  return 0;
}

static void
check_disk (const vmsnap_domain *dom, guint i)
{
  const vmsnap_disk_priv *d = dom->disks->pdata[i];

  FUZZ_ASSERT (d->pub.target != NULL);
  for (guint k = 0; k < i; k++)
    FUZZ_ASSERT (strcmp (((vmsnap_disk_priv *) dom->disks->pdata[k])->pub.target,
                         d->pub.target) != 0);
  FUZZ_ASSERT (d->pub.n_hosts == d->hosts->len && d->pub.n_hosts <= 64);
  FUZZ_ASSERT (d->pub.n_xml_backing == d->xml_backing->len
               && d->pub.n_xml_backing <= VMSNAP_MAX_CHAIN);
  FUZZ_ASSERT (d->pub.type_name != NULL);
}

static gboolean
needs_storage (const vmsnap_disk_priv *d)
{
  return (d->pub.type == VMSNAP_DISK_TYPE_FILE || d->pub.type == VMSNAP_DISK_TYPE_BLOCK)
         && d->pub.source != NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  vmsnap_domain *dom = vmsnap_domain_new ();
  g_autoptr (GError) err = NULL;
  vmsnap_ctx ctx = { .modules = g_ptr_array_new () };

  if (!vmsnap_domain_parse (dom, (const char *) data, size, "fuzz.xml", &err)) {
    FUZZ_ASSERT (err != NULL && err->message != NULL);
    goto out;
  }
  FUZZ_ASSERT (err == NULL && dom->name != NULL);
  FUZZ_ASSERT (dom->disks->len <= VMSNAP_MAX_DISKS);
  for (guint i = 0; i < dom->disks->len; i++) {
    vmsnap_disk_priv *d = dom->disks->pdata[i];
    check_disk (dom, i);
    if (needs_storage (d))
      d->pub.inspect_error = "not inspected (fuzzing)";
    else
      vmsnap_inspect_disk (dom, d);
  }
  {
    g_autoptr (vmsnap_plan) plan = vmsnap_plan_new (&ctx, dom, NULL, &err);
    FUZZ_ASSERT (plan != NULL);
    g_free (vmsnap_plan_to_json (plan));
    g_free (vmsnap_plan_to_text (plan));
    if (!vmsnap_plan_possible (plan)) {
      GError *pe = vmsnap_plan_error (plan);
      FUZZ_ASSERT (pe != NULL);
      g_error_free (pe);
    }
  }
 out:
  g_ptr_array_unref (ctx.modules);
  vmsnap_domain_free (dom);
  return 0;
}
