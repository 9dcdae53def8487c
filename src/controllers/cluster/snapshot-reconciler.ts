// Cluster side of VMSnapshot: hands each new snapshot to the node of its VM (node label, a
// unique timestamp, the VM's UID, the snapshot finalizer, the VM as owner so the snapshots go
// with it), says where it stands until the node agent reports, and releases snapshots that
// never reached a node.
import type { KubernetesObject } from "@kubernetes/client-node";
import {
  API_VERSION,
  DEFAULT_SNAPSHOT_DEADLINE,
  NODE_LABEL,
  SNAPSHOT_FINALIZER,
  VirtualMachineKind,
  VM_NAME_LABEL,
  VMSnapshotKind,
} from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import {
  type AnyObject,
  type Kube,
  keyOf,
  patchMetadata,
  removeFinalizer,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import type { Standing } from "../conditions.ts";
import { snapshotRefusal } from "../disk-limits.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { parseDuration } from "../node/snapshot-plan.ts";
import { STANDING_FIELD_MANAGER, StatusWriter } from "../status-writer.ts";
import type { TenantPolicy } from "../tenant-policy.ts";
import { SNAPSHOT_VM_VIEW } from "../watch-views.ts";
import type { KeyIndex } from "./key-index.ts";
import { acceptSnapshot, uniqueTimestamp } from "./snapshot-accept.ts";
import { AUTOMATIC_LABEL } from "./snapshot-schedule.ts";

type Snapshot = VMSnapshot & KubernetesObject;
type Vm = VirtualMachine & KubernetesObject;
const COMPONENT = "libvirt-operator-controller";
/** Past its deadline by this much, a snapshot its node agent has not finished is failed here. */
const AGENT_GRACE_MS = 30_000;
/** Writes the Failed of a snapshot its agent left unfinished (takes the fields from the agent). */
export const DEADLINE_FIELD_MANAGER = "libvirt-operator-controller-deadline";
/** The fields the controller owns on a VMSnapshot; the rest is the node agent's. */
export const CONTROLLER_SNAPSHOT_FIELDS = ["timestamp", "vmUID", "nodeName", "isAutomatic"] as const;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

export interface ClusterSnapshotReconcilerOptions {
  kube: Kube;
  snapshots: Lister<Snapshot>;
  vms: Lister<Vm>;
  disks: Lister<VMDisk & KubernetesObject>;
  /** "namespace/vm" of the snapshots not handed to a node yet (object-indexes.ts). */
  pending: KeyIndex;
  /** The namespace's tenancy rules (its disk byte budget counts snapshots). */
  policyOf: (namespace: string) => TenantPolicy;
  log: Logger;
}

/** Snapshots react to themselves and to their VM (placed at last, deleted). */
export function watchClusterSnapshots(
  queue: WorkQueue,
  sources: { snapshots: Watchable<Snapshot>; vms: Watchable<Vm> },
  reconciler: ClusterSnapshotReconciler,
): void {
  watchOwn(sources.snapshots, queue);
  watchRelated(sources.vms, queue, (vm) => reconciler.waitingFor(vm), SNAPSHOT_VM_VIEW);
}

export class ClusterSnapshotReconciler {
  private readonly o: ClusterSnapshotReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  private readonly standing: StatusWriter;
  private readonly deadline: StatusWriter;
  /** Timestamps handed out per namespace, ahead of the cache: two snapshots in one second get two. */
  private readonly handedOut = new Map<string, Set<number>>();
  /** Snapshots handed over whose status the cache may not show yet. */
  private readonly handedUids = new Set<string>();

  constructor(options: ClusterSnapshotReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VMSnapshotKind,
      fieldManager: COMPONENT,
      owns: CONTROLLER_SNAPSHOT_FIELDS,
    });
    this.standing = new StatusWriter(options.kube, {
      kind: VMSnapshotKind,
      fieldManager: STANDING_FIELD_MANAGER,
      yieldToOthers: true,
    });
    this.deadline = new StatusWriter(options.kube, {
      kind: VMSnapshotKind,
      fieldManager: DEADLINE_FIELD_MANAGER,
    });
  }

  /** Snapshots of VM not handed to a node yet. */
  waitingFor(vm: Vm): string[] {
    return [...this.o.pending.keys(keyOf(vm))];
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const snap = this.o.snapshots.get(name, namespace);
    if (!snap) return undefined;
    const log = forObject(this.o.log, "VMSnapshot", key);
    if (snap.metadata.deletionTimestamp) {
      this.handedUids.delete(snap.metadata.uid ?? "");
      // Never handed to a node: nothing is stored anywhere.
      if (!snap.metadata.labels?.[NODE_LABEL])
        await removeFinalizer(this.o.kube, VMSnapshotKind, snap as AnyObject, SNAPSHOT_FINALIZER);
      return undefined;
    }
    if (snap.status?.timestamp !== undefined) return this.overdue(snap, log); // the node agent has it
    if (this.handedUids.has(snap.metadata.uid ?? "")) return undefined; // the cache is behind
    const vm = this.o.vms.get(snap.spec.vmName, namespace);
    const decision = acceptSnapshot(snap, vm, Date.now());
    if ("wait" in decision) {
      await this.stand(
        snap,
        { phase: "InProgress", readyToUse: false },
        { state: "reconciling", reason: "Waiting", message: decision.wait },
      );
      return { requeueAfterMs: decision.retryAfterMs };
    }
    if ("fail" in decision) {
      const { reason, message } = decision.fail;
      if (snap.status?.error !== message) log.warn({ reason, err: message }, "snapshot failed");
      await this.stand(
        snap,
        { phase: "Failed", readyToUse: false, error: message },
        { state: "stalled", reason, message },
      );
      void this.event(snap, Reason.SnapshotFailed, message);
      return undefined;
    }
    const { node, vmUID } = decision.hand;
    const refusal = snapshotRefusal(
      vm!,
      Boolean(snap.spec.memory),
      this.o.disks.list(namespace),
      this.o.snapshots.list(namespace),
      this.o.policyOf(namespace),
    );
    if (refusal) {
      if (snap.status?.error !== refusal.message)
        log.warn({ reason: refusal.reason, err: refusal.message }, "snapshot refused");
      await this.stand(
        snap,
        { phase: "Failed", readyToUse: false, error: refusal.message },
        { state: "stalled", reason: refusal.reason, message: refusal.message },
      );
      void this.event(snap, refusal.reason, refusal.message);
      return undefined;
    }
    // Unique in the namespace, not only per VM: the copies a snapshot stores are named by disk
    // and timestamp, and a disk may move from one VM to another.
    const taken = this.o.snapshots
      .list(namespace)
      .map((s) => s.status?.timestamp)
      .filter((t): t is number => t !== undefined);
    const handed = this.handedOut.get(namespace) ?? new Set<number>();
    const timestamp = uniqueTimestamp(Date.now(), [...taken, ...handed]);
    await patchMetadata(this.o.kube, VMSnapshotKind, snap as AnyObject, {
      labels: { [NODE_LABEL]: node, [VM_NAME_LABEL]: snap.spec.vmName },
      finalizers: [...new Set([...(snap.metadata.finalizers ?? []), SNAPSHOT_FINALIZER])],
      ownerReferences: [
        ...(snap.metadata.ownerReferences ?? []).filter((r) => r.uid !== vmUID),
        { apiVersion: API_VERSION, kind: VirtualMachineKind.kind, name: snap.spec.vmName, uid: vmUID },
      ],
    });
    handed.add(timestamp);
    this.handedOut.set(namespace, handed);
    await this.status.write(snap as AnyObject & { metadata: { name: string } }, {
      timestamp,
      vmUID,
      nodeName: node,
      // Made by the VM's snapshotPolicy (snapshot-schedule.ts): the VM's own, labelled so.
      isAutomatic:
        snap.metadata.labels?.[AUTOMATIC_LABEL] === "true" &&
        (snap.metadata.ownerReferences ?? []).some((r) => r.uid === vmUID),
    });
    this.handedUids.add(snap.metadata.uid ?? "");
    await this.stand(
      snap,
      { phase: "InProgress", readyToUse: false },
      {
        state: "reconciling",
        reason: "Handed",
        message: `handed to the node agent of ${node}`,
      },
    );
    log.info({ node, timestamp }, "snapshot handed to its VM's node");
    return undefined;
  }

  /**
   * A snapshot its node agent has not finished well past its deadline (the agent is gone, or
   * stuck) is Failed here, so nobody waits on it forever; an agent that comes back cleans up.
   */
  private async overdue(snap: Snapshot, log: Logger): Promise<ReconcileResult | undefined> {
    const phase = snap.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") return undefined;
    const deadlineMs = parseDuration(snap.spec.failureDeadline ?? DEFAULT_SNAPSHOT_DEADLINE) ?? 300_000;
    const due = Date.parse(snap.metadata.creationTimestamp ?? "") + deadlineMs + AGENT_GRACE_MS;
    if (Date.now() < due) return { requeueAfterMs: due - Date.now() };
    const message = `the node agent of ${snap.status?.nodeName} did not finish it within its failureDeadline`;
    log.warn({ node: snap.status?.nodeName }, "snapshot failed: its node agent did not finish it in time");
    await this.deadline.writeStanding(
      snap as Snapshot & { metadata: { name: string } },
      { phase: "Failed", readyToUse: false, error: message },
      { state: "stalled", reason: "Timeout", message },
    );
    void this.event(snap, Reason.SnapshotFailed, message);
    return undefined;
  }

  /** Where the snapshot stands until its node agent reports (yields to the agent's word). */
  private async stand(snap: Snapshot, fields: Record<string, unknown>, standing: Standing) {
    await this.standing.writeStanding(snap as Snapshot & { metadata: { name: string } }, fields, standing);
  }
}
