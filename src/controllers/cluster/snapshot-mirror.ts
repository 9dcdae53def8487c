// The VM mirrors its snapshots (seed 000): status.snapshots, written by a manager of its own
// whenever a snapshot of the VM changes. (storedData, which counts their bytes, is the node
// agent's: it knows the disks' sizes.)
import type { KubernetesObject } from "@kubernetes/client-node";
import { VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import { type AnyObject, type Kube, splitKey } from "../../runtime/kube.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { StatusWriter } from "../status-writer.ts";

type Vm = VirtualMachine & KubernetesObject;
type Snapshot = VMSnapshot & KubernetesObject;
export const SNAPSHOT_MIRROR_FIELD_MANAGER = "libvirt-operator-controller-snapshots";
export const SNAPSHOT_MIRROR_FIELDS = ["snapshots"] as const;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

/** Pure: the VM's status.snapshots from its snapshots. */
export function snapshotMirror(
  vm: VirtualMachine,
  snapshots: readonly VMSnapshot[],
): Record<string, unknown> {
  const mine = snapshots
    .filter(
      (s) =>
        s.spec.vmName === vm.metadata.name &&
        s.status?.phase === "Succeeded" &&
        s.status.vmUID === vm.metadata.uid &&
        !s.metadata.deletionTimestamp,
    )
    .sort((a, b) => (a.status?.timestamp ?? 0) - (b.status?.timestamp ?? 0));
  const summaries = mine.map((s) => ({
    name: s.metadata.name,
    ...(s.spec.displayName ? { displayName: s.spec.displayName } : {}),
    ...(s.status?.timestamp !== undefined ? { timestamp: s.status.timestamp } : {}),
    ...(s.spec.description ? { label: s.spec.description } : {}),
    isAutomatic: Boolean(s.status?.isAutomatic),
    isConsistent: Boolean(s.status?.isConsistent),
    sticky: Boolean(s.spec.sticky),
    storedBytes: s.status?.storedBytes ?? 0,
  }));
  return { snapshots: summaries };
}

export function watchSnapshotMirror(
  queue: WorkQueue,
  sources: { vms: Watchable<Vm>; snapshots: Watchable<Snapshot> },
): void {
  // A VM made anew under the same name: the old VM's snapshots are not its own.
  watchOwn(sources.vms, queue, (_vm, verb) => verb === "add");
  watchRelated(sources.snapshots, queue, (s) =>
    s.metadata?.namespace ? [`${s.metadata.namespace}/${s.spec.vmName}`] : [],
  );
}

export class SnapshotMirrorWriter {
  private readonly writer: StatusWriter;
  private readonly vms: Lister<Vm>;
  private readonly snapshots: Lister<Snapshot>;

  constructor(kube: Kube, vms: Lister<Vm>, snapshots: Lister<Snapshot>) {
    this.vms = vms;
    this.snapshots = snapshots;
    this.writer = new StatusWriter(kube, {
      kind: VirtualMachineKind,
      fieldManager: SNAPSHOT_MIRROR_FIELD_MANAGER,
      owns: SNAPSHOT_MIRROR_FIELDS,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const vm = this.vms.get(name, namespace);
    if (!vm || vm.metadata.deletionTimestamp) return undefined;
    const mirror = snapshotMirror(vm, this.snapshots.list(namespace));
    // A VM that never had a snapshot gets no write of its own for this.
    const never = vm.status?.snapshots === undefined;
    if (never && (mirror.snapshots as unknown[]).length === 0) return undefined;
    await this.writer.write(vm as AnyObject & { metadata: { name: string } }, mirror);
    return undefined;
  }
}
