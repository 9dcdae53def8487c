// Pure: libvirt's all-domain statistics (two samples) → the seeds' statistics: CPU percent
// for guest, hypervisor and total; memory installed and used; disk and network rates.
import type { TypedValue } from "../../hypervisor/libvirt/index.ts";

export interface Sample {
  at: number; // ms
  stats: Record<string, TypedValue>;
}

export interface VmStatistics {
  cpuGuestPercent: number;
  cpuHypervisorPercent: number;
  cpuTotalPercent: number;
  memoryInstalledBytes: number;
  memoryUsedBytes: number;
  diskReadBytesPerSecond: number;
  diskWriteBytesPerSecond: number;
  networkRxBytesPerSecond: number;
  networkTxBytesPerSecond: number;
  networkErrors: number;
}

/** Cumulative counters read from one sample (for Prometheus and for rates). */
export interface Counters {
  cpuSeconds: number;
  vcpuSeconds: number;
  vcpus: number;
  memoryInstalledBytes: number;
  memoryUsedBytes: number;
  diskReadBytes: number;
  diskWriteBytes: number;
  netRxBytes: number;
  netTxBytes: number;
  netRxErrors: number;
  netTxErrors: number;
}

const num = (v: TypedValue | undefined): number =>
  v === undefined ? 0 : typeof v === "boolean" ? Number(v) : Number(v);

/** Sums every `<prefix>.<i>.<suffix>` field (per-disk, per-NIC, per-vCPU values). */
function sumIndexed(stats: Record<string, TypedValue>, prefix: string, suffix: string): number {
  const count = num(stats[`${prefix}.count`]);
  let total = 0;
  for (let i = 0; i < count; i++) total += num(stats[`${prefix}.${i}.${suffix}`]);
  return total;
}

export function countersOf(stats: Record<string, TypedValue>): Counters {
  const installedKiB = num(stats["balloon.maximum"]);
  const currentKiB = num(stats["balloon.current"]);
  // The guest's own view when its balloon driver reports it; else what the host gave it.
  const unusedKiB = stats["balloon.unused"] !== undefined ? num(stats["balloon.unused"]) : undefined;
  const usedKiB = unusedKiB !== undefined ? currentKiB - unusedKiB : num(stats["balloon.rss"]) || currentKiB;
  return {
    cpuSeconds: num(stats["cpu.time"]) / 1e9,
    vcpuSeconds: sumIndexed(stats, "vcpu", "time") / 1e9,
    vcpus: num(stats["vcpu.current"]) || 1,
    memoryInstalledBytes: installedKiB * 1024,
    memoryUsedBytes: Math.max(usedKiB, 0) * 1024,
    diskReadBytes: sumIndexed(stats, "block", "rd.bytes"),
    diskWriteBytes: sumIndexed(stats, "block", "wr.bytes"),
    netRxBytes: sumIndexed(stats, "net", "rx.bytes"),
    netTxBytes: sumIndexed(stats, "net", "tx.bytes"),
    netRxErrors: sumIndexed(stats, "net", "rx.errs"),
    netTxErrors: sumIndexed(stats, "net", "tx.errs"),
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const rate = (delta: number, seconds: number) => (seconds > 0 ? Math.max(Math.round(delta / seconds), 0) : 0);

/** Rates between two samples; percentages are of the VM's vCPUs (100 = all busy). */
export function statisticsBetween(prev: Sample, cur: Sample): VmStatistics {
  const a = countersOf(prev.stats);
  const b = countersOf(cur.stats);
  const seconds = (cur.at - prev.at) / 1000;
  const capacity = seconds * b.vcpus;
  const pct = (delta: number) =>
    capacity > 0 ? round1(Math.min(Math.max((delta / capacity) * 100, 0), 100)) : 0;
  const total = b.cpuSeconds - a.cpuSeconds;
  const guest = b.vcpuSeconds - a.vcpuSeconds;
  return {
    cpuGuestPercent: pct(guest),
    cpuHypervisorPercent: pct(total - guest),
    cpuTotalPercent: pct(total),
    memoryInstalledBytes: b.memoryInstalledBytes,
    // MiB precision: byte-level churn is not worth a status write.
    memoryUsedBytes: Math.round(b.memoryUsedBytes / 2 ** 20) * 2 ** 20,
    diskReadBytesPerSecond: rate(b.diskReadBytes - a.diskReadBytes, seconds),
    diskWriteBytesPerSecond: rate(b.diskWriteBytes - a.diskWriteBytes, seconds),
    networkRxBytesPerSecond: rate(b.netRxBytes - a.netRxBytes, seconds),
    networkTxBytesPerSecond: rate(b.netTxBytes - a.netTxBytes, seconds),
    networkErrors: b.netRxErrors + b.netTxErrors,
  };
}

/** One disk's cumulative I/O counters in a domain's statistics (block.<i>.*), by volume path. */
export interface DiskCounters {
  path: string;
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
}

export function diskCountersOf(stats: Record<string, TypedValue>): DiskCounters[] {
  const out: DiskCounters[] = [];
  for (let i = 0; i < num(stats["block.count"]); i++) {
    const path = stats[`block.${i}.path`];
    if (typeof path !== "string" || !path) continue;
    out.push({
      path,
      readBytes: num(stats[`block.${i}.rd.bytes`]),
      writeBytes: num(stats[`block.${i}.wr.bytes`]),
      readOps: num(stats[`block.${i}.rd.reqs`]),
      writeOps: num(stats[`block.${i}.wr.reqs`]),
    });
  }
  return out;
}

/** A VMDisk's status.statistics (seed 002 disk statistics) between two samples of its counters. */
export function diskStatisticsBetween(
  prev: { at: number; c: DiskCounters },
  cur: { at: number; c: DiskCounters },
) {
  const seconds = (cur.at - prev.at) / 1000;
  return {
    readBytesPerSecond: rate(cur.c.readBytes - prev.c.readBytes, seconds),
    writeBytesPerSecond: rate(cur.c.writeBytes - prev.c.writeBytes, seconds),
    readOpsPerSecond: rate(cur.c.readOps - prev.c.readOps, seconds),
    writeOpsPerSecond: rate(cur.c.writeOps - prev.c.writeOps, seconds),
    readBytes: cur.c.readBytes,
    writeBytes: cur.c.writeBytes,
  };
}
