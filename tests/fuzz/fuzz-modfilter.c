/* Fuzz harness: backend disk filters (libvmsnap/modfilter.c), issue 17.
 * The planner reads a module file's ".vmsnap_filter" ELF section without
 * loading the module: the file is hostile input.  The input is written as
 * a module file and read; then taken as filter text and tested against a
 * few disks.  Invariants: no crash, no read outside the file (the
 * sanitizers watch), a filter read from a file is a well-formed one of at
 * most VMSNAP_FILTER_MAX bytes, and a malformed filter refuses nothing. */
#include <config.h>

#include <string.h>

#include "../../libvmsnap/internal.h"
#include "fuzz-common.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_tmpdir_init ("fuzz-modfilter");
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("module.so", data, size);
  g_autofree char *filter = vmsnap_module_filter_file (path);
  g_autofree char *text = g_strndup ((const char *) data, size);
  static const struct {
    vmsnap_disk_type type;
    const char *protocol;
  } disks[] = {
    { VMSNAP_DISK_TYPE_FILE, NULL }, { VMSNAP_DISK_TYPE_BLOCK, NULL },
    { VMSNAP_DISK_TYPE_NETWORK, "rbd" }, { VMSNAP_DISK_TYPE_NETWORK, NULL },
    { VMSNAP_DISK_TYPE_UNKNOWN, NULL }, { VMSNAP_DISK_TYPE_VHOSTVDPA, "nbd" },
  };
  gboolean valid = vmsnap_disk_filter_valid (text);

  if (filter != NULL)
    FUZZ_ASSERT (vmsnap_disk_filter_valid (filter)
                 && strlen (filter) <= VMSNAP_FILTER_MAX);
  for (size_t i = 0; i < G_N_ELEMENTS (disks); i++) {
    vmsnap_disk d = { .struct_size = sizeof d, .target = "vda",
                      .type = disks[i].type, .protocol = disks[i].protocol };
    g_autofree char *why = vmsnap_disk_filter_refuses (text, &d);
    g_autofree char *why2 = filter ? vmsnap_disk_filter_refuses (filter, &d) : NULL;

    /* A refusal is the declared reason: one non-empty line. */
    if (!valid)
      FUZZ_ASSERT (why == NULL);
    if (why)
      FUZZ_ASSERT (*why != '\0' && strchr (why, '\n') == NULL && strstr (text, why));
    if (why2)
      FUZZ_ASSERT (*why2 != '\0' && strchr (why2, '\n') == NULL);
  }
  return 0;
}
