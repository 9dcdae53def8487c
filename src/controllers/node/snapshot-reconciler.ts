// Node side of VMSnapshot: takes each snapshot the controller handed to this node (label
// vm.libvirt-operator.io/node), reports what it holds, notices when it can no longer be
// restored, and removes what it stored when it is deleted. What is stored is named from the
// snapshot's namespace, VM and timestamp, never from a path in status.
import { access, rm } from "node:fs/promises";
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL, type VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import {
  DEFAULT_SNAPSHOT_DEADLINE,
  SNAPSHOT_FINALIZER,
  type VMRestore,
  type VMSnapshot,
  VMSnapshotKind,
} from "../../api/vmsnapshot.ts";
import { domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import { parseLiveDevices } from "../../hypervisor/domain/xml.ts";
import {
  type DomainRef,
  DomainState,
  type LibvirtClient,
  LibvirtError,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { snapshotVolumeNameOf, volumeNameOf } from "../../hypervisor/storage/volume.ts";
import {
  type AnyObject,
  describeError,
  type Kube,
  recordEvent,
  removeFinalizer,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { type Standing, standingConditions, writerConditions } from "../conditions.ts";
import { StatusWriter } from "../status-writer.ts";
import type { DomainLocks } from "./domain-locks.ts";
import { libvirtSnapshotName, memoryImagePath, parseDuration, planSnapshot } from "./snapshot-plan.ts";
import { removeInternal, removeVolume, SnapshotTimeout, takeSnapshot } from "./snapshot-take.ts";

type Snapshot = VMSnapshot & KubernetesObject;
const COMPONENT = "libvirt-operator-agent";
export const AGENT_SNAPSHOT_FIELDS = [
  "observedGeneration",
  "phase",
  "readyToUse",
  "creationTime",
  "isConsistent",
  "storedBytes",
  "method",
  "libvirtName",
  "memoryImage",
  "disks",
  "vmSpec",
  "indications",
  "error",
  "conditions",
] as const;
/** While a restore uses a snapshot being deleted, look again this often. */
const IN_USE_POLL_MS = 2000;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}

export interface NodeSnapshotReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  snapshots: Lister<Snapshot>;
  restores: Lister<VMRestore & KubernetesObject>;
  vms: Pick<Lister<VirtualMachine & KubernetesObject>, "get">;
  disks: Pick<Lister<VMDisk & KubernetesObject>, "get">;
  nodeName: string;
  defaultPool: string;
  /** Where memory images of VolumeCopy snapshots live (agent state, never a pool). */
  memoryDir: string;
  locks: DomainLocks;
  log: Logger;
}

/** The snapshots placed on this node, and those a restore on this node holds. */
export function watchNodeSnapshots(
  queue: WorkQueue,
  snapshots: Watchable<Snapshot>,
  restores: Watchable<VMRestore & KubernetesObject>,
  nodeName: string,
): void {
  watchOwn(snapshots, queue, (s, verb) => verb === "delete" || s.metadata?.labels?.[NODE_LABEL] === nodeName);
  // A snapshot waiting for a restore to finish before it is deleted.
  watchRelated(restores, queue, (r) =>
    r.metadata?.namespace ? [`${r.metadata.namespace}/${r.spec.snapshotName}`] : [],
  );
}

/** A restore that has not finished yet. */
export function restoreInFlight(r: VMRestore): boolean {
  return !r.metadata.deletionTimestamp && r.status?.phase !== "Succeeded" && r.status?.phase !== "Failed";
}

export class NodeSnapshotReconciler {
  private readonly o: NodeSnapshotReconcilerOptions;
  private readonly status: StatusWriter;
  /** Snapshots this agent finished, by UID, until the cache shows it (phase written). */
  private readonly settled = new Map<string, string>();

  constructor(options: NodeSnapshotReconcilerOptions) {
    this.o = options;
    this.status = new StatusWriter(options.kube, {
      kind: VMSnapshotKind,
      fieldManager: COMPONENT,
      owns: AGENT_SNAPSHOT_FIELDS,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const snap = this.o.snapshots.get(name, namespace);
    if (!snap || snap.metadata.labels?.[NODE_LABEL] !== this.o.nodeName) return undefined;
    const vmKey = `${namespace}/${snap.spec.vmName}`;
    const log = forObject(this.o.log, "VMSnapshot", key);
    if (snap.metadata.deletionTimestamp) {
      if (!snap.metadata.finalizers?.includes(SNAPSHOT_FINALIZER)) return undefined;
      const user = this.o.restores
        .list(namespace)
        .find((r) => r.spec.snapshotName === name && restoreInFlight(r));
      if (user) {
        log.info({ restore: user.metadata.name }, "snapshot in use by a restore; deleting it afterwards");
        return { requeueAfterMs: IN_USE_POLL_MS };
      }
      await this.o.locks.run(vmKey, `delete snapshot ${key}`, () => this.removeStored(snap));
      await removeFinalizer(this.o.kube, VMSnapshotKind, snap as AnyObject, SNAPSHOT_FINALIZER);
      log.info("snapshot removed from the node");
      return undefined;
    }
    const st = snap.status;
    if (st?.timestamp === undefined || !st.vmUID) return undefined; // the controller has not handed it over
    // Finished here, and the cache has not caught up yet: never take it a second time.
    const settled = this.settled.get(snap.metadata.uid ?? "");
    if (settled && settled !== st.phase) return undefined;
    this.settled.delete(snap.metadata.uid ?? "");
    if (st.phase === "Succeeded") return this.verify(snap);
    if (st.phase === "Failed" && st.observedGeneration !== undefined) {
      // Level-triggered cleanup: whatever a failed attempt left is removed, however often asked.
      await this.o.locks.run(vmKey, `clean failed snapshot ${key}`, () => this.removeStored(snap));
      if (st.observedGeneration !== snap.metadata.generation) {
        const stalled = st.conditions?.find((c) => c.type === "Stalled");
        await this.write(
          snap,
          {},
          { state: "stalled", reason: stalled?.reason ?? "Failed", message: st.error ?? "" },
        );
      }
      return undefined;
    }
    const deadlineMs = parseDuration(snap.spec.failureDeadline ?? DEFAULT_SNAPSHOT_DEADLINE) ?? 300_000;
    const deadlineAt = Date.parse(snap.metadata.creationTimestamp ?? "") + deadlineMs;
    return this.o.locks.run(vmKey, `snapshot ${key}`, () => this.take(snap, deadlineAt, log));
  }

  private async take(snap: Snapshot, deadlineAt: number, log: Logger): Promise<undefined> {
    const ns = snap.metadata.namespace ?? "";
    const st = snap.status!;
    const timestamp = st.timestamp!;
    if (!(Date.now() < deadlineAt))
      return this.fail(snap, "Timeout", "its failureDeadline passed before it could be taken");
    const vm = this.o.vms.get(snap.spec.vmName, ns);
    if (!vm || vm.metadata.uid !== st.vmUID)
      return this.fail(
        snap,
        "VMGone",
        `VirtualMachine ${snap.spec.vmName} is gone or was replaced by a new one`,
      );
    const dom = await unlessNotFound(this.o.libvirt.lookupDomainByName(domainNameOf(ns, vm.metadata.name)));
    if (!dom)
      return this.fail(
        snap,
        "NoDomain",
        `VirtualMachine ${vm.metadata.name} has no domain on ${this.o.nodeName}`,
      );
    // A take cut short (the agent restarted) leaves a saved guest or a partial copy: undo that first.
    await this.recoverInterrupted(snap, dom, log);
    const domainDisks = parseLiveDevices(await this.o.libvirt.domainXml(dom)).disks;
    const plan = planSnapshot(vm, domainDisks, (n) => this.o.disks.get(n, ns), this.o.defaultPool, timestamp);
    if ("refused" in plan) return this.fail(snap, "NotPossible", plan.refused);
    await this.write(
      snap,
      { phase: "InProgress" },
      { state: "reconciling", reason: "Taking", message: plan.why },
    );
    log.info(
      { method: plan.method, disks: plan.disks.map((d) => d.name), skipped: plan.skipped },
      "taking snapshot",
    );
    const started = Date.now();
    try {
      const taken = await takeSnapshot(
        { libvirt: this.o.libvirt, log, memoryDir: this.o.memoryDir, deadlineAt },
        dom,
        plan,
        {
          namespace: ns,
          vmName: vm.metadata.name,
          timestamp,
          description: snap.spec.description ?? `${ns}/${snap.metadata.name}`,
          memory: Boolean(snap.spec.memory),
          consistent: Boolean(snap.spec.consistent),
          domainDisks,
        },
      );
      const notes = [plan.why, ...plan.skipped.map((s) => `not included: ${s}`), ...taken.notes];
      const message = `taken in ${Date.now() - started} ms: ${notes.join("; ")}`;
      await this.write(
        snap,
        {
          phase: "Succeeded",
          readyToUse: true,
          creationTime: new Date().toISOString(),
          isConsistent: taken.isConsistent,
          storedBytes: taken.storedBytes,
          method: plan.method,
          ...(taken.libvirtName ? { libvirtName: taken.libvirtName } : {}),
          ...(taken.memoryImage ? { memoryImage: taken.memoryImage } : {}),
          disks: plan.disks.map((d) => ({
            name: d.name,
            vmDisk: d.vmDisk,
            format: d.format,
            pool: d.pool,
            volume: plan.method === "Internal" ? d.volume : d.copyVolume,
          })),
          vmSpec: vm.spec as Record<string, unknown>,
          indications: taken.indications,
        },
        { state: "ready", reason: "Taken", message },
      );
      log.info(
        { storedBytes: taken.storedBytes, ms: Date.now() - started, indications: taken.indications },
        "snapshot taken",
      );
      this.event(snap, "Normal", "SnapshotTaken", message);
      this.event(vm as AnyObject, "Normal", "SnapshotTaken", `snapshot ${snap.metadata.name}: ${message}`);
      return undefined;
    } catch (err) {
      const pastDeadline = err instanceof SnapshotTimeout || Date.now() >= deadlineAt;
      // A dropped libvirt connection is retried until the deadline; libvirt's refusals are not.
      if (!pastDeadline && !(err instanceof LibvirtError)) throw err;
      const why = pastDeadline
        ? `its failureDeadline passed: ${describeError(err)}`
        : `libvirt refused it: ${describeError(err)}`;
      return this.fail(snap, pastDeadline ? "Timeout" : "LibvirtError", why);
    }
  }

  /** A VolumeCopy take that stopped after saving the guest: the guest is brought back. */
  private async recoverInterrupted(snap: Snapshot, dom: DomainRef, log: Logger) {
    const ns = snap.metadata.namespace ?? "";
    const image = memoryImagePath(this.o.memoryDir, ns, snap.spec.vmName, snap.status!.timestamp!);
    const exists = await access(image).then(
      () => true,
      () => false,
    );
    if (exists && (await this.o.libvirt.domainState(dom)).state === DomainState.Shutoff) {
      log.warn({ image }, "an interrupted snapshot left the guest saved; restoring it");
      await this.o.libvirt.domainRestoreFlags(image, null, 0, 120_000);
    }
    await this.removeStored(snap);
  }

  /** Removes everything snapshot SNAP may have stored on this node; idempotent. */
  private async removeStored(snap: Snapshot) {
    const ns = snap.metadata.namespace ?? "";
    const ts = snap.status?.timestamp;
    if (ts === undefined) return;
    const dom = await unlessNotFound(this.o.libvirt.lookupDomainByName(domainNameOf(ns, snap.spec.vmName)));
    if (dom) await removeInternal(this.o.libvirt, dom, libvirtSnapshotName(ts));
    // The copies status lists, and those a take cut short may have made of the VM's disks.
    const copies = new Map<string, { pool: string; format: "qcow2" | "raw" }>();
    for (const d of snap.status?.disks ?? [])
      copies.set(d.vmDisk, {
        pool: d.pool ?? this.o.defaultPool,
        format: d.format === "raw" ? "raw" : "qcow2",
      });
    for (const entry of this.o.vms.get(snap.spec.vmName, ns)?.spec.disks ?? []) {
      const disk = this.o.disks.get(entry.diskRef.name, ns);
      if (disk && !copies.has(disk.metadata.name))
        copies.set(disk.metadata.name, {
          pool: disk.spec.storagePool ?? this.o.defaultPool,
          format: disk.spec.format === "raw" ? "raw" : "qcow2",
        });
    }
    for (const [vmDisk, c] of copies)
      await removeVolume(this.o.libvirt, c.pool, snapshotVolumeNameOf(ns, vmDisk, c.format, ts));
    await rm(memoryImagePath(this.o.memoryDir, ns, snap.spec.vmName, ts), { force: true });
  }

  /** A Succeeded snapshot whose stored state went away (a disk deleted) says it cannot be used. */
  private async verify(snap: Snapshot): Promise<undefined> {
    const lost = await this.missing(snap);
    if (lost) {
      await this.write(
        snap,
        { phase: "Succeeded", readyToUse: false },
        { state: "stalled", reason: "Lost", message: lost },
      );
    } else if (snap.status?.observedGeneration !== snap.metadata.generation) {
      // spec.sticky changed: the snapshot stands as it was, judged against the new generation.
      const ready = snap.status?.conditions?.find((c) => c.type === "Ready");
      await this.write(
        snap,
        {},
        { state: "ready", reason: ready?.reason ?? "Taken", message: ready?.message ?? "" },
      );
    }
    return undefined;
  }

  private async missing(snap: Snapshot): Promise<string | undefined> {
    const ns = snap.metadata.namespace ?? "";
    const st = snap.status!;
    for (const d of st.disks ?? []) {
      const format = d.format === "raw" ? "raw" : "qcow2";
      const pool = await unlessNotFound(this.o.libvirt.lookupStoragePool(d.pool ?? this.o.defaultPool));
      const volume =
        st.method === "Internal"
          ? volumeNameOf(ns, d.vmDisk, format)
          : snapshotVolumeNameOf(ns, d.vmDisk, format, st.timestamp!);
      const vol = pool && (await unlessNotFound(this.o.libvirt.lookupVolume(pool, volume)));
      if (!vol)
        return `the volume holding disk ${d.name} (VMDisk ${d.vmDisk}) is gone: the snapshot cannot be restored`;
    }
    if (st.method === "Internal") {
      const dom = await unlessNotFound(this.o.libvirt.lookupDomainByName(domainNameOf(ns, snap.spec.vmName)));
      const found =
        dom && (await unlessNotFound(this.o.libvirt.lookupSnapshot(dom, libvirtSnapshotName(st.timestamp!))));
      if (!found) return "libvirt no longer has this snapshot of the VM's domain: it cannot be restored";
    }
    if (st.memoryImage) {
      const image = memoryImagePath(this.o.memoryDir, ns, snap.spec.vmName, st.timestamp!);
      if (
        !(await access(image).then(
          () => true,
          () => false,
        ))
      )
        return `the memory image ${image} is gone`;
    }
    return undefined;
  }

  private async fail(snap: Snapshot, reason: string, message: string): Promise<undefined> {
    await this.removeStored(snap).catch((err: unknown) =>
      this.o.log.warn({ err: describeError(err) }, "cleaning a failed snapshot failed; tried again later"),
    );
    await this.write(
      snap,
      { phase: "Failed", readyToUse: false, error: message },
      { state: "stalled", reason, message },
    );
    this.event(snap, "Warning", "SnapshotFailed", message);
    return undefined;
  }

  private async write(snap: Snapshot, fields: Record<string, unknown>, standing: Standing) {
    const generation = snap.metadata.generation ?? 0;
    if (fields.phase === "Succeeded" || fields.phase === "Failed")
      this.settled.set(snap.metadata.uid ?? "", fields.phase);
    const keep = (snap.status ?? {}) as Record<string, unknown>;
    // Fields this writer set earlier and does not change now stay (one apply holds them all).
    const kept = Object.fromEntries(
      AGENT_SNAPSHOT_FIELDS.filter((f) => f !== "conditions" && f !== "error" && keep[f] !== undefined).map(
        (f) => [f, keep[f]],
      ),
    );
    await this.status.write(snap as AnyObject & { metadata: { name: string } }, {
      ...kept,
      ...fields,
      observedGeneration: generation,
      conditions: writerConditions(
        snap.status?.conditions,
        standingConditions(standing),
        generation,
        new Date(),
      ),
    });
  }

  private event(obj: AnyObject, type: "Normal" | "Warning", reason: string, message: string) {
    void recordEvent(this.o.kube, COMPONENT, obj, type, reason, message);
  }
}
