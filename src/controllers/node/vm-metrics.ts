// The agent's Prometheus series per VM, per NIC and per VMDisk, read at scrape time from the
// statistics collector's last sample of the node's running domains (libvirt's counters as they
// were then), and vm_ready from the VM cache. A VM that is not running has no usage series.
import type { Registry } from "prom-client";
import { type Row, sampledCounter, sampledGauge } from "../../runtime/sampled-metrics.ts";
import type { Counters, DiskCounters, NicCounters } from "./statistics.ts";

/** One running VM of the node as last sampled. */
export interface VmReading {
  namespace: string;
  name: string;
  counters: Counters;
  nics: NicCounters[];
  pausedIoError: boolean;
}

/** One VMDisk attached to a running VM of the node, as last sampled. */
export interface DiskReading {
  namespace: string;
  name: string;
  vm: string;
  counters: DiskCounters;
}

export interface ReadyReading {
  namespace: string;
  name: string;
  ready: boolean;
}

type Kind = "counter" | "gauge";
type Family<T> = [name: string, kind: Kind, help: string, value: (r: T) => number];

const VM_FAMILIES: Array<Family<Counters>> = [
  ["vm_cpu_seconds_total", "counter", "CPU time the VM used (guest and hypervisor)", (c) => c.cpuSeconds],
  ["vm_memory_installed_bytes", "gauge", "Memory given to the VM", (c) => c.memoryInstalledBytes],
  ["vm_memory_used_bytes", "gauge", "Memory the guest uses", (c) => c.memoryUsedBytes],
  ["vm_network_receive_bytes_total", "counter", "Bytes received on all NICs", (c) => c.netRxBytes],
  ["vm_network_transmit_bytes_total", "counter", "Bytes sent on all NICs", (c) => c.netTxBytes],
  ["vm_network_receive_errors_total", "counter", "Receive errors on all NICs", (c) => c.netRxErrors],
  ["vm_network_transmit_errors_total", "counter", "Transmit errors on all NICs", (c) => c.netTxErrors],
  ["vm_disk_read_bytes_total", "counter", "Bytes read from all disks", (c) => c.diskReadBytes],
  ["vm_disk_write_bytes_total", "counter", "Bytes written to all disks", (c) => c.diskWriteBytes],
];

const NIC_FAMILIES: Array<Family<NicCounters>> = [
  ["receive_bytes_total", "counter", "Bytes the NIC received", (n) => n.rxBytes],
  ["transmit_bytes_total", "counter", "Bytes the NIC sent", (n) => n.txBytes],
  ["receive_packets_total", "counter", "Packets the NIC received", (n) => n.rxPackets],
  ["transmit_packets_total", "counter", "Packets the NIC sent", (n) => n.txPackets],
  ["receive_errors_total", "counter", "Receive errors on the NIC", (n) => n.rxErrors],
  ["transmit_errors_total", "counter", "Transmit errors on the NIC", (n) => n.txErrors],
  ["receive_drops_total", "counter", "Received packets the NIC dropped", (n) => n.rxDrops],
  ["transmit_drops_total", "counter", "Packets to send the NIC dropped", (n) => n.txDrops],
];

const DISK_FAMILIES: Array<Family<DiskCounters>> = [
  ["read_bytes_total", "counter", "Bytes the guest read from the disk", (c) => c.readBytes],
  ["write_bytes_total", "counter", "Bytes the guest wrote to the disk", (c) => c.writeBytes],
  ["read_operations_total", "counter", "Read requests the guest made to the disk", (c) => c.readOps],
  ["write_operations_total", "counter", "Write requests the guest made to the disk", (c) => c.writeOps],
];

const PREFIX = "libvirt_operator_";
const VM_LABELS = ["namespace", "name"] as const;

/** Pure: the rows of every per-VM, per-NIC and per-disk family, by full metric name. */
export function vmSeries(vms: readonly VmReading[], disks: readonly DiskReading[]): Map<string, Row[]> {
  const out = new Map<string, Row[]>();
  const push = (name: string, row: Row) => {
    const rows = out.get(name) ?? [];
    rows.push(row);
    out.set(name, rows);
  };
  for (const vm of vms) {
    const labels = { namespace: vm.namespace, name: vm.name };
    for (const [name, , , value] of VM_FAMILIES) push(PREFIX + name, { labels, value: value(vm.counters) });
    push(`${PREFIX}vm_paused_io_error`, { labels, value: vm.pausedIoError ? 1 : 0 });
    for (const nic of vm.nics)
      for (const [name, , , value] of NIC_FAMILIES)
        push(`${PREFIX}vm_interface_${name}`, {
          labels: { ...labels, interface: nic.interface },
          value: value(nic),
        });
  }
  for (const d of disks) {
    const labels = { namespace: d.namespace, name: d.name, vm: d.vm };
    for (const [name, , , value] of DISK_FAMILIES)
      push(`${PREFIX}vmdisk_${name}`, { labels, value: value(d.counters) });
  }
  return out;
}

export class VmMetrics {
  private series = new Map<string, Row[]>();

  constructor(registry: Registry, ready: () => readonly ReadyReading[]) {
    const family = (name: string, kind: Kind, help: string, labelNames: readonly string[]) => {
      const spec = { name, help, labelNames };
      const rows = () => this.series.get(name) ?? [];
      if (kind === "counter") sampledCounter(registry, spec, rows);
      else sampledGauge(registry, spec, rows);
    };
    for (const [name, kind, help] of VM_FAMILIES) family(PREFIX + name, kind, help, VM_LABELS);
    family(
      `${PREFIX}vm_paused_io_error`,
      "gauge",
      "1 while libvirt keeps the running VM paused because a disk write failed (e.g. its pool is full), else 0",
      VM_LABELS,
    );
    for (const [name, kind, help] of NIC_FAMILIES)
      family(`${PREFIX}vm_interface_${name}`, kind, help, [...VM_LABELS, "interface"]);
    for (const [name, kind, help] of DISK_FAMILIES)
      family(`${PREFIX}vmdisk_${name}`, kind, help, [...VM_LABELS, "vm"]);
    sampledGauge(
      registry,
      {
        name: `${PREFIX}vm_ready`,
        help: "1 when the VM is as its spec asks — running, paused or stopped (Ready condition), else 0",
        labelNames: VM_LABELS,
      },
      () =>
        ready().map((r) => ({ labels: { namespace: r.namespace, name: r.name }, value: r.ready ? 1 : 0 })),
    );
  }

  /** The node's running VMs and their disks as just sampled (replaces the last sample). */
  update(vms: readonly VmReading[], disks: readonly DiskReading[]): void {
    this.series = vmSeries(vms, disks);
  }
}
