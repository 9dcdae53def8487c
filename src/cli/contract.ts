// The names the plugin shares with the operator (API group, annotations, labels), as plain
// constants. src/api holds them too, beside the schemas built with TypeBox; importing those
// modules costs a write about 150 ms of its 500 ms budget, so the plugin keeps this copy and
// test/unit/plugin-contract.test.ts proves it equal to src/api's.

export const GROUP = "vm.libvirt-operator.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export const RUN_STRATEGIES = ["Always", "RerunOnFailure", "Once", "Manual", "Halted"] as const;
export const DISK_BUSES = ["virtio", "scsi", "sata", "ide"] as const;

export const START_ANNOTATION = `${GROUP}/start-requested-at`;
export const STOP_ANNOTATION = `${GROUP}/stop-requested-at`;
export const RESTART_ANNOTATION = `${GROUP}/restart-requested-at`;
export const FROZEN_ANNOTATION = `${GROUP}/frozen`;
export const FSFREEZE_ANNOTATION = `${GROUP}/fsfreeze-requested-at`;
export const FSTHAW_ANNOTATION = `${GROUP}/fsthaw-requested-at`;
export const REFRESH_ANNOTATION = `${GROUP}/refresh-requested-at`;

/** Label naming the VM of a VMSnapshot (set by the controller). */
export const VM_NAME_LABEL = `${GROUP}/vm`;
