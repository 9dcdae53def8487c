// Rolling a domain on this node back to one of its snapshots: stop the guest (gracefully), put
// the disks back, then resume the saved memory or boot, as the VM should run.

import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshotStatus } from "../../api/vmsnapshot.ts";
import {
  type DomainRef,
  DomainSaveRestoreFlags,
  DomainShutdownFlags,
  DomainState,
  isActiveState,
  type LibvirtClient,
  SnapshotRevertFlags,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import {
  snapshotVolumeNameOf,
  type VolumeFormat,
  volumeNameOf,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import { describeError } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import { qemuImg } from "./qemu-img.ts";
import { libvirtSnapshotName, memoryImagePath } from "./snapshot-plan.ts";

export interface RestoreContext {
  libvirt: LibvirtClient;
  log: Logger;
  /** Where memory images of VolumeCopy snapshots live. */
  memoryDir: string;
}

export interface RestoreRequest {
  namespace: string;
  vmName: string;
  snapshot: VMSnapshotStatus;
  /** The VMDisks of the namespace as they are now. */
  diskNamed: (name: string) => VMDisk | undefined;
  /** The VM should run afterwards. */
  run: boolean;
  gracePeriodMs: number;
}

export interface Restored {
  restoredDisks: string[];
  memoryRestored: boolean;
  notes: string[];
}

const POLL_MS = 250;
const CALL_MS = 120_000;

/** ACPI shutdown, then forced off when the grace period ends; a paused guest cannot hear the button. */
export async function stopGracefully(
  libvirt: LibvirtClient,
  dom: DomainRef,
  gracePeriodMs: number,
  log: Logger,
): Promise<"stopped" | "forced" | "was-stopped"> {
  const { state } = await libvirt.domainState(dom);
  // Shutting down is still up: a restore waits until QEMU is gone before it touches the disks.
  if (!isActiveState(state)) return "was-stopped";
  // Neither a paused nor a suspended guest hears the power button.
  if (state !== DomainState.Paused && state !== DomainState.PmSuspended && gracePeriodMs > 0) {
    await libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton).catch(() => undefined);
    const until = Date.now() + gracePeriodMs;
    let lastPress = Date.now();
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (!isActiveState((await libvirt.domainState(dom)).state)) return "stopped";
      // A guest still booting ignores the first press.
      if (Date.now() - lastPress > 5000) {
        lastPress = Date.now();
        await libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton).catch(() => undefined);
      }
    }
    log.info({ gracePeriodMs }, "guest did not power off within its grace period; forcing it off");
  }
  await unlessNotFound(libvirt.destroyDomain(dom));
  return "forced";
}

