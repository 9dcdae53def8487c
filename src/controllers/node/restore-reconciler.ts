// Node side of VMRestore: carries out each restore the controller accepted and handed to this
// node, holding the VM (and its disks) so nothing else acts on them meanwhile, and reports
// what was restored and what was not.
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL, VMRestoreKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../../api/vmsnapshot.ts";
import { resourcesOf } from "../../hypervisor/domain/from-spec.ts";
import { DomainState, isActiveState, type LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { describeError, type Kube, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import type { Standing } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { StatusWriter } from "../status-writer.ts";
import { type DomainLocks, diskLockKey, LOCK_RETRY_MS } from "./domain-locks.ts";
import { largest, type NodeRoom } from "./node-room.ts";
import { ownedDomain } from "./owned-domain.ts";
import { hardwareChanges, shouldRunAfterRestore } from "./restore-plan.ts";
import { afterStart } from "./room-observer.ts";
import { restoreSnapshot, stopGracefully } from "./snapshot-restore.ts";
import { isFrozen } from "./vm-decide.ts";

type Restore = VMRestore & KubernetesObject;
const COMPONENT = "libvirt-operator-agent";
export const AGENT_RESTORE_FIELDS = [
  "observedGeneration",
  "phase",
  "complete",
  "restoreTime",
  "restoredDisks",
  "memoryRestored",
  "error",
  "conditions",
] as const;
const DEFAULT_GRACE_SECONDS = 180;
/** A restore waits at most this long for a guest to power off, whatever its grace period. */
const MAX_RESTORE_GRACE_SECONDS = 600;
/** The agent's Reconciling reason while it restores: written before the guest is touched. */
const RESTORING = "Restoring";
/** A restore waiting for room looks again this often. */
const ROOM_RETRY_MS = 30_000;

type Vm = VirtualMachine & KubernetesObject;

interface Outcome {
  fields: Record<string, unknown>;
  standing: Standing;
}

interface Getter<T> {
  get(name: string, namespace?: string): T | undefined;
}

export interface NodeRestoreReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  restores: Getter<Restore>;
  snapshots: Getter<VMSnapshot & KubernetesObject>;
  vms: Getter<VirtualMachine & KubernetesObject>;
  disks: Getter<VMDisk & KubernetesObject>;
  nodeName: string;
  /** UID of the cluster's kube-system namespace: domains of other clusters are not ours. */
  clusterId: string;
  /** Where memory images of VolumeCopy snapshots live. */
  memoryDir: string;
  locks: DomainLocks;
  /** Tells the VM's own reconciler what happened to its guest, and has it look again. */
  restored: (vmKey: string, message: string, running: boolean) => void;
  /** What runs on this node: a restore that brings a guest up must fit beside it first. */
  room?: NodeRoom;
  log: Logger;
}

export function watchNodeRestores(
  queue: WorkQueue,
  restores: Watchable<Restore>,
  nodeName: string,
  waitingForRoom?: { room: NodeRoom; keys: () => string[] },
): void {
  watchOwn(restores, queue, (r, verb) => verb !== "delete" && r.metadata?.labels?.[NODE_LABEL] === nodeName);
  // A restore waiting for room tries again as soon as a guest here stops (not only at its retry).
  waitingForRoom?.room.onFreed(() => {
    for (const key of waitingForRoom.keys()) queue.add(key);
  });
}

export class NodeRestoreReconciler {
  private readonly o: NodeRestoreReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  /** Restores this agent finished, by UID, until the cache shows it. */
  private readonly settled = new Set<string>();
  /** Restores running in this process now, by UID. */
  private readonly running = new Set<string>();
  /** Outcomes of restores that ran, not yet written. */
  private readonly outcomes = new Map<string, Outcome>();
  /** Restores refused for room at their last reconcile, by key: woken when room frees. */
  private readonly refusedForRoom = new Set<string>();

  constructor(options: NodeRestoreReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VMRestoreKind,
      fieldManager: COMPONENT,
      owns: AGENT_RESTORE_FIELDS,
    });
  }

  /** Keys of the restores waiting for room on this node. */
  waitingForRoom(): string[] {
    return [...this.refusedForRoom];
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    this.refusedForRoom.delete(key); // said again below if it still waits
    const { namespace, name } = splitKey(key);
    const restore = this.o.restores.get(name, namespace);
    if (!restore || restore.metadata.deletionTimestamp) return undefined;
    if (
      restore.metadata.labels?.[NODE_LABEL] !== this.o.nodeName ||
      restore.status?.nodeName !== this.o.nodeName
    )
      return undefined; // not (yet) handed to this node by the controller
    const uid = restore.metadata.uid ?? "";
    if (restore.status?.phase === "Succeeded" || restore.status?.phase === "Failed") {
      this.settled.delete(uid);
      return undefined;
    }
    // Finished here, and the cache has not caught up yet: a restore runs once.
    if (this.settled.has(uid)) return undefined;
    const outcome = this.outcomes.get(uid);
    if (outcome) {
      await this.writeUntilDone(restore, outcome);
      return undefined;
    }
    const log = forObject(this.o.log, "VMRestore", key);
    // Begun before this agent started (it restarted midway): never run twice, it could roll
    // back what the guest wrote since.
    const began = restore.status?.conditions?.find((c) => c.type === "Reconciling" && c.reason === RESTORING);
    if (began?.status === "True" && !this.running.has(uid))
      return this.fail(
        log,
        restore,
        "Interrupted",
        "the node agent restarted while this restore ran; it is not run again (the VM may be stopped or partly restored): create a new VMRestore",
      );
    const vm = this.o.vms.get(restore.spec.vmName, namespace);
    const disks = (vm?.spec.disks ?? []).map((d) => diskLockKey(namespace, d.diskRef.name));
    const locked = await this.o.locks.tryRun(
      [`${namespace}/${restore.spec.vmName}`, ...disks],
      `restore ${key}`,
      () => this.restore(restore, vm, log),
    );
    return "busy" in locked ? { requeueAfterMs: LOCK_RETRY_MS } : locked.done;
  }

  private async restore(
    restore: Restore,
    vm: Vm | undefined,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const ns = restore.metadata.namespace ?? "";
    const snap = this.o.snapshots.get(restore.spec.snapshotName, ns);
    // The controller judged these; the node checks again what it is about to act on.
    if (!vm) return this.fail(log, restore, "VMGone", `VirtualMachine ${restore.spec.vmName} is gone`);
    if (vm.metadata.deletionTimestamp)
      return this.fail(log, restore, "VMDeleted", `VirtualMachine ${vm.metadata.name} is being deleted`);
    if (!snap?.status?.readyToUse || snap.status.vmUID !== vm.metadata.uid)
      return this.fail(
        log,
        restore,
        "SnapshotNotUsable",
        `VMSnapshot ${restore.spec.snapshotName} cannot be restored to this VM`,
      );
    const owned = await ownedDomain(
      this.o.libvirt,
      this.o.clusterId,
      ns,
      vm.metadata.name,
      vm.metadata.uid ?? "",
    );
    if ("foreign" in owned) return this.fail(log, restore, "DomainConflict", owned.foreign);
    if ("missing" in owned)
      return this.fail(
        log,
        restore,
        "NoDomain",
        `VirtualMachine ${vm.metadata.name} has no domain on ${this.o.nodeName}`,
      );
    const dom = owned.dom;
    const started = Date.now();
    const { state } = await this.o.libvirt.domainState(dom);
    const wasRunning = isActiveState(state);
    const run = shouldRunAfterRestore(vm.spec.runStrategy, wasRunning, isFrozen(vm));
    const grace =
      Math.min(vm.spec.shutdown?.gracePeriodSeconds ?? DEFAULT_GRACE_SECONDS, MAX_RESTORE_GRACE_SECONDS) *
      1000;
    // Claimed before anything is touched: a guest that would not fit is refused with nothing lost.
    // A memory state resumed brings the guest back with the hardware it had at the snapshot;
    // a boot, with what the VM asks now.
    const resumes = run && (snap.status.indications ?? []).includes("Memory");
    const need = largest(
      resourcesOf(vm),
      resumes && snap.status.vmSpec ? resourcesOf({ ...vm, spec: snap.status.vmSpec }) : undefined,
    );
    const noRoom = run ? this.o.room?.claim(dom.name, need) : undefined;
    if (noRoom) {
      this.refusedForRoom.add(`${restore.metadata.namespace}/${restore.metadata.name}`);
      return this.waitForRoom(log, restore, noRoom.message);
    }
    this.running.add(restore.metadata.uid ?? "");
    let done: Awaited<ReturnType<typeof restoreSnapshot>>;
    let stop: Awaited<ReturnType<typeof stopGracefully>>;
    try {
      // Said before the guest is touched: an agent restarting midway knows not to run it again.
      await this.write(
        restore,
        { phase: "InProgress", complete: false },
        {
          state: "reconciling",
          reason: RESTORING,
          message: `stopping ${vm.metadata.name}, then restoring snapshot ${snap.metadata.name}`,
        },
      );
      stop = await stopGracefully(this.o.libvirt, dom, grace, log);
      log.info({ stop, run }, "restoring");
      done = await restoreSnapshot({ libvirt: this.o.libvirt, log, memoryDir: this.o.memoryDir }, dom, {
        namespace: ns,
        vmName: vm.metadata.name,
        snapshot: snap.status,
        diskNamed: (n) => this.o.disks.get(n, ns),
        run,
        gracePeriodMs: grace,
      });
    } catch (err) {
      const after = await this.o.libvirt.domainState(dom).catch(() => ({ state: DomainState.Shutoff }));
      this.o.restored(
        `${ns}/${vm.metadata.name}`,
        `restore from snapshot ${snap.metadata.name} failed`,
        after.state !== DomainState.Shutoff,
      );
      return this.fail(log, restore, "RestoreFailed", `the restore failed: ${describeError(err)}`);
    } finally {
      this.running.delete(restore.metadata.uid ?? "");
      if (run) this.o.room?.settle(dom.name, await afterStart(this.o.libvirt, dom, need));
    }
    const notes = [...done.notes, ...hardwareChanges(snap.status.vmSpec, vm.spec, done.memoryRestored)];
    const what =
      `restored ${done.restoredDisks.length ? `disks ${done.restoredDisks.join(", ")}` : "no disk"}` +
      (done.memoryRestored ? " and the memory state (the guest resumed at the snapshot's moment)" : "") +
      ` in ${Math.round((Date.now() - started) / 100) / 10} s` +
      (stop === "forced" && grace > 0
        ? "; the guest was forced off (it did not stop within its grace period)"
        : "") +
      (notes.length ? `; ${notes.join("; ")}` : "");
    this.o.restored(`${ns}/${vm.metadata.name}`, `restored from snapshot ${snap.metadata.name}`, run);
    log.info({ ms: Date.now() - started, memory: done.memoryRestored }, "restored");
    this.event(restore, Reason.Restored, what);
    this.event(vm, Reason.Restored, `from snapshot ${snap.metadata.name}: ${what}`);
    // Done on the node whatever the API server says now: a failed write is retried, never the restore.
    await this.writeUntilDone(restore, {
      fields: {
        phase: "Succeeded",
        complete: true,
        restoreTime: new Date().toISOString(),
        restoredDisks: done.restoredDisks,
        memoryRestored: done.memoryRestored,
      },
      standing: { state: "ready", reason: "Restored", message: what },
    });
    return undefined;
  }

  /**
   * The restored guest would not fit beside those running here: nothing is touched, the restore
   * waits (Reconciling) and tries again, as a VM waiting for room does.
   */
  private async waitForRoom(log: Logger, restore: Restore, message: string): Promise<ReconcileResult> {
    const said = restore.status?.conditions?.find((c) => c.type === "Reconciling")?.message;
    if (said !== message) {
      log.info({ reason: Reason.InsufficientCapacity, why: message }, "restore waits for room");
      this.event(restore, Reason.InsufficientCapacity, message);
    }
    await this.write(
      restore,
      { phase: "InProgress", complete: false },
      { state: "reconciling", reason: Reason.InsufficientCapacity, message },
    );
    return { requeueAfterMs: ROOM_RETRY_MS };
  }

  private async fail(log: Logger, restore: Restore, reason: string, message: string): Promise<undefined> {
    log.warn({ reason, err: message }, "restore failed");
    await this.write(
      restore,
      { phase: "Failed", complete: false, error: message },
      { state: "stalled", reason, message },
    );
    this.event(restore, Reason.RestoreFailed, message);
    return undefined;
  }

  /**
   * Records the outcome of a restore that ran: kept until written, so a failed write is tried
   * again by the next reconcile (the queue's backoff) and the restore itself never is.
   */
  private async writeUntilDone(restore: Restore, outcome: Outcome) {
    this.outcomes.set(restore.metadata.uid ?? "", outcome);
    await this.write(restore, outcome.fields, outcome.standing);
    this.outcomes.delete(restore.metadata.uid ?? "");
  }

  private async write(restore: Restore, fields: Record<string, unknown>, standing: Standing) {
    await this.status.writeStanding(restore as Restore & { metadata: { name: string } }, fields, standing);
    if (fields.phase === "Succeeded" || fields.phase === "Failed")
      this.settled.add(restore.metadata.uid ?? "");
  }
}
