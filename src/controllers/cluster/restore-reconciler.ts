// Cluster side of VMRestore: judges each new restore (restore-judge.ts), hands an accepted one
// to its VM's node (node label and status.nodeName), and refuses the rest with a condition
// and an Event. The restore itself runs on the node (node/restore-reconciler.ts).
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL, VM_NAME_LABEL, VMRestoreKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../../api/vmsnapshot.ts";
import { type AnyObject, type Kube, patchMetadata, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn, watchRelated } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import type { Standing } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { STANDING_FIELD_MANAGER, StatusWriter } from "../status-writer.ts";
import { RESTORE_VM_VIEW } from "../watch-views.ts";
import { judgeRestore } from "./restore-judge.ts";

type Restore = VMRestore & KubernetesObject;
const COMPONENT = "libvirt-operator-controller";
/** The field the controller owns on a VMRestore; the rest is the node agent's. */
export const CONTROLLER_RESTORE_FIELDS = ["nodeName"] as const;

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

export interface ClusterRestoreReconcilerOptions {
  kube: Kube;
  restores: Lister<Restore>;
  snapshots: Lister<VMSnapshot & KubernetesObject>;
  vms: Lister<VirtualMachine & KubernetesObject>;
  disks: Lister<VMDisk & KubernetesObject>;
  log: Logger;
}

/** Restores react to themselves, and waiting ones to their snapshot and VM. */
export function watchClusterRestores(
  queue: WorkQueue,
  sources: {
    restores: Watchable<Restore>;
    snapshots: Watchable<VMSnapshot & KubernetesObject>;
    vms: Watchable<VirtualMachine & KubernetesObject>;
  },
  reconciler: ClusterRestoreReconciler,
): void {
  watchOwn(sources.restores, queue);
  watchRelated(sources.snapshots, queue, (s) => reconciler.waiting(s.metadata?.namespace));
  watchRelated(sources.vms, queue, (vm) => reconciler.waiting(vm.metadata?.namespace), RESTORE_VM_VIEW);
}

export class ClusterRestoreReconciler {
  private readonly o: ClusterRestoreReconcilerOptions;
  private readonly event: EventRecorder;
  private readonly status: StatusWriter;
  private readonly standing: StatusWriter;
  /** Restores handed out per VM, ahead of the cache: two applied at once never both run. */
  private readonly handed = new Map<string, string>();
  /** Restores judged for good whose status the cache may not show yet. */
  private readonly judged = new Set<string>();

  constructor(options: ClusterRestoreReconcilerOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VMRestoreKind,
      fieldManager: COMPONENT,
      owns: CONTROLLER_RESTORE_FIELDS,
    });
    this.standing = new StatusWriter(options.kube, {
      kind: VMRestoreKind,
      fieldManager: STANDING_FIELD_MANAGER,
      yieldToOthers: true,
    });
  }

  /** Restores of NAMESPACE not judged for good yet. */
  waiting(namespace: string | undefined): string[] {
    if (!namespace) return [];
    return this.o.restores
      .list(namespace)
      .filter((r) => !r.status?.nodeName && r.status?.phase !== "Failed")
      .map((r) => `${namespace}/${r.metadata?.name}`);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const restore = this.o.restores.get(name, namespace);
    if (!restore || restore.metadata.deletionTimestamp) return undefined;
    if (restore.status?.nodeName || restore.status?.phase === "Failed") return undefined; // judged
    if (this.judged.has(restore.metadata.uid ?? "")) return undefined; // the cache is behind
    const vmKey = `${namespace}/${restore.spec.vmName}`;
    const all = this.o.restores.list(namespace);
    const earlier = this.handed.get(vmKey);
    const earlierRestore = earlier ? this.o.restores.get(earlier, namespace) : undefined;
    const stillRunning =
      earlier !== undefined &&
      earlier !== name &&
      earlierRestore !== undefined &&
      earlierRestore.status?.phase !== "Succeeded" &&
      earlierRestore.status?.phase !== "Failed";
    const judgement = stillRunning
      ? {
          refuse: {
            reason: Reason.RestoreInProgress,
            message: `VMRestore ${earlier} is restoring VirtualMachine ${restore.spec.vmName} now; create this one again once it has finished`,
          },
        }
      : judgeRestore(
          restore,
          this.o.vms.get(restore.spec.vmName, namespace),
          this.o.snapshots.get(restore.spec.snapshotName, namespace),
          all,
          this.o.disks.list(namespace),
          this.o.snapshots.list(namespace),
        );
    const log = forObject(this.o.log, "VMRestore", key);
    if ("wait" in judgement) {
      await this.stand(
        restore,
        { phase: "InProgress", complete: false },
        {
          state: "reconciling",
          reason: "Waiting",
          message: judgement.wait,
        },
      );
      return undefined;
    }
    if ("refuse" in judgement) {
      const { reason, message } = judgement.refuse;
      log.info({ reason }, message);
      await this.stand(
        restore,
        { phase: "Failed", complete: false, error: message },
        { state: "stalled", reason, message },
      );
      this.judged.add(restore.metadata.uid ?? "");
      void this.event(restore, reason, message);
      return undefined;
    }
    const { node } = judgement.hand;
    await patchMetadata(this.o.kube, VMRestoreKind, restore as AnyObject, {
      labels: { [NODE_LABEL]: node, [VM_NAME_LABEL]: restore.spec.vmName },
    });
    this.handed.set(vmKey, name);
    await this.status.write(restore as AnyObject & { metadata: { name: string } }, { nodeName: node });
    this.judged.add(restore.metadata.uid ?? "");
    await this.stand(
      restore,
      { phase: "InProgress", complete: false },
      {
        state: "reconciling",
        reason: "Handed",
        message: `handed to the node agent of ${node}`,
      },
    );
    log.info({ node }, "restore handed to its VM's node");
    return undefined;
  }

  private async stand(restore: Restore, fields: Record<string, unknown>, standing: Standing) {
    await this.standing.writeStanding(restore as Restore & { metadata: { name: string } }, fields, standing);
  }
}
