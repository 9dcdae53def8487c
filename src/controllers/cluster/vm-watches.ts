// What the cluster VM reconciler (vm-reconciler.ts) reacts to.
import type { KubernetesObject, V1Lease, V1Namespace, V1Node } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { VMTemplate } from "../../api/vmtemplate.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { WorkQueue } from "../../runtime/workqueue.ts";
import { heartbeatRevivals } from "../node-facts.ts";
import { CLUSTER_DISK_VIEW, CLUSTER_VM_VIEW, VM_IDENTITY_VIEW } from "../watch-views.ts";
import { AGENT_REPORT_GRACE_MS, type ClusterVmReconciler } from "./vm-reconciler.ts";

type Vm = VirtualMachine & KubernetesObject;

/**
 * What VM placement reacts to: every VM; disks (a VM not placed yet may now know the node
 * its disks are on); nodes and agent heartbeats (room, or a node, for VMs waiting for one);
 * a placed VM's agent that has not reported in time.
 */
export function watchClusterVms(
  queue: WorkQueue,
  reconciler: ClusterVmReconciler,
  sources: {
    vms: Watchable<Vm>;
    disks: Watchable<VMDisk & KubernetesObject>;
    nodes: Watchable<V1Node>;
    leases: Watchable<V1Lease>;
    namespaces: Watchable<V1Namespace>;
    snapshots?: Watchable<VMSnapshot & KubernetesObject>;
    templates?: Watchable<VMTemplate & KubernetesObject>;
  },
): void {
  watchOwn(sources.vms, queue, undefined, CLUSTER_VM_VIEW, (vm, verb) => reconciler.ownEcho(vm, verb));
  // A VM made from a template waits for it (a template made from a VM: until it took the VM).
  if (sources.templates) watchRelated(sources.templates, queue, (tpl) => reconciler.madeFrom(tpl));
  // A clone waits for its snapshot to be taken.
  if (sources.snapshots) watchRelated(sources.snapshots, queue, (snap) => reconciler.clonesOf(snap));
  // A VM gone or changed may free the MAC or UUID another waits for.
  watchRelated(sources.vms, queue, () => reconciler.waitingForIdentity(), VM_IDENTITY_VIEW);
  // A VM gone or stopped leaves room on its node for those waiting for one.
  reconciler.onRoomFreed(() => {
    for (const key of [...reconciler.unplacedKeys(), ...reconciler.waitingForRoom()]) queue.add(key);
  });
  // An admin changing what a namespace may use: its VMs are judged again.
  watchRelated(sources.namespaces, queue, (ns) => reconciler.keysIn(ns.metadata?.name ?? ""));
  watchRelated(sources.disks, queue, (disk) => reconciler.unplacedUsersOf(disk), CLUSTER_DISK_VIEW);
  watchRelated(sources.nodes, queue, () => reconciler.unplacedKeys());
  // Placed VMs their agent has not reported on in time say so (only those: no requeue of every VM).
  setInterval(() => {
    for (const key of reconciler.overdueForAgent()) queue.add(key);
  }, AGENT_REPORT_GRACE_MS / 3).unref();
  const revived = heartbeatRevivals();
  watchRelated(sources.leases, queue, (lease, verb) =>
    revived(lease, verb) ? reconciler.unplacedKeys() : [],
  );
}
