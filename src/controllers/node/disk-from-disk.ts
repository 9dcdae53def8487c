// A VMDisk's volume made from another VMDisk's (spec.source.disk): a full copy through libvirt
// (qemu-img convert, which flattens a linked clone), or a linked clone: a thin qcow2 volume
// whose backing file is a VMTemplate's base. libvirt reads volumes by probing their content, so
// the only backing file a source may have is the base of the linked clone it is (ours).
import type { VMDisk } from "../../api/vmdisk.ts";
import {
  type LibvirtClient,
  type StoragePoolRef,
  type StorageVolRef,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import {
  type BackingFile,
  uncopyableReason,
  type VolumeDefinition,
  type VolumeFormat,
  volumeNameOf,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import { ImageSourceError } from "./image-source.ts";

type DiskNamed = (name: string) => VMDisk | undefined;

/** Why DISK cannot be made from its source VMDisk FROM yet (it waits and looks again), or undefined. */
export function sourceDiskWait(disk: VMDisk, from: VMDisk | undefined): string | undefined {
  const source = disk.spec.source?.disk;
  if (!source) return undefined;
  if (from?.status?.phase !== "Ready" || !from.status.path || !from.status.pool)
    return `waiting for VMDisk ${source.name} (spec.source.disk) to be Ready on this node`;
  if (!source.linked) return undefined;
  // Only a base is never written by a VM: a clone of any other disk would see it change.
  if (!from.status.baseOf)
    return `VMDisk ${source.name} is not a VMTemplate's base; a linked clone needs one (status.baseOf)`;
  // Its deletion waits for its linked clones: a new one would hold it back again.
  if (from.metadata.deletionTimestamp)
    return `VMDisk ${source.name} is being deleted; no linked clone of it is made`;
  return undefined;
}

/** The VMTemplate's base DISK is a linked clone of, if it is one. */
export function linkedBaseOf(disk: VMDisk, diskNamed: DiskNamed): VMDisk | undefined {
  const source = disk.spec.source?.disk;
  if (!source?.linked) return undefined;
  const base = diskNamed(source.name);
  return base?.status?.baseOf ? base : undefined;
}

/** Format of a VMDisk's volume: the one it was created with. */
function formatOf(disk: VMDisk): VolumeFormat {
  return (disk.status?.format as VolumeFormat | undefined) ?? disk.spec.format ?? "qcow2";
}

/** DISK's volume on this node, as libvirt has it (its path is libvirt's, never status'). */
async function volumeOf(libvirt: LibvirtClient, disk: VMDisk, defaultPool: string) {
  const poolName = disk.status?.pool ?? disk.spec.storagePool ?? defaultPool;
  const pool = await unlessNotFound(libvirt.lookupStoragePool(poolName));
  const format = formatOf(disk);
  const vol =
    pool &&
    (await unlessNotFound(
      libvirt.lookupVolume(pool, volumeNameOf(disk.metadata.namespace ?? "", disk.metadata.name, format)),
    ));
  if (!vol) throw new Error(`the volume of VMDisk ${disk.metadata.name} is missing from pool ${poolName}`);
  return { vol, format, pool: poolName, path: await libvirt.volumePath(vol) };
}

/**
 * FROM's volume, checked before anything reads it: libvirt reads it in its format, and the only
 * backing file it has is the base of the linked clone FROM is.
 */
async function checkedSource(
  libvirt: LibvirtClient,
  from: VMDisk,
  diskNamed: DiskNamed,
  defaultPool: string,
) {
  const source = await volumeOf(libvirt, from, defaultPool);
  const base = linkedBaseOf(from, diskNamed);
  let ours: BackingFile | undefined;
  if (base) {
    const b = await volumeOf(libvirt, base, defaultPool);
    ours = { path: b.path, format: b.format };
  }
  const refused = uncopyableReason(await libvirt.volumeXml(source.vol), source.format, ours);
  if (refused) throw new ImageSourceError(`VMDisk ${from.metadata.name}: ${refused}`);
  return { ...source, capacity: (await libvirt.volumeInfo(source.vol)).capacity };
}

export interface FromDiskRequest {
  disk: VMDisk;
  pool: StoragePoolRef;
  /** The disk's own volume; it grows to the source's capacity when that is larger. */
  definition: VolumeDefinition;
  createFlags: number;
  diskNamed: DiskNamed;
  defaultPool: string;
  /** The source is not there yet, or not one to clone: the disk waits (said in its status). */
  waiting(message: string): Promise<void>;
  /** The clone starts: a full copy may take long (SLOW), a linked clone is there at once. */
  starting(message: string, slow: boolean): Promise<void>;
}

/** Makes the disk's volume from its source VMDisk; undefined while it waits for the source. */
export async function volumeFromDisk(
  libvirt: LibvirtClient,
  r: FromDiskRequest,
): Promise<{ vol: StorageVolRef; message: string } | undefined> {
  const name = r.disk.spec.source?.disk?.name ?? "";
  const from = r.diskNamed(name);
  const wait = sourceDiskWait(r.disk, from);
  if (wait || !from) {
    await r.waiting(wait ?? `waiting for VMDisk ${name}`);
    return undefined;
  }
  const source = await checkedSource(libvirt, from, r.diskNamed, r.defaultPool);
  const capacityBytes = Math.max(r.definition.capacityBytes, source.capacity);
  if (r.disk.spec.source?.disk?.linked) {
    await r.starting(`making a linked clone of VMDisk ${name}`, false);
    // qemu-img create records the backing file and its format: QEMU and libvirt never probe the
    // base. It takes no preallocation with a backing file: a linked clone is always sparse.
    const vol = await libvirt.createVolume(
      r.pool,
      volumeXml({
        ...r.definition,
        format: "qcow2",
        capacityBytes,
        allocationBytes: 0,
        backing: { path: source.path, format: source.format },
      }),
      0,
    );
    return { vol, message: `linked clone of VMDisk ${name}` };
  }
  await r.starting(`copying VMDisk ${name}`, true);
  const vol = await libvirt.cloneVolume(
    r.pool,
    volumeXml({ ...r.definition, capacityBytes }),
    source.vol,
    r.createFlags,
  );
  return { vol, message: `copied from VMDisk ${name}` };
}
