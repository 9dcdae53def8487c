// Where a VMDisk's volume is on this node, as libvirt says: the pool it names (or the node's
// default pool) and the volume name derived from the disk's own namespace and name. Never
// status.path — a path any other writer set would reach the guest — so a VM can only ever get
// a volume of its own namespace.
import type { VMDisk } from "../../api/vmdisk.ts";
import type { LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { unlessNotFound } from "../../hypervisor/libvirt/index.ts";
import { UnsafeNameError, volumeNameOf } from "../../hypervisor/storage/volume.ts";

/** Paths by VMDisk name, for the disks of NAMESPACE that exist in libvirt now. */
export async function volumePathsOf(
  libvirt: LibvirtClient,
  namespace: string,
  disks: ReadonlyArray<VMDisk>,
  defaultPool: string,
): Promise<Map<string, string>> {
  const paths = new Map<string, string>();
  for (const disk of disks) {
    if (disk.metadata.namespace !== namespace) continue;
    let volName: string;
    try {
      volName = volumeNameOf(namespace, disk.metadata.name, disk.spec.format ?? "qcow2");
    } catch (err) {
      if (err instanceof UnsafeNameError) continue; // never created: its disk says why
      throw err;
    }
    const pool = await unlessNotFound(libvirt.lookupStoragePool(disk.spec.storagePool ?? defaultPool));
    if (!pool) continue;
    const vol = await unlessNotFound(libvirt.lookupVolume(pool, volName));
    if (!vol) continue;
    const path = await unlessNotFound(libvirt.volumePath(vol));
    if (path) paths.set(disk.metadata.name, path);
  }
  return paths;
}
