// Node side of VMDisk: creates the volume of each disk placed on this node (blank, cloned from
// another VMDisk, or imported from a file or URL), grows it (live through the running guest
// when attached), reports it in status, and wipes and deletes it when the disk is deleted.
import type { KubernetesObject } from "@kubernetes/client-node";
import { DISK_PROTECTION_FINALIZER, NODE_LABEL, VMDiskKind, VOLUME_FINALIZER } from "../../api/names.ts";
import { parseQuantity } from "../../api/quantity.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import {
  type LibvirtClient,
  type StoragePoolRef,
  StorageVolCreateFlags,
  type StorageVolRef,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import {
  parsePoolXml,
  UnsafeNameError,
  type VolumeDefinition,
  type VolumeFormat,
  volumeNameOf,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import {
  type AnyObject,
  describeError,
  isTransient,
  type Kube,
  removeFinalizer,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn } from "../../runtime/watch.ts";
import { type ReconcileResult, TerminalError, type WorkQueue } from "../../runtime/workqueue.ts";
import { linkedClonesOf } from "../cluster/disk-placement.ts";
import { findCondition } from "../conditions.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { StatusWriter } from "../status-writer.ts";
import type { Refusal } from "../tenant-policy.ts";
import { DISK_VIEW } from "../watch-views.ts";
import { volumeFromDisk } from "./disk-from-disk.ts";
import { AGENT_DISK_FIELDS, agentDiskStatus, type DiskMemory, type VolumeSeen } from "./disk-status.ts";
import { type DomainLocks, diskLockKey, LOCK_RETRY_MS } from "./domain-locks.ts";
import type { ImportLimits } from "./image-limits.ts";
import { ImageSourceError } from "./image-source.ts";
import { redactUrl, redactUrls } from "./url-redaction.ts";
import { finished, op } from "./vm-progress.ts";
import { decideVolumeClaim, refusedVolumeMessage, type VolumeClaim } from "./volume-claim.ts";
import { SnapshotSourceError, snapshotDisk, volumeFromSnapshot } from "./volume-from-snapshot.ts";
import { VolumeMarks } from "./volume-marks.ts";
import { growVolume, importImage } from "./volume-ops.ts";

type Disk = VMDisk & KubernetesObject;

const COMPONENT = "libvirt-operator-agent";
const FIELD_MANAGER = "libvirt-operator-agent";
/** Source disks, pools and files may appear later: look again this often. */
const RETRY_MS = 15_000;
/** At most one progress write per this interval during an import. */
const PROGRESS_WRITE_MS = 2_000;
/** A volume of the disk's name exists that this cluster's disk cannot prove it made. */
export const VOLUME_NOT_OWNED = Reason.VolumeNotOwned;

/** The node disk reconciler reacts to the disks placed on this node (and deletions). */
export function watchNodeDisks(queue: WorkQueue, disks: Watchable<Disk>, nodeName: string): void {
  watchOwn(
    disks,
    queue,
    (disk, verb) => verb === "delete" || disk.metadata?.labels?.[NODE_LABEL] === nodeName,
    DISK_VIEW,
  );
}

interface DiskLister {
  get(name: string, namespace?: string): Disk | undefined;
  list(namespace?: string): readonly Disk[];
}

export interface NodeDiskReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  cache: DiskLister;
  nodeName: string;
  /** UID of the cluster's kube-system namespace: in the volumes' ownership marks (volume-claim.ts). */
  clusterId: string;
  defaultPool: string;
  /** Directories on the node that source.image may name files in. */
  importDirs: string[];
  /** Networks source.image URLs may reach besides global unicast, and the largest image. */
  imports: ImportLimits;
  /** How often a Ready disk's allocation is read again. */
  refreshMs: number;
  /** Why the disk's namespace may not have it as asked (pool, byte limit: disk-limits.ts). */
  tenancy?: { refusal(disk: Disk): Refusal | undefined };
  /** Shared with the VM, snapshot and restore reconcilers of this node. */
  locks: DomainLocks;
  /** This node's snapshots (spec.source.snapshot). */
  snapshots?: { get(name: string, namespace?: string): VMSnapshot | undefined };
  /** The agent's own state (snapshots' memory images among it): never read by a file import. */
  stateDirs?: readonly string[];
  /** A disk went (its volume may be an orphan now) or a volume was taken over. */
  orphansChanged?: () => void;
  log: Logger;
}

export class NodeDiskReconciler {
  private readonly o: NodeDiskReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly memory = new Map<string, DiskMemory>();
  private readonly status: StatusWriter;
  private readonly marks: VolumeMarks;

