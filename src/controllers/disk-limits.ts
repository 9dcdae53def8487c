// Pure: whether a namespace may have a VMDisk as it asks — a storage pool it may use, and room
// in its provisioned-bytes budget. The controller judges before placing a disk; the node agent
// judges again before creating or growing its volume (a forged placement gets nothing).

import { NODE_LABEL } from "../api/names.ts";
import { parseQuantity } from "../api/quantity.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMDisk } from "../api/vmdisk.ts";
import type { VMSnapshot } from "../api/vmsnapshot.ts";
import { Reason } from "./event-reasons.ts";
import { poolRefusal, type Refusal, type TenantPolicy } from "./tenant-policy.ts";

const UNITS: Array<[string, number]> = [
  ["Ti", 2 ** 40],
  ["Gi", 2 ** 30],
  ["Mi", 2 ** 20],
  ["Ki", 2 ** 10],
];

/** Bytes as people read them: 2Gi, 1.5Gi, 300Mi, 123 bytes. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of UNITS) {
    if (bytes < size) continue;
    const value = bytes / size;
    return `${Number.isInteger(value) ? value : value.toFixed(1)}${unit}`;
  }
  return `${bytes} bytes`;
}

/** The controller placed the disk on a node (label first, then status): its volume exists or is coming. */
export function isPlaced(disk: VMDisk): boolean {
  return Boolean(disk.status?.nodeName || disk.metadata.labels?.[NODE_LABEL]);
}

/**
 * Bytes DISK holds in its namespace's budget: the size its volume has (status.provisionedSize),
 * or, placed but not yet created, the size it was placed with; nothing while it waits unplaced.
 * A growth not granted yet holds nothing more. What snapshots store counts apart
 * (snapshotBytesOf); template bases will add theirs (see README, Storage limits).
 */
export function heldBytes(disk: VMDisk, placed: (d: VMDisk) => boolean = isPlaced): number {
  if (!placed(disk)) return 0;
  return disk.status?.provisionedSize ?? parseQuantity(disk.spec.provisionedSize);
}

/** Bytes held by the disks of NAMESPACE_DISKS other than DISK. */
export function bytesHeldByOthers(
  disk: VMDisk,
  namespaceDisks: readonly VMDisk[],
  placed: (d: VMDisk) => boolean = isPlaced,
): number {
  return namespaceDisks
    .filter((d) => d.metadata.name !== disk.metadata.name)
    .reduce((sum, d) => sum + heldBytes(d, placed), 0);
}

/** Bytes the namespace's snapshots stored (those taken; a snapshot being taken is estimated by its judge). */
export function snapshotBytesOf(snapshots: readonly VMSnapshot[]): number {
  return snapshots
    .filter((s) => s.status?.phase === "Succeeded" && !s.metadata.deletionTimestamp)
    .reduce((sum, s) => sum + (s.status?.storedBytes ?? 0), 0);
}

/**
 * Refusal when DISK would take its namespace over its disk byte limit: creating it, or growing
 * it past what its volume has. A disk that already holds what it asks is never refused (an
 * admin lowering the limit takes nothing away).
 */
export function budgetRefusal(
  disk: VMDisk,
  namespaceDisks: readonly VMDisk[],
  policy: TenantPolicy,
  placed: (d: VMDisk) => boolean = isPlaced,
  snapshotBytes = 0,
): Refusal | undefined {
  const limit = policy.diskBytesLimit;
  if (limit === undefined) return undefined;
  const want = parseQuantity(disk.spec.provisionedSize);
  const has = disk.status?.provisionedSize;
  if (has !== undefined && want <= has) return undefined;
  const others = bytesHeldByOthers(disk, namespaceDisks, placed) + snapshotBytes;
  if (others + want <= limit) return undefined;
  const what =
    has === undefined
      ? `creating it (${formatBytes(want)})`
      : `growing it from ${formatBytes(has)} to ${formatBytes(want)}`;
  return {
    field: "spec.provisionedSize",
    reason: Reason.DiskBytesLimitExceeded,
    message:
      `spec.provisionedSize: ${what} would bring the namespace's provisioned disk bytes to ` +
      `${formatBytes(others + want)}, over its limit of ${formatBytes(limit)} (set by ` +
      `${policy.source.diskBytesLimit}); its other VMDisks${snapshotBytes ? " and its snapshots" : ""} hold ${formatBytes(others)}. ` +
      (has === undefined
        ? "The disk waits and is created once the limit rises or other disks are deleted."
        : `The volume stays at ${formatBytes(has)} until the limit rises or other disks are deleted.`),
  };
}

/** The first reason the namespace may not have DISK as asked: its pool, then its bytes. */
export function diskRefusal(
  disk: VMDisk,
  namespaceDisks: readonly VMDisk[],
  policy: TenantPolicy,
  placed: (d: VMDisk) => boolean = isPlaced,
  snapshotBytes = 0,
): Refusal | undefined {
  return (
    poolRefusal(disk.spec.storagePool, policy) ??
    budgetRefusal(disk, namespaceDisks, policy, placed, snapshotBytes)
  );
}

/**
 * Refusal when a snapshot of VM would take its namespace over its disk byte limit, judged on
 * what it will store at most: a copy of each writable disk when one is raw or the VM boots UEFI
 * (VolumeCopy), the guest's memory when it runs (Internal always stores it; VolumeCopy when
 * asked).
 */
export function snapshotRefusal(
  vm: VirtualMachine,
  memory: boolean,
  namespaceDisks: readonly VMDisk[],
  namespaceSnapshots: readonly VMSnapshot[],
  policy: TenantPolicy,
): Refusal | undefined {
  const limit = policy.diskBytesLimit;
  if (limit === undefined) return undefined;
  const byName = new Map(namespaceDisks.map((d) => [d.metadata.name, d]));
  const writable = (vm.spec.disks ?? [])
    .map((e) => byName.get(e.diskRef.name))
    .filter((d): d is VMDisk => Boolean(d && !d.spec.readOnly && !d.spec.shareable));
  const copies = writable.some((d) => d.spec.format === "raw") || vm.spec.boot?.firmware === "uefi";
  const running = vm.status?.printableStatus === "Running" || vm.status?.printableStatus === "Paused";
  const memoryBytes =
    running && (memory || !copies) && vm.spec.memory !== undefined ? parseQuantity(vm.spec.memory) : 0;
  const estimate = memoryBytes + (copies ? writable.reduce((sum, d) => sum + heldBytes(d), 0) : 0);
  const held = namespaceDisks.reduce((sum, d) => sum + heldBytes(d), 0) + snapshotBytesOf(namespaceSnapshots);
  if (held + estimate <= limit) return undefined;
  return {
    field: "spec.vmName",
    reason: Reason.DiskBytesLimitExceeded,
    message:
      `the snapshot may store up to ${formatBytes(estimate)} (${copies ? "a copy of each disk" : "libvirt's internal snapshot"}` +
      `${memoryBytes ? " and the guest's memory" : ""}); with the ${formatBytes(held)} the namespace's disks and ` +
      `snapshots hold, that is over its limit of ${formatBytes(limit)} (set by ${policy.source.diskBytesLimit}). ` +
      "Delete snapshots or disks, or ask for a higher limit.",
  };
}
