// What of a VirtualMachine's or VMDisk's status each watch of the other side's objects looks
// at (runtime/watch.ts StatusView): an update that changes only the rest — statistics, the
// other side's fields and conditions — wakes no reconciler. A reconciler that starts reading
// another status field adds it here, or it is not woken when that field changes. `reads`
// lists hold the fields the reconciler reads and the ones it writes (another writer changing
// one of its fields is news to it); `ignores` lists serve reconcilers that read most of it.
import type { StatusView } from "../runtime/watch.ts";

/**
 * Cluster VM placement, its own VMs: where it placed them (nodeName, uuid, interfaces), what a
 * clone or template VM took, whether the agent reported (domainName), and what it writes
 * itself (its conditions; the standing ones and printableStatus while no agent reports).
 */
export const CLUSTER_VM_VIEW: StatusView = {
  reads: [
    "nodeName",
    "uuid",
    "interfaces",
    "clonedFrom",
    "template",
    "domainName",
    "printableStatus",
    "observedGeneration",
    "conditions/Scheduled",
    "conditions/Admitted",
    "conditions/Ready",
    "conditions/Reconciling",
    "conditions/Stalled",
  ],
};

/** What one VM holds against another's UUID and MACs (vm-identities.ts heldIdentities). */
export const VM_IDENTITY_VIEW: StatusView = { reads: ["uuid", "interfaces"] };

/** Cluster disk placement and protection, the VMs using a disk (disk-placement.ts usesDisk, placement). */
export const DISK_USERS_VIEW: StatusView = { reads: ["nodeName", "disks", "clonedFrom", "template"] };

/** Cluster snapshots waiting for their VM (snapshot-accept.ts; snapshotRefusal reads whether it runs). */
export const SNAPSHOT_VM_VIEW: StatusView = { reads: ["nodeName", "domainName", "printableStatus"] };

/** Cluster restores waiting for their VM (restore-judge.ts: the VM's node). */
export const RESTORE_VM_VIEW: StatusView = { reads: ["nodeName"] };

/**
 * Templates, the VM one is made from (template-source.ts: Stopped) and the VMs made from one
 * (template-plan.ts: what they took, where they run).
 */
export const TEMPLATE_VM_VIEW: StatusView = {
  reads: ["printableStatus", "nodeName", "domainName", "template", "clonedFrom"],
};

/** Snapshot policies: what the policy said (its own), and which snapshots clones still need. */
export const SNAPSHOT_POLICY_VM_VIEW: StatusView = {
  reads: ["snapshotPolicy", "clonedFrom", "conditions/SnapshotPolicy"],
};

/**
 * The node agent, its own VMs: all of status but the statistics (the agent's statistics
 * writer) and what only the controller's snapshot mirror and snapshot policy keep.
 */
export const NODE_VM_VIEW: StatusView = {
  ignores: ["statistics", "snapshots", "snapshotPolicy", "conditions/SnapshotPolicy"],
};

/** Either side, VMDisks: all of status but the statistics. */
export const DISK_VIEW: StatusView = { ignores: ["statistics"] };

/**
 * Cluster disk placement and protection, and cluster VM placement, VMDisks: neither reads the
 * agent's import progress or last operation (the template reconciler does: DISK_VIEW).
 */
export const CLUSTER_DISK_VIEW: StatusView = { ignores: ["statistics", "progress", "lastOperation"] };
