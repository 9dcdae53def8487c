// Samples libvirt's statistics of this node's VMs on an interval: Prometheus metrics per VM,
// and status.statistics (written by its own field manager, only when a value changed).
import { isDeepStrictEqual } from "node:util";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Counter, Gauge, type Registry } from "prom-client";
import type { KindDefinition } from "../../api/kind.ts";
import { NODE_LABEL, type VirtualMachine, VirtualMachineKind } from "../../api/virtualmachine.ts";
import { type VMDisk, VMDiskKind } from "../../api/vmdisk.ts";
import { DomainStats, type LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { applyStatus, describeError, type Kube } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import {
  type Counters,
  countersOf,
  type DiskCounters,
  diskCountersOf,
  diskStatisticsBetween,
  type Sample,
  statisticsBetween,
} from "./statistics.ts";

export const STATISTICS_FIELD_MANAGER = "libvirt-operator-agent-statistics";
/** Refresh requests sample the node at most this often; in between they get the last sample. */
export const REFRESH_SAMPLE_GAP_MS = 5_000;

interface VmLister {
  list(): ReadonlyArray<VirtualMachine & KubernetesObject>;
}

interface DiskLister {
  list(): ReadonlyArray<VMDisk & KubernetesObject>;
  get(name: string, namespace?: string): (VMDisk & KubernetesObject) | undefined;
}

export interface StatsCollectorOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  vms: VmLister;
  disks: DiskLister;
  nodeName: string;
  registry: Registry;
  intervalMs: number;
  log: Logger;
}

const LABELS = ["namespace", "name"] as const;
const DISK_LABELS = ["namespace", "name", "vm"] as const;
type DiskGauge = { gauge: Gauge; value: (c: DiskCounters) => number };

export class StatsCollector {
  private readonly o: StatsCollectorOptions;
  private readonly previous = new Map<string, Sample>();
  private readonly previousDisk = new Map<string, { at: number; c: DiskCounters; vm: string }>();
  private readonly diskGauges: DiskGauge[];
  private readonly gauges: Record<string, { gauge: Gauge; value: (c: Counters) => number }>;
  private readonly ready: Gauge;
  private readonly writes: Counter;
  private timer?: NodeJS.Timeout;
  /** When the last sample began. */
  private lastSampleAt = 0;
  /** The sample under way (or the last one). */
  private current: Promise<void> = Promise.resolve();
  /** The sample that starts when the current one ends; everyone asking meanwhile shares it. */
  private next?: Promise<void>;

  constructor(options: StatsCollectorOptions) {
    this.o = options;
    const registers = [options.registry];
    const gauge = (name: string, help: string, value: (c: Counters) => number) => ({
      gauge: new Gauge({ name: `libvirt_operator_vm_${name}`, help, labelNames: LABELS, registers }),
      value,
    });
    this.gauges = {
      cpu: gauge("cpu_seconds_total", "CPU time the VM used (guest and hypervisor)", (c) => c.cpuSeconds),
      memInstalled: gauge("memory_installed_bytes", "Memory given to the VM", (c) => c.memoryInstalledBytes),
      memUsed: gauge("memory_used_bytes", "Memory the guest uses", (c) => c.memoryUsedBytes),
      rx: gauge("network_receive_bytes_total", "Bytes received on all NICs", (c) => c.netRxBytes),
      tx: gauge("network_transmit_bytes_total", "Bytes sent on all NICs", (c) => c.netTxBytes),
      rxErr: gauge("network_receive_errors_total", "Receive errors on all NICs", (c) => c.netRxErrors),
      txErr: gauge("network_transmit_errors_total", "Transmit errors on all NICs", (c) => c.netTxErrors),
      rd: gauge("disk_read_bytes_total", "Bytes read from all disks", (c) => c.diskReadBytes),
      wr: gauge("disk_write_bytes_total", "Bytes written to all disks", (c) => c.diskWriteBytes),
    };
    const diskGauge = (name: string, help: string, value: (c: DiskCounters) => number): DiskGauge => ({
      gauge: new Gauge({ name: `libvirt_operator_vmdisk_${name}`, help, labelNames: DISK_LABELS, registers }),
      value,
    });
    this.diskGauges = [
      diskGauge("read_bytes_total", "Bytes the guest read from the disk", (c) => c.readBytes),
      diskGauge("write_bytes_total", "Bytes the guest wrote to the disk", (c) => c.writeBytes),
      diskGauge("read_operations_total", "Read requests the guest made to the disk", (c) => c.readOps),
      diskGauge("write_operations_total", "Write requests the guest made to the disk", (c) => c.writeOps),
    ];
    this.writes = new Counter({
      name: "libvirt_operator_statistics_writes_total",
      help: "status.statistics writes (made only when a figure changed)",
      registers,
    });
    this.ready = new Gauge({
      name: "libvirt_operator_vm_ready",
      help: "1 when the VM is as its spec asks — running, paused or stopped (Ready condition), else 0",
      labelNames: LABELS,
      registers,
    });
  }

