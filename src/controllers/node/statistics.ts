// Pure: libvirt's all-domain statistics (two samples) → the seeds' statistics: CPU percent
// for guest, hypervisor and total; memory installed and used; disk and network rates.
import { DomainState, type TypedValue } from "../../hypervisor/libvirt/index.ts";
import { PausedReason } from "./vm-decide.ts";

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
  // The QEMU process's resident memory holds the emulator's own besides the guest's (far more
  // under TCG): what the guest uses is never more than it was given.
  const rssKiB = num(stats["balloon.rss"]);
  const usedKiB =
    unusedKiB !== undefined
      ? currentKiB - unusedKiB
      : rssKiB && currentKiB
        ? Math.min(rssKiB, currentKiB)
        : rssKiB || currentKiB;
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

/**
 * A VM's status.statistics once it no longer runs: its rates and the memory it uses drop to zero;
 * what it was given and the error total stay. Undefined when it has none yet.
 */
export function idleVmStatistics(last: Partial<VmStatistics>): Partial<VmStatistics> | undefined {
  if (!Object.keys(last).length) return undefined;
  return {
    ...last,
    cpuGuestPercent: 0,
    cpuHypervisorPercent: 0,
    cpuTotalPercent: 0,
    memoryUsedBytes: 0,
    diskReadBytesPerSecond: 0,
    diskWriteBytesPerSecond: 0,
    networkRxBytesPerSecond: 0,
    networkTxBytesPerSecond: 0,
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

/** One NIC's cumulative counters in a domain's statistics (net.<i>.*), named as in the VM's spec. */
export interface NicCounters {
  interface: string;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxErrors: number;
  txErrors: number;
  rxDrops: number;
  txDrops: number;
}

/**
 * Our NICs' counters: libvirt names each net.<i> by its host device (net.<i>.name, a tap such as
 * vnet3); NAMES maps those to the spec's NIC names (the live domain XML's target dev and alias).
 * Devices without a name there (not ours) are left out.
 */
export function nicCountersOf(
  stats: Record<string, TypedValue>,
  names: Record<string, string>,
): NicCounters[] {
  const out: NicCounters[] = [];
  for (let i = 0; i < num(stats["net.count"]); i++) {
    const dev = stats[`net.${i}.name`];
    const name = typeof dev === "string" ? names[dev] : undefined;
    if (!name) continue;
    const f = (suffix: string) => num(stats[`net.${i}.${suffix}`]);
    out.push({
      interface: name,
      rxBytes: f("rx.bytes"),
      txBytes: f("tx.bytes"),
      rxPackets: f("rx.pkts"),
      txPackets: f("tx.pkts"),
      rxErrors: f("rx.errs"),
      txErrors: f("tx.errs"),
      rxDrops: f("rx.drop"),
      txDrops: f("tx.drop"),
    });
  }
  return out;
}

/** The host devices (net.<i>.name) of a domain's NICs, in libvirt's order. */
export function nicDevicesOf(stats: Record<string, TypedValue>): string[] {
  const out: string[] = [];
  for (let i = 0; i < num(stats["net.count"]); i++) {
    const dev = stats[`net.${i}.name`];
    if (typeof dev === "string") out.push(dev);
  }
  return out;
}

/** libvirt paused the domain because a disk failed a write (state.state/state.reason). */
export function pausedForIoError(stats: Record<string, TypedValue>): boolean {
  return (
    num(stats["state.state"]) === DomainState.Paused && num(stats["state.reason"]) === PausedReason.IoError
  );
}
