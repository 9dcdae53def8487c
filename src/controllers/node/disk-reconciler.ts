// Node side of VMDisk: creates the volume of each disk placed on this node (blank, cloned from
// another VMDisk, or imported from a file or URL), grows it (live through the running guest
// when attached), reports it in status, and wipes and deletes it when the disk is deleted.
import type { BlockList } from "node:net";
import type { KubernetesObject } from "@kubernetes/client-node";
import { parseQuantity } from "../../api/quantity.ts";
import { NODE_LABEL } from "../../api/virtualmachine.ts";
import { DISK_PROTECTION_FINALIZER, type VMDisk, VMDiskKind, VOLUME_FINALIZER } from "../../api/vmdisk.ts";
import { keyOfDomain } from "../../hypervisor/domain/from-spec.ts";
import { parseLiveDevices } from "../../hypervisor/domain/xml.ts";
import {
  type LibvirtClient,
  LibvirtError,
  ListDomains,
  type StoragePoolRef,
  StorageVolCreateFlags,
  type StorageVolRef,
  StorageVolResizeFlags,
} from "../../hypervisor/libvirt/index.ts";
import {
  parsePoolXml,
  sniffImage,
  UnsafeNameError,
  uncopyableReason,
  type VolumeFormat,
  volumeNameOf,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import {
  type AnyObject,
  applyStatus,
  describeError,
  type Kube,
  recordEvent,
  removeFinalizer,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type ReconcileResult, TerminalError } from "../../runtime/workqueue.ts";
import { type Condition, ownConditions, setCondition } from "../conditions.ts";
import { CONDITIONS_RULE, ownedStatusChanged } from "../status-diff.ts";
import { ImageSourceError, openImage } from "./image-source.ts";
import { findPool } from "./storage-pools.ts";
import { finished, op } from "./vm-progress.ts";

type Disk = VMDisk & KubernetesObject;
type Phase = NonNullable<NonNullable<VMDisk["status"]>["phase"]>;
type LastOperation = NonNullable<NonNullable<VMDisk["status"]>["lastOperation"]>;

const COMPONENT = "libvirt-operator-agent";
const FIELD_MANAGER = "libvirt-operator-agent";
export const AGENT_DISK_FIELDS = [
  "observedGeneration",
  "phase",
  "provisionedSize",
  "actualSize",
  "path",
  "pool",
  "format",
  "storagePoolShared",
  "progress",
  "lastOperation",
  "conditions",
] as const;
/** Copies and imports may take long; libvirt answers when they are done. */
const LONG_CALL_MS = 6 * 3600_000;
/** Source disks, pools and files may appear later: look again this often. */
const RETRY_MS = 15_000;
/** At most one progress write per this interval during an import. */
const PROGRESS_WRITE_MS = 2_000;

interface DiskLister {
  get(name: string, namespace?: string): Disk | undefined;
}

export interface NodeDiskReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  cache: DiskLister;
  nodeName: string;
  defaultPool: string;
  /** Directories on the node that source.image may name files in. */
  importDirs: string[];
  /** Networks source.image URLs may not reach (cloud metadata by default). */
  blockedNetworks: BlockList;
  /** How often a Ready disk's allocation is read again. */
  refreshMs: number;
  log: Logger;
}

/** What the agent knows ahead of its informer cache, per disk. */
interface Memory {
  phase?: Phase;
  lastOperation?: LastOperation;
  progress?: number;
  /** The volume was created (or found complete) by this process: never recreate it. */
  complete: boolean;
}

export class NodeDiskReconciler {
  private readonly o: NodeDiskReconcilerOptions;
  private readonly memory = new Map<string, Memory>();