  start(signal: AbortSignal) {
    const tick = () =>
      this.sampleNow(true).catch((err) =>
        this.o.log.warn({ err: describeError(err) }, "statistics sample failed"),
      );
    void tick();
    this.timer = setInterval(tick, this.o.intervalMs);
    this.timer.unref();
    signal.addEventListener("abort", () => clearInterval(this.timer), { once: true });
  }

  /**
   * A sample taken after every one already asked for (what a refresh request needs), unless the
   * last began less than REFRESH_SAMPLE_GAP_MS ago: refreshes in a loop (one tenant patching
   * away) then get that one, so they never sample the node more often than that.
   */
  sampleNow(evenIfRecent = false): Promise<void> {
    if (this.next) return this.next;
    if (!evenIfRecent && Date.now() - this.lastSampleAt < REFRESH_SAMPLE_GAP_MS)
      return this.current.catch(() => undefined);
    this.next = this.current
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        this.lastSampleAt = Date.now();
        this.current = this.sample();
        return this.current;
      });
    return this.next;
  }

  async sample(): Promise<void> {
    const mine = this.o.vms.list().filter((vm) => vm.status?.nodeName === this.o.nodeName);
    const byDomain = new Map(mine.map((vm) => [vm.status?.domainName ?? "", vm]));
    const seen = new Set<string>();
    for (const vm of mine) {
      const labels = { namespace: vm.metadata.namespace ?? "", name: vm.metadata.name };
      const ready = vm.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
      this.ready.set(labels, ready ? 1 : 0);
    }
    const stats =
      DomainStats.State |
      DomainStats.CpuTotal |
      DomainStats.Balloon |
      DomainStats.Vcpu |
      DomainStats.Interface |
      DomainStats.Block;
    const records = await this.o.libvirt.allDomainStats(stats);
    const now = Date.now();
    const disksByPath = new Map(
      this.o.disks
        .list()
        .filter((d) => d.status?.path)
        .map((d) => [d.status!.path!, d]),
    );
    const seenDisks = new Set<string>();
    for (const rec of records) {
      const vm = byDomain.get(rec.domain.name);
      if (!vm) continue;
      const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
      seen.add(key);
      for (const c of diskCountersOf(rec.stats)) {
        const disk = disksByPath.get(c.path);
        if (disk) await this.sampleDisk(disk, vm.metadata.name, c, now, seenDisks);
      }
      const labels = { namespace: vm.metadata.namespace ?? "", name: vm.metadata.name };
      const counters = countersOf(rec.stats);
      for (const { gauge, value } of Object.values(this.gauges)) gauge.set(labels, value(counters));
      const current: Sample = { at: now, stats: rec.stats };
      const prev = this.previous.get(key);
      this.previous.set(key, current);
      if (!prev) continue;
      const statistics = statisticsBetween(prev, current);
      await this.writeIfChanged(VirtualMachineKind, vm, statistics, now);
    }
    for (const [key, prev] of [...this.previousDisk]) {
      if (seenDisks.has(key)) continue;
      this.previousDisk.delete(key);
      const [namespace = "", name = ""] = key.split("/");
      for (const { gauge } of this.diskGauges) gauge.remove({ namespace, name, vm: prev.vm });
      await this.idleDisk(namespace, name);
    }
    // VMs gone or stopped: forget their samples and series.
    for (const key of [...this.previous.keys()]) {
      if (seen.has(key)) continue;
      this.previous.delete(key);
      const [namespace = "", name = ""] = key.split("/");
      for (const { gauge } of Object.values(this.gauges)) gauge.remove({ namespace, name });
    }
    for (const vm of this.o.vms.list()) {
      if (vm.status?.nodeName !== this.o.nodeName)
        this.ready.remove({ namespace: vm.metadata.namespace ?? "", name: vm.metadata.name });
    }
  }

  /** A disk no running VM uses any more: its rates drop to zero (totals stay). */
  private async idleDisk(namespace: string, name: string) {
    const disk = this.o.disks.get(name, namespace);
    const { updatedAt: _old, ...last } = disk?.status?.statistics ?? {};
    if (!disk || !this.placedHere(disk) || !Object.keys(last).length) return;
    const zero = { readBytesPerSecond: 0, writeBytesPerSecond: 0, readOpsPerSecond: 0, writeOpsPerSecond: 0 };
    await this.writeIfChanged(VMDiskKind, disk, { ...last, ...zero }, Date.now());
  }

  /**
   * Decision: status.statistics only of disks placed on this node. A disk of a shared pool
   * placed on another node, used by a VM here, gets metrics here but no status write: the API
   * server lets an agent write only objects labelled for its node (agent-policy.yaml).
   */
  private placedHere(disk: VMDisk & KubernetesObject): boolean {
    return disk.metadata.labels?.[NODE_LABEL] === this.o.nodeName;
  }

  /** status.statistics by its own field manager, only when a figure changed. */
  private async writeIfChanged(
    def: KindDefinition,
    obj: { metadata: { name: string; namespace?: string }; status?: { statistics?: { updatedAt?: string } } },
    statistics: object,
    at: number,
  ) {
    const { updatedAt: _old, ...written } = obj.status?.statistics ?? {};
    if (isDeepStrictEqual(written, statistics)) return;
    this.writes.inc();
    await applyStatus(this.o.kube, def, obj, STATISTICS_FIELD_MANAGER, {
      statistics: { ...statistics, updatedAt: new Date(at).toISOString() },
    }).catch((err) =>
      this.o.log.warn(
        { kind: def.kind, key: `${obj.metadata.namespace}/${obj.metadata.name}`, err: describeError(err) },
        "statistics write failed",
      ),
    );
  }

  /** Metrics and status.statistics of one VMDisk attached to a running VM. */
  private async sampleDisk(
    disk: VMDisk & KubernetesObject,
    vm: string,
    c: DiskCounters,
    now: number,
    seen: Set<string>,
  ) {
    const key = `${disk.metadata.namespace}/${disk.metadata.name}`;
    if (seen.has(key)) return; // a shareable disk in two VMs on this node: counted once per sample
    seen.add(key);
    const labels = { namespace: disk.metadata.namespace ?? "", name: disk.metadata.name, vm };
    for (const { gauge, value } of this.diskGauges) gauge.set(labels, value(c));
    const prev = this.previousDisk.get(key);
    this.previousDisk.set(key, { at: now, c, vm });
    if (!prev || prev.vm !== vm || !this.placedHere(disk)) return;
    const statistics = diskStatisticsBetween(prev, { at: now, c });
    await this.writeIfChanged(VMDiskKind, disk, statistics, now);
  }
}
