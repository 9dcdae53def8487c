// Table rows of the listing verbs, as pure functions of the objects read: status (seed 004's
// name, status, node, addresses, status_change), snapshots, and statistics with human units.
import type { VirtualMachine, VirtualMachineStatus } from "../api/virtualmachine.ts";
import type { VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { age } from "./table.ts";

export const STATUS_HEADERS = ["NAME", "STATUS", "NODE", "ADDRESSES", "STATUS-CHANGE", "AGE"];
export const STATUS_WIDE_HEADERS = [...STATUS_HEADERS, "RUN-STRATEGY", "READY", "MESSAGE"];

/** Every address the VM's interfaces hold, IPv4 first. */
export function addressesOf(vm: VirtualMachine): string[] {
  const interfaces = vm.status?.interfaces ?? [];
  return [...interfaces.map((i) => i.ipv4), ...interfaces.map((i) => i.ipv6)].filter(
    (ip): ip is string => !!ip,
  );
}

/** One `status` row; WIDE adds the run strategy and the Ready condition. */
export function statusRow(vm: VirtualMachine, now: Date, wide = false): string[] {
  const s = vm.status;
  const row = [
    vm.metadata.name,
    s?.printableStatus ?? "",
    s?.nodeName ?? "",
    addressesOf(vm).join(","),
    s?.statusChangedAt ? age(s.statusChangedAt, now) : "",
    age(vm.metadata.creationTimestamp, now),
  ];
  if (!wide) return row;
  const ready = s?.conditions?.find((c) => c.type === "Ready");
  return [...row, vm.spec.runStrategy ?? "Always", ready?.status ?? "", ready?.message ?? ""];
}

export const SNAPSHOT_HEADERS = ["NAME", "DISPLAY", "PHASE", "READY", "MEMORY", "AGE"];

export function snapshotRow(snap: VMSnapshot, now: Date): string[] {
  return [
    snap.metadata.name,
    snap.spec.displayName ?? "",
    snap.status?.phase ?? "",
    String(snap.status?.readyToUse ?? false),
    String(snap.spec.memory ?? false),
    age(snap.metadata.creationTimestamp, now),
  ];
}

/** The template's children as the controller lists them (status.children). */
export function templateChildren(t: VMTemplate): string[] {
  return [...(t.status?.children ?? [])].sort();
}

/** Nodes a VM from the template could run on now (status.targetNodes). */
export function templateTargets(t: VMTemplate): string[] {
  return [...(t.status?.targetNodes ?? [])].sort();
}

const BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB": three significant digits at most, binary units as `free -h` prints them. */
export function humanBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${Number(value.toFixed(digits))} ${BINARY_UNITS[unit]}`;
}

export const STATS_HEADERS = ["FIELD", "VALUE"];

type Statistics = NonNullable<VirtualMachineStatus["statistics"]>;

/** The statistics as FIELD VALUE rows with units; figures the agent did not sample are left out. */
export function statisticsRows(stats: Statistics, now: Date): string[][] {
  const percent = (v: number) => `${Number(v.toFixed(1))}%`;
  const rate = (v: number) => `${humanBytes(v)}/s`;
  const figures: Array<[string, number | undefined, (v: number) => string]> = [
    ["cpu.guest", stats.cpuGuestPercent, percent],
    ["cpu.hypervisor", stats.cpuHypervisorPercent, percent],
    ["cpu.total", stats.cpuTotalPercent, percent],
    ["memory.installed", stats.memoryInstalledBytes, humanBytes],
    ["memory.used", stats.memoryUsedBytes, humanBytes],
    ["disk.read", stats.diskReadBytesPerSecond, rate],
    ["disk.write", stats.diskWriteBytesPerSecond, rate],
    ["network.rx", stats.networkRxBytesPerSecond, rate],
    ["network.tx", stats.networkTxBytesPerSecond, rate],
    ["network.errors", stats.networkErrors, String],
  ];
  const rows = figures.flatMap(([field, value, format]) =>
    value === undefined ? [] : [[field, format(value)]],
  );
  if (stats.updatedAt) rows.push(["updatedAt", `${stats.updatedAt} (${age(stats.updatedAt, now)} ago)`]);
  return rows;
}
