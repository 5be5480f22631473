/* libvirt, loaded when first needed: see virt.h. */
#include <config.h>

#include <dlfcn.h>

#include <vmsnap/vmsnap.h>

#define VMSNAP_VIRT_IMPL
#include "virt.h"

static vmsnap_virt_api api;
static gpointer handle;         /* set (atomically) once api is filled */
static char *load_error;        /* why the one attempt failed */
static GMutex load_lock;

gboolean
vmsnap_virt_load (GError **err)
{
  gboolean ok;

  g_mutex_lock (&load_lock);
  if (handle == NULL && load_error == NULL) {
    void *h = dlopen (VMSNAP_LIBVIRT_SONAME, RTLD_NOW | RTLD_LOCAL);
    vmsnap_virt_api a = { 0 };

    if (h == NULL) {
      const char *e = dlerror ();
      load_error = g_strdup_printf ("cannot load libvirt (%s): %s; install "
                                    "the libvirt client library (Debian: "
                                    "libvirt0) to use libvirt domains, or "
                                    "give vmsnap a domain XML file",
                                    VMSNAP_LIBVIRT_SONAME,
                                    e ? e : "unknown error");
    }
#define VMSNAP_VIRT_RESOLVE(f) \
    if (h && load_error == NULL) { \
      a.f = (__typeof__ (a.f)) dlsym (h, #f); \
      if (a.f == NULL) \
        load_error = g_strdup_printf ("libvirt (%s) has no function %s: it " \
                                      "is older than vmsnap needs (%s)", \
                                      VMSNAP_LIBVIRT_SONAME, #f, \
                                      "libvirt >= 7.0"); \
    }
    VMSNAP_VIRT_FUNCS (VMSNAP_VIRT_RESOLVE)
#undef VMSNAP_VIRT_RESOLVE
    if (load_error == NULL) {
      api = a;
      g_atomic_pointer_set (&handle, h);
    } else if (h) {
      dlclose (h);
    }
  }
  ok = handle != NULL;
  if (!ok)
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_UNSUPPORTED, "%s", load_error);
  g_mutex_unlock (&load_lock);
  return ok;
}

gboolean
vmsnap_virt_loaded (void)
{
  return g_atomic_pointer_get (&handle) != NULL;
}

const vmsnap_virt_api *
vmsnap_virt (void)
{
  if (G_UNLIKELY (!vmsnap_virt_loaded ()))
    g_error ("libvmsnap called libvirt before loading it (a bug in "
             "libvmsnap): %s", load_error ? load_error : "never loaded");
  return &api;
}