  constructor(options: NodeDiskReconcilerOptions) {
    this.o = options;
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const disk = this.o.cache.get(name, namespace);
    if (!disk) {
      this.memory.delete(key);
      return undefined;
    }
    // The controller places the disk (node label, then status.nodeName) and adds the volume
    // finalizer in the same patch as the label, before anything is created.
    if (
      disk.metadata.labels?.[NODE_LABEL] !== this.o.nodeName ||
      !disk.metadata.finalizers?.includes(VOLUME_FINALIZER)
    )
      return undefined;
    const log = forObject(this.o.log, "VMDisk", key);
    const mem = this.memoryOf(key, disk);
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
    const pool = await findPool(this.o.libvirt, poolName);
    if (!pool) {
      const message = `storage pool ${poolName} does not exist on node ${this.o.nodeName}`;
      if (disk.metadata.deletionTimestamp)
        return this.release(disk, log, "its pool is gone; nothing to delete");
      await this.report(disk, mem, { phase: "Pending", failure: { reason: "PoolMissing", message } });
      return { requeueAfterMs: RETRY_MS };
    }
    let vol = await this.lookupVolume(pool, volName);
    if (disk.metadata.deletionTimestamp) return this.remove(key, disk, mem, vol, log);

    if (vol && !mem.complete && !disk.status?.path && (disk.spec.source?.disk || disk.spec.source?.image)) {
      // A copy or import never reported Ready (cut short by an agent restart or a failed call):
      // its volume may hold partial data. libvirt refuses while it is still being written.
      log.warn({ volume: volName }, "volume of an interrupted copy found; starting over");
      await this.o.libvirt.deleteVolume(vol);
      vol = undefined;
    }
    const wantBytes = parseQuantity(disk.spec.provisionedSize);
    if (!vol) {
      try {
        vol = await this.create(disk, mem, pool, volName, format, wantBytes, log);
      } catch (err) {
        return this.failed(disk, mem, err, log);
      }
      if (!vol) return { requeueAfterMs: RETRY_MS };
    }
    mem.complete = true;

    let info = await this.o.libvirt.volumeInfo(vol);
    const path = await this.o.libvirt.volumePath(vol);
    if (info.capacity < wantBytes) {
      mem.phase = "Resizing";
      mem.lastOperation = op("Resize", "Running", `growing to ${wantBytes} bytes`);
      await this.report(disk, mem, { path, pool: poolName, format, info });
      try {
        const how = await this.grow(vol, path, wantBytes, disk.spec.sparse === false);
        mem.lastOperation = finished(mem.lastOperation, "Succeeded", `grown to ${wantBytes} bytes ${how}`);
        log.info({ bytes: wantBytes, how }, "volume grown");
        void this.event(disk, "Normal", "Resized", `grown to ${wantBytes} bytes ${how}`);
      } catch (err) {
        // The volume is as usable as before: it stays Ready; the failure is told and retried.
        const message = `growing to ${wantBytes} bytes failed: ${describeError(err)}`;
        mem.phase = "Ready";
        mem.lastOperation = finished(mem.lastOperation, "Failed", message);
        log.warn({ err: describeError(err) }, "volume resize failed");
        void this.event(disk, "Warning", "ResizeFailed", message);
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

  /** Creates the volume from its source; undefined when the source is not there yet. */
  private async create(
    disk: Disk,
    mem: Memory,
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

    if (source.disk) {
      const from = this.o.cache.get(source.disk.name, disk.metadata.namespace);
      const fromPath = from?.status?.path;
      if (!from || from.status?.phase !== "Ready" || !fromPath || !from.status?.pool) {
        const message = `waiting for VMDisk ${source.disk.name} (spec.source.disk) to be Ready on this node`;
        await this.report(disk, mem, { phase: "Pending", waiting: message });
        return undefined;
      }
      const fromPool = await findPool(this.o.libvirt, from.status.pool);
      const fromFormat = (from.status.format as VolumeFormat | undefined) ?? from.spec.format ?? "qcow2";
      const fromVol =
        fromPool &&
        (await this.lookupVolume(
          fromPool,
          volumeNameOf(from.metadata.namespace ?? "", from.metadata.name, fromFormat),
        ));
      if (!fromVol)
        throw new Error(`the volume of VMDisk ${source.disk.name} is missing from pool ${from.status.pool}`);
      const refused = uncopyableReason(await this.o.libvirt.volumeXml(fromVol), fromFormat);
      if (refused) throw new ImageSourceError(`VMDisk ${source.disk.name}: ${refused}`);
      const fromInfo = await this.o.libvirt.volumeInfo(fromVol);
      mem.phase = "Locked";
      mem.lastOperation = op("Clone", "Running", `copying VMDisk ${source.disk.name}`);
      await this.report(disk, mem, {});
      const vol = await this.o.libvirt.cloneVolume(
        pool,
        volumeXml({ ...definition, capacityBytes: Math.max(wantBytes, fromInfo.capacity) }),
        fromVol,
        flags,
        LONG_CALL_MS,
      );
      this.done(disk, mem, log, "Cloned", `copied from VMDisk ${source.disk.name}`, started);
      return vol;
    }

    if (source.image) return this.importImage(disk, mem, pool, definition, flags, source.image.url, log);

    if (source.snapshot) {
      await this.report(disk, mem, {
        phase: "Pending",
        failure: {
          reason: "SourceUnsupported",
          message:
            "spec.source.snapshot needs VMSnapshot support, which this operator version does not have yet",
        },
      });
      return undefined;
    }

    mem.phase = "Creating";
    mem.lastOperation = op("Create", "Running", `creating a blank ${format} volume`);
    // A sparse volume is there in milliseconds; only preallocation takes long enough to show.
    if (!sparse) await this.report(disk, mem, {});
    const vol = await this.o.libvirt.createVolume(pool, volumeXml(definition), flags, LONG_CALL_MS);
    this.done(disk, mem, log, "Created", `blank ${format} volume created`, started);
    return vol;
  }

  /**
   * Streams the image into a raw staging volume, lets libvirt probe its format, then converts it
   * into the disk's own volume (qemu-img through virStorageVolCreateXMLFrom) and drops the staging.
   */
  private async importImage(
    disk: Disk,
    mem: Memory,
    pool: StoragePoolRef,
    definition: Parameters<typeof volumeXml>[0],
    flags: number,
    url: string,
    log: Logger,
  ): Promise<StorageVolRef> {
    const started = Date.now();
    const image = await openImage(url, this.o.importDirs, await this.poolDirs(), this.o.blockedNetworks);
    const facts = sniffImage(image.header, image.length);
    if (facts.refused) {
      image.close();
      throw new ImageSourceError(`${url}: ${facts.refused}`);
    }
    mem.phase = "Locked";
    mem.progress = 0;
    mem.lastOperation = op("Import", "Running", `importing ${facts.format} image from ${url}`);
    await this.report(disk, mem, {});

    const stagingName = `${definition.name}.import`;
    const leftover = await this.lookupVolume(pool, stagingName);
    if (leftover) await this.o.libvirt.deleteVolume(leftover);
    // Staged in its own format; the upload replaces the staged file's bytes with the image's.
    const capacityBytes = facts.virtualSize ?? image.length;
    const staging = await this.o.libvirt
      .createVolume(
        pool,
        volumeXml({ name: stagingName, format: facts.format, capacityBytes, allocationBytes: 0 }),
      )
      .catch((err) => {
        image.close();
        throw err;
      });
    try {
      let lastWrite = Date.now();
      const sent = await this.o.libvirt.uploadVolume(staging, image.chunks, {
        length: image.length,
        timeoutMs: LONG_CALL_MS,
        onProgress: (sent) => {
          // The copy after the upload is the last tenth.
          mem.progress = Math.min(90, Math.floor((sent / image.length) * 90));
          if (Date.now() - lastWrite < PROGRESS_WRITE_MS) return;
          lastWrite = Date.now();
          void this.report(disk, mem, {}).catch(() => undefined);
        },
      });
      if (sent !== image.length)
        throw new ImageSourceError(`${url} ended after ${sent} of ${image.length} bytes`);
      const probed = await this.lookupVolume(pool, stagingName);
      if (!probed) throw new Error(`staging volume ${stagingName} vanished during the import`);
      const refused = uncopyableReason(await this.o.libvirt.volumeXml(probed), facts.format);
      if (refused) throw new ImageSourceError(`${url}: ${refused}`);
      mem.progress = 90;
      await this.report(disk, mem, {});
      const vol = await this.o.libvirt.cloneVolume(
        pool,
        volumeXml({
          ...definition,
          capacityBytes: Math.max(definition.capacityBytes, facts.virtualSize ?? 0),
        }),
        probed,
        flags,
        LONG_CALL_MS,
      );
      mem.progress = 100;
      this.done(
        disk,
        mem,
        log,
        "Imported",
        `imported ${facts.format} image from ${url} (${image.length} bytes)`,
        started,
      );
      return vol;
    } finally {
      const left = await this.lookupVolume(pool, stagingName).catch(() => undefined);
      if (left)
        await this.o.libvirt
          .deleteVolume(left)
          .catch((err) => log.warn({ err: describeError(err) }, "staging volume not deleted"));
    }
  }

  private done(disk: Disk, mem: Memory, log: Logger, reason: string, message: string, started: number) {
    const ms = Date.now() - started;
    mem.lastOperation = finished(mem.lastOperation, "Succeeded", `${message} in ${ms} ms`);
    log.info({ ms }, message);
    void this.event(disk, "Normal", reason, message);
  }

  /** Live through a running guest on this node that has the volume open, else offline. */
  private async grow(vol: StorageVolRef, path: string, bytes: number, preallocate: boolean): Promise<string> {
    for (const dom of await this.o.libvirt.listAllDomains(ListDomains.Active)) {
      const disks = parseLiveDevices(await this.o.libvirt.domainXml(dom)).disks;
      if (!Object.values(disks).some((d) => d.path === path)) continue;
      await this.o.libvirt.blockResize(dom, path, bytes);
      return `live (VirtualMachine ${keyOfDomain(dom.name)?.split("/")[1] ?? dom.name} is running)`;
    }
    await this.o.libvirt.resizeVolume(vol, bytes, preallocate ? StorageVolResizeFlags.Allocate : 0);
    return "offline";
  }

  /** Target directories of this node's pools: images are never imported from a volume. */
  private async poolDirs(): Promise<string[]> {
    const dirs: string[] = [];
    for (const ref of await this.o.libvirt.listStoragePools()) {
      const { path } = parsePoolXml(await this.o.libvirt.storagePoolXml(ref));
      if (path) dirs.push(path);
    }
    return dirs;
  }

  /** Deleting: only once no VM uses the disk; wipe when asked, delete, release the finalizer. */
  private async remove(key: string, disk: Disk, mem: Memory, vol: StorageVolRef | undefined, log: Logger) {
    if (disk.metadata.finalizers?.includes(DISK_PROTECTION_FINALIZER) || disk.status?.attachedTo?.length) {
      return undefined; // the controller says who uses it (condition InUse) and requeues us through events
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
        await this.o.libvirt.wipeVolume(vol, LONG_CALL_MS);
        log.info({ ms: Date.now() - started }, "volume wiped (zeroed)");
        void this.event(disk, "Normal", "Wiped", "the volume was zeroed before deletion (wipeAfterDelete)");
      }
      await this.o.libvirt.deleteVolume(vol);
      log.info("volume deleted");
    }
    this.memory.delete(key);
    return this.release(disk, log, "volume gone");
  }

  private async release(disk: Disk, log: Logger, why: string) {
    // The Deleting status write changed the resourceVersion: the finalizer goes from a fresh read.
    await removeFinalizer(this.o.kube, VMDiskKind, disk as AnyObject, VOLUME_FINALIZER);
    log.info({ why }, "volume finalizer removed");
    return undefined;
  }

  private async failed(disk: Disk, mem: Memory, err: unknown, log: Logger): Promise<ReconcileResult> {
    const message = describeError(err);
    const userError = err instanceof ImageSourceError;
    mem.phase = "Illegal";
    mem.lastOperation = finished(mem.lastOperation, "Failed", message);
    log.warn({ err: message }, "volume operation failed");
    void this.event(disk, "Warning", userError ? "ImportFailed" : "VolumeFailed", message);
    await this.report(disk, mem, {
      failure: { reason: userError ? "ImportFailed" : "VolumeFailed", message },
    }).catch(() => undefined);
    // A user's mistake is retried slowly (the URL may come back); libvirt failures back off.
    if (userError) return { requeueAfterMs: RETRY_MS * 4 };
    throw err;
  }

  private memoryOf(key: string, disk: Disk): Memory {
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

  private async lookupVolume(pool: StoragePoolRef, name: string): Promise<StorageVolRef | undefined> {
    try {
      return await this.o.libvirt.lookupVolume(pool, name);
    } catch (err) {
      if (err instanceof LibvirtError && err.isNotFound) return undefined;
      throw err;
    }
  }

  private async report(
    disk: Disk,
    mem: Memory,
    seen: {
      phase?: Phase;
      path?: string;
      pool?: string;
      format?: string;
      info?: { capacity: number; allocation: number };
      shared?: boolean;
      waiting?: string;
      failure?: { reason: string; message: string };
    },
  ) {
    const prev = disk.status ?? {};
    const phase = seen.phase ?? mem.phase ?? "Pending";
    const generation = disk.metadata.generation ?? 0;
    const ready = phase === "Ready" || phase === "Resizing";
    const readyCondition: Omit<Condition, "lastTransitionTime"> = seen.failure
      ? { type: "Ready", status: "False", reason: seen.failure.reason, message: seen.failure.message }
      : ready
        ? {
            type: "Ready",
            status: "True",
            reason: phase,
            message: `volume ${seen.path ?? prev.path ?? ""} is usable`,
          }
        : {
            type: "Ready",
            status: "False",
            reason: phase,
            message: seen.waiting ?? mem.lastOperation?.message ?? `the volume is ${phase.toLowerCase()}`,
          };
    const conditions = ownConditions(
      setCondition(
        (prev.conditions ?? []) as Condition[],
        { ...readyCondition, observedGeneration: generation },
        new Date(),
      ),
      ["Ready"],
    );
    // Once the volume exists its path stays in status (VMs keep using it whatever the phase).
    const path = seen.path ?? prev.path;
    const status: Record<string, unknown> = {
      observedGeneration: generation,
      phase,
      ...(seen.info ? { provisionedSize: seen.info.capacity, actualSize: seen.info.allocation } : {}),
      ...(!seen.info && ready && prev.provisionedSize !== undefined
        ? { provisionedSize: prev.provisionedSize, actualSize: prev.actualSize }
        : {}),
      ...(path ? { path } : {}),
      ...((seen.pool ?? prev.pool) ? { pool: seen.pool ?? prev.pool } : {}),
      ...((seen.format ?? prev.format) ? { format: seen.format ?? prev.format } : {}),
      ...((seen.shared ?? prev.storagePoolShared)
        ? { storagePoolShared: seen.shared ?? prev.storagePoolShared }
        : {}),
      ...(mem.progress !== undefined ? { progress: mem.progress } : {}),
      ...(mem.lastOperation ? { lastOperation: mem.lastOperation } : {}),
      conditions,
    };
    if (
      ownedStatusChanged(prev as Record<string, unknown>, status, AGENT_DISK_FIELDS, {
        conditions: CONDITIONS_RULE,
      })
    ) {
      await applyStatus(this.o.kube, VMDiskKind, disk, FIELD_MANAGER, status);
    }
  }

  private event(disk: Disk, type: "Normal" | "Warning", reason: string, message: string) {
    return recordEvent(this.o.kube, COMPONENT, disk as AnyObject, type, reason, message);
  }
}
