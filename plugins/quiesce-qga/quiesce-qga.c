/* quiesce-qga: freeze the guest's file systems through the QEMU guest
 * agent (libvirt's virDomainFSFreeze/virDomainFSThaw) around the capture of
 * a create, when vmsnap.quiesce is "on" or "best-effort" (vmsnap create
 * --quiesce[=SECONDS|best-effort]).
 *
 * The agent gets vmsnap.quiesce-timeout seconds to answer
 * (virDomainAgentSetResponseTimeout); no agent, no channel or no answer in
 * time is an error that aborts the create before anything changed ("on"),
 * or a warning and a plain pause ("best-effort").  Thaw is idempotent; the
 * core calls it after the capture, on every error path after a freeze, and
 * from `vmsnap recover` after a crash between the two.
 */
#include <config.h>

#include <dlfcn.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <vmsnap/plugin.h>

/* libvirt's functions, taken from the copy the core loaded for this
 * libvirt domain (libvmsnap dlopens libvirt for libvirt domains only, and
 * this plugin is loaded for every create: linking libvirt here would load
 * it for domain XML files too).  RTLD_NOLOAD: never loads it itself. */
typedef struct {
  __typeof__ (virGetLastErrorMessage) *last_error;
  __typeof__ (virDomainAgentSetResponseTimeout) *set_timeout;
  __typeof__ (virDomainFSFreeze) *freeze;
  __typeof__ (virDomainFSThaw) *thaw;
} lv_api;

static gboolean
lv_get (lv_api *a, const char *domain, GError **err)
{
  void *h = dlopen (VMSNAP_LIBVIRT_SONAME, RTLD_NOW | RTLD_NOLOAD);

  if (h) {
    a->last_error = (__typeof__ (a->last_error)) dlsym (h, "virGetLastErrorMessage");
    a->set_timeout = (__typeof__ (a->set_timeout)) dlsym (h, "virDomainAgentSetResponseTimeout");
    a->freeze = (__typeof__ (a->freeze)) dlsym (h, "virDomainFSFreeze");
    a->thaw = (__typeof__ (a->thaw)) dlsym (h, "virDomainFSThaw");
    /* The core's reference keeps the library and these functions. */
    dlclose (h);
  }
  if (h == NULL || !a->last_error || !a->set_timeout || !a->freeze || !a->thaw) {
    g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                 "domain %s: quiesce-qga: libvirt (%s) is not loaded in this "
                 "process or lacks the guest-agent calls (a bug, or a libvirt "
                 "older than 5.10)", domain, VMSNAP_LIBVIRT_SONAME);
    return FALSE;
  }
  return TRUE;
}

static const char *
lv_msg (const lv_api *a)
{
  const char *m = a->last_error ();
  return m ? m : "unknown libvirt error";
}

static int
quiesce_hook (const vmsnap_hook_event *ev, GError **err)
{
  const char *mode = vmsnap_option_get (ev->config, "vmsnap.quiesce");
  gint64 timeout = vmsnap_option_get_int (ev->config, "vmsnap.quiesce-timeout");
  gboolean best = g_strcmp0 (mode, "best-effort") == 0;
  virDomainPtr dom = ev->libvirt_domain;
  lv_api lv = { 0 };
  int n;

  if (strcmp (ev->operation, "create") != 0)
    return 0;
  /* The core calls THAW only after a FREEZE it journaled, also from
   * `vmsnap recover`, where vmsnap.quiesce is whatever that run says. */
  if ((mode == NULL || !strcmp (mode, "off")) && ev->phase != VMSNAP_HOOK_THAW)
    return 0;
  switch (ev->phase) {
  case VMSNAP_HOOK_BEFORE:
    if (dom == NULL && !best) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_USAGE,
                   "--quiesce: %s is a domain XML file; quiescing needs a "
                   "running libvirt domain with a guest agent (drop --quiesce)",
                   ev->domain);
      return -1;
    }
    return 0;
  case VMSNAP_HOOK_FREEZE:
    if (dom == NULL)
      return 0;
    if (!lv_get (&lv, ev->domain, err))
      return -1;
    if (lv.set_timeout (dom, (int) timeout, 0) < 0
        || (n = lv.freeze (dom, NULL, 0, 0)) < 0) {
      g_autofree char *why = g_strdup (lv_msg (&lv));
      /* A partial freeze: thaw what froze (harmless when nothing did). */
      lv.thaw (dom, NULL, 0, 0);
      if (best) {
        g_ptr_array_add (ev->messages, g_strdup_printf (
          "warning: domain %s: the guest agent did not freeze the file systems "
          "(%s); --quiesce=best-effort: the snapshot is taken in a plain pause "
          "(crash-consistent)", ev->domain, why));
        return 0;
      }
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: cannot quiesce the guest's file systems within "
                   "%" G_GINT64_FORMAT " s: %s; install and start "
                   "qemu-guest-agent in the guest and give the domain an "
                   "org.qemu.guest_agent.0 channel, or use --quiesce=best-effort "
                   "(a plain pause)", ev->domain, timeout, why);
      return -1;
    }
    g_ptr_array_add (ev->messages, g_strdup_printf (
      "quiesced: the guest agent froze %d file system%s", n, n == 1 ? "" : "s"));
    return 0;
  case VMSNAP_HOOK_THAW:
    if (dom == NULL)
      return 0;
    if (!lv_get (&lv, ev->domain, err))
      return -1;
    lv.set_timeout (dom, (int) timeout, 0);
    if (lv.thaw (dom, NULL, 0, 0) < 0) {
      g_set_error (err, VMSNAP_ERROR, VMSNAP_ERR_FAILED,
                   "domain %s: thawing the guest's file systems failed: %s; "
                   "thaw them by hand (virsh domfsthaw %s)", ev->domain, lv_msg (&lv),
                   ev->domain);
      return -1;
    }
    return 0;
  case VMSNAP_HOOK_AFTER:
    return 0;
  }
  return 0;
}

static vmsnap_plugin quiesce_qga = {
  .name = "quiesce-qga",
  .version = PACKAGE_VERSION,
  .description = "guest-agent file-system freeze/thaw around a create (--quiesce)",
  .hook = quiesce_hook,
};

VMSNAP_REGISTER_PLUGIN (quiesce_qga)
