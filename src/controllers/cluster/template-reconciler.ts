// Cluster side of VMTemplate: keeps its bases (read-only VMDisks VMs are cloned from) where VMs
// made from it need them, takes the disks of a VM made into a template, says which VMs were made
// from it and where one could run, and holds its deletion until those VMs are gone.
import type { KubernetesObject, V1Lease, V1Node } from "@kubernetes/client-node";
import {
  TEMPLATE_DISK_LABEL,
  TEMPLATE_FINALIZER,
  TEMPLATE_GENERATION_LABEL,
  TEMPLATE_LABEL,
  VMDiskKind,
  VMTemplateKind,
} from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { VMTemplate } from "../../api/vmtemplate.ts";
import {
  type AnyObject,
  createObject,
  deleteObject,
  type Kube,
  keyOf,
  patchMetadata,
  removeFinalizer,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import type { Standing } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { heartbeatRevivals } from "../node-facts.ts";
import { StatusWriter } from "../status-writer.ts";
import { DISK_VIEW, TEMPLATE_VM_VIEW } from "../watch-views.ts";
import { linkedClonesOf } from "./disk-placement.ts";
import type { HeartbeatView } from "./heartbeat-clock.ts";
import { nodeView } from "./placement.ts";
import {
  childrenOf,
  templatePhase,
  templateRecord,
  unwantedBases,
  type WantedBase,
  wantedBases,
} from "./template-plan.ts";
import {
  ownersDiffer,
  ownersWhenGivenBack,
  ownersWhenTaken,
  sourceVerdict,
  type TakenVm,
  templateOwner,
} from "./template-source.ts";
import { bytesOf, targetNodes } from "./template-targets.ts";

export const TEMPLATE_FIELD_MANAGER = "libvirt-operator-controller-template";
/** status.vm of a template made from a VM: written once, by a manager of its own. */
const TAKEN_FIELD_MANAGER = "libvirt-operator-controller-template-vm";
const COMPONENT = "libvirt-operator-controller";
/** Templates waiting for their VM, and their target nodes, are looked at again this often. */
const RECHECK_MS = 30_000;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

type Tpl = VMTemplate & KubernetesObject;
type Disk = VMDisk & KubernetesObject;
type Vm = VirtualMachine & KubernetesObject;

export interface TemplateReconcilerOptions {
  kube: Kube;
  templates: Lister<Tpl>;
  vms: Lister<Vm>;
  disks: Lister<Disk>;
  snapshots: Pick<Lister<VMSnapshot & KubernetesObject>, "list">;
  nodes: Lister<V1Node>;
  /** Which nodes' agents were heard from lately (by this controller's clock). */
  heartbeats: HeartbeatView;
  /** Why a node's default pool cannot take a disk of these bytes (the disk placement's judgement). */
  poolRefusal(namespace: string, node: string, bytes: number): string | undefined;
  log: Logger;
}

/** The template a VM is made from, or the one it is being made into. */
function templatesOfVm(templates: Lister<Tpl>, vm: Vm): string[] {
  const ns = vm.metadata?.namespace ?? "";
  const keys = vm.spec.source?.template ? [`${ns}/${vm.spec.source.template}`] : [];
  for (const t of templates.list(ns)) if (t.spec.source?.vmName === vm.metadata?.name) keys.push(keyOf(t));
  return keys;
}

/**
 * What a template reacts to: itself; its VMs (children, and the VM it is made from); its bases
 * and the disks it took; snapshots of the VM it waits for; nodes and heartbeats (targets).
 */
export function watchTemplates(
  queue: { add(key: string): void; forget(key: string): void },
  sources: {
    templates: Watchable<Tpl> & Lister<Tpl>;
    vms: Watchable<Vm>;
    disks: Watchable<Disk>;
    snapshots: Watchable<VMSnapshot & KubernetesObject>;
    nodes: Watchable<V1Node>;
    leases: Watchable<V1Lease>;
  },
): void {
  const all = () => sources.templates.list().map((t) => keyOf(t));
  watchOwn(sources.templates, queue);
  watchRelated(sources.vms, queue, (vm) => templatesOfVm(sources.templates, vm), TEMPLATE_VM_VIEW);
  watchRelated(
    sources.disks,
    queue,
    (d) => {
      const name = d.metadata?.labels?.[TEMPLATE_LABEL] ?? d.status?.baseOf?.template;
      return name ? [`${d.metadata?.namespace}/${name}`] : [];
    },
    DISK_VIEW,
  );
  watchRelated(sources.snapshots, queue, (s) =>
    sources.templates
      .list(s.metadata?.namespace)
      .filter((t) => t.spec.source?.vmName === s.spec.vmName)
      .map((t) => keyOf(t)),
  );
  watchRelated(sources.nodes, queue, all);
  // A heartbeat only matters when an agent comes back (or goes: a node is no target then).
  const revived = heartbeatRevivals();
  watchRelated(sources.leases, queue, (lease, verb) => (revived(lease, verb) ? all() : []));
}

export class TemplateReconciler {
  private readonly o: TemplateReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  private readonly taken: StatusWriter;
  /** VMDisk status.baseOf: this manager's alone. */
  private readonly baseOf: StatusWriter;
  /** Last "deletion blocked" message per template: the Event is recorded once per change. */
  private readonly blocked = new Map<string, string>();

  constructor(options: TemplateReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VMTemplateKind,
      fieldManager: TEMPLATE_FIELD_MANAGER,
    });
    this.taken = new StatusWriter(options.kube, {
      kind: VMTemplateKind,
      fieldManager: TAKEN_FIELD_MANAGER,
      owns: ["vm"],
    });
    this.baseOf = new StatusWriter(options.kube, {
      kind: VMDiskKind,
      fieldManager: TEMPLATE_FIELD_MANAGER,
      owns: ["baseOf"],
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const tpl = this.o.templates.get(name, namespace);
    if (!tpl) {
      this.blocked.delete(key);
      return undefined;
    }
    const log = forObject(this.o.log, "VMTemplate", key);
    const children = childrenOf(tpl, this.o.vms.list(namespace));
    const disks = this.o.disks.list(namespace);
    const bases = disks.filter(
      (d) =>
        d.metadata.labels?.[TEMPLATE_LABEL] === name &&
        d.metadata.ownerReferences?.some((r) => r.uid === tpl.metadata.uid),
    );
    if (tpl.metadata.deletionTimestamp) return this.finish(key, tpl, children, bases, log);
    if (!tpl.metadata.finalizers?.includes(TEMPLATE_FINALIZER))
      await patchMetadata(this.o.kube, VMTemplateKind, tpl as AnyObject, {
        finalizers: [...(tpl.metadata.finalizers ?? []), TEMPLATE_FINALIZER],
      });

    let waiting: { reason: string; message: string } | undefined;
    let taken = tpl.status?.vm;
    let wanted: WantedBase[] = [];
    if (tpl.spec.source) {
      if (!taken) {
        const vm = this.o.vms.get(tpl.spec.source.vmName, namespace);
        const verdict = sourceVerdict(
          tpl,
          vm,
          this.o.snapshots.list(namespace),
          (n) => this.o.disks.get(n, namespace),
          this.o.templates.list(namespace),
        );
        if ("wait" in verdict) waiting = verdict.wait;
        else {
          taken = verdict.take;
          await this.taken.write(tpl, { vm: taken });
          log.info({ vm: taken.name, disks: taken.disks.map((d) => d.vmDisk) }, "VM made into a template");
          void this.event(
            tpl,
            Reason.VMTaken,
            `VirtualMachine ${taken.name} is now this template: its disks ${taken.disks.map((d) => d.vmDisk).join(", ")} are its bases`,
          );
        }
      }
      if (taken) await this.holdTaken(tpl, taken);
    } else {
      wanted = wantedBases(tpl, children, bases, (n) => this.o.disks.get(n, namespace));
      await this.makeBases(tpl, wanted, bases, log);
      for (const gone of unwantedBases(tpl, bases, wanted, disks, children))
        await this.deleteDisk(gone, log, "base no longer needed");
    }
    const baseDisks = taken
      ? taken.disks.map((d) => this.o.disks.get(d.vmDisk, namespace)).filter((d): d is Disk => Boolean(d))
      : bases;
    const current = String(tpl.metadata.generation ?? 1);
    const notMadeYet = wanted
      .filter((w) => String(w.generation) === current && !bases.some((b) => b.metadata.name === w.name))
      .map((w) => w.name);
    const phase = templatePhase(tpl, baseDisks, waiting, notMadeYet);
    const { targets, unfit } = this.targets(tpl, taken, baseDisks);
    if (JSON.stringify(targets) !== JSON.stringify(tpl.status?.targetNodes ?? []))
      log.info({ targets, unfit }, "target nodes changed");
    const standing: Standing =
      phase.phase === "Ready"
        ? { state: "ready", reason: phase.reason, message: phase.message }
        : phase.phase === "Failed"
          ? { state: "stalled", reason: phase.reason, message: phase.message }
          : { state: "reconciling", reason: phase.reason, message: phase.message };
    await this.status.writeStanding(
      tpl,
      {
        phase: phase.phase,
        ...(phase.progress !== undefined ? { progress: phase.progress } : {}),
        children: children.map((c) => c.metadata.name).sort(),
        targetNodes: targets,
        bases: baseDisks.map((b) => ({
          vmDisk: b.metadata.name,
          disk: b.metadata.labels?.[TEMPLATE_LABEL]
            ? (b.metadata.labels?.[TEMPLATE_DISK_LABEL] ?? "")
            : (taken?.disks.find((d) => d.vmDisk === b.metadata.name)?.name ?? ""),
          ...(b.status?.nodeName || b.spec.nodeName ? { node: b.status?.nodeName ?? b.spec.nodeName } : {}),
          generation: Number(b.metadata.labels?.[TEMPLATE_GENERATION_LABEL] ?? tpl.metadata.generation ?? 1),
          ...(b.status?.phase ? { phase: b.status.phase } : {}),
        })),
      },
      standing,
    );
    // Also when nothing changes here: a node whose agent stopped is no target any more.
    return { requeueAfterMs: RECHECK_MS };
  }

  /** The VM's disks are the template's: owned by it, and marked as bases. */
  private async holdTaken(tpl: Tpl, taken: TakenVm) {
    const ns = tpl.metadata.namespace ?? "";
    for (const t of taken.disks) {
      const disk = this.o.disks.get(t.vmDisk, ns);
      if (!disk || disk.metadata.deletionTimestamp) continue;
      const owners = ownersWhenTaken(disk, tpl, taken.uid);
      if (ownersDiffer(disk.metadata.ownerReferences, owners))
        await patchMetadata(this.o.kube, VMDiskKind, disk as AnyObject, { ownerReferences: owners });
      await this.baseOf.write(disk, {
        baseOf: { template: tpl.metadata.name, templateUID: tpl.metadata.uid ?? "" },
      });
    }
  }

  /** Creates the wanted bases that do not exist yet, and marks every base as one. */
  private async makeBases(tpl: Tpl, wanted: readonly WantedBase[], bases: readonly Disk[], log: Logger) {
    const ns = tpl.metadata.namespace ?? "";
    for (const w of wanted) {
      if (bases.some((b) => b.metadata.name === w.name)) continue;
      if (this.o.disks.get(w.name, ns)) {
        log.warn({ vmDisk: w.name }, "a VMDisk not made by the template has its base's name; not touched");
        continue;
      }
      const made = await createObject(this.o.kube, VMDiskKind, {
        metadata: { name: w.name, namespace: ns, labels: w.labels, ownerReferences: [templateOwner(tpl)] },
        spec: w.spec,
      });
      if (!made) continue;
      log.info({ vmDisk: w.name, node: w.node, generation: w.generation }, "base created");
      void this.event(
        tpl,
        Reason.BaseCreated,
        `base ${w.name} of disk ${w.disk} (generation ${w.generation}) is being fetched to node ${w.node}`,
      );
    }
    for (const b of bases)
      if (!b.metadata.deletionTimestamp)
        await this.baseOf.write(b, {
          baseOf: { template: tpl.metadata.name, templateUID: tpl.metadata.uid ?? "" },
        });
  }

  /** Target nodes: where a VM made from the template could run now. */
  private targets(
    tpl: Tpl,
    taken: TakenVm | undefined,
    baseDisks: readonly Disk[],
  ): { targets: string[]; unfit: Record<string, string> } {
    const ns = tpl.metadata.namespace ?? "";
    const probe = templateRecord(
      { metadata: { name: "probe", namespace: ns }, spec: { source: { template: tpl.metadata.name } } } as Vm,
      { ...tpl, status: { ...tpl.status, ...(taken ? { vm: taken } : {}) } },
      (n) => this.o.disks.get(n, ns),
    );
    if (!("record" in probe)) return { targets: [], unfit: {} };
    const record = probe.record;
    const current = String(tpl.metadata.generation ?? 1);
    const firstBase = taken ? baseDisks[0] : undefined;
    const pinnedTo =
      firstBase && !firstBase.status?.storagePoolShared ? firstBase.status?.nodeName : undefined;
    const views = this.o.nodes
      .list()
      .map((n) => nodeView(n, this.o.heartbeats.fresh(n.metadata?.name ?? "")));
    const imageDisks = (tpl.spec.template?.disks ?? []).filter((d) => d.image);
    return targetNodes(
      {
        hardware: record.spec,
        childDiskBytes: bytesOf(record.disks.map((d) => d.size)),
        bases: imageDisks.map((d) => ({
          bytes: bytesOf([d.size]),
          onNodes: new Set(
            baseDisks
              .filter(
                (b) =>
                  b.metadata.labels?.[TEMPLATE_DISK_LABEL] === d.name &&
                  b.metadata.labels?.[TEMPLATE_GENERATION_LABEL] === current,
              )
              .map((b) => b.spec.nodeName ?? ""),
          ),
        })),
        ...(pinnedTo ? { pinnedTo } : {}),
      },
      views,
      (node, bytes) => this.o.poolRefusal(ns, node, bytes),
    );
  }

  /** Deletion: waits for the VMs made from the template, then lets its bases go. */
  private async finish(key: string, tpl: Tpl, children: readonly Vm[], bases: readonly Disk[], log: Logger) {
    if (!tpl.metadata.finalizers?.includes(TEMPLATE_FINALIZER)) return undefined;
    if (children.length) {
      const names = children.map((c) => c.metadata.name).sort();
      const message = `deletion waits: VirtualMachine ${names.join(", ")} ${names.length === 1 ? "was" : "were"} made from the template; delete ${names.length === 1 ? "it" : "them"} first`;
      if (this.blocked.get(key) !== message) {
        this.blocked.set(key, message);
        log.info({ children: names }, "VMTemplate deletion blocked");
        void this.event(tpl, Reason.DeletionBlocked, message);
      }
      // The same fields as every write of this manager: what an apply leaves out, it removes.
      const { phase, progress, targetNodes, bases } = tpl.status ?? {};
      await this.status.writeStanding(
        tpl,
        {
          ...(phase ? { phase } : {}),
          ...(progress !== undefined ? { progress } : {}),
          targetNodes: targetNodes ?? [],
          bases: bases ?? [],
          children: names,
        },
        { state: "reconciling", reason: "DeletionBlocked", message },
      );
      return undefined;
    }
    for (const b of unwantedBases(tpl, bases, [], [])) await this.deleteDisk(b, log, "template deleted");
    const taken = tpl.status?.vm;
    if (taken) {
      const ns = tpl.metadata.namespace ?? "";
      const cloned = taken.disks.flatMap((t) => {
        const d = this.o.disks.get(t.vmDisk, ns);
        return d ? linkedClonesOf(d, this.o.disks.list(ns)) : [];
      });
      if (cloned.length) {
        const message = `deletion waits: VMDisk ${cloned.join(", ")} ${cloned.length === 1 ? "is a linked clone" : "are linked clones"} of the template's disks; delete ${cloned.length === 1 ? "it" : "them"} first`;
        if (this.blocked.get(key) !== message) {
          this.blocked.set(key, message);
          log.info({ clones: cloned }, "VMTemplate deletion blocked");
          void this.event(tpl, Reason.DeletionBlocked, message);
        }
        return undefined;
      }
      await this.giveBack(tpl, taken, log);
    }
    await removeFinalizer(this.o.kube, VMTemplateKind, tpl as AnyObject, TEMPLATE_FINALIZER);
    log.info({}, "VMTemplate deleted");
    return undefined;
  }

  /** The disks of the VM the template was made from go back to it; with the VM gone, they go. */
  private async giveBack(tpl: Tpl, taken: TakenVm, log: Logger) {
    const ns = tpl.metadata.namespace ?? "";
    const vm = this.o.vms.get(taken.name, ns);
    const same = vm && vm.metadata.uid === taken.uid && !vm.metadata.deletionTimestamp ? vm : undefined;
    for (const t of taken.disks) {
      const disk = this.o.disks.get(t.vmDisk, ns);
      if (!disk) continue;
      if (!same) {
        await this.deleteDisk(disk, log, `VirtualMachine ${taken.name} is gone`);
        continue;
      }
      const owners = ownersWhenGivenBack(disk, tpl, same, t.ownedByVm);
      if (ownersDiffer(disk.metadata.ownerReferences, owners))
        await patchMetadata(this.o.kube, VMDiskKind, disk as AnyObject, { ownerReferences: owners });
      await this.baseOf.write(disk, {});
    }
    if (!same) return;
    log.info({ vm: taken.name }, "disks given back to the VM");
    void this.event(tpl, Reason.VMGivenBack, `the disks of VirtualMachine ${taken.name} are its own again`);
  }

  private async deleteDisk(disk: Disk, log: Logger, why: string) {
    await deleteObject(this.o.kube, VMDiskKind, disk);
    log.info({ vmDisk: disk.metadata.name, why }, "base deleted");
  }
}
