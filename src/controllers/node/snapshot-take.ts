// Taking one snapshot of a domain on this node, the way its storage allows (snapshot-plan.ts):
// libvirt's internal qcow2 snapshot, or our own volume copies with the memory saved to a file.
// Whatever fails or runs out of time, the guest is left running as it was and nothing partial
// stays behind.

import { mkdir, rm, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type { SNAPSHOT_INDICATIONS } from "../../api/vmsnapshot.ts";
import type { ObservedDisk } from "../../hypervisor/domain/disks.ts";
import {
  type DomainRef,
  DomainSaveRestoreFlags,
  DomainState,
  isGuestAgentUnavailable,
  type LibvirtClient,
  SnapshotCreateFlags,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { volumeXml } from "../../hypervisor/storage/volume.ts";
import { describeError } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import type { NodeRoom } from "./node-room.ts";
import {
  internalSnapshotXml,
  libvirtSnapshotName,
  memoryImagePath,
  type SnapshotPlan,
} from "./snapshot-plan.ts";

type Indication = (typeof SNAPSHOT_INDICATIONS)[number];

export interface TakeContext {
  libvirt: LibvirtClient;
  log: Logger;
  /** Where memory images of VolumeCopy snapshots are kept (agent state, not a pool). */
  memoryDir: string;
  /** Epoch ms past which the snapshot has failed. */
  deadlineAt: number;
  /** What runs on this node: a guest saved for its snapshot keeps its room until it is back. */
  room?: NodeRoom;
}

export interface TakeRequest {
  namespace: string;
  vmName: string;
  timestamp: number;
  description: string;
  memory: boolean;
  consistent: boolean;
  domainDisks: Readonly<Record<string, ObservedDisk>>;
}

export interface Taken {
  libvirtName?: string;
  memoryImage?: string;
  storedBytes: number;
  /** Size of each disk (by its name in the VM) at the snapshot, bytes. */
  capacities: Record<string, number>;
  indications: Indication[];
  isConsistent: boolean;
  /** What the user should know (a thaw that failed, a freeze nobody answered). */
  notes: string[];
}

export class SnapshotTimeout extends Error {}

/** Free space kept in the memory image directory beyond a guest's memory. */
const MEMORY_DIR_RESERVE = 1024 * 2 ** 20;

/** A thaw waits this long: an agent that does not answer it will not answer a longer wait either. */
const THAW_MS = 10_000;

/** Milliseconds left before the deadline, at least one (a call still gets its own deadline). */
function left(ctx: TakeContext): number {
  const ms = ctx.deadlineAt - Date.now();
  if (ms <= 0) throw new SnapshotTimeout("the snapshot's failureDeadline passed");
  return ms;
}

export async function takeSnapshot(
  ctx: TakeContext,
  dom: DomainRef,
  plan: SnapshotPlan,
  req: TakeRequest,
): Promise<Taken> {
  const { state } = await ctx.libvirt.domainState(dom);
  const active =
    state === DomainState.Running || state === DomainState.Paused || state === DomainState.Blocked;
  const paused = state === DomainState.Paused;
  const indications: Indication[] = active ? ["Online"] : [];
  const notes: string[] = [];
  // A stopped VM's disks are at rest: consistent without an agent.
  let isConsistent = !active;
  let frozen = false;
  if (active && req.consistent) {
    if (paused) {
      indications.push("NoGuestAgent");
      notes.push("the guest is paused, so its agent cannot freeze file systems: crash-consistent");
    } else {
      try {
        const n = await ctx.libvirt.domainFSFreeze(dom, [], 0, Math.min(left(ctx), 30_000));
        frozen = true;
        isConsistent = true;
        indications.push("GuestAgent");
        notes.push(`the guest agent froze ${n} file system${n === 1 ? "" : "s"}`);
        ctx.log.info({ frozen: n }, "guest file systems frozen");
      } catch (err) {
        // An agent that answers late may still freeze (our deadline passed, the agent hung):
        // thaw below, unless the domain has no agent channel at all.
        frozen = !/not configured/i.test(describeError(err));
        if (!isGuestAgentUnavailable(err)) ctx.log.warn({ err: describeError(err) }, "freeze failed");
        indications.push("NoGuestAgent");
        notes.push(`no guest agent froze the file systems (${describeError(err)}): crash-consistent`);
      }
    }
  }
  const withMemory = active && req.memory;
  if (withMemory) indications.push("Memory");
  try {
    const stored =
      plan.method === "Internal"
        ? await internal(ctx, dom, plan, req, active)
        : await volumeCopy(ctx, dom, plan, req, active, paused, withMemory);
    return { ...stored, indications, isConsistent, notes };
  } finally {
    if (frozen) {
      try {
        await ctx.libvirt.domainFSThaw(dom, [], 0, THAW_MS);
      } catch (err) {
        if (isConsistent) notes.push(`thawing the guest's file systems failed: ${describeError(err)}`);
        else notes.push(`a late freeze could not be undone: thawing failed (${describeError(err)})`);
        ctx.log.warn({ err: describeError(err) }, "thaw failed");
      }
    }
  }
}

/** Bytes the planned disks' volumes take now, and each one's size. */
async function allocation(ctx: TakeContext, plan: SnapshotPlan) {
  let sum = 0;
  const capacities: Record<string, number> = {};
  for (const d of plan.disks) {
    const pool = await ctx.libvirt.lookupStoragePool(d.pool);
    const vol = await unlessNotFound(ctx.libvirt.lookupVolume(pool, d.volume));
    if (!vol) continue;
    const info = await ctx.libvirt.volumeInfo(vol);
    sum += info.allocation;
    capacities[d.name] = info.capacity;
  }
  return { sum, capacities };
}

async function internal(
  ctx: TakeContext,
  dom: DomainRef,
  plan: SnapshotPlan,
  req: TakeRequest,
  active: boolean,
): Promise<Pick<Taken, "libvirtName" | "storedBytes" | "capacities">> {
  const name = libvirtSnapshotName(req.timestamp);
  const before = await allocation(ctx, plan);
  const xml = internalSnapshotXml(name, req.description, plan, req.domainDisks, active);
  try {
    await ctx.libvirt.createSnapshot(dom, xml, SnapshotCreateFlags.Atomic, left(ctx));
  } catch (err) {
    await removeInternal(ctx.libvirt, dom, name).catch(() => undefined);
    throw err;
  }
  const after = await allocation(ctx, plan);
  return {
    libvirtName: name,
    storedBytes: Math.max(0, after.sum - before.sum),
    capacities: before.capacities,
  };
}

/**
 * Copies every planned volume. A running guest is saved to a file first (QEMU flushes and
 * closes its disks, so the copies are whole) and restored right after; its memory image is the
 * snapshot's memory state when asked for, and removed otherwise.
 */
async function volumeCopy(
  ctx: TakeContext,
  dom: DomainRef,
  plan: SnapshotPlan,
  req: TakeRequest,
  active: boolean,
  paused: boolean,
  withMemory: boolean,
): Promise<Pick<Taken, "memoryImage" | "storedBytes" | "capacities">> {
  const image = memoryImagePath(ctx.memoryDir, req.namespace, req.vmName, req.timestamp);
  // Saved, the guest is off for a while: no other start may take its room meanwhile.
  if (active) ctx.room?.hold(dom.name);
  try {
    return await copyVolumes(ctx, dom, plan, image, active, paused, withMemory);
  } finally {
    if (active) ctx.room?.unhold(dom.name);
  }
}

async function copyVolumes(
  ctx: TakeContext,
  dom: DomainRef,
  plan: SnapshotPlan,
  image: string,
  active: boolean,
  paused: boolean,
  withMemory: boolean,
): Promise<Pick<Taken, "memoryImage" | "storedBytes" | "capacities">> {
  const copied: Array<{ pool: string; volume: string }> = [];
  let saved = false;
  let storedBytes = 0;
  const capacities: Record<string, number> = {};
  try {
    if (active) {
      await mkdir(dirname(image), { recursive: true, mode: 0o700 });
      await roomForMemory(ctx, dom, dirname(image));
      await ctx.libvirt.domainSaveFlags(dom, image, null, 0, left(ctx));
      saved = true;
    }
    for (const d of plan.disks) {
      const pool = await ctx.libvirt.lookupStoragePool(d.pool);
      const source = await ctx.libvirt.lookupVolume(pool, d.volume);
      const { capacity } = await ctx.libvirt.volumeInfo(source);
      capacities[d.name] = capacity;
      const xml = volumeXml({
        name: d.copyVolume,
        format: d.format,
        capacityBytes: capacity,
        allocationBytes: 0,
      });
      const copy = await ctx.libvirt.cloneVolume(pool, xml, source, 0, left(ctx));
      copied.push({ pool: d.pool, volume: d.copyVolume });
      storedBytes += (await ctx.libvirt.volumeInfo(copy)).allocation;
    }
  } catch (err) {
    for (const c of copied) await removeVolume(ctx.libvirt, c.pool, c.volume).catch(() => undefined);
    // A save cut off by the deadline may still have stopped the guest: bring it back from its image.
    if (!saved && active) saved = (await ctx.libvirt.domainState(dom)).state === DomainState.Shutoff;
    if (saved) await resume(ctx, image, paused);
    await rm(image, { force: true });
    throw err;
  }
  if (saved) {
    await resume(ctx, image, paused);
    if (withMemory) storedBytes += (await stat(image)).size;
    else await rm(image, { force: true });
  }
  return { ...(withMemory ? { memoryImage: image } : {}), storedBytes, capacities };
}

/** Refused before anything happens: the snapshot cannot be taken as things are. */
export class SnapshotRefused extends Error {}

/** The guest's memory must fit where its image goes, with room to spare: the node's disk is not filled. */
async function roomForMemory(ctx: TakeContext, dom: DomainRef, dir: string) {
  const { maxMemKiB } = await ctx.libvirt.domainInfo(dom);
  const need = Number(maxMemKiB) * 1024 + MEMORY_DIR_RESERVE;
  const fs = await statfs(dir);
  const free = Number(fs.bavail) * Number(fs.bsize);
  if (free < need)
    throw new SnapshotRefused(
      `${dir} has ${free} bytes free; saving the guest's memory there needs ${need} (its memory and a reserve)`,
    );
}

/** Brings a saved guest back as it was (running or paused); never bounded by the snapshot's deadline. */
async function resume(ctx: TakeContext, image: string, paused: boolean) {
  const flags = paused ? DomainSaveRestoreFlags.Paused : DomainSaveRestoreFlags.Running;
  await ctx.libvirt.domainRestoreFlags(image, null, flags, 120_000);
}

export async function removeInternal(libvirt: LibvirtClient, dom: DomainRef, name: string): Promise<void> {
  const snap = await unlessNotFound(libvirt.lookupSnapshot(dom, name));
  if (snap) await unlessNotFound(libvirt.deleteSnapshot(snap));
}

export async function removeVolume(libvirt: LibvirtClient, poolName: string, volume: string): Promise<void> {
  const pool = await unlessNotFound(libvirt.lookupStoragePool(poolName));
  if (!pool) return;
  const vol = await unlessNotFound(libvirt.lookupVolume(pool, volume));
  if (vol) await unlessNotFound(libvirt.deleteVolume(vol));
}
