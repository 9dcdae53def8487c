// Samples libvirt's statistics of this node's running VMs on an interval: Prometheus metrics
// per VM, NIC and disk (vm-metrics.ts), and status.statistics (written by its own field
// manager, only when a value changed).
import { isDeepStrictEqual } from "node:util";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Counter, type Registry } from "prom-client";
import type { KindName } from "../../api/kind.ts";
import { NODE_LABEL, VirtualMachineKind, VMDiskKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { nicTargets } from "../../hypervisor/domain/xml.ts";
import {
  type DomainRef,
  DomainStats,
  DomainStatsFlags,
  type LibvirtClient,
  type TypedValue,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { applyStatus, describeError, type Kube } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import { placedNode } from "../vm-placement.ts";
import {
  countersOf,
  type DiskCounters,
  diskCountersOf,
  diskStatisticsBetween,
  idleVmStatistics,
  nicCountersOf,
  nicDevicesOf,
  pausedForIoError,
  type Sample,
  statisticsBetween,
} from "./statistics.ts";
import { type DiskReading, VmMetrics, type VmReading } from "./vm-metrics.ts";

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

export class StatsCollector {
  private readonly o: StatsCollectorOptions;
  private readonly previous = new Map<string, Sample>();
  private readonly previousDisk = new Map<string, { at: number; c: DiskCounters; vm: string }>();
  /** Per domain: its NICs' host devices (and the run they belong to) → the spec's NIC names. */
  private readonly nicNames = new Map<string, { devices: string; names: Record<string, string> }>();
  private readonly metrics: VmMetrics;
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
    this.metrics = new VmMetrics(options.registry, () =>
      options.vms
        .list()
        .filter((vm) => placedNode(vm) === options.nodeName)
        .map((vm) => ({
          namespace: vm.metadata.namespace ?? "",
          name: vm.metadata.name,
          ready: vm.status?.conditions?.find((c) => c.type === "Ready")?.status === "True",
        })),
    );
    this.writes = new Counter({
      name: "libvirt_operator_statistics_writes_total",
      help: "status.statistics writes (made only when a figure changed)",
      registers: [options.registry],
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
    const mine = this.o.vms.list().filter((vm) => placedNode(vm) === this.o.nodeName);
    const byDomain = new Map(mine.map((vm) => [vm.status?.domainName ?? "", vm]));
    const stats =
      DomainStats.State |
      DomainStats.CpuTotal |
      DomainStats.Balloon |
      DomainStats.Vcpu |
      DomainStats.Interface |
      DomainStats.Block;
    // Running (and paused) domains only: libvirt reports CPU time and balloon figures for
    // shut-off domains too (their last run's, or the definition's), which are no usage.
    const records = await this.o.libvirt.allDomainStats(stats, [], DomainStatsFlags.Active).catch((err) => {
      // No reading: export none rather than the last one (VMs stopped or deleted meanwhile
      // would keep their usage series, a resumed VM its I/O-error pause).
      this.metrics.update([], []);
      throw err;
    });
    const now = Date.now();
    const disksByPath = new Map(
      this.o.disks
        .list()
        .filter((d) => d.status?.path)
        .map((d) => [d.status!.path!, d]),
    );
    const readings: VmReading[] = [];
    const diskReadings = new Map<string, DiskReading>();
    // Status writes wait until the metrics show this sample: whoever sees a figure in status
    // finds it (or a later one) on /metrics too.
    const writes: Array<() => Promise<void>> = [];
    const seen = new Set<string>();
    for (const rec of records) {
      const vm = byDomain.get(rec.domain.name);
      if (!vm) continue;
      const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
      const namespace = vm.metadata.namespace ?? "";
      seen.add(key);
      readings.push({
        namespace,
        name: vm.metadata.name,
        counters: countersOf(rec.stats),
        nics: nicCountersOf(rec.stats, await this.nicNamesOf(rec.domain, rec.stats)),
        pausedIoError: pausedForIoError(rec.stats),
      });
      for (const c of diskCountersOf(rec.stats)) {
        const disk = disksByPath.get(c.path);
        if (!disk) continue;
        const diskKey = `${disk.metadata.namespace}/${disk.metadata.name}`;
        // A shareable disk in two VMs on this node: counted once per sample.
        if (diskReadings.has(diskKey)) continue;
        diskReadings.set(diskKey, {
          namespace: disk.metadata.namespace ?? "",
          name: disk.metadata.name,
          vm: vm.metadata.name,
          counters: c,
        });
        writes.push(() => this.diskStatistics(disk, vm.metadata.name, c, now));
      }
      const current: Sample = { at: now, stats: rec.stats };
      const prev = this.previous.get(key);
      this.previous.set(key, current);
      if (!prev) continue;
      writes.push(() => this.writeIfChanged(VirtualMachineKind, vm, statisticsBetween(prev, current), now));
    }
    this.metrics.update(readings, [...diskReadings.values()]);
    for (const write of writes) await write();
    for (const [key] of [...this.previousDisk]) {
      if (diskReadings.has(key)) continue;
      this.previousDisk.delete(key);
      const [namespace = "", name = ""] = key.split("/");
      await this.idleDisk(namespace, name);
    }
    // VMs gone or stopped: forget their samples; the stopped ones' rates drop to zero.
    for (const key of [...this.previous.keys()]) if (!seen.has(key)) this.previous.delete(key);
    for (const vm of mine) {
      if (seen.has(`${vm.metadata.namespace}/${vm.metadata.name}`)) continue;
      const { updatedAt: _old, ...last } = vm.status?.statistics ?? {};
      const idle = idleVmStatistics(last);
      if (idle) await this.writeIfChanged(VirtualMachineKind, vm, idle, now);
    }
    const running = new Set(records.map((r) => r.domain.name));
    for (const dom of [...this.nicNames.keys()]) if (!running.has(dom)) this.nicNames.delete(dom);
  }

  /**
   * The spec's NIC names of a running domain's host devices, from its live XML — read again only
   * when the devices change (a restart, a NIC plugged or unplugged).
   */
  private async nicNamesOf(
    dom: DomainRef,
    stats: Record<string, TypedValue>,
  ): Promise<Record<string, string>> {
    const devices = `${dom.id}:${nicDevicesOf(stats).join(",")}`;
    const known = this.nicNames.get(dom.name);
    if (known?.devices === devices) return known.names;
    try {
      const xml = await unlessNotFound(this.o.libvirt.domainXml(dom));
      const names = xml ? nicTargets(xml) : {};
      this.nicNames.set(dom.name, { devices, names });
      return names;
    } catch (err) {
      // No NIC series this time; the next sample asks again.
      this.o.log.warn({ domain: dom.name, err: describeError(err) }, "reading a domain's NICs failed");
      return {};
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
    def: KindName,
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

  /** status.statistics of one VMDisk attached to a running VM. */
  private async diskStatistics(disk: VMDisk & KubernetesObject, vm: string, c: DiskCounters, now: number) {
    const key = `${disk.metadata.namespace}/${disk.metadata.name}`;
    const prev = this.previousDisk.get(key);
    this.previousDisk.set(key, { at: now, c, vm });
    if (!prev || prev.vm !== vm || !this.placedHere(disk)) return;
    const statistics = diskStatisticsBetween(prev, { at: now, c });
    await this.writeIfChanged(VMDiskKind, disk, statistics, now);
  }
}
