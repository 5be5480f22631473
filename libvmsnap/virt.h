/* libvirt, loaded when first needed (issue 17 item 4, start-up).
 *
 * libvirt and the ~45 libraries it pulls in (GnuTLS, curl, libssh,
 * Kerberos, SASL...) cost about 15 ms of dynamic linking per process,
 * more than a whole `qemu-img create`.  A domain given as an XML file
 * never talks to libvirt, so libvmsnap does not link it: the first
 * libvirt connection dlopens it (vmsnap_virt_load), and every libvirt
 * call in libvmsnap goes through the table below.  Files of libvmsnap
 * include this header instead of <libvirt/libvirt.h>; the call sites
 * keep libvirt's own names (each is a macro for the table's entry).
 *
 * Backends and plugins that call libvirt themselves (rbd, quiesce-qga)
 * link it as before: they are loaded only when a disk or the config
 * needs them, and they share the one copy of libvirt in the process. */
#ifndef VMSNAP_VIRT_H
#define VMSNAP_VIRT_H

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define VMSNAP_VIRT_FUNCS(X) \
  X (virConnectClose) \
  X (virConnectDomainEventDeregisterAny) \
  X (virConnectDomainEventRegisterAny) \
  X (virConnectGetURI) \
  X (virConnectOpen) \
  X (virDomainBlockCommit) \
  X (virDomainBlockJobAbort) \
  X (virDomainBlockPull) \
  X (virDomainBlockRebase) \
  X (virDomainCreateWithFlags) \
  X (virDomainDefineXML) \
  X (virDomainDestroy) \
  X (virDomainFree) \
  X (virDomainGetBlockJobInfo) \
  X (virDomainGetConnect) \
  X (virDomainGetState) \
  X (virDomainGetXMLDesc) \
  X (virDomainIsActive) \
  X (virDomainIsPersistent) \
  X (virDomainLookupByName) \
  X (virDomainLookupByUUIDString) \
  X (virDomainRestoreFlags) \
  X (virDomainResume) \
  X (virDomainRevertToSnapshot) \
  X (virDomainSnapshotCreateXML) \
  X (virDomainSnapshotDelete) \
  X (virDomainSnapshotFree) \
  X (virDomainSnapshotGetXMLDesc) \
  X (virDomainSnapshotLookupByName) \
  X (virDomainSuspend) \
  X (virEventAddTimeout) \
  X (virEventRegisterDefaultImpl) \
  X (virEventRemoveTimeout) \
  X (virEventRunDefaultImpl) \
  X (virGetLastErrorMessage) \
  X (virSecretFree) \
  X (virSecretGetValue) \
  X (virSecretLookupByUUIDString) \
  X (virSecretLookupByUsage) \
  X (virSetErrorFunc) \
  X (virStoragePoolFree) \
  X (virStoragePoolLookupByName) \
  X (virStorageVolFree) \
  X (virStorageVolGetInfo) \
  X (virStorageVolGetPath) \
  X (virStorageVolLookupByName)

typedef struct {
#define VMSNAP_VIRT_FIELD(f) __typeof__ (f) *f;
  VMSNAP_VIRT_FUNCS (VMSNAP_VIRT_FIELD)
#undef VMSNAP_VIRT_FIELD
} vmsnap_virt_api;

/* Load libvirt (once per process; thread-safe).  FALSE with ERR naming
 * the library and dlerror() when it cannot be loaded or lacks a
 * function. */
gboolean vmsnap_virt_load (GError **err);
/* Has it been loaded (by vmsnap_virt_load)? */
gboolean vmsnap_virt_loaded (void);
/* The table.  Only valid after vmsnap_virt_load succeeded: every libvirt
 * object libvmsnap holds comes from a connection opened after it.  A
 * call before that is a bug in libvmsnap and aborts with a message. */
const vmsnap_virt_api *vmsnap_virt (void);

/* libvirt's names, bound to the table from here on (not in virt.c,
 * which fills the table). */