  constructor(options: NodeDiskReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.marks = new VolumeMarks(options.libvirt, options.clusterId);
    this.status = new StatusWriter(options.kube, {
      kind: VMDiskKind,
      fieldManager: FIELD_MANAGER,
      owns: AGENT_DISK_FIELDS,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    // A restore putting this disk's volume back holds its lock.
    // A disk made from a snapshot also holds the disk the snapshot is kept in, or its copy.
    const from = this.o.cache.get(name, namespace)?.spec.source?.snapshot;
    const held = from
      ? this.o.snapshots?.get(from.name, namespace)?.status?.disks?.find((d) => d.name === from.disk)
      : undefined;
    const keys = [diskLockKey(namespace, name), ...(held ? [diskLockKey(namespace, held.vmDisk)] : [])];
    const locked = await this.o.locks.tryRun(keys, "reconcile", () => this.converge(namespace, name, key));
    return "busy" in locked ? { requeueAfterMs: LOCK_RETRY_MS } : locked.done;
  }

  private async converge(namespace: string, name: string, key: string): Promise<ReconcileResult | undefined> {
    const disk = this.o.cache.get(name, namespace);
    if (!disk) {
      this.memory.delete(key);
      this.o.orphansChanged?.();
      return undefined;
    }
    // The controller places the disk (node label, then status.nodeName) and adds the volume
    // finalizer in the same patch as the label, before anything is created.
    // A disk the controller placed on another node (status.nodeName) is never made here, even
    // when its label says this node: the label alone could have been moved by hand.
    if (
      disk.metadata.labels?.[NODE_LABEL] !== this.o.nodeName ||
      !disk.metadata.finalizers?.includes(VOLUME_FINALIZER) ||
      (disk.status?.nodeName !== undefined && disk.status.nodeName !== this.o.nodeName)
    )
      return undefined;
    const log = forObject(this.o.log, "VMDisk", key);
    const mem = this.memoryOf(key, disk);
    // Judged again here, whatever placed the disk: a refused pool or byte limit creates and grows nothing.
    const refusal = disk.metadata.deletionTimestamp ? undefined : this.o.tenancy?.refusal(disk);
    if (refusal) {
      if (findCondition(disk.status?.conditions, "Stalled")?.message !== refusal.message) {
        log.warn({ reason: refusal.reason, field: refusal.field }, refusal.message);
        void this.event(disk, refusal.reason, refusal.message);
      }
      await this.report(disk, mem, { failure: { reason: refusal.reason, message: refusal.message } });
      return { requeueAfterMs: RETRY_MS };
    }
    const format: VolumeFormat = disk.spec.format ?? "qcow2";
    const poolName = disk.spec.storagePool ?? this.o.defaultPool;
    let volName: string;
    try {
      volName = volumeNameOf(namespace, name, format);
    } catch (err) {
      if (!(err instanceof UnsafeNameError)) throw err;
      await this.report(disk, mem, {
        phase: "Illegal",
        failure: { reason: "InvalidName", message: err.message },
      });
      throw new TerminalError(err.message);
    }
    const pool = await unlessNotFound(this.o.libvirt.lookupStoragePool(poolName));
    if (!pool) {
      const message = `storage pool ${poolName} does not exist on node ${this.o.nodeName}`;
      if (disk.metadata.deletionTimestamp)
        return this.release(disk, log, "its pool is gone; nothing to delete");
      await this.report(disk, mem, { phase: "Pending", failure: { reason: "PoolMissing", message } });
      return { requeueAfterMs: RETRY_MS };
    }
    let vol = await unlessNotFound(this.o.libvirt.lookupVolume(pool, volName));
    const claim = mem.complete ? { own: true as const } : await this.claim(disk, mem, pool, vol, volName);
    if (disk.metadata.deletionTimestamp)
      return this.remove(key, disk, mem, pool, "refuse" in claim ? undefined : vol, volName, log);
    if ("refuse" in claim) {
      const message = refusedVolumeMessage(volName, poolName, this.o.nodeName);
      if (findCondition(disk.status?.conditions, "Stalled")?.message !== message) {
        log.warn({ volume: volName, pool: poolName }, "volume not this cluster's disk's: left untouched");
        void this.event(disk, VOLUME_NOT_OWNED, message);
      }
      await this.report(disk, mem, { phase: "Pending", failure: { reason: VOLUME_NOT_OWNED, message } });
      return { requeueAfterMs: RETRY_MS };
    }
    if ("restart" in claim && vol) {
      // A copy or import this cluster began never completed (cut short by an agent restart or a
      // failed call): its volume may hold partial data. libvirt refuses while it is still being
      // written. A linked clone is made again just as well: no VM wrote to it before it was Ready.
      log.warn({ volume: volName }, "volume of an interrupted copy found; starting over");
      await this.o.libvirt.deleteVolume(vol);
      vol = undefined;
    }
    const wantBytes = parseQuantity(disk.spec.provisionedSize);
    if (!vol) {
      try {
        await this.marks.making(pool, volName);
        vol = await this.create(disk, mem, pool, volName, format, wantBytes, log);
        if (vol) await this.marks.complete(pool, volName);
      } catch (err) {
        await this.marks.abandon(pool, volName).catch(() => undefined);
        return this.failed(disk, mem, err, log);
      }
      if (!vol) {
        await this.marks.abandon(pool, volName);
        return { requeueAfterMs: RETRY_MS };
      }
    }
    mem.complete = true;
    mem.failedOperation = undefined;

    let info = await this.o.libvirt.volumeInfo(vol);
    const path = await this.o.libvirt.volumePath(vol);
    const baseOf = disk.status?.baseOf?.template;
    if (info.capacity < wantBytes && baseOf) {
      // Its linked clones read it as it is: a base never changes. Said once, not each reconcile.
      const message = `not grown to ${wantBytes} bytes: a VMTemplate's base never grows (VMTemplate ${baseOf}); a VM made from it may have a larger disk`;
      if (mem.lastOperation?.message !== message) {
        mem.lastOperation = op("Resize", "Failed", message);
        log.warn({ bytes: wantBytes }, message);
        void this.event(disk, Reason.ResizeRefused, message);
      }
    } else if (info.capacity < wantBytes) {
      mem.phase = "Resizing";
      mem.lastOperation = op("Resize", "Running", `growing to ${wantBytes} bytes`);
      await this.report(disk, mem, { path, pool: poolName, format, info });
      try {
        const how = await growVolume(this.o.libvirt, vol, path, wantBytes, disk.spec.sparse === false);
        mem.lastOperation = finished(mem.lastOperation, "Succeeded", `grown to ${wantBytes} bytes ${how}`);
        log.info({ bytes: wantBytes, how }, "volume grown");
        void this.event(disk, Reason.Resized, `grown to ${wantBytes} bytes ${how}`);
      } catch (err) {
        // The volume is as usable as before: it stays Ready; the failure is told and retried.
        const message = `growing to ${wantBytes} bytes failed: ${describeError(err)}`;
        mem.phase = "Ready";
        mem.lastOperation = finished(mem.lastOperation, "Failed", message);
        log.warn({ err: describeError(err) }, "volume resize failed");
        void this.event(disk, Reason.ResizeFailed, message);
        await this.report(disk, mem, { path, pool: poolName, format, info }).catch(() => undefined);
        throw err;
      }
      info = await this.o.libvirt.volumeInfo(vol);
    }
    mem.phase = "Ready";
    mem.progress = undefined;
    const shared = parsePoolXml(await this.o.libvirt.storagePoolXml(pool)).shared;
    await this.report(disk, mem, { path, pool: poolName, format, info, shared });
    return { requeueAfterMs: this.o.refreshMs };
  }

  /**
   * Whose the existing volume is (volume-claim.ts). A volume of this cluster's disk of this
   * namespace and name that is complete is taken as it is — restored or re-applied without
   * status, it is never deleted to start over; one it cannot prove its own is never touched.
   */
  private async claim(
    disk: Disk,
    mem: DiskMemory,
    pool: StoragePoolRef,
    vol: StorageVolRef | undefined,
    volName: string,
  ): Promise<VolumeClaim> {
    const marks = vol ? await this.marks.read(pool, volName) : { owner: false, making: false };
    const path = vol ? await this.o.libvirt.volumePath(vol) : undefined;
    const claim = decideVolumeClaim({
      exists: vol !== undefined,
      ...marks,
      ...(path ? { path } : {}),
      ...(disk.status?.path ? { statusPath: disk.status.path } : {}),
      known: mem.complete,
    });
    if ("mark" in claim) await this.marks.complete(pool, volName);
    if ("adopt" in claim && !disk.metadata.deletionTimestamp) {
      const message = `adopted the existing volume ${volName}: it was made for this cluster's VMDisk of this namespace and name (the disk came back without status)`;
      mem.lastOperation = op("Adopt", "Succeeded", message);
      forObject(this.o.log, "VMDisk", `${disk.metadata.namespace}/${disk.metadata.name}`).info(
        { volume: volName },
        "volume adopted",
      );
      void this.event(disk, Reason.Adopted, message);
      this.o.orphansChanged?.();
    }
    if ("own" in claim || "adopt" in claim || "mark" in claim) mem.complete = true;
    return claim;
  }

  /** Creates the volume from its source; undefined when the source is not there yet. */
  private async create(
    disk: Disk,
    mem: DiskMemory,
    pool: StoragePoolRef,
    volName: string,
    format: VolumeFormat,
    wantBytes: number,
    log: Logger,
  ): Promise<StorageVolRef | undefined> {
    const source = disk.spec.source ?? {};
    const sparse = disk.spec.sparse !== false;
    const definition = {
      name: volName,
      format,
      capacityBytes: wantBytes,
      allocationBytes: sparse ? 0 : wantBytes,
    };
    // Preallocating a qcow2 volume takes libvirt's metadata flag (fallocate when allocation = capacity).
    const flags = !sparse && format === "qcow2" ? StorageVolCreateFlags.PreallocMetadata : 0;
    const started = Date.now();

    const waiting = (message: string) => this.report(disk, mem, { phase: "Pending", waiting: message });
    // A clone that takes long shows it (Locked); one made at once only reports Ready.
    const cloning = async (message: string, slow = true) => {
      mem.phase = slow ? "Locked" : "Creating";
      mem.lastOperation = op("Clone", "Running", message);
      if (slow) await this.report(disk, mem, {});
    };

    if (source.disk) {
      const made = await volumeFromDisk(this.o.libvirt, {
        disk,
        pool,
        definition,
        createFlags: flags,
        diskNamed: (n) => this.o.cache.get(n, disk.metadata.namespace),
        defaultPool: this.o.defaultPool,
        waiting,
        starting: cloning,
      });
      if (made) this.done(disk, mem, log, Reason.Cloned, made.message, started);
      return made?.vol;
    }

    if (source.image) return this.importImage(disk, mem, pool, definition, flags, source.image.url, log);

    if (source.snapshot) {
      const { name: snapName, disk: snapDisk } = source.snapshot;
      const snap = this.o.snapshots?.get(snapName, disk.metadata.namespace);
      try {
        snapshotDisk(snap, snapName, snapDisk);
      } catch (err) {
        if (!(err instanceof SnapshotSourceError)) throw err;
        await waiting(err.message);
        return undefined;
      }
      const what = `disk ${snapDisk} of VMSnapshot ${snapName}`;
      await cloning(`copying ${what}`);
      const vol = await volumeFromSnapshot(this.o.libvirt, pool, definition, snap!, snapDisk, flags);
      this.done(disk, mem, log, Reason.Cloned, `copied from ${what}`, started);
      return vol;
    }

    mem.phase = "Creating";
    mem.lastOperation = op("Create", "Running", `creating a blank ${format} volume`);
    // A sparse volume is there in milliseconds; only preallocation takes long enough to show.
    if (!sparse) await this.report(disk, mem, {});
    const vol = await this.o.libvirt.createVolume(pool, volumeXml(definition), flags);
    this.done(disk, mem, log, Reason.Created, `blank ${format} volume created`, started);
    return vol;
  }

  /** Imports source.image (volume-ops.ts), showing progress in status while it runs. */
  private async importImage(
    disk: Disk,
    mem: DiskMemory,
    pool: StoragePoolRef,
    definition: VolumeDefinition,
    createFlags: number,
    url: string,
    log: Logger,
  ): Promise<StorageVolRef> {
    const started = Date.now();
    let lastWrite = 0;
    const shown = redactUrl(url);
    const { vol, facts, bytes } = await importImage(this.o.libvirt, {
      pool,
      definition,
      createFlags,
      url,
      importDirs: this.o.importDirs,
      refusedDirs: this.o.stateDirs ?? [],
      limits: this.o.imports,
      log,
      started: async (f) => {
        mem.phase = "Locked";
        mem.progress = 0;
        mem.lastOperation = op("Import", "Running", `importing ${f.format} image from ${shown}`);
        await this.report(disk, mem, {});
      },
      progress: (percent) => {
        mem.progress = percent;
        if (Date.now() - lastWrite < PROGRESS_WRITE_MS && percent < 90) return;
        lastWrite = Date.now();
        void this.report(disk, mem, {}).catch(() => undefined);
      },
    });
    this.done(
      disk,
      mem,
      log,
      Reason.Imported,
      `imported ${facts.format} image from ${shown} (${bytes} bytes)`,
      started,
    );
    return vol;
  }

  private done(
    disk: Disk,
    mem: DiskMemory,
    log: Logger,
    reason: EventReason,
    message: string,
    started: number,
  ) {
    const ms = Date.now() - started;
    mem.lastOperation = finished(mem.lastOperation, "Succeeded", `${message} in ${ms} ms`);
    log.info({ ms }, message);
    void this.event(disk, reason, message);
  }

  /** Deleting: only once no VM uses the disk; wipe when asked, delete, release the finalizer. */
  private async remove(
    key: string,
    disk: Disk,
    mem: DiskMemory,
    pool: StoragePoolRef,
    vol: StorageVolRef | undefined,
    volName: string,
    log: Logger,
  ) {
    if (disk.metadata.finalizers?.includes(DISK_PROTECTION_FINALIZER) || disk.status?.attachedTo?.length) {
      return undefined; // the controller says who uses it (condition InUse) and requeues us through events
    }
    // Linked clones read from the volume: it stays until they are gone (the node's own check).
    const clones = linkedClonesOf(disk, this.o.cache.list(disk.metadata.namespace));
    if (vol && clones.length) {
      const message = `deletion waits: VMDisk ${clones.join(", ")} ${clones.length === 1 ? "is a linked clone" : "are linked clones"} of the disk; the volume goes once they are deleted`;
      if (mem.lastOperation?.message !== message) {
        mem.lastOperation = op("Delete", "Pending", message);
        log.info({ clones }, "volume kept: linked clones read from it");
      }
      await this.report(disk, mem, {});
      return { requeueAfterMs: RETRY_MS };
    }
    if (vol) {
      mem.phase = "Deleting";
      mem.lastOperation = op(
        "Delete",
        "Running",
        disk.spec.wipeAfterDelete ? "wiping, then deleting the volume" : "deleting the volume",
      );
      await this.report(disk, mem, {});
      if (disk.spec.wipeAfterDelete) {
        const started = Date.now();
        await this.o.libvirt.wipeVolume(vol);
        log.info({ ms: Date.now() - started }, "volume wiped (zeroed)");
        void this.event(disk, Reason.Wiped, "the volume was zeroed before deletion (wipeAfterDelete)");
      }
      await this.o.libvirt.deleteVolume(vol);
      log.info("volume deleted");
    }
    await this.marks.remove(pool, volName);
    this.memory.delete(key);
    return this.release(disk, log, "volume gone");
  }

  private async release(disk: Disk, log: Logger, why: string) {
    // As the Deleting status write left it, when the cache does not show that write yet.
    await removeFinalizer(
      this.o.kube,
      VMDiskKind,
      this.status.latestCopy(disk) as AnyObject,
      VOLUME_FINALIZER,
    );
    log.info({ why }, "volume finalizer removed");
    return undefined;
  }

  /**
   * Says a failure once (status, Event, log) and throws, so the work queue retries with
   * backoff; a retry that fails the same way changes nothing in status.
   */
  private async failed(disk: Disk, mem: DiskMemory, err: unknown, log: Logger): Promise<never> {
    // Whatever failed, a URL in the message shows no credentials.
    const message = redactUrls(describeError(err));
    const reason = err instanceof ImageSourceError ? "ImportFailed" : "VolumeFailed";
    mem.phase = "Illegal";
    if (mem.failedOperation?.message === message) {
      mem.lastOperation = mem.failedOperation; // the same failure again: status stays as it was
    } else {
      mem.lastOperation = finished(mem.lastOperation, "Failed", message);
      mem.failedOperation = mem.lastOperation;
      log.warn({ err: message }, "volume operation failed");
    }
    void this.event(disk, reason, message);
    const failure = { reason, message, ...(isTransient(err) ? { transient: true } : {}) };
    await this.report(disk, mem, { failure }).catch(() => undefined);
    throw err;
  }

  private memoryOf(key: string, disk: Disk): DiskMemory {
    let m = this.memory.get(key);
    if (!m) {
      m = {
        ...(disk.status?.phase ? { phase: disk.status.phase } : {}),
        ...(disk.status?.lastOperation ? { lastOperation: disk.status.lastOperation } : {}),
        complete: false,
      };
      this.memory.set(key, m);
    }
    return m;
  }

  private async report(disk: Disk, mem: DiskMemory, seen: VolumeSeen) {
    // Retrying a failed create: its steps (Creating, Locked) are not news until it succeeds.
    const phase = seen.phase ?? mem.phase;
    if (mem.failedOperation && !seen.failure && phase !== "Ready" && phase !== "Resizing") return;
    await this.status.write(disk, agentDiskStatus(disk, mem, seen, new Date()));
  }
}
