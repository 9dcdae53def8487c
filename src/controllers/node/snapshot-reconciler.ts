// Node side of VMSnapshot: takes each snapshot the controller handed to this node (label
// vm.libvirt-operator.io/node), reports what it holds, notices when it can no longer be
// restored, and removes what it stored when it is deleted (snapshot-storage.ts). It acts only
// on the VM's own domain (owned-domain.ts), and only while it holds the VM's and its disks'
// locks; finding them taken, it looks again shortly.
import type { KubernetesObject } from "@kubernetes/client-node";
import {
  DEFAULT_SNAPSHOT_DEADLINE,
  NODE_LABEL,
  SNAPSHOT_FINALIZER,
  VMSnapshotKind,
} from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../../api/vmsnapshot.ts";
import { parseLiveDevices } from "../../hypervisor/domain/xml.ts";
import {
  type DomainRef,
  DomainState,
  type LibvirtClient,
  LibvirtError,
} from "../../hypervisor/libvirt/index.ts";
import { type AnyObject, describeError, type Kube, removeFinalizer, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import type { Standing } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { StatusWriter } from "../status-writer.ts";
import { type DomainLocks, diskLockKey, LOCK_RETRY_MS } from "./domain-locks.ts";
import type { NodeRoom } from "./node-room.ts";
import { ownedDomain } from "./owned-domain.ts";
import { parseDuration, planSnapshot } from "./snapshot-plan.ts";
import { missingPart, recoverSavedGuest, removeStored, type StorageContext } from "./snapshot-storage.ts";
import { SnapshotRefused, SnapshotTimeout, takeSnapshot } from "./snapshot-take.ts";

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
  /** What runs on this node (a guest saved for a snapshot keeps its room). */
  room?: NodeRoom;
  snapshots: Lister<Snapshot>;
  restores: Lister<VMRestore & KubernetesObject>;
  vms: Pick<Lister<VirtualMachine & KubernetesObject>, "get">;
  disks: Lister<VMDisk & KubernetesObject>;
  nodeName: string;
  /** UID of the cluster's kube-system namespace: domains of other clusters are not ours. */
  clusterId: string;
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
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  private readonly storage: StorageContext;
  /** Snapshots this agent finished, by UID, until the cache shows it (phase written). */
  private readonly settled = new Map<string, string>();

  constructor(options: NodeSnapshotReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.storage = options;
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
    const st = snap.status;
    const uid = snap.metadata.uid ?? "";
    // Finished here, and the cache has not caught up yet: never take it a second time.
    const settled = this.settled.get(uid);
    if (settled && settled !== st?.phase && !snap.metadata.deletionTimestamp) return undefined;
    this.settled.delete(uid);
    if (!snap.metadata.deletionTimestamp && (st?.timestamp === undefined || !st.vmUID)) return undefined; // not handed over yet
    const vm = this.o.vms.get(snap.spec.vmName, namespace);
    const locks = [`${namespace}/${snap.spec.vmName}`, ...this.diskLocks(snap, vm)];
    const log = forObject(this.o.log, "VMSnapshot", key);
    const locked = await this.o.locks.tryRun(locks, `snapshot ${key}`, () => this.converge(snap, vm, log));
    if ("busy" in locked) {
      log.debug({ holder: locked.busy.what }, "VM busy; looking again shortly");
      return { requeueAfterMs: LOCK_RETRY_MS };
    }
    return locked.done;
  }

  private async converge(
    snap: Snapshot,
    vm: VirtualMachine | undefined,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const ns = snap.metadata.namespace ?? "";
    const st = snap.status;
    const owned = await ownedDomain(this.o.libvirt, this.o.clusterId, ns, snap.spec.vmName, st?.vmUID ?? "");
    const dom = "dom" in owned ? owned.dom : undefined;
    if (snap.metadata.deletionTimestamp) {
      if (!snap.metadata.finalizers?.includes(SNAPSHOT_FINALIZER)) return undefined;
      const user = this.o.restores
        .list(ns)
        .find((r) => r.spec.snapshotName === snap.metadata.name && restoreInFlight(r));
      if (user) {
        log.info({ restore: user.metadata.name }, "snapshot in use by a restore; deleting it afterwards");
        return { requeueAfterMs: IN_USE_POLL_MS };
      }
      const cloning = this.o.disks
        .list(ns)
        .find(
          (d) =>
            d.spec.source?.snapshot?.name === snap.metadata.name &&
            !d.metadata.deletionTimestamp &&
            (d.status?.phase === "Locked" || d.status?.phase === "Creating"),
        );
      if (cloning) {
        log.info(
          { disk: cloning.metadata.name },
          "snapshot in use by a disk made from it; deleting it afterwards",
        );
        return { requeueAfterMs: IN_USE_POLL_MS };
      }
      await recoverSavedGuest(this.storage, snap, dom);
      await removeStored(this.storage, snap, vm, dom);
      await removeFinalizer(this.o.kube, VMSnapshotKind, snap as AnyObject, SNAPSHOT_FINALIZER);
      log.info("snapshot removed from the node");
      return undefined;
    }
    if (st?.phase === "Succeeded") return this.verify(snap, dom);
    if (st?.phase === "Failed" && st.observedGeneration !== undefined) {
      // Level-triggered cleanup: whatever a failed attempt left is removed, however often asked.
      await recoverSavedGuest(this.storage, snap, dom);
      await removeStored(this.storage, snap, vm, dom);
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
    if ("foreign" in owned) return this.fail(log, snap, dom, "DomainConflict", owned.foreign);
    // A take cut short (the agent restarted) may have left the guest saved: bring it back first.
    if (await recoverSavedGuest(this.storage, snap, dom))
      log.warn("an interrupted snapshot left the guest saved; restored it");
    if (!(Date.now() < deadlineAt))
      return this.fail(log, snap, dom, "Timeout", "its failureDeadline passed before it could be taken");
    if (!vm || vm.metadata.uid !== st?.vmUID)
      return this.fail(
        log,
        snap,
        dom,
        "VMGone",
        `VirtualMachine ${snap.spec.vmName} is gone or was replaced by a new one`,
      );
    if (!dom)
      return this.fail(
        log,
        snap,
        dom,
        "NoDomain",
        `VirtualMachine ${vm.metadata.name} has no domain on ${this.o.nodeName}`,
      );
    return this.take(snap, vm, dom, deadlineAt, log);
  }

  private async take(snap: Snapshot, vm: VirtualMachine, dom: DomainRef, deadlineAt: number, log: Logger) {
    const ns = snap.metadata.namespace ?? "";
    const timestamp = snap.status!.timestamp!;
    await removeStored(this.storage, snap, vm, dom); // what an interrupted attempt left
    const domainDisks = parseLiveDevices(await this.o.libvirt.domainXml(dom)).disks;
    const plan = planSnapshot(vm, domainDisks, (n) => this.o.disks.get(n, ns), this.o.defaultPool, timestamp);
    if ("refused" in plan) return this.fail(log, snap, dom, "NotPossible", plan.refused);
    // Shut off, a snapshot holds disks only (libvirt would say "nothing selected for snapshot").
    if (!plan.disks.length && (await this.o.libvirt.domainState(dom)).state === DomainState.Shutoff)
      return this.fail(
        log,
        snap,
        dom,
        "NotPossible",
        `VirtualMachine ${vm.metadata.name} does not run and has no disk a snapshot could keep (${plan.skipped.join("; ") || "it has no disks"}): there is nothing to snapshot`,
      );
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
    let taken: Awaited<ReturnType<typeof takeSnapshot>>;
    try {
      taken = await takeSnapshot(
        { libvirt: this.o.libvirt, log, memoryDir: this.o.memoryDir, deadlineAt, room: this.o.room },
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
    } catch (err) {
      const pastDeadline = err instanceof SnapshotTimeout || Date.now() >= deadlineAt;
      // A dropped libvirt connection is retried until the deadline; libvirt's refusals are not.
      if (!pastDeadline && !(err instanceof LibvirtError) && !(err instanceof SnapshotRefused)) throw err;
      const why = pastDeadline
        ? `its failureDeadline passed: ${describeError(err)}`
        : err instanceof SnapshotRefused
          ? describeError(err)
          : `libvirt refused it: ${describeError(err)}`;
      return this.fail(log, snap, dom, pastDeadline ? "Timeout" : "LibvirtError", why);
    }
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
          ...(d.vmDiskUID ? { vmDiskUID: d.vmDiskUID } : {}),
          format: d.format,
          pool: d.pool,
          volume: plan.method === "Internal" ? d.volume : d.copyVolume,
          ...(taken.capacities[d.name] !== undefined ? { provisionedSize: taken.capacities[d.name] } : {}),
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
    this.event(snap, Reason.SnapshotTaken, message);
    this.event(vm, Reason.SnapshotTaken, `snapshot ${snap.metadata.name}: ${message}`);
    return undefined;
  }

  /** A Succeeded snapshot whose stored state went away (a disk deleted) says it cannot be used. */
  private async verify(snap: Snapshot, dom: DomainRef | undefined): Promise<undefined> {
    const lost = await missingPart(this.storage, snap, dom);
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

  private async fail(
    log: Logger,
    snap: Snapshot,
    dom: DomainRef | undefined,
    reason: string,
    message: string,
  ): Promise<undefined> {
    log.warn({ reason, err: message }, "snapshot failed");
    // The guest is never left saved or frozen by a snapshot that failed.
    await recoverSavedGuest(this.storage, snap, dom).catch(() => undefined);
    if (snap.spec.consistent && dom)
      await this.o.libvirt.domainFSThaw(dom, [], 0, 10_000).catch(() => undefined);
    await removeStored(
      this.storage,
      snap,
      this.o.vms.get(snap.spec.vmName, snap.metadata.namespace),
      dom,
    ).catch((err: unknown) =>
      log.warn({ err: describeError(err) }, "cleaning a failed snapshot failed; tried again later"),
    );
    await this.write(
      snap,
      { phase: "Failed", readyToUse: false, error: message },
      { state: "stalled", reason, message },
    );
    this.event(snap, Reason.SnapshotFailed, message);
    return undefined;
  }

  /** The locks of the disks the snapshot holds, or would hold. */
  private diskLocks(snap: Snapshot, vm: VirtualMachine | undefined): string[] {
    const ns = snap.metadata.namespace ?? "";
    const names =
      snap.status?.disks?.map((d) => d.vmDisk) ?? vm?.spec.disks?.map((d) => d.diskRef.name) ?? [];
    return names.map((n) => diskLockKey(ns, n));
  }

  private async write(snap: Snapshot, fields: Record<string, unknown>, standing: Standing) {
    const keep = (snap.status ?? {}) as Record<string, unknown>;
    // Fields this writer set earlier and does not change now stay (one apply holds them all).
    const kept = Object.fromEntries(
      AGENT_SNAPSHOT_FIELDS.filter((f) => f !== "conditions" && f !== "error" && keep[f] !== undefined).map(
        (f) => [f, keep[f]],
      ),
    );
    await this.status.writeStanding(
      snap as Snapshot & { metadata: { name: string } },
      { ...kept, ...fields },
      standing,
    );
    if (fields.phase === "Succeeded" || fields.phase === "Failed")
      this.settled.set(snap.metadata.uid ?? "", fields.phase);
  }
}
