// A throwaway directory storage pool for libvirt client tests, and its removal with every
// volume in it (whatever a failed test left).
import type { LibvirtClient, StoragePoolRef } from "../../src/hypervisor/libvirt/index.ts";
import { dirPoolXml } from "../../src/hypervisor/storage/volume.ts";

export async function createTestPool(
  client: LibvirtClient,
  name: string,
  dir: string,
): Promise<StoragePoolRef> {
  const pool = await client.defineStoragePool(dirPoolXml(name, dir));
  await client.buildStoragePool(pool);
  await client.startStoragePool(pool);
  return pool;
}

export async function removeTestPool(client: LibvirtClient, pool: StoragePoolRef): Promise<void> {
  for (const vol of await client.listVolumes(pool).catch(() => []))
    await client.deleteVolume(vol).catch(() => undefined);
  await client.destroyStoragePool(pool).catch(() => undefined);
  await client.undefineStoragePool(pool).catch(() => undefined);
}