export async function restoreSnapshot(
  ctx: RestoreContext,
  dom: DomainRef,
  req: RestoreRequest,
): Promise<Restored> {
  const snap = req.snapshot;
  const online = snap.indications?.includes("Online") ?? false;
  const hasMemory = online && (snap.indications?.includes("Memory") ?? false);
  const useMemory = hasMemory && req.run;
  const notes: string[] = [];
  const disks = snap.disks ?? [];
  let restoredDisks: string[];
  let memoryRestored = false;
  if (snap.method === "Internal") {
    const name = libvirtSnapshotName(snap.timestamp ?? 0);
    const found = await unlessNotFound(ctx.libvirt.lookupSnapshot(dom, name));
    if (!found) throw new Error(`libvirt has no snapshot ${name} of the domain any more`);
    if (online && useMemory) {
      await ctx.libvirt.revertToSnapshot(
        found,
        SnapshotRevertFlags.Running | SnapshotRevertFlags.Force,
        CALL_MS,
      );
      memoryRestored = true;
    } else if (online) {
      // libvirt would bring a running snapshot back with its memory (starting QEMU for it): the
      // stopped disks are put back to the snapshot by qemu-img instead; QEMU never starts.
      for (const d of disks) {
        const pool = await ctx.libvirt.lookupStoragePool(d.pool ?? "");
        const vol = await ctx.libvirt.lookupVolume(pool, volumeNameOf(req.namespace, d.vmDisk, "qcow2"));
        await qemuImg(["snapshot", "-a", name, await ctx.libvirt.volumePath(vol)], CALL_MS);
      }
    } else {
      await ctx.libvirt.revertToSnapshot(found, SnapshotRevertFlags.Force, CALL_MS);
    }
    restoredDisks = disks.map((d) => d.name);
  } else {
    restoredDisks = [];
    const ts = snap.timestamp ?? 0;
    for (const d of disks) {
      // The same disk as at the snapshot (not one made anew under its name), as the VM has it now.
      const disk = req.diskNamed(d.vmDisk);
      const format: VolumeFormat = disk?.spec.format === "raw" ? "raw" : "qcow2";
      if (!disk || (d.vmDiskUID && disk.metadata.uid !== d.vmDiskUID) || format !== (d.format ?? "qcow2")) {
        notes.push(
          `disk ${d.name}: VMDisk ${d.vmDisk} is not the disk of the snapshot any more: not restored`,
        );
        continue;
      }
      const pool = disk.spec.storagePool ?? d.pool ?? "";
      const own = volumeNameOf(req.namespace, d.vmDisk, format);
      await putBack(
        ctx.libvirt,
        pool,
        own,
        snapshotVolumeNameOf(req.namespace, d.vmDisk, format, ts),
        format,
      );
      restoredDisks.push(d.name);
    }
    const whole = restoredDisks.length === disks.length;
    const image = memoryImagePath(ctx.memoryDir, req.namespace, req.vmName, ts);
    if (useMemory && whole) {
      await ctx.libvirt.domainRestoreFlags(image, null, DomainSaveRestoreFlags.Running, CALL_MS);
      memoryRestored = true;
    } else if (useMemory) {
      notes.push("the memory state was not used: not every disk it belongs with was restored");
    }
  }
  if (memoryRestored && snap.indications?.includes("GuestAgent")) {
    // The guest was frozen for the snapshot and wakes up frozen: thaw it.
    await ctx.libvirt.domainFSThaw(dom, [], 0, 30_000).catch((err: unknown) => {
      notes.push(`thawing the guest's file systems after the restore failed: ${describeError(err)}`);
    });
  }
  if (!memoryRestored && req.run) await ctx.libvirt.startDomain(dom);
  if (hasMemory && !req.run)
    notes.push("the VM should not run: only its disks were restored, not its memory");
  return { restoredDisks, memoryRestored, notes };
}

/**
 * Replaces VOLUME with a copy of COPY (libvirt cannot copy into an existing volume). The pool
 * must have room for the copy first: the volume is deleted only when it can be made again.
 */
async function putBack(
  libvirt: LibvirtClient,
  poolName: string,
  volume: string,
  copy: string,
  format: VolumeFormat,
) {
  const pool = await libvirt.lookupStoragePool(poolName);
  const source = await unlessNotFound(libvirt.lookupVolume(pool, copy));
  if (!source) throw new Error(`the snapshot's copy ${copy} is missing from pool ${poolName}`);
  const { capacity, allocation } = await libvirt.volumeInfo(source);
  const current = await unlessNotFound(libvirt.lookupVolume(pool, volume));
  const freed = current ? (await libvirt.volumeInfo(current)).allocation : 0;
  const { available } = await libvirt.storagePoolInfo(pool);
  if (available + freed < allocation)
    throw new Error(
      `pool ${poolName} has ${available} bytes free, the copy of ${volume} needs ${allocation}: the disk was left as it is`,
    );
  if (current) await libvirt.deleteVolume(current);
  const xml = volumeXml({ name: volume, format, capacityBytes: capacity, allocationBytes: 0 });
  await libvirt.cloneVolume(pool, xml, source, 0, CALL_MS);
}
