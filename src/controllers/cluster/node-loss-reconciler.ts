// Cluster side of lost nodes: one reconcile per node judges its agent's heartbeat (by this
// controller's clock) and whether an admin confirmed the node gone, then marks, clears,
// releases or places again its VMs and VMDisks as node-loss.ts decides.
import type { KubernetesObject, V1Lease, V1Node } from "@kubernetes/client-node";
import type { KindName } from "../../api/kind.ts";
import {
  DOMAIN_FINALIZER,
  SNAPSHOT_FINALIZER,
  VirtualMachineKind,
  VMDiskKind,
  VMSnapshotKind,
  VOLUME_FINALIZER,
} from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import {
  type AnyObject,
  httpStatus,
  type Kube,
  mergePatchStatus,
  patchMetadata,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { type Condition, writerConditions } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { nodeOutOfService } from "../node-facts.ts";
import { CONDITIONS_RULE } from "../status-diff.ts";
import { StatusWriter } from "../status-writer.ts";
import {
  encodePlacement,
  PLACEMENT_ANNOTATION,
  placedNode,
  placementOf,
  placementRecorded,
} from "../vm-placement.ts";
import { diskNamesOf } from "./disk-placement.ts";
import type { HeartbeatClock } from "./heartbeat-clock.ts";
import {
  diskLossAction,
  judgeNode,
  type LossAction,
  NODE_LOST_CONDITION,
  type NodeFacts,
  placedAgainConditions,
  snapshotLossAction,
  vmLossAction,
  type Wanted,
} from "./node-loss.ts";

/** Writes the NodeLost condition. */
export const NODE_LOSS_FIELD_MANAGER = "libvirt-operator-controller-node-loss";
/**
 * Writes the Unknown state of a lost node's objects (printableStatus or phase, Ready/Reconciling/
 * Stalled). Never drops them: the agent's next report takes them over (an apply dropping list
 * items whose keys the agent still owns would leave items without a status).
 */
export const NODE_LOSS_STATE_FIELD_MANAGER = "libvirt-operator-controller-node-loss-state";
const COMPONENT = "libvirt-operator-controller";

/**
 * Status fields of a VM that describe it on its old node: forgotten when it is placed again
 * (the new node's agent writes them anew). UUID, MACs, start count and handled requests stay.
 */
const NODE_BOUND_VM_STATUS = [
  "nodeName",
  "domainName",
  "hypervisorStatus",
  "printableStatus",
  "statusChangedAt",
  "disks",
  "statistics",
  "guestFilesystems",
  "guestAgent",
] as const;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}
type Vm = VirtualMachine & KubernetesObject;
type Disk = VMDisk & KubernetesObject;
type Snapshot = VMSnapshot & KubernetesObject;

export interface NodeLossOptions {
  kube: Kube;
  vms: Lister<Vm>;
  disks: Lister<Disk>;
  snapshots: Lister<Snapshot>;
  nodes: Lister<V1Node>;
  heartbeats: HeartbeatClock;
  /** A node whose agent was silent this long is lost. */
  lostAfterMs: number;
  log: Logger;
}

/**
 * What lost-node handling reacts to: heartbeats (fed to the clock; a renewal of a node judged
 * lost brings it back), Nodes (deleted or tainted out-of-service), and VMs, VMDisks and
 * VMSnapshots placed on a node that is not known alive (deleted there, or placed on a node this
 * process never saw).
 */
export function watchNodeLoss(
  queue: WorkQueue,
  reconciler: NodeLossReconciler,
  sources: {
    vms: Watchable<Vm>;
    disks: Watchable<Disk>;
    snapshots: Watchable<Snapshot>;
    nodes: Watchable<V1Node>;
    leases: Watchable<V1Lease>;
  },
): void {
  for (const verb of ["add", "update"] as const) sources.leases.on(verb, (l) => reconciler.heard(l, queue));
  watchRelated(sources.nodes, queue, (n) => [n.metadata?.name ?? ""]);
  watchRelated(sources.vms, queue, (vm) => reconciler.unsureNode(placedNode(vm)));
  watchRelated(sources.disks, queue, (d) => reconciler.unsureNode(d.status?.nodeName));
  watchRelated(sources.snapshots, queue, (s) => reconciler.unsureNode(s.status?.nodeName));
}

