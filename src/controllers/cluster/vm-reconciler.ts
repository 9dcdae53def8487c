// Cluster side of VirtualMachine: places each VM on a node, gives it a UUID and stable MAC
// addresses — all in one metadata write: the node label the agent selects on, the domain
// finalizer and the placement annotation (vm-placement.ts), which the agent's first report
// copies into status — and says clearly when no node can take it.
import { randomUUID } from "node:crypto";
import type { KubernetesObject, V1Namespace, V1Node } from "@kubernetes/client-node";
import { DOMAIN_FINALIZER, NODE_LABEL, VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { VMTemplate } from "../../api/vmtemplate.ts";
import { type AnyObject, type Kube, keyOf, patchMetadata, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import type { WatchVerb } from "../../runtime/watch.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import { findCondition } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { CONDITIONS_RULE } from "../status-diff.ts";
import { OWN_WRITE_MEMORY_MS, olderVersion, STANDING_FIELD_MANAGER, StatusWriter } from "../status-writer.ts";
import { type Refusal, type TenancyDefaults, tenantPolicy } from "../tenant-policy.ts";
import {
  encodePlacement,
  PLACEMENT_ANNOTATION,
  placedNode,
  placementOf,
  placementRecorded,
} from "../vm-placement.ts";
import { clonePlan, createCloneDisks } from "./clone-prep.ts";
import { nodeOfVmDisks } from "./disk-placement.ts";
import type { PlacementBook } from "./disk-reconciler.ts";
import type { HeartbeatView } from "./heartbeat-clock.ts";
import { orphanPlacementOfVm, withOrphanIdentity } from "./orphan-placement.ts";
import { type NodeView, nodeView, type PlacementPolicy, place } from "./placement.ts";
import { movableForRoom } from "./room-move.ts";
import { childDiskSpecs, sourceBaseNode, takenDiskName, templateRecord } from "./template-plan.ts";
import { ADMITTED_CONDITION, clusterRefusal } from "./vm-admission.ts";
import type { VmIndex } from "./vm-index.ts";
import { InterfaceAssigner } from "./vm-interfaces.ts";
import { capacityNeed, NOTHING, type Resources } from "./vm-reservation.ts";
import {
  awaitingAgentStatus,
  firstPlacementStatus,
  type HeldIdentity,
  notPlacedStatus,
  placedStatus,
  placementRequest,
  refusedStatus,
  unschedulableStatus,
} from "./vm-status.ts";

export const CONTROLLER_FIELD_MANAGER = "libvirt-operator-controller";
export const CLONE_FIELD_MANAGER = "libvirt-operator-controller-clone";
/** The word that a VM placed again is on its way to its new node, written once per move. */
export const MOVE_FIELD_MANAGER = "libvirt-operator-controller-move";
/** A clone waiting for its snapshot looks again this often (and whenever the snapshot changes). */
const CLONE_POLL_MS = 5000;
/** Looked at again when the cache is behind our own write (its watch event usually comes first). */
const CACHE_BEHIND_RECHECK_MS = 1000;
/** A cache that has not shown our write by then never will (a watch stuck, an etcd restore): judged as it is. */
const CACHE_BEHIND_FOR_MS = OWN_WRITE_MEMORY_MS;
const COMPONENT = "libvirt-operator-controller";
/** Unschedulable VMs are looked at again this often even without node changes. */
const UNSCHEDULABLE_RETRY_MS = 30_000;
/** How long a placed VM's agent has to report before the VM says it waits for its agent. */
export const AGENT_REPORT_GRACE_MS = 15_000;
/** placedAt of a VM said to wait for its agent already (its reconciles say it again, if need be). */
const SAID_WAITING = 0;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

type Vm = VirtualMachine & KubernetesObject;

export interface ClusterVmReconcilerOptions {
  kube: Kube;
  vms: Lister<Vm>;
  /** The same VMs indexed (kept up with the informer that fills VMS): who holds what, where. */
  index: VmIndex;
  nodes: Lister<V1Node>;
  /** Which nodes' agents were heard from lately (by this controller's clock). */
  heartbeats: HeartbeatView;
  policy: PlacementPolicy;
  disks: Lister<VMDisk & KubernetesObject>;
  /** The snapshots clones are made from (spec.source.snapshot). */
  snapshots?: Pick<Lister<VMSnapshot & KubernetesObject>, "get">;
  /** The templates VMs are made from (spec.source.template). */
  templates?: Pick<Lister<VMTemplate & KubernetesObject>, "get">;
  book: PlacementBook;
  namespaces: Lister<V1Namespace>;
  /** What tenants may use unless their Namespace says otherwise. */
  tenancy: TenancyDefaults;
  log: Logger;
}

export class ClusterVmReconciler {
  private readonly o: ClusterVmReconcilerOptions;
  private readonly event: EventRecorder;
  /** Placements made but not yet seen in the cache (so two reconciles do not fill one node twice). */
  private readonly assumed = new Map<string, { node: string; cpus: number; memoryBytes: number }>();
  /** The resourceVersion our last label and placement write of a VM made, until the cache shows it. */
  private readonly metadataWrites = new Map<string, { made: string; uid?: string; at: number }>();
  /** When this process placed each VM its agent has not reported on yet (ms since the epoch). */
  private readonly placedAt = new Map<string, number>();
  /** MACs and addresses of each VM's interfaces. */
  private readonly nics: InterfaceAssigner;

  private readonly status: StatusWriter;
  private readonly standing: StatusWriter;
  /** status.clonedFrom or status.template, written once, by a manager of its own (no other apply removes it). */
  private readonly clone: StatusWriter;
  /** A move's "on its way to its new node", by a manager of its own (see moveForRoom). */
  private readonly moves: StatusWriter;

  constructor(options: ClusterVmReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.nics = new InterfaceAssigner(options.index, options.nodes);
    this.standing = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: STANDING_FIELD_MANAGER,
      yieldToOthers: true,
    });
    this.clone = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: CLONE_FIELD_MANAGER,
      owns: ["clonedFrom", "template"],
    });
    this.status = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: CONTROLLER_FIELD_MANAGER,
      listMaps: { conditions: CONDITIONS_RULE, interfaces: { key: "name", ownsSet: true } },
    });
    this.moves = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: MOVE_FIELD_MANAGER,
      listMaps: { conditions: CONDITIONS_RULE, interfaces: { key: "name", ownsSet: true } },
    });
  }

  /** Keys of clones of SNAP not made yet. */
  clonesOf(snap: VMSnapshot & KubernetesObject): string[] {
    return this.o.index.clonesOf(snap.metadata?.namespace ?? "", snap.metadata?.name ?? "");
  }

  /** Keys of VMs made from TPL that have not taken from it yet. */
  madeFrom(tpl: VMTemplate & KubernetesObject): string[] {
    return this.o.index.madeFrom(tpl.metadata?.namespace ?? "", tpl.metadata?.name ?? "");
  }

  /** Keys of VMs not placed yet that use DISK: it may now say where they must go. */
  unplacedUsersOf(disk: VMDisk & KubernetesObject): string[] {
    return this.o.index.unplacedUsersOf(disk.metadata?.namespace ?? "", disk.metadata?.name ?? "");
  }

  /** Keys of VMs refused for a MAC or UUID another VM holds. */
  waitingForIdentity(): string[] {
    return this.o.index.waitingForIdentity();
  }

  /** LISTENER hears when a VM stops reserving room on a node (deleted, stopped). */
  onRoomFreed(listener: () => void): void {
    this.o.index.onRoomFreed(listener);
  }

  /** Keys of every VM of NAMESPACE. */
  keysIn(namespace: string): string[] {
    return this.o.vms.list(namespace).map((vm) => keyOf(vm));
  }

  /** Keys of placed VMs their node has no room to start: moved when room frees elsewhere. */
  waitingForRoom(): string[] {
    return this.o.index.waitingForRoom();
  }

  /** Keys of VMs waiting for a node: node or heartbeat changes give them another try. */
  unplacedKeys(): string[] {
    return this.o.index.unplacedKeys();
  }

  /**
   * The watch event of our own label and placement write: it was guarded by the version the
   * reconcile judged on, so nothing anyone else wrote is in it, and that reconcile did the work.
   */
  ownEcho(vm: Vm, verb: WatchVerb): boolean {
    return verb === "update" && this.ownPlacementWrite(vm)?.made === vm.metadata.resourceVersion;
  }

  /** Our last label and placement write of VM (this very object), while it is remembered. */
  private ownPlacementWrite(vm: Vm) {
    const wrote = this.metadataWrites.get(keyOf(vm));
    return wrote?.uid === vm.metadata.uid && Date.now() - (wrote?.at ?? 0) < CACHE_BEHIND_FOR_MS
      ? wrote
      : undefined;
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const vm = this.o.vms.get(name, namespace);
    // The cache does not show our last label and placement write yet: judged on what it shows,
    // the VM would be placed again (its addresses handed out anew). Its watch event comes.
    const wrote = vm && this.ownPlacementWrite(vm);
    if (wrote && olderVersion(vm.metadata.resourceVersion, wrote.made))
      return { requeueAfterMs: CACHE_BEHIND_RECHECK_MS };
    this.metadataWrites.delete(key);
    if (!vm) {
      this.assumed.delete(key);
      this.placedAt.delete(key);
      this.o.book.vmNodes.delete(key);
      this.nics.release(key);
      return undefined;
    }
    const log = forObject(this.o.log, "VirtualMachine", key);
    const placedOn = placedNode(vm);
    if (!placedOn) this.placedAt.delete(key); // not placed (any more)
    if (vm.metadata.deletionTimestamp) {
      // Never placed: no agent will release the finalizer, so the controller does.
      if (!placedOn && vm.metadata.finalizers?.includes(DOMAIN_FINALIZER)) {
        await patchMetadata(this.o.kube, VirtualMachineKind, vm as AnyObject, {
          finalizers: vm.metadata.finalizers.filter((f) => f !== DOMAIN_FINALIZER),
        });
      } else if (placedOn && vm.metadata.labels?.[NODE_LABEL] !== placedOn) {
        // The node's agent finds its VMs by this label; it must see this one to stop its guest.
        await patchMetadata(this.o.kube, VirtualMachineKind, vm as AnyObject, {
          labels: { [NODE_LABEL]: placedOn },
        });
      }
      this.assumed.delete(key);
      this.o.book.vmNodes.delete(key);
      this.placedAt.delete(key);
      return undefined;
    }

    const refusal = clusterRefusal(vm, {
      policy: tenantPolicy(this.o.namespaces.get(namespace), this.o.tenancy),
      holdersOf: this.o.index.holdersOf,
    });
    if (refusal && findCondition(vm.status?.conditions, ADMITTED_CONDITION)?.message !== refusal.message) {
      log.info({ reason: refusal.reason, err: refusal.message }, "VM refused");
      void this.event(vm, refusal.reason, refusal.message);
    }
    if (refusal && !placedOn) {
      await this.status.write(vm, refusedStatus(vm, refusal));
      return undefined;
    }

    if (placedOn) {
      // No room to start on its node: another node may have some now, or later.
      const movable = !refusal && movableForRoom(vm, placedOn);
      if (movable && (await this.moveForRoom(vm, placedOn, log))) return undefined;
      const held = this.held(vm, placedOn, refusal);
      await this.labelAndHold(vm, placedOn, held);
      // The agent's report copies the placement into status. Written here too once it did (the
      // same values: nothing to write), while refused, and for VMs placed before the annotation.
      if (refusal || !placementRecorded(vm) || vm.status?.nodeName === placedOn)
        await this.status.write(vm, placedStatus(vm, placedOn, held, refusal));
      // A template's VM gets its disks on its node (the base for that node is the template's work).
      if (vm.status?.template) await this.makeTemplateDisks(vm, placedOn);
      await this.awaitingAgent(vm, placedOn);
      if (vm.metadata.labels?.[NODE_LABEL] === placedOn) this.assumed.delete(key);
      return movable ? { requeueAfterMs: UNSCHEDULABLE_RETRY_MS } : undefined;
    }

    if (vm.spec.source?.snapshot && !vm.status?.clonedFrom) return this.prepareClone(vm, log);
    if (vm.spec.source?.template && !vm.status?.template) return this.prepareFromTemplate(vm, log);
    const need = capacityNeed(vm);
    const disksOn = nodeOfVmDisks(
      vm,
      (disk) => this.o.disks.get(disk, namespace),
      (disk) => this.o.book.diskNodes.get(`${namespace}/${disk}`),
    );
    // What an earlier object of this name left on a node (orphan-placement.ts) decides first.
    const held = orphanPlacementOfVm(vm, this.o.nodes.list(), (d) => this.o.disks.get(d, namespace), disksOn);
    const result =
      held ??
      ("error" in disksOn
        ? disksOn
        : place(placementRequest(vm, disksOn), this.nodeViews(key), this.o.policy));
    if ("error" in result) {
      const previous = vm.status?.conditions?.find((c) => c.type === "Scheduled")?.message;
      if (previous !== result.error) {
        log.info({ reason: result.error }, "VM unschedulable");
        void this.event(vm, Reason.Unschedulable, result.error);
      }
      await this.status.write(vm, unschedulableStatus(vm, result.error));
      return { requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
    }

    this.assumed.set(key, { node: result.node, ...need });
    this.o.book.vmNodes.set(key, result.node);
    const placed = withOrphanIdentity(vm, held);
    const identity = this.held(placed, result.node);
    // One write (guarded by the cached resourceVersion): label, finalizer and placement.
    const labelled = await this.labelAndHold(vm, result.node, identity);
    this.placedAt.set(key, Date.now());
    // What was said before (no room, waiting) is no longer so: said at once, not when the agent
    // reports — unless it has already (then its report stands).
    if (findCondition(vm.status?.conditions, "Scheduled"))
      await this.status.writeIfUnchanged(labelled, firstPlacementStatus(placed, result.node, identity));
    log.info({ node: result.node }, "VM placed");
    void this.event(vm, Reason.Scheduled, `placed on node ${result.node}`);
    // Here, not in a reconcile woken by the placement write: its watch event is our own echo.
    if (vm.status?.template) await this.makeTemplateDisks(vm, result.node);
    return undefined;
  }

  /**
   * Its node's agent will not start it for lack of room, and nothing ties it there: placed on a
   * node with room, if one has. Label and placement move in one write (guarded by the cached
   * resourceVersion): the old node's agent stops and undefines its domain once it sees the VM
   * placed elsewhere (fence).
   */
  private async moveForRoom(vm: Vm, from: string, log: Logger): Promise<boolean> {
    const key = keyOf(vm);
    const views = this.nodeViews(key).filter((n) => n.name !== from);
    const result = place(placementRequest(vm, {}), views, this.o.policy);
    if ("error" in result) return false;
    this.assumed.set(key, { node: result.node, ...capacityNeed(vm) });
    this.o.book.vmNodes.set(key, result.node);
    const held = this.held(vm, result.node);
    const labelled = await this.labelAndHold(vm, result.node, held);
    this.placedAt.set(key, Date.now());
    // Status too (a second write, for moves only): an agent of an older release on the old node
    // goes by status.nodeName, and must see the VM gone from its node to fence its domain; and
    // the old node's word (no room) is no longer so: the VM is on its way to its new node (unless
    // the new node's agent has reported already). A writer of its own: what it takes from the
    // old node's agent (printableStatus, Ready …) no later write of the controller's removes.
    await this.moves.writeIfUnchanged(labelled, firstPlacementStatus(vm, result.node, held));
    const message = `node ${from} had no room to start it: placed on node ${result.node}`;
    log.info({ from, node: result.node }, "VM moved for room");
    void this.event(vm, Reason.MovedForRoom, message);
    return true;
  }

  /**
   * A clone waits for its snapshot; then its disks are made and the hardware it takes recorded
   * (status.clonedFrom), and the next reconcile places it like any VM.
   */
  private async prepareClone(vm: Vm, log: Logger): Promise<ReconcileResult | undefined> {
    const ns = vm.metadata.namespace ?? "";
    const snap = this.o.snapshots?.get(vm.spec.source?.snapshot ?? "", ns);
    const plan = clonePlan(vm, snap, (n) => this.o.disks.get(n, ns));
    if ("wait" in plan) {
      await this.notPlaced(vm, "WaitingForSnapshot", plan.wait, "reconciling", log);
      return { requeueAfterMs: CLONE_POLL_MS };
    }
    if ("refuse" in plan) {
      await this.notPlaced(vm, plan.refuse.reason, plan.refuse.message, "stalled", log);
      return undefined;
    }
    await createCloneDisks(this.o.kube, vm, plan.disks ?? []);
    await this.clone.write(vm, { clonedFrom: plan.record });
    log.info(
      { snapshot: plan.record.snapshot, disks: (plan.disks ?? []).map((d) => d.name) },
      "VM cloned from a snapshot",
    );
    void this.event(
      vm,
      Reason.Cloning,
      `made from VMSnapshot ${plan.record.snapshot} of ${plan.record.vmName}: disks ${(plan.disks ?? []).map((d) => d.name).join(", ") || "none"}`,
    );
    return undefined;
  }

  /**
   * A VM made from a template records what it takes (status.template) once the template is
   * there; a template made from a VM has its bases on their node already, so the VM's disks are
   * made at once (the VM then goes where they are); otherwise they are made once it is placed.
   */
  private async prepareFromTemplate(vm: Vm, log: Logger): Promise<ReconcileResult | undefined> {
    const ns = vm.metadata.namespace ?? "";
    const tpl = this.o.templates?.get(vm.spec.source?.template ?? "", ns);
    const plan = templateRecord(vm, tpl, (n) => this.o.disks.get(n, ns));
    if ("wait" in plan) {
      await this.notPlaced(vm, "WaitingForTemplate", plan.wait, "reconciling", log);
      return { requeueAfterMs: CLONE_POLL_MS };
    }
    const taken =
      "record" in plan ? takenDiskName(vm, plan.record, (n) => this.o.disks.get(n, ns)) : undefined;
    const refuse =
      "refuse" in plan
        ? plan.refuse
        : taken
          ? {
              reason: "DiskNameTaken",
              message: `the VM's disk would be VMDisk ${taken}, which exists and is not this VM's: rename or delete it`,
            }
          : undefined;
    if (refuse || !("record" in plan)) {
      const r = refuse ?? { reason: "TemplateRefused", message: "" };
      await this.notPlaced(vm, r.reason, r.message, "stalled", log);
      return undefined;
    }
    await this.clone.write(vm, { template: plan.record });
    const baseNode = sourceBaseNode(plan.record, (n) => this.o.disks.get(n, ns));
    if (baseNode) await createCloneDisks(this.o.kube, vm, childDiskSpecs(plan.record, baseNode));
    log.info({ template: plan.record.name, baseNode }, "VM made from a template");
    void this.event(
      vm,
      Reason.FromTemplate,
      `made from VMTemplate ${plan.record.name} (generation ${plan.record.generation}): disks ${plan.record.disks.map((d) => d.vmDisk).join(", ") || "none"}`,
    );
    return undefined;
  }

  /** The VM's own disks from its template record, on NODE, made where missing. */
  private async makeTemplateDisks(vm: Vm, node: string) {
    const record = vm.status?.template;
    if (!record) return;
    const ns = vm.metadata.namespace ?? "";
    const missing = childDiskSpecs(
      record,
      sourceBaseNode(record, (n) => this.o.disks.get(n, ns)) ?? node,
    ).filter((d) => !this.o.disks.get(d.name, ns));
    if (missing.length) await createCloneDisks(this.o.kube, vm, missing);
  }

  /** Not placed yet: said in status, and logged once per new reason or message. */
  private async notPlaced(
    vm: Vm,
    reason: string,
    message: string,
    state: "reconciling" | "stalled",
    log: Logger,
  ) {
    const before = findCondition(vm.status?.conditions, "Scheduled");
    if (before?.reason !== reason || before.message !== message)
      log.info({ reason, why: message }, state === "stalled" ? "VM refused" : "VM waits");
    await this.status.write(vm, notPlacedStatus(vm, reason, message, state));
  }
  /**
   * The node label the agent selects on, the finalizer and the placement, in one write before
   * any libvirt side effect (none when they are there already). Resolves with the VM at the
   * resourceVersion this write made (the cached one when nothing was written).
   */
  private async labelAndHold(vm: Vm, node: string, held: HeldIdentity): Promise<Vm> {
    const finalizers = vm.metadata.finalizers ?? [];
    const placement = encodePlacement({ nodeName: node, ...held }, vm.metadata.uid);
    if (
      vm.metadata.labels?.[NODE_LABEL] === node &&
      finalizers.includes(DOMAIN_FINALIZER) &&
      vm.metadata.annotations?.[PLACEMENT_ANNOTATION] === placement
    )
      return vm;
    const made = await patchMetadata(this.o.kube, VirtualMachineKind, vm as AnyObject, {
      labels: { [NODE_LABEL]: node },
      annotations: { [PLACEMENT_ANNOTATION]: placement },
      finalizers: finalizers.includes(DOMAIN_FINALIZER) ? finalizers : [...finalizers, DOMAIN_FINALIZER],
    });
    if (!made) return vm;
    this.metadataWrites.set(keyOf(vm), { made, uid: vm.metadata.uid, at: Date.now() });
    return { ...vm, metadata: { ...vm.metadata, resourceVersion: made } };
  }

  /** Nodes with what the other VMs reserve there, those placed a moment ago included. */
  private nodeViews(exceptKey: string): NodeView[] {
    const pending = new Map<string, Resources>();
    for (const [key, a] of this.assumed) {
      // Counted by the index once the cache shows it placed there (a VM being moved for room
      // still shows its old node: its new one counts it from here meanwhile).
      if (key === exceptKey || this.o.index.placedNode(key) === a.node) continue;
      const p = pending.get(a.node) ?? { ...NOTHING };
      pending.set(a.node, { cpus: p.cpus + a.cpus, memoryBytes: p.memoryBytes + a.memoryBytes });
    }
    return this.o.nodes.list().map((n) => {
      const name = n.metadata?.name ?? "";
      const placed = this.o.index.allocatedOn(name, exceptKey);
      const p = pending.get(name) ?? NOTHING;
      return nodeView(n, this.o.heartbeats.fresh(name), {
        cpus: placed.cpus + p.cpus,
        memoryBytes: placed.memoryBytes + p.memoryBytes,
      });
    });
  }

  /**
   * A VM its node's agent has not reported on AGENT_REPORT_GRACE_MS after it was placed (or
   * first seen so) is said to be waiting for its agent (a new VM reads InProgress from its create on:
   * its status starts at observedGeneration 0). Written by a manager of its own that yields:
   * once the agent holds these conditions, a stale cache here cannot overwrite them.
   */
  private async awaitingAgent(vm: Vm, node: string): Promise<void> {
    const key = keyOf(vm);
    // Reported by the agent of its node (a VM just moved still shows its old node's report).
    if (vm.status?.domainName && vm.status.nodeName === node) {
      this.placedAt.delete(key);
      return;
    }
    // First seen waiting (this process did not place it, or leads since): from now on.
    const placedAt = this.placedAt.get(key) ?? Date.now();
    this.placedAt.set(key, placedAt);
    // Not requeued: overdueForAgent() brings back only those still waiting when it is time.
    if (Date.now() - placedAt < AGENT_REPORT_GRACE_MS) return;
    this.placedAt.set(key, SAID_WAITING);
    await this.standing.write(vm, awaitingAgentStatus(vm, node));
  }

  /** Keys of VMs placed over AGENT_REPORT_GRACE_MS ago that their agent has not reported on (not said yet). */
  overdueForAgent(now = Date.now()): string[] {
    return [...this.placedAt]
      .filter(([, at]) => at !== SAID_WAITING && now - at >= AGENT_REPORT_GRACE_MS)
      .map(([key]) => key);
  }

  /** What VM holds on NODE: while refused, nothing new is taken on (a MAC or UUID another VM holds stays its own). */
  private held(vm: Vm, node: string, refusal?: Refusal): HeldIdentity {
    const placement = placementOf(vm);
    return refusal
      ? { uuid: placement.uuid, interfaces: [...placement.interfaces] }
      : { uuid: placement.uuid ?? vm.spec.uuid ?? randomUUID(), interfaces: this.nics.interfaces(vm, node) };
  }
}
