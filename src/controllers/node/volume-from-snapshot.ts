// A VMDisk's volume made from one disk of a snapshot (spec.source.snapshot): a copy of the
// snapshot's own copy (VolumeCopy), or the disk's state inside its qcow2 file read out by
// qemu-img (Internal: libvirt has no call that extracts an internal snapshot). The snapshot and
// its VM are untouched; a volume left half made is removed.
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import {
  type LibvirtClient,
  type StoragePoolRef,
  type StorageVolRef,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import {
  snapshotVolumeNameOf,
  type VolumeDefinition,
  volumeNameOf,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import { qemuImg } from "./qemu-img.ts";
import { libvirtSnapshotName } from "./snapshot-plan.ts";

/** How long qemu-img may take to read a disk out of a snapshot. */
const CONVERT_TIMEOUT_MS = 60 * 60_000;

/** Why the volume cannot be made (yet): said in the disk's status. */
export class SnapshotSourceError extends Error {}

/** The snapshot's record of disk DISK (a name in its VM), or why there is none. */
export function snapshotDisk(snap: VMSnapshot | undefined, snapshotName: string, disk: string) {
  if (!snap)
    throw new SnapshotSourceError(
      `VMSnapshot ${snapshotName} (spec.source.snapshot) does not exist on this node`,
    );
  const st = snap.status;
  if (st?.phase !== "Succeeded" || !st.readyToUse)
    throw new SnapshotSourceError(
      `VMSnapshot ${snapshotName} is not ready to use (${st?.phase ?? "not taken yet"})`,
    );
  const held = st.disks?.find((d) => d.name === disk);
  if (!held)
    throw new SnapshotSourceError(
      `VMSnapshot ${snapshotName} holds no disk named ${disk} (it holds ${(st.disks ?? []).map((d) => d.name).join(", ") || "none"})`,
    );
  return held;
}

export async function volumeFromSnapshot(
  libvirt: LibvirtClient,
  pool: StoragePoolRef,
  definition: VolumeDefinition,
  snap: VMSnapshot,
  disk: string,
  flags: number,
): Promise<StorageVolRef> {
  const ns = snap.metadata.namespace ?? "";
  const held = snapshotDisk(snap, snap.metadata.name, disk);
  const format = held.format === "raw" ? "raw" : "qcow2";
  const ts = snap.status?.timestamp ?? 0;
  const sourcePool = await libvirt.lookupStoragePool(held.pool ?? "");
  if (snap.status?.method === "VolumeCopy") {
    const copy = await unlessNotFound(
      libvirt.lookupVolume(sourcePool, snapshotVolumeNameOf(ns, held.vmDisk, format, ts)),
    );
    if (!copy)
      throw new SnapshotSourceError(
        `the copy of disk ${disk} that VMSnapshot ${snap.metadata.name} holds is gone`,
      );
    const { capacity } = await libvirt.volumeInfo(copy);
    const xml = volumeXml({ ...definition, capacityBytes: Math.max(definition.capacityBytes, capacity) });
    return libvirt.cloneVolume(pool, xml, copy, flags);
  }
  const source = await unlessNotFound(
    libvirt.lookupVolume(sourcePool, volumeNameOf(ns, held.vmDisk, format)),
  );
  if (!source)
    throw new SnapshotSourceError(`the volume of VMDisk ${held.vmDisk}, which holds the snapshot, is gone`);
  const { capacity } = await libvirt.volumeInfo(source);
  const vol = await libvirt.createVolume(
    pool,
    volumeXml({ ...definition, capacityBytes: Math.max(definition.capacityBytes, capacity) }),
    flags,
  );
  try {
    // -U: the source may be in use by its running VM; an internal snapshot's clusters never
    // change while it exists (the snapshot reconciler holds the disk while one is made or removed).
    await qemuImg(
      [
        "convert",
        "-U",
        "-f",
        "qcow2",
        "-l",
        `snapshot.name=${libvirtSnapshotName(ts)}`,
        "-O",
        definition.format,
        "-n",
        await libvirt.volumePath(source),
        await libvirt.volumePath(vol),
      ],
      CONVERT_TIMEOUT_MS,
    );
  } catch (err) {
    await unlessNotFound(libvirt.deleteVolume(vol)).catch(() => undefined);
    throw new Error(`disk ${disk} could not be read out of the snapshot: ${(err as Error).message}`);
  }
  return vol;
}
