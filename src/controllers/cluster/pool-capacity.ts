// Pure: how much a storage pool can still be promised. Every disk placed in a pool counts with
// its full provisioned size, sparse or not (a sparse disk may fill up any time); the admin's
// overcommit ratio says how far the promises may go beyond the pool's capacity.
import { parseQuantity } from "../../api/quantity.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { formatBytes } from "../disk-limits.ts";
import type { StoragePoolFacts } from "../node-facts.ts";

/** STORAGE_OVERCOMMIT (chart value controller.storageOvercommit): a ratio ≥ 0; default 1. */
export function storageOvercommitFromEnv(value: string | undefined): number {
  if (value === undefined || value.trim() === "") return 1;
  const ratio = Number(value);
  if (!Number.isFinite(ratio) || ratio <= 0)
    throw new Error(`STORAGE_OVERCOMMIT: "${value}" is not a positive number such as 1 or 1.5`);
  return ratio;
}

/** Where a placed disk's volume lives. */
export interface DiskLocation {
  node: string;
  pool: string;
}

/** Bytes a disk is promised in its pool: the larger of what it asks and what its volume has. */
export function promisedBytes(disk: VMDisk): number {
  return Math.max(parseQuantity(disk.spec.provisionedSize), disk.status?.provisionedSize ?? 0);
}

/**
 * Bytes promised in POOL on NODE by DISKS (every node's, for a shared pool: one storage for all),
 * DISK itself left out. LOCATE says where a disk was placed (undefined: not placed).
 */
export function provisionedInPool(
  disks: readonly VMDisk[],
  where: DiskLocation & { shared: boolean },
  locate: (d: VMDisk) => DiskLocation | undefined,
  except?: VMDisk,
): number {
  let sum = 0;
  for (const d of disks) {
    if (
      except &&
      d.metadata.namespace === except.metadata.namespace &&
      d.metadata.name === except.metadata.name
    )
      continue;
    const at = locate(d);
    if (at && at.pool === where.pool && (where.shared || at.node === where.node)) sum += promisedBytes(d);
  }
  return sum;
}

export interface PoolRoom {
  /** Bytes still promisable: capacity × overcommit − provisioned (may be negative). */
  room: number;
  /** Why the disk does not fit, naming the pool, its capacity and what is provisioned. */
  refusal?: string;
}

/** Whether NEED more bytes fit in the pool (preallocated disks also need the free space now). */
export function poolRoom(
  pool: { name: string; node: string; facts: StoragePoolFacts },
  provisioned: number,
  need: { bytes: number; preallocated: boolean },
  overcommit: number,
): PoolRoom {
  const promisable = Math.floor(pool.facts.capacityBytes * overcommit);
  const room = promisable - provisioned;
  const where = `pool ${pool.name} on node ${pool.node}`;
  if (need.bytes > room)
    return {
      room,
      refusal:
        `${where} has ${formatBytes(pool.facts.capacityBytes)} capacity` +
        (overcommit === 1 ? "" : ` × overcommit ${overcommit} = ${formatBytes(promisable)}`) +
        `, ${formatBytes(provisioned)} already provisioned; the disk needs ${formatBytes(need.bytes)}`,
    };
  if (need.preallocated && pool.facts.availableBytes < need.bytes)
    return {
      room,
      refusal: `${where} has ${formatBytes(pool.facts.availableBytes)} free; the preallocated disk needs ${formatBytes(need.bytes)}`,
    };
  return { room };
}