export class NodeLossReconciler {
  private readonly o: NodeLossOptions;
  private readonly event: EventRecorder;
  /** Nodes judged lost or gone at their last reconcile. */
  private readonly notAlive = new Set<string>();
  /** Nodes reconciled at least once (their timer runs). */
  private readonly watched = new Set<string>();
  private readonly writers: Map<KindName, { condition: StatusWriter; state: StatusWriter }>;

  constructor(options: NodeLossOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    const writer = (kind: KindName, fieldManager: string) =>
      new StatusWriter(options.kube, { kind, fieldManager, listMaps: { conditions: CONDITIONS_RULE } });
    this.writers = new Map(
      [VirtualMachineKind, VMDiskKind].map((kind) => [
        kind,
        {
          condition: writer(kind, NODE_LOSS_FIELD_MANAGER),
          state: writer(kind, NODE_LOSS_STATE_FIELD_MANAGER),
        },
      ]),
    );
  }

  /** A heartbeat: recorded; a node not known alive is looked at at once. */
  heard(lease: V1Lease, queue: Pick<WorkQueue, "add">): void {
    if (!this.o.heartbeats.observe(lease)) return;
    const node = (lease.spec?.holderIdentity ?? "") || undefined;
    for (const key of this.unsureNode(node)) queue.add(key);
  }

  /** NODE when it is not known alive (lost, gone, or never looked at): it needs a look. */
  unsureNode(node: string | undefined): string[] {
    return node && (this.notAlive.has(node) || !this.watched.has(node)) ? [node] : [];
  }

  async reconcile(nodeName: string): Promise<ReconcileResult | undefined> {
    this.watched.add(nodeName);
    const node = this.o.nodes.get(nodeName);
    const facts: NodeFacts = {
      name: nodeName,
      exists: node !== undefined,
      outOfService: node ? nodeOutOfService(node) : false,
      silentMs: this.o.heartbeats.silentMs(nodeName),
      heardRenewing: this.o.heartbeats.heardRenewing(nodeName),
    };
    const { health, recheckInMs } = judgeNode(facts, this.o.lostAfterMs);
    const wasAlive = !this.notAlive.has(nodeName);
    if (health === "alive") this.notAlive.delete(nodeName);
    else this.notAlive.add(nodeName);
    const vms = this.o.vms.list().filter((vm) => placedNode(vm) === nodeName);
    const disks = this.o.disks.list().filter((d) => d.status?.nodeName === nodeName);
    const snapshots = this.o.snapshots.list().filter((s) => s.status?.nodeName === nodeName);
    if (health !== "alive" && wasAlive && vms.length + disks.length > 0)
      forObject(this.o.log, "Node", nodeName).warn(
        {
          node: nodeName,
          health,
          silentSeconds: Math.round(facts.silentMs / 1000),
          vms: vms.length,
          disks: disks.length,
        },
        "node agent not heard from",
      );
    if (!node && health === "alive" && vms.length + disks.length + snapshots.length === 0) {
      // A Node deleted with nothing on it: no timer to keep.
      this.watched.delete(nodeName);
      return undefined;
    }
    // One object that cannot be written does not hold up the others; the node is retried.
    let failed: unknown;
    const attempt = (p: Promise<void>) =>
      p.catch((err: unknown) => {
        // Gone meanwhile: nothing left to do for it.
        if (httpStatus(err) !== 404) failed ??= err;
      });
    for (const vm of vms) {
      const shared = diskNamesOf(vm).map(
        (d) => this.o.disks.get(d, vm.metadata?.namespace)?.status?.storagePoolShared === true,
      );
      await attempt(
        this.act(VirtualMachineKind, vm, vmLossAction(vm, facts, health, shared, DOMAIN_FINALIZER)),
      );
    }
    for (const disk of disks)
      await attempt(this.act(VMDiskKind, disk, diskLossAction(disk, facts, health, VOLUME_FINALIZER)));
    for (const snapshot of snapshots)
      await attempt(
        this.act(VMSnapshotKind, snapshot, snapshotLossAction(snapshot, facts, health, SNAPSHOT_FINALIZER)),
      );
    if (failed) throw failed;
    return { requeueAfterMs: recheckInMs };
  }

