// What a snapshot stores on this node and where, always derived from its namespace, VM and
// timestamp (never a path or a name read from status): removing it, checking it is still
// whole, and bringing back a guest an interrupted take left saved.
import { access, rm } from "node:fs/promises";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import {
  type DomainRef,
  DomainState,
  type LibvirtClient,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { snapshotVolumeNameOf, volumeNameOf } from "../../hypervisor/storage/volume.ts";
import { libvirtSnapshotName, memoryImagePath } from "./snapshot-plan.ts";
import { removeInternal, removeVolume } from "./snapshot-take.ts";
import { ShutoffReason } from "./vm-decide.ts";

export interface StorageContext {
  libvirt: LibvirtClient;
  defaultPool: string;
  memoryDir: string;
  disks: { get(name: string, namespace?: string): VMDisk | undefined };
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** The memory image of SNAP on this node. */
export function imageOf(ctx: StorageContext, snap: VMSnapshot): string {
  return memoryImagePath(
    ctx.memoryDir,
    snap.metadata.namespace ?? "",
    snap.spec.vmName,
    snap.status?.timestamp ?? 0,
  );
}

/** A guest saved by a take and not restored: shut off by a save, its image still there. */
export async function savedGuest(
  ctx: StorageContext,
  snap: VMSnapshot,
  dom: DomainRef | undefined,
): Promise<boolean> {
  if (!dom) return false;
  const state = await ctx.libvirt.domainState(dom);
  return (
    state.state === DomainState.Shutoff &&
    state.reason === ShutoffReason.Saved &&
    (await exists(imageOf(ctx, snap)))
  );
}

/**
 * A take cut short (the agent restarted) may have left the guest saved: it is restored from its
 * image as it was, running (or paused). Returns whether it did.
 */
export async function recoverSavedGuest(ctx: StorageContext, snap: VMSnapshot, dom: DomainRef | undefined) {
  if (!dom || !(await savedGuest(ctx, snap, dom))) return false;
  await ctx.libvirt.domainRestoreFlags(imageOf(ctx, snap), null, 0, 120_000);
  return true;
}

/**
 * Removes what SNAP may have stored: its libvirt snapshot in the VM's own domain (DOM, already
 * checked to be ours), the copies of the disks status lists (or, before status lists them, of
 * the VM's disks now), and its memory image — never an image a saved guest still needs.
 */
export async function removeStored(
  ctx: StorageContext,
  snap: VMSnapshot,
  vm: VirtualMachine | undefined,
  dom: DomainRef | undefined,
): Promise<void> {
  const ns = snap.metadata.namespace ?? "";
  const ts = snap.status?.timestamp;
  if (ts === undefined) return;
  if (dom) await removeInternal(ctx.libvirt, dom, libvirtSnapshotName(ts));
  const copies = new Map<string, { pool: string; format: "qcow2" | "raw" }>();
  for (const d of snap.status?.disks ?? [])
    copies.set(d.vmDisk, { pool: d.pool ?? ctx.defaultPool, format: d.format === "raw" ? "raw" : "qcow2" });
  if (!snap.status?.disks)
    for (const entry of vm?.spec.disks ?? []) {
      const disk = ctx.disks.get(entry.diskRef.name, ns);
      if (disk)
        copies.set(disk.metadata.name, {
          pool: disk.spec.storagePool ?? ctx.defaultPool,
          format: disk.spec.format === "raw" ? "raw" : "qcow2",
        });
    }
  for (const [vmDisk, c] of copies)
    await removeVolume(ctx.libvirt, c.pool, snapshotVolumeNameOf(ns, vmDisk, c.format, ts));
  if (!(await savedGuest(ctx, snap, dom))) await rm(imageOf(ctx, snap), { force: true });
}

/** Why a Succeeded snapshot can no longer be restored, if it cannot. */
export async function missingPart(
  ctx: StorageContext,
  snap: VMSnapshot,
  dom: DomainRef | undefined,
): Promise<string | undefined> {
  const ns = snap.metadata.namespace ?? "";
  const st = snap.status ?? {};
  const ts = st.timestamp ?? 0;
  for (const d of st.disks ?? []) {
    const format = d.format === "raw" ? "raw" : "qcow2";
    const pool = await unlessNotFound(ctx.libvirt.lookupStoragePool(d.pool ?? ctx.defaultPool));
    const volume =
      st.method === "Internal"
        ? volumeNameOf(ns, d.vmDisk, format)
        : snapshotVolumeNameOf(ns, d.vmDisk, format, ts);
    const vol = pool && (await unlessNotFound(ctx.libvirt.lookupVolume(pool, volume)));
    if (!vol)
      return `the volume holding disk ${d.name} (VMDisk ${d.vmDisk}) is gone: the snapshot cannot be restored`;
    const disk = ctx.disks.get(d.vmDisk, ns);
    if (st.method === "Internal" && d.vmDiskUID && disk && disk.metadata.uid !== d.vmDiskUID)
      return `VMDisk ${d.vmDisk} was deleted and made anew since the snapshot: what it held is gone`;
  }
  if (st.method === "Internal") {
    const found = dom && (await unlessNotFound(ctx.libvirt.lookupSnapshot(dom, libvirtSnapshotName(ts))));
    if (!found) return "libvirt no longer has this snapshot of the VM's domain: it cannot be restored";
  }
  if (st.indications?.includes("Memory") && st.method === "VolumeCopy" && !(await exists(imageOf(ctx, snap))))
    return `the memory image ${imageOf(ctx, snap)} is gone`;
  return undefined;
}
