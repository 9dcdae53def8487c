// The node's storage pools: the agent's default directory pool is created and started when
// missing; every active pool is published (type, shared, sizes) for placement.

import { type LibvirtClient, StoragePoolState, unlessNotFound } from "../../hypervisor/libvirt/index.ts";
import { dirPoolXml, parsePoolXml } from "../../hypervisor/storage/volume.ts";
import type { Logger } from "../../runtime/logging.ts";
import type { StoragePoolFacts } from "../node-facts.ts";

const GIB = 2 ** 30;
/** How far past the next whole GiB free space must grow before the Node says so (no flapping at the boundary). */
const STEADY_MARGIN = 256 * 2 ** 20;

export interface DefaultPool {
  name: string;
  path: string;
}

/** Defines, builds (creates the directory), starts and autostarts the default pool as needed. */
export async function ensureDefaultPool(
  libvirt: LibvirtClient,
  pool: DefaultPool,
  log: Logger,
): Promise<void> {
  let ref = await unlessNotFound(libvirt.lookupStoragePool(pool.name));
  if (!ref) {
    ref = await libvirt.defineStoragePool(dirPoolXml(pool.name, pool.path));
    await libvirt.buildStoragePool(ref);
    await libvirt.setStoragePoolAutostart(ref, true);
    log.info({ pool: pool.name, path: pool.path }, "default storage pool defined");
  }
  const info = await libvirt.storagePoolInfo(ref);
  if (info.state !== StoragePoolState.Running) {
    await libvirt.startStoragePool(ref);
    log.info({ pool: pool.name }, "storage pool started");
  }
}

/** Active pools with their exact sizes (the agent's pool metrics; see roundedForNode). */
export async function readStoragePools(libvirt: LibvirtClient): Promise<Record<string, StoragePoolFacts>> {
  const pools: Record<string, StoragePoolFacts> = {};
  for (const ref of await libvirt.listStoragePools()) {
    const info = await libvirt.storagePoolInfo(ref);
    if (info.state !== StoragePoolState.Running) continue;
    const { type, shared } = parsePoolXml(await libvirt.storagePoolXml(ref));
    pools[ref.name] = { type, shared, capacityBytes: info.capacity, availableBytes: info.available };
  }
  return pools;
}

/**
 * Pools as the Node annotation publishes them: capacity exact (it seldom changes, and placement
 * counts what disks are promised against it, small pools included), free space rounded down to
 * whole GiB (no Node write for every guest write). A pool's free space that has not fallen below
 * what was PUBLISHED, nor grown 256 MiB past the GiB above it, keeps the published figure: free
 * space wavering around a GiB boundary (guests writing, files freed) would otherwise write the
 * Node each time. The figure is never more than there is, and at most 1.25 GiB less.
 */
export function roundedForNode(
  pools: Record<string, StoragePoolFacts>,
  published: Record<string, StoragePoolFacts> = {},
): Record<string, StoragePoolFacts> {
  return Object.fromEntries(
    Object.entries(pools).map(([name, p]) => {
      const before = published[name]?.availableBytes;
      const kept =
        before !== undefined && p.availableBytes >= before && p.availableBytes < before + GIB + STEADY_MARGIN;
      return [name, { ...p, availableBytes: kept ? before : Math.floor(p.availableBytes / GIB) * GIB }];
    }),
  );
}
