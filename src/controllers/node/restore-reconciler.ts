// Node side of VMRestore: carries out each restore the controller accepted and handed to this
// node, holding the VM (and its disks) so nothing else acts on them meanwhile, and reports
// what was restored and what was not.
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL, type VirtualMachine } from "../../api/virtualmachine.ts";
import { type VMRestore, VMRestoreKind, type VMSnapshot } from "../../api/vmsnapshot.ts";
import { domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import { DomainState, type LibvirtClient, unlessNotFound } from "../../hypervisor/libvirt/index.ts";
import { type AnyObject, describeError, type Kube, recordEvent, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import { type Watchable, watchOwn } from "../../runtime/watch.ts";
import type { ReconcileResult, WorkQueue } from "../../runtime/workqueue.ts";
import { type Standing, standingConditions, writerConditions } from "../conditions.ts";
import { StatusWriter } from "../status-writer.ts";
import { type DomainLocks, diskLockKey } from "./domain-locks.ts";
import { hardwareChanges, shouldRunAfterRestore } from "./restore-plan.ts";
import { restoreSnapshot, stopGracefully } from "./snapshot-restore.ts";

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

interface Getter<T> {
  get(name: string, namespace?: string): T | undefined;
}

export interface NodeRestoreReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  restores: Getter<Restore>;
  snapshots: Getter<VMSnapshot & KubernetesObject>;
  vms: Getter<VirtualMachine & KubernetesObject>;
  nodeName: string;
  locks: DomainLocks;
  /** Tells the VM's own reconciler what happened to its guest, and has it look again. */
  restored: (vmKey: string, message: string, running: boolean) => void;
  log: Logger;
}

export function watchNodeRestores(queue: WorkQueue, restores: Watchable<Restore>, nodeName: string): void {
  watchOwn(restores, queue, (r, verb) => verb !== "delete" && r.metadata?.labels?.[NODE_LABEL] === nodeName);
}

export class NodeRestoreReconciler {
  private readonly o: NodeRestoreReconcilerOptions;
  private readonly status: StatusWriter;
  /** Restores this agent finished, by UID, until the cache shows it. */
  private readonly settled = new Set<string>();

  constructor(options: NodeRestoreReconcilerOptions) {
    this.o = options;
    this.status = new StatusWriter(options.kube, {
      kind: VMRestoreKind,
      fieldManager: COMPONENT,
      owns: AGENT_RESTORE_FIELDS,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
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
    const vmKey = `${namespace}/${restore.spec.vmName}`;
    const log = forObject(this.o.log, "VMRestore", key);
    return this.o.locks.run(vmKey, `restore ${key}`, () => this.restore(restore, log));
  }

  private async restore(restore: Restore, log: Logger): Promise<undefined> {
    const ns = restore.metadata.namespace ?? "";
    const vm = this.o.vms.get(restore.spec.vmName, ns);
    const snap = this.o.snapshots.get(restore.spec.snapshotName, ns);
    // The controller judged these; the node checks again what it is about to act on.
    if (!vm) return this.fail(restore, "VMGone", `VirtualMachine ${restore.spec.vmName} is gone`);
    if (!snap?.status?.readyToUse || snap.status.vmUID !== vm.metadata.uid)
      return this.fail(
        restore,
        "SnapshotNotUsable",
        `VMSnapshot ${restore.spec.snapshotName} cannot be restored to this VM`,
      );
    const dom = await unlessNotFound(this.o.libvirt.lookupDomainByName(domainNameOf(ns, vm.metadata.name)));
    if (!dom)
      return this.fail(
        restore,
        "NoDomain",
        `VirtualMachine ${vm.metadata.name} has no domain on ${this.o.nodeName}`,
      );
    const started = Date.now();
    const { state } = await this.o.libvirt.domainState(dom);
    const wasRunning =
      state === DomainState.Running || state === DomainState.Paused || state === DomainState.Blocked;
    const run = shouldRunAfterRestore(vm.spec.runStrategy, wasRunning);
    await this.write(
      restore,
      { phase: "InProgress", complete: false },
      {
        state: "reconciling",
        reason: "Restoring",
        message: `stopping ${vm.metadata.name}, then restoring snapshot ${snap.metadata.name}`,
      },
    );
    try {
      const grace = (vm.spec.shutdown?.gracePeriodSeconds ?? DEFAULT_GRACE_SECONDS) * 1000;
      const stop = await stopGracefully(this.o.libvirt, dom, grace, log);
      log.info({ stop, run }, "restoring");
      const attached = new Set((vm.spec.disks ?? []).map((d) => d.diskRef.name));
      // The disks' own reconciler stays off them while their volumes are put back.
      const diskLocks = [...attached].map((d) => diskLockKey(ns, d));
      const done = await this.o.locks.runAll(diskLocks, `restore ${restore.metadata.name}`, () =>
        restoreSnapshot({ libvirt: this.o.libvirt, log }, dom, {
          namespace: ns,
          snapshot: snap.status!,
          attachedDisks: attached,
          run,
          gracePeriodMs: grace,
        }),
      );
      const notes = [...done.notes, ...hardwareChanges(snap.status.vmSpec, vm.spec, done.memoryRestored)];
      const what =
        `restored ${done.restoredDisks.length ? `disks ${done.restoredDisks.join(", ")}` : "no disk"}` +
        (done.memoryRestored ? " and the memory state (the guest resumed at the snapshot's moment)" : "") +
        ` in ${Math.round((Date.now() - started) / 100) / 10} s` +
        (stop === "forced" ? "; the guest was forced off (it did not stop within its grace period)" : "") +
        (notes.length ? `; ${notes.join("; ")}` : "");
      await this.write(
        restore,
        {
          phase: "Succeeded",
          complete: true,
          restoreTime: new Date().toISOString(),
          restoredDisks: done.restoredDisks,
          memoryRestored: done.memoryRestored,
        },
        { state: "ready", reason: "Restored", message: what },
      );
      log.info({ ms: Date.now() - started, memory: done.memoryRestored }, "restored");
      this.event(restore, "Normal", "Restored", what);
      this.event(vm as AnyObject, "Normal", "Restored", `from snapshot ${snap.metadata.name}: ${what}`);
      this.o.restored(`${ns}/${vm.metadata.name}`, `restored from snapshot ${snap.metadata.name}`, run);
      return undefined;
    } catch (err) {
      const after = await this.o.libvirt.domainState(dom).catch(() => ({ state: DomainState.Shutoff }));
      const running = after.state !== DomainState.Shutoff;
      this.o.restored(
        `${ns}/${vm.metadata.name}`,
        `restore from snapshot ${snap.metadata.name} failed`,
        running,
      );
      return this.fail(restore, "RestoreFailed", `the restore failed: ${describeError(err)}`);
    }
  }

  private async fail(restore: Restore, reason: string, message: string): Promise<undefined> {
    await this.write(
      restore,
      { phase: "Failed", complete: false, error: message },
      { state: "stalled", reason, message },
    );
    this.event(restore, "Warning", "RestoreFailed", message);
    return undefined;
  }

  private async write(restore: Restore, fields: Record<string, unknown>, standing: Standing) {
    const generation = restore.metadata.generation ?? 0;
    if (fields.phase === "Succeeded" || fields.phase === "Failed")
      this.settled.add(restore.metadata.uid ?? "");
    await this.status.write(restore as AnyObject & { metadata: { name: string } }, {
      ...fields,
      observedGeneration: generation,
      conditions: writerConditions(
        restore.status?.conditions,
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
