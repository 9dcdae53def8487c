// VMDisks and VMSnapshots indexed by what a VM's event asks about them (the VM index is
// vm-index.ts): a VM's change looks up its disks and snapshots instead of walking its namespace.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { Watchable } from "../../runtime/watch.ts";
import { indexBy, type KeyIndex } from "./key-index.ts";
import { snapshotOfDiskBeingMade } from "./snapshot-uses.ts";
import type { VmIndex } from "./vm-index.ts";

type Disk = VMDisk & KubernetesObject;
type Snapshot = VMSnapshot & KubernetesObject;

export interface DiskIndexes {
  /** "namespace/vm" of each VM a disk records as attached (status.attachedTo). */
  attachedTo: KeyIndex;
  /** The disk's volume path (status.path). */
  byPath: KeyIndex;
  /** "namespace/disk" a linked clone reads from. */
  linkedTo: KeyIndex;
  /** "namespace/snapshot" a disk is being made from. */
  beingMadeFrom: KeyIndex;
}

export function indexDisks(informer: Watchable<Disk>): DiskIndexes {
  const ns = (d: Disk) => d.metadata?.namespace ?? "";
  return {
    attachedTo: indexBy(informer, (d) => (d.status?.attachedTo ?? []).map((vm) => `${ns(d)}/${vm}`)),
    byPath: indexBy(informer, (d) => (d.status?.path ? [d.status.path] : [])),
    linkedTo: indexBy(informer, (d) =>
      d.spec.source?.disk?.linked ? [`${ns(d)}/${d.spec.source.disk.name}`] : [],
    ),
    beingMadeFrom: indexBy(informer, (d) => {
      const from = snapshotOfDiskBeingMade(d);
      return from ? [`${ns(d)}/${from}`] : [];
    }),
  };
}

export interface SnapshotIndexes {
  /** "namespace/vm" of every snapshot of the VM (spec.vmName). */
  ofVm: KeyIndex;
  /** "namespace/vm" of its snapshots not handed to a node yet (no status.timestamp). */
  pendingOfVm: KeyIndex;
}

export function indexSnapshots(informer: Watchable<Snapshot>): SnapshotIndexes {
  const vmKey = (s: Snapshot) => `${s.metadata?.namespace ?? ""}/${s.spec.vmName}`;
  return {
    ofVm: indexBy(informer, (s) => [vmKey(s)]),
    pendingOfVm: indexBy(informer, (s) => (s.status?.timestamp === undefined ? [vmKey(s)] : [])),
  };
}

/** Every index the cluster controllers look up in, each kept up with its informer. */
export interface ClusterIndexes {
  vms: VmIndex;
  disks: DiskIndexes;
  snapshots: SnapshotIndexes;
}

/** The objects of KEYS ("namespace/name") that GET still finds. */
export function objectsOf<T>(
  keys: Iterable<string>,
  get: (name: string, namespace: string) => T | undefined,
): T[] {
  return [...keys].flatMap((key) => {
    const [namespace = "", name = ""] = key.split("/", 2);
    return get(name, namespace) ?? [];
  });
}
