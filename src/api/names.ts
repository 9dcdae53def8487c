// What the running processes and `kubectl vm` need to know of each kind — its names and the
// labels, annotations and finalizers it is known by — apart from its schema (virtualmachine.ts,
// …): the schemas load TypeBox and build every kind's whole schema, which only the CRD generator
// and the validators need; loading them would cost each controller and node agent ~4 MiB of
// memory and the plugin ~150 ms of each command. This module imports nothing but types.
import type { KindName } from "./kind.ts";

// The API group every kind belongs to.
export const GROUP = "vm.libvirt-operator.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Prefix of every label, annotation and finalizer the operator owns. */
export const PREFIX = `${GROUP}/`;
/**
 * Longest name of an object whose name reaches libvirt and the node's file system as
 * <namespace>_<name> plus a suffix the node adds (".qcow2", "-console.log", ".xml.new"):
 * 255 bytes per file name − 63 (longest namespace) − 1 ("_") − 15 (suffixes).
 */
export const HOST_NAME_MAX = 176;

// VirtualMachine
export const VirtualMachineKind: KindName = {
  kind: "VirtualMachine",
  plural: "virtualmachines",
  singular: "virtualmachine",
  shortNames: ["vm", "vms"],
};
export const RUN_STRATEGIES = ["Always", "RerunOnFailure", "Once", "Manual", "Halted"] as const;
export const DISK_BUSES = ["virtio", "scsi", "sata", "ide"] as const;
/**
 * Annotation whose every new value reboots the VM once (like `kubectl rollout restart`): the
 * current time, optionally followed by `;grace=N` (seconds before a reset; 0 resets at once).
 */
export const RESTART_ANNOTATION = "vm.libvirt-operator.io/restart-requested-at";
/** Manual VMs: a new value (the current time, RFC 3339) starts the VM once. */
export const START_ANNOTATION = "vm.libvirt-operator.io/start-requested-at";
/**
 * Manual VMs: a new value (the current time, RFC 3339) stops the VM once, gracefully. On any VM,
 * `;grace=N` after the time gives that stop its own grace period (0 forces it off at once).
 */
export const STOP_ANNOTATION = "vm.libvirt-operator.io/stop-requested-at";
/**
 * Any value: the VM is stopped and stays stopped, whatever asks it to start (run strategy, start
 * or restart requests), until the annotation is removed (`kubectl vm freeze` / `unfreeze`).
 */
export const FROZEN_ANNOTATION = "vm.libvirt-operator.io/frozen";
/** A new value (the current time) freezes the guest's file systems through its guest agent. */
export const FSFREEZE_ANNOTATION = "vm.libvirt-operator.io/fsfreeze-requested-at";
/** A new value (the current time) thaws them; the later of the two requests wins. */
export const FSTHAW_ANNOTATION = "vm.libvirt-operator.io/fsthaw-requested-at";
/**
 * A new value (the current time) makes the node agent look at the domain and sample its
 * statistics now; status.refreshHandled says when that is in status (`kubectl vm status --refresh`).
 */
export const REFRESH_ANNOTATION = "vm.libvirt-operator.io/refresh-requested-at";
/** Label the controller sets to the node it placed the VM on; the node agent selects on it. */
export const NODE_LABEL = "vm.libvirt-operator.io/node";
/** Finalizer held until the VM's domain is gone from its node. */
export const DOMAIN_FINALIZER = "vm.libvirt-operator.io/domain";

// VMDisk
export const VMDiskKind: KindName = {
  kind: "VMDisk",
  plural: "vmdisks",
  singular: "vmdisk",
  shortNames: ["vmdisk", "vmdisks"],
};
/** The largest disk the API server accepts (a qcow2 volume can be far larger; no pool here is). */
export const MAX_PROVISIONED_SIZE = "64Ti";
/** Labels of a base the operator made for a VMTemplate: which template, generation and disk. */
export const TEMPLATE_LABEL = `${PREFIX}template`;
export const TEMPLATE_GENERATION_LABEL = `${PREFIX}template-generation`;
export const TEMPLATE_DISK_LABEL = `${PREFIX}template-disk`;
/** Held by the node agent until the volume is gone from the pool (wiped first when asked). */
export const VOLUME_FINALIZER = "vm.libvirt-operator.io/volume";
/** Held by the controller while a VirtualMachine uses the disk (like kubernetes.io/pvc-protection). */
export const DISK_PROTECTION_FINALIZER = "vm.libvirt-operator.io/disk-protection";

// VMSnapshot and VMRestore
export const VMSnapshotKind: KindName = {
  kind: "VMSnapshot",
  plural: "vmsnapshots",
  singular: "vmsnapshot",
  shortNames: ["vmsnap", "vmsnaps"],
};
export const VMRestoreKind: KindName = {
  kind: "VMRestore",
  plural: "vmrestores",
  singular: "vmrestore",
  shortNames: ["vmrestore", "vmrestores"],
};
/** Default of spec.failureDeadline. */
export const DEFAULT_SNAPSHOT_DEADLINE = "5m";
/** A duration as users write it for deadlines: 90s, 5m, 1h30m. */
export const DURATION_PATTERN = "^([0-9]{1,4}h)?([0-9]{1,5}m)?([0-9]{1,6}s)?$";
/** Finalizer held until what the snapshot stores on its node is removed. */
export const SNAPSHOT_FINALIZER = "vm.libvirt-operator.io/snapshot";
/** Label naming the VM of a VMSnapshot or VMRestore (set by the controller; selects them). */
export const VM_NAME_LABEL = "vm.libvirt-operator.io/vm";

// VMTemplate
export const VMTemplateKind: KindName = {
  kind: "VMTemplate",
  plural: "vmtemplates",
  singular: "vmtemplate",
  shortNames: ["vmtpl", "vmtpls"],
};
/** Held while VMs made from the template exist; released once they are gone and the bases go. */
export const TEMPLATE_FINALIZER = "vm.libvirt-operator.io/template-protection";