#ifndef VMSNAP_VIRT_IMPL
#define virConnectClose (vmsnap_virt ()->virConnectClose)
#define virConnectDomainEventDeregisterAny (vmsnap_virt ()->virConnectDomainEventDeregisterAny)
#define virConnectDomainEventRegisterAny (vmsnap_virt ()->virConnectDomainEventRegisterAny)
#define virConnectGetURI (vmsnap_virt ()->virConnectGetURI)
#define virConnectOpen (vmsnap_virt ()->virConnectOpen)
#define virDomainBlockCommit (vmsnap_virt ()->virDomainBlockCommit)
#define virDomainBlockJobAbort (vmsnap_virt ()->virDomainBlockJobAbort)
#define virDomainBlockPull (vmsnap_virt ()->virDomainBlockPull)
#define virDomainBlockRebase (vmsnap_virt ()->virDomainBlockRebase)
#define virDomainCreateWithFlags (vmsnap_virt ()->virDomainCreateWithFlags)
#define virDomainDefineXML (vmsnap_virt ()->virDomainDefineXML)
#define virDomainDestroy (vmsnap_virt ()->virDomainDestroy)
#define virDomainFree (vmsnap_virt ()->virDomainFree)
#define virDomainGetBlockJobInfo (vmsnap_virt ()->virDomainGetBlockJobInfo)
#define virDomainGetConnect (vmsnap_virt ()->virDomainGetConnect)
#define virDomainGetState (vmsnap_virt ()->virDomainGetState)
#define virDomainGetXMLDesc (vmsnap_virt ()->virDomainGetXMLDesc)
#define virDomainIsActive (vmsnap_virt ()->virDomainIsActive)
#define virDomainIsPersistent (vmsnap_virt ()->virDomainIsPersistent)
#define virDomainLookupByName (vmsnap_virt ()->virDomainLookupByName)
#define virDomainLookupByUUIDString (vmsnap_virt ()->virDomainLookupByUUIDString)
#define virDomainRestoreFlags (vmsnap_virt ()->virDomainRestoreFlags)
#define virDomainResume (vmsnap_virt ()->virDomainResume)
#define virDomainRevertToSnapshot (vmsnap_virt ()->virDomainRevertToSnapshot)
#define virDomainSnapshotCreateXML (vmsnap_virt ()->virDomainSnapshotCreateXML)
#define virDomainSnapshotDelete (vmsnap_virt ()->virDomainSnapshotDelete)
#define virDomainSnapshotFree (vmsnap_virt ()->virDomainSnapshotFree)
#define virDomainSnapshotGetXMLDesc (vmsnap_virt ()->virDomainSnapshotGetXMLDesc)
#define virDomainSnapshotLookupByName (vmsnap_virt ()->virDomainSnapshotLookupByName)
#define virDomainSuspend (vmsnap_virt ()->virDomainSuspend)
#define virEventAddTimeout (vmsnap_virt ()->virEventAddTimeout)
#define virEventRegisterDefaultImpl (vmsnap_virt ()->virEventRegisterDefaultImpl)
#define virEventRemoveTimeout (vmsnap_virt ()->virEventRemoveTimeout)
#define virEventRunDefaultImpl (vmsnap_virt ()->virEventRunDefaultImpl)
#define virGetLastErrorMessage (vmsnap_virt ()->virGetLastErrorMessage)
#define virSecretFree (vmsnap_virt ()->virSecretFree)
#define virSecretGetValue (vmsnap_virt ()->virSecretGetValue)
#define virSecretLookupByUUIDString (vmsnap_virt ()->virSecretLookupByUUIDString)
#define virSecretLookupByUsage (vmsnap_virt ()->virSecretLookupByUsage)
#define virSetErrorFunc (vmsnap_virt ()->virSetErrorFunc)
#define virStoragePoolFree (vmsnap_virt ()->virStoragePoolFree)
#define virStoragePoolLookupByName (vmsnap_virt ()->virStoragePoolLookupByName)
#define virStorageVolFree (vmsnap_virt ()->virStorageVolFree)
#define virStorageVolGetInfo (vmsnap_virt ()->virStorageVolGetInfo)
#define virStorageVolGetPath (vmsnap_virt ()->virStorageVolGetPath)
#define virStorageVolLookupByName (vmsnap_virt ()->virStorageVolLookupByName)
#endif

#endif
