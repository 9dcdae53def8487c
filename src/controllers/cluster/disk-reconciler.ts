// Cluster side of VMDisk: places each disk on a node (status.nodeName + the node label the
// agent selects on + the volume finalizer), records which VMs use it (status.attachedTo),
// and protects it from deletion while they do. Disks a VM owns (a controller ownerReference)
// go with it through Kubernetes' own garbage collector.
import type { KubernetesObject, V1Lease, V1Namespace, V1Node } from "@kubernetes/client-node";
import { DISK_PROTECTION_FINALIZER, NODE_LABEL, VMDiskKind, VOLUME_FINALIZER } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import { type AnyObject, type Kube, patchMetadata, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { type Condition, standingConditions, writerConditions } from "../conditions.ts";
import { diskRefusal, isPlaced, snapshotBytesOf } from "../disk-limits.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import {
  CAPACITY_ANNOTATION,
  heartbeatRevivals,
  NODE_ENABLED_LABEL,
  nodeCordoned,
  parseCapacity,
} from "../node-facts.ts";
import { STANDING_FIELD_MANAGER, StatusWriter } from "../status-writer.ts";
import { type Refusal, type TenancyDefaults, tenantPolicy } from "../tenant-policy.ts";
import { effectiveVm } from "../vm-clone.ts";
import { asPlacedOn, placedNode } from "../vm-placement.ts";
import { CLUSTER_DISK_VIEW, DISK_USERS_VIEW } from "../watch-views.ts";
import {
  type DiskNodeView,
  diskHolders,
  diskNamesOf,
  diskNodeDecision,
  linkedClonesOf,
  olderFirst,
  placeFloatingDisk,
  poolFit,
  usesDisk,
} from "./disk-placement.ts";
import type { HeartbeatView } from "./heartbeat-clock.ts";
import { type ClusterIndexes, objectsOf } from "./object-indexes.ts";
import { orphanPlacementOfDisk } from "./orphan-placement.ts";
import { type DiskLocation, provisionedInPool } from "./pool-capacity.ts";

const COMPONENT = "libvirt-operator-controller";
const FIELD_MANAGER = "libvirt-operator-controller";
const RETRY_MS = 30_000;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

type Vm = VirtualMachine & KubernetesObject;
type Disk = VMDisk & KubernetesObject;

/** Placements made by this process and not yet seen in the caches, shared by the VM and disk sides. */
export interface PlacementBook {
  vmNodes: Map<string, string>;
  diskNodes: Map<string, string>;
}

export interface ClusterDiskReconcilerOptions {
  kube: Kube;
  disks: Lister<Disk>;
  vms: Lister<Vm>;
  /** Who uses a disk, which disks a VM had, linked clones of a disk. */
  indexes: ClusterIndexes;
  nodes: Lister<V1Node>;
  /** Which nodes' agents were heard from lately (by this controller's clock). */
  heartbeats: HeartbeatView;
  book: PlacementBook;
  /** Namespaces (their annotations narrow or widen the tenancy defaults). */
  namespaces: Lister<V1Namespace>;
  tenancy: TenancyDefaults;
  /** Provisioned bytes a pool may be promised per byte of capacity (STORAGE_OVERCOMMIT). */
  storageOvercommit: number;
  /** What the namespace's snapshots stored counts in its byte budget; disks made from one go to its node. */
  snapshots?: Pick<Lister<VMSnapshot>, "list" | "get">;
  log: Logger;
}

/**
 * What disk placement and protection react to: every disk; VMs (the disks they use, used
 * before or own); nodes and heartbeats (for disks waiting for a node).
 */
export function watchClusterDisks(
  queue: WorkQueue,
  reconciler: ClusterDiskReconciler,
  sources: {
    disks: Watchable<Disk>;
    vms: Watchable<Vm>;
    nodes: Watchable<V1Node>;
    leases: Watchable<V1Lease>;
    namespaces: Watchable<V1Namespace>;
    snapshots?: Watchable<VMSnapshot & KubernetesObject>;
  },
): void {
  watchOwn(sources.disks, queue, undefined, CLUSTER_DISK_VIEW);
  // A snapshot taken (or one deleted: its bytes leave the budget) moves disks that wait.
  if (sources.snapshots)
    watchRelated(sources.snapshots, queue, (s) => reconciler.unplacedKeys(s.metadata?.namespace));
  // A deleted disk frees pool room and namespace bytes; an admin may raise a namespace's limits.
  watchRelated(sources.disks, queue, (_d, verb) => (verb === "delete" ? reconciler.unplacedKeys() : []));
  // A linked clone made or gone holds or frees the disk it reads from.
  watchRelated(
    sources.disks,
    queue,
    (d) => {
      const from = d.spec.source?.disk;
      return from?.linked ? [`${d.metadata?.namespace}/${from.name}`] : [];
    },
    CLUSTER_DISK_VIEW,
  );
  watchRelated(sources.namespaces, queue, (ns) => reconciler.unplacedKeys(ns.metadata?.name));
  watchRelated(sources.vms, queue, (vm) => reconciler.keysForVm(vm), DISK_USERS_VIEW);
  watchRelated(sources.nodes, queue, () => reconciler.unplacedKeys());
  const revived = heartbeatRevivals();
  watchRelated(sources.leases, queue, (lease, verb) =>
    revived(lease, verb) ? reconciler.unplacedKeys() : [],
  );
}

