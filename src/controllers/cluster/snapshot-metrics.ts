// Snapshot metrics per VM, computed from the controller's snapshot cache at scrape time:
// how many a VM has and what they hold, when the last one succeeded, how many failed.
import type { KubernetesObject } from "@kubernetes/client-node";
import { Gauge, type Registry } from "prom-client";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";

export interface VmSnapshotFigures {
  namespace: string;
  name: string;
  count: number;
  storedBytes: number;
  lastSuccessSeconds?: number;
  failed: number;
}

/** Pure: figures per VM from every snapshot (a VM appears once it has one). */
export function snapshotFigures(snapshots: readonly VMSnapshot[]): VmSnapshotFigures[] {
  const byVm = new Map<string, VmSnapshotFigures>();
  for (const s of snapshots) {
    const namespace = s.metadata.namespace ?? "";
    const key = `${namespace}/${s.spec.vmName}`;
    const f = byVm.get(key) ?? { namespace, name: s.spec.vmName, count: 0, storedBytes: 0, failed: 0 };
    byVm.set(key, f);
    if (s.status?.phase === "Failed") f.failed++;
    if (s.status?.phase !== "Succeeded") continue;
    f.count++;
    f.storedBytes += s.status.storedBytes ?? 0;
    const at = Date.parse(s.status.creationTime ?? "") / 1000;
    if (Number.isFinite(at)) f.lastSuccessSeconds = Math.max(f.lastSuccessSeconds ?? 0, at);
  }
  return [...byVm.values()];
}

const LABELS = ["namespace", "name"] as const;

/** Registers the gauges on REGISTRY; each scrape reads SNAPSHOTS anew. */
export function registerSnapshotMetrics(
  registry: Registry,
  snapshots: { list(): ReadonlyArray<VMSnapshot & KubernetesObject> },
): void {
  // The first gauge's collect refreshes all four: prom-client collects metrics in the order
  // they were registered, each just before it is read.
  const refresh = () => {
    for (const g of Object.values(gauges)) g.reset();
    for (const f of snapshotFigures(snapshots.list())) {
      const labels = { namespace: f.namespace, name: f.name };
      gauges.count.set(labels, f.count);
      gauges.bytes.set(labels, f.storedBytes);
      gauges.failed.set(labels, f.failed);
      if (f.lastSuccessSeconds !== undefined) gauges.last.set(labels, f.lastSuccessSeconds);
    }
  };
  const gauges = {
    count: new Gauge({
      name: "libvirt_operator_vm_snapshots",
      help: "Snapshots of the VM that were taken (phase Succeeded).",
      labelNames: LABELS,
      registers: [registry],
      collect: refresh,
    }),
    bytes: new Gauge({
      name: "libvirt_operator_vm_snapshot_stored_bytes",
      help: "Bytes the VM's snapshots stored on their node when taken.",
      labelNames: LABELS,
      registers: [registry],
    }),
    last: new Gauge({
      name: "libvirt_operator_vm_snapshot_last_success_timestamp_seconds",
      help: "When the VM's latest successful snapshot was taken, unix seconds.",
      labelNames: LABELS,
      registers: [registry],
    }),
    failed: new Gauge({
      name: "libvirt_operator_vm_snapshots_failed",
      help: "Snapshots of the VM that failed (phase Failed) and still exist.",
      labelNames: LABELS,
      registers: [registry],
    }),
  };
}
