// What the node VM reconciler (vm-reconciler.ts) reacts to.
import type { KubernetesObject, V1Namespace } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { keyOfDomain } from "../../hypervisor/domain/from-spec.ts";
import type { LibvirtClient, LifecycleEvent } from "../../hypervisor/libvirt/index.ts";
import { keyOf } from "../../runtime/kube.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { WorkQueue } from "../../runtime/workqueue.ts";
import { namesDisk } from "../cluster/disk-placement.ts";
import { effectiveVm } from "../vm-clone.ts";
import { waitsForIdentity } from "../vm-identities.ts";
import { DISK_VIEW, NODE_VM_VIEW } from "../watch-views.ts";
import type { NodeRoom } from "./node-room.ts";
import type { NodeVmReconciler } from "./vm-reconciler.ts";

type Vm = VirtualMachine & KubernetesObject;

/**
 * What the node VM reconciler reacts to: the VMs placed on this node, the disks they use
 * (ready, grown, changed hands), their namespaces' tenant rules, and libvirt's events for
 * our domains.
 */
export function watchNodeVms(
  queue: WorkQueue,
  reconciler: NodeVmReconciler,
  vms: Watchable<Vm> & { list(namespace?: string): readonly Vm[] },
  disks: Watchable<VMDisk & KubernetesObject>,
  namespaces: Watchable<V1Namespace>,
  libvirt: LibvirtClient,
  room?: NodeRoom,
): void {
  watchOwn(vms, queue, undefined, NODE_VM_VIEW, (vm, verb) => reconciler.ownEcho(vm, verb));
  // A VM gone or changed here may free the MAC or UUID another waits for.
  const waiting = identityWaiters(vms);
  watchRelated(vms, queue, () => [...waiting], NODE_VM_VIEW);
  // An admin changing what a namespace may use: its VMs here are judged again.
  watchRelated(namespaces, queue, (ns) => vms.list(ns.metadata?.name).map((vm) => keyOf(vm)));
  watchRelated(
    disks,
    queue,
    (disk) =>
      vms
        .list(disk.metadata?.namespace)
        // A clone's or a template's VM names its disks in what it recorded, not in its own spec.
        .filter((vm) => namesDisk(effectiveVm(vm), disk.metadata?.name))
        .map((vm) => keyOf(vm)),
    DISK_VIEW,
  );
  libvirt.on("lifecycle", (e: LifecycleEvent) => {
    const key = keyOfDomain(e.domain.name);
    // What our own define or start caused: the reconcile that acted has looked since.
    if (key && !reconciler.caused.consume(e.domain.name, e.event)) queue.add(key);
  });
  // A VM refused for room tries again as soon as a guest here stops (not only at its recheck).
  room?.onFreed((waiting) => {
    for (const name of waiting) {
      const key = keyOfDomain(name);
      if (key) queue.add(key);
    }
  });
  libvirt.on("reboot", (dom: { name: string }) => {
    const key = keyOfDomain(dom.name);
    if (!key) return;
    reconciler.rebooted(key);
    queue.add(key);
  });
  // What failed while libvirt was away deserves a fresh try now, not after its backoff.
  libvirt.on("reconnected", () => {
    reconciler.caused.clear();
    for (const vm of vms.list()) queue.forget(keyOf(vm));
  });
}

/**
 * Keys of the VMs INFORMER shows waiting for a MAC or UUID another holds (the agent's Failure
 * condition), kept from its events: no walk over the node's VMs for every event.
 */
export function identityWaiters(informer: Watchable<Vm>): ReadonlySet<string> {
  const waiting = new Set<string>();
  const seen = (vm: Vm) => {
    if (waitsForIdentity(vm, "Failure")) waiting.add(keyOf(vm));
    else waiting.delete(keyOf(vm));
  };
  informer.on("add", seen);
  informer.on("update", seen);
  informer.on("delete", (vm) => waiting.delete(keyOf(vm)));
  return waiting;
}