export class ClusterDiskReconciler {
  private readonly o: ClusterDiskReconcilerOptions;
  private readonly event: EventRecorder;
  /** Last "deletion blocked" message per disk, so the Event is recorded once per change. */
  private readonly blockedMessages = new Map<string, string>();

  private readonly status: StatusWriter;
  private readonly standing: StatusWriter;

  constructor(options: ClusterDiskReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, { kind: VMDiskKind, fieldManager: FIELD_MANAGER });
    this.standing = new StatusWriter(options.kube, {
      kind: VMDiskKind,
      fieldManager: STANDING_FIELD_MANAGER,
      yieldToOthers: true,
    });
  }

  /** Disks a VM uses or used before (they must look again at who holds them). */
  keysForVm(raw: Vm): string[] {
    // A clone's or a template's VM names its disks in what it recorded, not in its own spec.
    const vm = effectiveVm(raw);
    const ns = vm.metadata.namespace ?? "";
    const { attachedTo, byPath } = this.o.indexes.disks;
    const candidates = new Set([
      ...diskNamesOf(vm).map((d) => `${ns}/${d}`),
      ...(vm.status?.disks ?? []).flatMap((d) => (d.path ? [...byPath.keys(d.path)] : [])),
      ...attachedTo.keys(`${ns}/${vm.metadata.name}`),
    ]);
    return objectsOf(candidates, (n, dns) => this.o.disks.get(n, dns))
      .filter((d) => usesDisk(vm, d) || d.status?.attachedTo?.includes(vm.metadata.name))
      .map((d) => `${ns}/${d.metadata.name}`);
  }

  /** Disks waiting for a node: node or heartbeat changes give them another try. */
  unplacedKeys(namespace?: string): string[] {
    return this.o.disks
      .list(namespace)
      .filter((d) => !d.status?.nodeName && !d.metadata.deletionTimestamp)
      .map((d) => `${d.metadata.namespace}/${d.metadata.name}`);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const disk = this.o.disks.get(name, namespace);
    if (!disk) {
      this.o.book.diskNodes.delete(key);
      this.blockedMessages.delete(key);
      return undefined;
    }
    const log = forObject(this.o.log, "VMDisk", key);
    const { vms: vmIndex, disks: diskIndexes } = this.o.indexes;
    const users = objectsOf(vmIndex.diskUsers(namespace, name, disk.status?.path), (n, ns) =>
      this.o.vms.get(n, ns),
    )
      .filter((vm) => usesDisk(vm, disk))
      .sort(olderFirst);
    const holders = diskHolders(disk, users);
    // A linked clone reads what its guest did not change from this disk: it holds it too.
    const clones = linkedClonesOf(
      disk,
      objectsOf(diskIndexes.linkedTo.keys(key), (n, ns) => this.o.disks.get(n, ns)),
    );

    // The label is set first (the agent acts on it); status.nodeName follows. Either is the placement.
    let node = disk.status?.nodeName ?? disk.metadata.labels?.[NODE_LABEL] ?? this.o.book.diskNodes.get(key);
    let scheduled: Omit<Condition, "lastTransitionTime">;
    let retry: number | undefined;
    if (node) {
      scheduled = { type: "Scheduled", status: "True", reason: "Scheduled", message: `on node ${node}` };
    } else if (disk.metadata.deletionTimestamp) {
      // Never placed: no agent will release the volume finalizer, so the controller does.
      await this.holdAndLabel(disk, undefined, holders.length > 0 || clones.length > 0);
      return undefined;
    } else {
      const sourceName = disk.spec.source?.disk?.name;
      const source = sourceName ? this.o.disks.get(sourceName, namespace) : undefined;
      // Users the cache has not seen placed yet may have been placed by this process a moment ago.
      const seen = users.map((vm) => {
        const assumed = this.o.book.vmNodes.get(`${namespace}/${vm.metadata.name}`);
        return !placedNode(vm) && assumed ? asPlacedOn(vm, assumed) : vm;
      });
      const fromSnapshot = disk.spec.source?.snapshot?.name;
      const snapshot = fromSnapshot ? this.o.snapshots?.get(fromSnapshot, namespace) : undefined;
      // Its volume left on a node by an earlier disk of this name decides first (orphan-placement.ts).
      const decision =
        orphanPlacementOfDisk(disk, this.o.nodes.list()) ?? diskNodeDecision(disk, seen, source, snapshot);
      const refusal = this.refusal(disk);
      const placed:
        | { node: string; why?: string }
        | { wait: string }
        | { error: string }
        | { refusal: Refusal } = refusal
        ? { refusal }
        : "floating" in decision
          ? placeFloatingDisk(disk, this.nodeViews(disk), this.o.storageOvercommit)
          : "node" in decision
            ? this.checkNode(disk, decision)
            : decision;
      if ("node" in placed) {
        node = placed.node;
        this.o.book.diskNodes.set(key, node);
        const why = "why" in placed ? placed.why : "the most free space in its pool";
        scheduled = {
          type: "Scheduled",
          status: "True",
          reason: "Scheduled",
          message: `on node ${node} (${why})`,
        };
        log.info({ node, why }, "VMDisk placed");
        void this.event(disk, Reason.Scheduled, `placed on node ${node} (${why})`);
      } else {
        const message =
          "wait" in placed
            ? `waiting: ${placed.wait}`
            : "refusal" in placed
              ? placed.refusal.message
              : placed.error;
        const reason =
          "wait" in placed ? "Waiting" : "refusal" in placed ? placed.refusal.reason : "Unschedulable";
        scheduled = { type: "Scheduled", status: "False", reason, message };
        retry = RETRY_MS;
        const previous = disk.status?.conditions?.find((c) => c.type === "Scheduled")?.message;
        if (reason !== "Waiting" && previous !== message) {
          log.info({ reason, message }, "VMDisk not placed");
          void this.event(disk, reason, message);
        }
      }
    }
    await this.holdAndLabel(disk, node, holders.length > 0 || clones.length > 0);
    const inUse = this.inUseCondition(key, disk, holders, clones, log);
    await this.status.write(disk, {
      ...(node ? { nodeName: node } : {}),
      attachedTo: holders,
      conditions: this.conditions(disk, [scheduled, inUse]),
    });
    // Until the node agent reports (its phase), where the disk stands is said here, by a
    // manager that yields to the agent (a stale cache cannot overwrite the agent's word).
    if (disk.status?.phase === undefined) {
      const standing = standingConditions(
        scheduled.status === "False" && scheduled.reason !== "Waiting"
          ? { state: "stalled", reason: scheduled.reason, message: scheduled.message }
          : { state: "reconciling", reason: scheduled.reason, message: scheduled.message },
      );
      await this.standing.write(disk, {
        observedGeneration: disk.metadata.generation ?? 0,
        conditions: this.conditions(disk, standing),
      });
    }
    return retry ? { requeueAfterMs: retry } : undefined;
  }

  private inUseCondition(key: string, disk: Disk, holders: string[], clones: string[], log: Logger) {
    const names = holders.join(", ");
    if (!holders.length && clones.length) {
      const cloned = `VMDisk ${clones.join(", ")} ${clones.length === 1 ? "is a linked clone" : "are linked clones"} of the disk`;
      if (!disk.metadata.deletionTimestamp)
        return { type: "InUse", status: "True" as const, reason: "Cloned", message: cloned };
      const message = `deletion waits: ${cloned}; it goes once they are deleted`;
      if (this.blockedMessages.get(key) !== message) {
        this.blockedMessages.set(key, message);
        log.info({ clones }, "VMDisk deletion blocked");
        void this.event(disk, Reason.DeletionBlocked, message);
      }
      return { type: "InUse", status: "True" as const, reason: "DeletionBlocked", message };
    }
    if (!holders.length) {
      this.blockedMessages.delete(key);
      return {
        type: "InUse",
        status: "False" as const,
        reason: "NotAttached",
        message: "no VirtualMachine uses the disk",
      };
    }
    if (disk.metadata.deletionTimestamp) {
      const message = `deletion waits: VirtualMachine ${names} uses the disk; remove it from their spec.disks (or spec.cdrom.diskRef)`;
      if (this.blockedMessages.get(key) !== message) {
        this.blockedMessages.set(key, message);
        log.info({ holders }, "VMDisk deletion blocked");
        void this.event(disk, Reason.DeletionBlocked, message);
      }
      return { type: "InUse", status: "True" as const, reason: "DeletionBlocked", message };
    }
    return {
      type: "InUse",
      status: "True" as const,
      reason: "Attached",
      message: `used by VirtualMachine ${names}`,
    };
  }

  /**
   * One metadata patch: the node label and the volume finalizer once placed (before the agent
   * creates anything; released here when a disk is deleted before placement), and the
   * protection finalizer exactly while a VM uses the disk.
   */
  private async holdAndLabel(disk: Disk, node: string | undefined, used: boolean) {
    const current = disk.metadata.finalizers ?? [];
    const deleting = Boolean(disk.metadata.deletionTimestamp);
    const want = (f: string, on: boolean, keepIfPresent: boolean) =>
      on || (keepIfPresent && current.includes(f)) ? [f] : [];
    const others = current.filter((f) => f !== VOLUME_FINALIZER && f !== DISK_PROTECTION_FINALIZER);
    const finalizers = [
      ...others,
      // Placed: held until the agent has removed the volume; never placed and deleting: released.
      ...want(VOLUME_FINALIZER, Boolean(node) && !deleting, Boolean(node)),
      ...want(DISK_PROTECTION_FINALIZER, used && !deleting, used),
    ];
    const sameFinalizers =
      finalizers.length === current.length && finalizers.every((f) => current.includes(f));
    const labelled = !node || disk.metadata.labels?.[NODE_LABEL] === node;
    if (sameFinalizers && labelled) return;
    await patchMetadata(this.o.kube, VMDiskKind, disk as AnyObject, {
      ...(node ? { labels: { [NODE_LABEL]: node } } : {}),
      finalizers,
    });
  }

  /** The pool policy and byte budget of the disk's namespace, judged with this process's placements. */
  private refusal(disk: Disk): Refusal | undefined {
    const ns = disk.metadata.namespace ?? "";
    const policy = tenantPolicy(this.o.namespaces.get(ns), this.o.tenancy);
    const placed = (d: VMDisk) => isPlaced(d) || this.o.book.diskNodes.has(`${ns}/${d.metadata.name}`);
    const snapshotBytes = snapshotBytesOf(this.o.snapshots?.list(ns) ?? []);
    return diskRefusal(disk, this.o.disks.list(ns), policy, placed, snapshotBytes);
  }

  /** Why NODE's pool cannot take DISK (not placed anywhere yet), or undefined when it can. */
  poolRefusalOn(disk: Disk, node: string): string | undefined {
    const view = this.nodeViews(disk).find((v) => v.name === node);
    if (!view) return `node ${node} does not exist`;
    const fit = poolFit(disk, view, this.o.storageOvercommit);
    return "refusal" in fit ? fit.refusal : undefined;
  }

  /** A node chosen by the disk's users or spec must exist and, when its pools are known, have room. */
  private checkNode(disk: Disk, decision: { node: string; why: string }) {
    if (!this.o.nodes.get(decision.node))
      return { error: `node ${decision.node} (${decision.why}) does not exist` };
    const view = this.nodeViews(disk).find((v) => v.name === decision.node);
    if (!view?.storagePools) return decision; // no agent report yet: the agent says what it finds
    const fit = poolFit(disk, view, this.o.storageOvercommit);
    return "refusal" in fit ? { error: `node ${decision.node} (${decision.why}): ${fit.refusal}` } : decision;
  }

  private nodeViews(disk: Disk): DiskNodeView[] {
    const nodes = this.o.nodes.list().map((n) => {
      const name = n.metadata?.name ?? "";
      return { name, n, capacity: parseCapacity(n.metadata?.annotations?.[CAPACITY_ANNOTATION]) };
    });
    const defaultPool = new Map(nodes.map((v) => [v.name, v.capacity?.defaultStoragePool]));
    const all = this.o.disks.list();
    const locate = (d: VMDisk): DiskLocation | undefined => {
      const key = `${d.metadata.namespace}/${d.metadata.name}`;
      const node = d.status?.nodeName ?? d.metadata.labels?.[NODE_LABEL] ?? this.o.book.diskNodes.get(key);
      const pool = d.status?.pool ?? d.spec.storagePool ?? (node ? defaultPool.get(node) : undefined);
      return node && pool ? { node, pool } : undefined;
    };
    return nodes.map(({ name, n, capacity }) => {
      const provisioned: Record<string, number> = {};
      for (const [pool, facts] of Object.entries(capacity?.storagePools ?? {}))
        provisioned[pool] = provisionedInPool(all, { node: name, pool, shared: facts.shared }, locate, disk);
      return {
        name,
        usable:
          n.metadata?.labels?.[NODE_ENABLED_LABEL] === "true" &&
          !nodeCordoned(n) &&
          this.o.heartbeats.fresh(name),
        provisioned,
        ...(capacity?.storagePools ? { storagePools: capacity.storagePools } : {}),
        ...(capacity?.defaultStoragePool ? { defaultStoragePool: capacity.defaultStoragePool } : {}),
      };
    });
  }

  private conditions(disk: Disk, wanted: Array<Omit<Condition, "lastTransitionTime">>): Condition[] {
    return writerConditions(
      disk.status?.conditions as Condition[] | undefined,
      wanted,
      disk.metadata.generation ?? 0,
      new Date(),
    );
  }
}