  private async act(kind: KindName, obj: Vm | Disk | Snapshot, action: LossAction): Promise<void> {
    if (action.act === "none") return;
    const log = forObject(this.o.log, kind.kind, `${obj.metadata?.namespace}/${obj.metadata?.name}`);
    const target = obj as AnyObject;
    const write = async (wanted: Wanted, fields: Record<string, unknown> = {}) => {
      // Only VMs and VMDisks are ever marked (a snapshot is only released).
      const writers = this.writers.get(kind)!;
      const conditions = writerConditions(
        obj.status?.conditions as Condition[] | undefined,
        wanted.filter((c) => c.type === NODE_LOST_CONDITION),
        obj.metadata?.generation ?? 0,
        new Date(),
      );
      const standing = writerConditions(
        obj.status?.conditions as Condition[] | undefined,
        wanted.filter((c) => c.type !== NODE_LOST_CONDITION),
        obj.metadata?.generation ?? 0,
        new Date(),
      );
      // The state first: NodeLost=True is never said of an object still saying Running.
      const state = standing.length
        ? await writers.state.write(target, { ...fields, conditions: standing })
        : false;
      return (await writers.condition.write(target, { conditions })) || state;
    };
    switch (action.act) {
      case "mark":
      case "clear": {
        if (!(await write(action.conditions, action.fields))) return;
        log.info({ act: action.act }, action.message);
        if (action.act === "clear" || action.news)
          void this.event(
            target,
            action.act === "clear"
              ? Reason.NodeReachable
              : action.conditions[0]?.reason === Reason.NodeGone
                ? Reason.NodeGone
                : Reason.NodeLost,
            action.message,
          );
        return;
      }
      case "release":
        // Guarded by the cached resourceVersion: a 409 is retried from a fresher cache.
        await patchMetadata(this.o.kube, kind, target, {
          finalizers: (obj.metadata?.finalizers ?? []).filter((f) => f !== action.finalizer),
        });
        log.info({ finalizer: action.finalizer }, action.message);
        void this.event(target, Reason.NodeGone, action.message);
        return;
      case "replace": {
        // The old node's fields in status by merge patch, not apply: they are the old node's
        // agent's, and it is gone. Guarded by the cached resourceVersion: a stale cache never
        // unplaces a VM placed again already. Then the placement loses its node (UUID and MACs
        // stay), guarded by the version that patch made: cut short between the two, the VM is
        // still the lost node's and the next look does both again.
        const unplaced = await mergePatchStatus(
          this.o.kube,
          kind,
          target,
          Object.fromEntries(NODE_BOUND_VM_STATUS.map((f) => [f, null])),
          obj.metadata?.resourceVersion,
        );
        const vm = obj as Vm;
        if (placementRecorded(vm)) {
          const { nodeName: _gone, ...held } = placementOf(vm);
          await patchMetadata(
            this.o.kube,
            kind,
            { ...target, metadata: { ...target.metadata, resourceVersion: unplaced } },
            { annotations: { [PLACEMENT_ANNOTATION]: encodePlacement(held, vm.metadata.uid) } },
          );
        }
        await write(placedAgainConditions(action.message));
        log.info({}, action.message);
        void this.event(target, Reason.NodeGone, action.message);
        return;
      }
    }
  }
}
