// Cluster side of spec.snapshotPolicy: takes the automatic snapshots a VM's schedule asks for
// (ordinary VMSnapshots, owned by the VM, labelled automatic), rotates out the oldest beyond
// keep, and reports where the policy stands (status.snapshotPolicy, condition SnapshotPolicy).
// Decisions are snapshot-schedule.ts's.
import type { KubernetesObject } from "@kubernetes/client-node";
import { API_VERSION, VirtualMachineKind, VMSnapshotKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../../api/vmsnapshot.ts";
import { type AnyObject, createObject, deleteObject, type Kube, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { writerConditions } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { StatusWriter } from "../status-writer.ts";
import { SNAPSHOT_POLICY_VM_VIEW } from "../watch-views.ts";
import { type ClusterIndexes, objectsOf } from "./object-indexes.ts";
import { AUTOMATIC_LABEL, decidePolicy } from "./snapshot-schedule.ts";
import { restoreRunning } from "./snapshot-uses.ts";

type Vm = VirtualMachine & KubernetesObject;
const COMPONENT = "libvirt-operator-controller";
export const POLICY_FIELD_MANAGER = "libvirt-operator-controller-policy";
/** A snapshot just made is not looked for again this soon (the cache may not show it yet). */
const JUST_MADE_MS = 30_000;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

export interface SnapshotPolicyReconcilerOptions {
  kube: Kube;
  vms: Lister<Vm>;
  snapshots: Lister<VMSnapshot & KubernetesObject>;
  restores: Lister<VMRestore & KubernetesObject>;
  /** Snapshots by VM, disks being made from a snapshot, clones waiting for one. */
  indexes: ClusterIndexes;
  log: Logger;
}

/** A VM's policy reacts to the VM, its snapshots, and restores (a snapshot in use is not rotated). */
export function watchSnapshotPolicies(
  queue: WorkQueue,
  sources: {
    vms: Watchable<Vm>;
    snapshots: Watchable<VMSnapshot & KubernetesObject>;
    restores: Watchable<VMRestore & KubernetesObject>;
  },
): void {
  watchOwn(
    sources.vms,
    queue,
    (vm) => Boolean(vm.spec?.snapshotPolicy || vm.status?.snapshotPolicy),
    SNAPSHOT_POLICY_VM_VIEW,
  );
  const ofVm = (o: { metadata?: { namespace?: string }; spec: { vmName: string } }) =>
    o.metadata?.namespace ? [`${o.metadata.namespace}/${o.spec.vmName}`] : [];
  watchRelated(sources.snapshots, queue, ofVm);
  watchRelated(sources.restores, queue, ofVm);
}

export class SnapshotPolicyReconciler {
  private readonly o: SnapshotPolicyReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  /** Automatic snapshots made lately, by VM: the cache may not show them yet. */
  private readonly justMade = new Map<string, number>();

  constructor(options: SnapshotPolicyReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: POLICY_FIELD_MANAGER,
      owns: ["snapshotPolicy", "conditions"],
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const vm = this.o.vms.get(name, namespace);
    if (!vm || vm.metadata.deletionTimestamp) {
      this.justMade.delete(key);
      return undefined;
    }
    const now = Date.now();
    const { disks, vms, snapshots } = this.o.indexes;
    const restoring = new Set(
      this.o.restores
        .list(namespace)
        .filter(restoreRunning)
        .map((r) => r.spec.snapshotName),
    );
    // Snapshots a running restore, a disk being made or a clone to be made still needs.
    const inUse = {
      has: (snap: string) =>
        restoring.has(snap) ||
        disks.beingMadeFrom.keys(`${namespace}/${snap}`).size > 0 ||
        vms.clonesOf(namespace, snap).length > 0,
    };
    const own = objectsOf(snapshots.ofVm.keys(key), (n, ns) => this.o.snapshots.get(n, ns));
    const decision = decidePolicy(vm, own, inUse, now);
    if (!decision) {
      // The policy was removed: what it said goes too.
      if (vm.status?.snapshotPolicy)
        await this.status.write(vm as AnyObject & { metadata: { name: string } }, {});
      return undefined;
    }
    const log = forObject(this.o.log, "VirtualMachine", key);
    const made = this.justMade.get(key);
    if (decision.create && !(made && now - made < JUST_MADE_MS)) {
      await this.create(vm, decision.create.name, decision.create.spec);
      this.justMade.set(key, now);
      log.info({ snapshot: decision.create.name }, "automatic snapshot taken");
    } else if (decision.create) {
      decision.status.lastScheduleTime =
        vm.status?.snapshotPolicy?.lastScheduleTime ?? decision.status.lastScheduleTime;
    }
    for (const d of decision.delete) {
      await this.remove(namespace, d.name);
      log.info({ snapshot: d.name, why: d.why }, "automatic snapshot deleted");
      void this.event(vm, Reason.SnapshotRotated, `VMSnapshot ${d.name}: ${d.why}`);
    }
    const before = vm.status?.conditions?.find((c) => c.type === "SnapshotPolicy");
    if (decision.condition.status === "False" && before?.reason !== decision.condition.reason)
      void this.event(vm, decision.condition.reason, decision.condition.message);
    await this.status.write(vm as AnyObject & { metadata: { name: string } }, {
      snapshotPolicy: decision.status,
      conditions: writerConditions(
        vm.status?.conditions,
        [{ type: "SnapshotPolicy", ...decision.condition }],
        vm.metadata.generation ?? 0,
        new Date(now),
      ),
    });
    return decision.requeueAfterMs !== undefined ? { requeueAfterMs: decision.requeueAfterMs } : undefined;
  }

  private async create(vm: Vm, name: string, spec: Record<string, unknown>) {
    // false: made a moment ago
    await createObject(this.o.kube, VMSnapshotKind, {
      metadata: {
        name,
        namespace: vm.metadata.namespace,
        labels: { [AUTOMATIC_LABEL]: "true" },
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: VirtualMachineKind.kind,
            name: vm.metadata.name,
            uid: vm.metadata.uid ?? "",
          },
        ],
      },
      spec,
    });
  }

  private async remove(namespace: string, name: string) {
    await deleteObject(this.o.kube, VMSnapshotKind, { metadata: { name, namespace } });
  }
}
