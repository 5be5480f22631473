/* Test modules for the loader, one per failure mode, selected by -D. */
#include <config.h>

#include <vmsnap/backend.h>

G_GNUC_UNUSED static int
t_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
         vmsnap_probe_result *res, GError **err)
{
  vmsnap_probe_set (res, VMSNAP_FIT_CAN, 1, "test module");
  return 0;
}

G_GNUC_UNUSED static int
t_create (vmsnap_op *op, const vmsnap_disk *d, const char *name,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  if (!vmsnap_check_flags ("test", "create", flags, 0, err))
    return -1;
  vmsnap_result_set_locator (res, name);
  return 0;
}

G_GNUC_UNUSED static int
t_revert (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  return 0;
}

G_GNUC_UNUSED static int
t_delete (vmsnap_op *op, const vmsnap_disk *d, const char *locator,
          unsigned int flags, vmsnap_result *res, GError **err)
{
  return 0;
}

#if defined(TESTMOD_GOOD)
/* One setting of each type (tests/unit/test-config.c). */
static const char *const colours[] = { "red", "green", "blue", NULL };
static const vmsnap_option_desc good_options[] = {
  { "name", VMSNAP_OPTION_STRING, "anon", NULL, 0, 0, NULL, NULL, "a string" },
  { "count", VMSNAP_OPTION_INT, "3", NULL, -5, 10, "apples",
    "VMSNAP_TEST_GOOD_COUNT", "an integer" },
  { "flag", VMSNAP_OPTION_BOOL, "false", NULL, 0, 0, NULL, NULL, "a boolean" },
  { "colour", VMSNAP_OPTION_ENUM, "green", colours, 0, 0, NULL,
    "VMSNAP_TEST_GOOD_COLOUR", "an enum" },
  { "size", VMSNAP_OPTION_SIZE_OR_PERCENT, "25%", NULL, 0, 0, NULL, NULL,
    "a size or a percentage" },
  { NULL },
};
static vmsnap_backend b = {
  .name = "good", .version = "1.0", .caps = VMSNAP_CAP_CREATE_OFFLINE,
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
  .options = good_options,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_OLD)
/* A module built before the options slot existed: its struct ends at
 * discard.  What lies beyond its struct_size must not be read: here a
 * declaration the core would refuse. */
static const vmsnap_option_desc beyond[] = {
  { .key = "NOT A KEY", .type = VMSNAP_OPTION_INT, .default_value = "x" },
  { NULL },
};
static vmsnap_backend b = {
  .name = "old", .version = "1.0", .caps = VMSNAP_CAP_CREATE_OFFLINE,
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
  .options = beyond,
};
VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void);
const vmsnap_backend *
vmsnap_backend_entry (void)
{
  b.abi_version = VMSNAP_BACKEND_ABI_VERSION;
  b.struct_size = offsetof (vmsnap_backend, options);
  return &b;
}

#elif defined(TESTMOD_FILTERED)
/* A disk filter (tests/unit/test-modfilter.c reads it from this file). */
VMSNAP_BACKEND_DISK_FILTER (filter, "file,network", "nbd,gluster",
                            "test: neither a file nor an nbd or gluster disk");
static int
f_probe (const vmsnap_disk *d, const vmsnap_probe_request *req,
         vmsnap_probe_result *res, GError **err)
{
  g_autofree char *refused = vmsnap_disk_filter_refuses (filter, d);

  if (refused)
    vmsnap_probe_set (res, VMSNAP_FIT_CANNOT, 0, "%s", refused);
  else
    vmsnap_probe_set (res, VMSNAP_FIT_CAN, 1, "test module");
  return 0;
}
static vmsnap_backend b = {
  .name = "filtered", .version = "1.0", .caps = VMSNAP_CAP_CREATE_OFFLINE,
  .probe = f_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_TWOFILTERS)
/* Two filters in one module: the section holds both strings, which the
 * core refuses to read (which one would the probe test?). */
VMSNAP_BACKEND_DISK_FILTER (filter1, "file", "", "test: not a file");
VMSNAP_BACKEND_DISK_FILTER (filter2, "block", "", "test: not a block device");
static vmsnap_backend b = {
  .name = "twofilters", .version = "1.0", .caps = VMSNAP_CAP_CREATE_OFFLINE,
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_BADOPTS)
static const vmsnap_option_desc bad_options[] = {
  { .key = "count", .type = VMSNAP_OPTION_INT, .default_value = "many", .max = 10 },
  { NULL },
};
static vmsnap_backend b = {
  .name = "badopts", .version = "1.0",
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
  .options = bad_options,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_BADABI)
static vmsnap_backend b = {
  .name = "badabi", .version = "1.0",
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
};
VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void);
const vmsnap_backend *
vmsnap_backend_entry (void)
{
  b.abi_version = VMSNAP_BACKEND_ABI_VERSION + 98;
  b.struct_size = sizeof b;
  return &b;
}

#elif defined(TESTMOD_NOSLOT)
static vmsnap_backend b = {
  .name = "noslot", .version = "1.0",
  .probe = t_probe, .create = t_create, .delete = t_delete,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_NOABORT)
/* A prepare slot without its abort: what prepare made could never be
 * undone when the pause does not come. */
static int
t_prepare (vmsnap_op *op, const vmsnap_disk *d, const char *name,
           unsigned int flags, GError **err)
{
  (void) op; (void) d; (void) name; (void) flags; (void) err;
  return 0;
}
static vmsnap_backend b = {
  .name = "noabort", .version = "1.0",
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
  .prepare = t_prepare,
};
VMSNAP_REGISTER_BACKEND (b)

#elif defined(TESTMOD_SMALL)
static vmsnap_backend b = {
  .name = "small", .version = "1.0",
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
};
VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void);
const vmsnap_backend *
vmsnap_backend_entry (void)
{
  b.abi_version = VMSNAP_BACKEND_ABI_VERSION;
  b.struct_size = 16;   /* far smaller than any ABI 1 backend */
  return &b;
}

#elif defined(TESTMOD_UNRESOLVED)
/* Defined nowhere: with -z now the module cannot be loaded at all. */
extern int vmsnap_test_symbol_defined_nowhere (void);
static vmsnap_backend b = {
  .name = "unresolved", .version = "1.0",
  .probe = t_probe, .create = t_create, .revert = t_revert, .delete = t_delete,
};
VMSNAP_BACKEND_EXPORT const vmsnap_backend *vmsnap_backend_entry (void);
const vmsnap_backend *
vmsnap_backend_entry (void)
{
  b.abi_version = VMSNAP_BACKEND_ABI_VERSION;
  b.struct_size = sizeof b + vmsnap_test_symbol_defined_nowhere ();
  return &b;
}

#elif defined(TESTMOD_NOENTRY)
/* Exports no entry symbol at all. */
VMSNAP_BACKEND_EXPORT int vmsnap_not_the_entry (void);
int
vmsnap_not_the_entry (void)
{
  return t_probe (NULL, NULL, NULL, NULL);
}
#endif
