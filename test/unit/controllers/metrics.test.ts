import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  heartbeatAges,
  readyNodes,
  registerClusterMetrics,
  snapshotPolicyRows,
  vmStatuses,
} from "../../../src/controllers/cluster/cluster-metrics.ts";
import { poolSeries } from "../../../src/controllers/node/pool-metrics.ts";
import {
  countersOf,
  idleVmStatistics,
  nicCountersOf,
  nicDevicesOf,
  pausedForIoError,
} from "../../../src/controllers/node/statistics.ts";
import { VmMetrics, vmSeries } from "../../../src/controllers/node/vm-metrics.ts";
import { CAPACITY_ANNOTATION, NODE_ENABLED_LABEL } from "../../../src/controllers/node-facts.ts";
import { nicTargets } from "../../../src/hypervisor/domain/xml.ts";
import { newRegistry } from "../../../src/runtime/server.ts";

const capacity = JSON.stringify({ cpus: 4, memoryBytes: 2 ** 33, hypervisors: ["qemu"] });
const node = (
  name: string,
  extra: { enabled?: boolean; cordoned?: boolean; capacity?: string } = {},
): V1Node => ({
  metadata: {
    name,
    labels: extra.enabled === false ? {} : { [NODE_ENABLED_LABEL]: "true" },
    annotations: extra.capacity === "" ? {} : { [CAPACITY_ANNOTATION]: extra.capacity ?? capacity },
  },
  spec: { unschedulable: extra.cordoned ?? false },
});

const vm = (name: string, status: Record<string, unknown> = {}, spec: Record<string, unknown> = {}) =>
  ({
    apiVersion: "libvirt.io/v1",
    kind: "VirtualMachine",
    metadata: { name, namespace: "ns" },
    spec: { memory: "256Mi", ...spec },
    status,
  }) as unknown as VirtualMachine & KubernetesObject & { metadata: { name: string } };

const NIC_XML = `<domain><devices>
  <interface type="network"><mac address="52:54:00:00:00:01"/><target dev="vnet7"/><alias name="ua-net-default"/></interface>
  <interface type="network"><mac address="52:54:00:00:00:02"/><target dev="vnet8"/><alias name="ua-net-backend"/></interface>
  <interface type="network"><mac address="52:54:00:00:00:03"/><target dev="vnet9"/><alias name="net2"/></interface>
</devices></domain>`;

const domstats = {
  "state.state": 1,
  "state.reason": 1,
  "cpu.time": 12_500_000_000,
  "balloon.maximum": 262144,
  "balloon.current": 262144,
  "balloon.rss": 100000,
  "net.count": 3,
  "net.0.name": "vnet7",
  "net.0.rx.bytes": 1000,
  "net.0.rx.pkts": 10,
  "net.0.rx.errs": 1,
  "net.0.rx.drop": 2,
  "net.0.tx.bytes": 500,
  "net.0.tx.pkts": 5,
  "net.0.tx.errs": 0,
  "net.0.tx.drop": 3,
  "net.1.name": "vnet8",
  "net.1.rx.bytes": 7,
  "net.2.name": "vnet9",
  "net.2.rx.bytes": 99,
};

describe("VM counters", () => {
  it("counts no more memory in use than the guest was given (QEMU's own memory is not the guest's)", () => {
    assert.equal(countersOf(domstats).memoryUsedBytes, 100000 * 1024);
    const tcg = { ...domstats, "balloon.current": 131072, "balloon.maximum": 131072, "balloon.rss": 287744 };
    assert.equal(countersOf(tcg).memoryUsedBytes, 131072 * 1024);
    // The guest's balloon driver says what it leaves unused: that is its own view.
    assert.equal(countersOf({ ...tcg, "balloon.unused": 31072 }).memoryUsedBytes, 100000 * 1024);
    assert.equal(countersOf({ "balloon.current": 2048 }).memoryUsedBytes, 2048 * 1024);
  });
});

describe("NIC statistics", () => {
  it("names libvirt's host devices by the spec's NIC names from the live XML, leaving others out", () => {
    assert.deepEqual(nicTargets(NIC_XML), { vnet7: "default", vnet8: "backend" });
    assert.deepEqual(nicDevicesOf(domstats), ["vnet7", "vnet8", "vnet9"]);
    const nics = nicCountersOf(domstats, nicTargets(NIC_XML));
    assert.deepEqual(
      nics.map((n) => n.interface),
      ["default", "backend"],
    );
    assert.deepEqual(nics[0], {
      interface: "default",
      rxBytes: 1000,
      txBytes: 500,
      rxPackets: 10,
      txPackets: 5,
      rxErrors: 1,
      txErrors: 0,
      rxDrops: 2,
      txDrops: 3,
    });
    assert.equal(nics[1]?.rxBytes, 7);
  });

  it("sees a domain paused for an I/O error, not one paused by the user", () => {
    assert.equal(pausedForIoError({ "state.state": 3, "state.reason": 5 }), true);
    assert.equal(pausedForIoError({ "state.state": 3, "state.reason": 1 }), false);
    assert.equal(pausedForIoError({ "state.state": 1, "state.reason": 5 }), false);
  });
});

describe("a stopped VM's statistics", () => {
  it("drop rates and memory in use to zero, keep what it was given and its error total", () => {
    assert.equal(idleVmStatistics({}), undefined);
    assert.deepEqual(
      idleVmStatistics({
        cpuGuestPercent: 30,
        cpuHypervisorPercent: 2,
        cpuTotalPercent: 32,
        memoryInstalledBytes: 256,
        memoryUsedBytes: 100,
        diskReadBytesPerSecond: 5,
        diskWriteBytesPerSecond: 6,
        networkRxBytesPerSecond: 7,
        networkTxBytesPerSecond: 8,
        networkErrors: 3,
      }),
      {
        cpuGuestPercent: 0,
        cpuHypervisorPercent: 0,
        cpuTotalPercent: 0,
        memoryInstalledBytes: 256,
        memoryUsedBytes: 0,
        diskReadBytesPerSecond: 0,
        diskWriteBytesPerSecond: 0,
        networkRxBytesPerSecond: 0,
        networkTxBytesPerSecond: 0,
        networkErrors: 3,
      },
    );
  });
});

describe("agent VM series", () => {
  const reading = {
    namespace: "ns",
    name: "a",
    counters: countersOf(domstats),
    nics: nicCountersOf(domstats, nicTargets(NIC_XML)),
    pausedIoError: false,
  };
  const disk = {
    namespace: "ns",
    name: "a-data",
    vm: "a",
    counters: { path: "/p", readBytes: 4, writeBytes: 5, readOps: 6, writeOps: 7 },
  };

  it("gives each running VM, NIC and disk its rows", () => {
    const s = vmSeries([reading], [disk]);
    assert.deepEqual(s.get("libvirt_operator_vm_cpu_seconds_total"), [
      { labels: { namespace: "ns", name: "a" }, value: 12.5 },
    ]);
    assert.deepEqual(s.get("libvirt_operator_vm_interface_transmit_drops_total"), [
      { labels: { namespace: "ns", name: "a", interface: "default" }, value: 3 },
      { labels: { namespace: "ns", name: "a", interface: "backend" }, value: 0 },
    ]);
    assert.deepEqual(s.get("libvirt_operator_vmdisk_write_operations_total"), [
      { labels: { namespace: "ns", name: "a-data", vm: "a" }, value: 7 },
    ]);
    assert.deepEqual(s.get("libvirt_operator_vm_paused_io_error"), [
      { labels: { namespace: "ns", name: "a" }, value: 0 },
    ]);
  });

  it("exports counters as counters, and a VM no longer sampled loses its usage series but keeps vm_ready", async () => {
    const registry = new Registry();
    const metrics = new VmMetrics(registry, () => [{ namespace: "ns", name: "a", ready: true }]);
    metrics.update([reading], [disk]);
    const text = await registry.metrics();
    assert.match(text, /# TYPE libvirt_operator_vm_cpu_seconds_total counter/);
    assert.match(text, /# TYPE libvirt_operator_vm_memory_used_bytes gauge/);
    assert.match(text, /libvirt_operator_vm_cpu_seconds_total\{namespace="ns",name="a"\} 12\.5/);
    assert.match(text, /libvirt_operator_vm_interface_receive_bytes_total\{[^}]*interface="default"\} 1000/);
    assert.match(text, /libvirt_operator_vmdisk_read_bytes_total\{namespace="ns",name="a-data",vm="a"\} 4/);
    for (const m of text.matchAll(/# TYPE (\S+) gauge/g)) assert.doesNotMatch(m[1]!, /_total$/);
    metrics.update([], []);
    const after = await registry.metrics();
    assert.doesNotMatch(after, /^libvirt_operator_vm_(cpu|memory|network|interface|disk)\w*\{/m);
    assert.doesNotMatch(after, /^libvirt_operator_vmdisk_\w+\{/m);
    assert.match(after, /libvirt_operator_vm_ready\{namespace="ns",name="a"\} 1/);
  });
});

describe("pool series", () => {
  it("gives exact capacity and free space per pool of the node", () => {
    const s = poolSeries("n1", {
      b: { type: "dir", shared: false, capacityBytes: 100, availableBytes: 40 },
      a: { type: "dir", shared: false, capacityBytes: 10, availableBytes: 1 },
    });
    assert.deepEqual(s.capacity, [
      { labels: { node: "n1", pool: "a" }, value: 10 },
      { labels: { node: "n1", pool: "b" }, value: 100 },
    ]);
    assert.deepEqual(
      s.available.map((r) => r.value),
      [1, 40],
    );
  });
});

describe("controller fleet series", () => {
  it("counts nodes that can be given a VM", () => {
    const nodes = [
      node("ok"),
      node("stale"),
      node("cordoned", { cordoned: true }),
      node("disabled", { enabled: false }),
      node("no-capacity", { capacity: "" }),
      node("no-hypervisor", { capacity: JSON.stringify({ cpus: 1, memoryBytes: 1, hypervisors: [] }) }),
    ];
    assert.equal(
      readyNodes(nodes, (n) => n !== "stale"),
      1,
    );
  });

  it("ages heartbeats of nodes meant for VMs, in seconds", () => {
    // "retired": its label removed (the agent left with the DaemonSet), its capacity still there.
    const nodes = [
      node("a"),
      node("plain", { enabled: false, capacity: "" }),
      node("retired", { enabled: false }),
    ];
    assert.deepEqual(
      heartbeatAges(nodes, () => 4_500),
      [{ labels: { node: "a" }, value: 4.5 }],
    );
  });

  it("gives every VM one status series, placed or not", () => {
    const rows = vmStatuses([
      vm("run", { printableStatus: "Running", nodeName: "n1" }),
      vm("nowhere", { printableStatus: "ErrorUnschedulable" }),
      vm("new"),
    ]);
    assert.deepEqual(
      rows.map((r) => r.labels),
      [
        { namespace: "ns", name: "run", node: "n1", status: "Running" },
        { namespace: "ns", name: "nowhere", node: "", status: "ErrorUnschedulable" },
        { namespace: "ns", name: "new", node: "", status: "" },
      ],
    );
    assert.ok(rows.every((r) => r.value === 1));
  });

  it("reports snapshot policies' failures and whether they halted", () => {
    const policy = { snapshotPolicy: { schedule: "@hourly" } };
    const halted = vm(
      "halted",
      {
        snapshotPolicy: { consecutiveFailures: 5 },
        conditions: [{ type: "SnapshotPolicy", status: "False", reason: "TooManyFailures" }],
      },
      policy,
    );
    const suspended = vm(
      "suspended",
      { conditions: [{ type: "SnapshotPolicy", status: "False", reason: "Suspended" }] },
      policy,
    );
    const failing = vm("failing", { snapshotPolicy: { consecutiveFailures: 2 } }, policy);
    const { failures, halted: h } = snapshotPolicyRows([halted, suspended, failing, vm("none")]);
    assert.deepEqual(
      failures.map((r) => [r.labels.name, r.value]),
      [
        ["halted", 5],
        ["suspended", 0],
        ["failing", 2],
      ],
    );
    assert.deepEqual(
      h.map((r) => [r.labels.name, r.value]),
      [
        ["halted", 1],
        ["suspended", 0],
        ["failing", 0],
      ],
    );
  });

  it("exports fleet series only from a synced leader; the leader gauge always", async () => {
    const registry = new Registry();
    let leading = false;
    registerClusterMetrics(registry, {
      leading: () => leading,
      synced: () => true,
      nodes: { list: () => [node("a")] },
      vms: { list: () => [vm("run", { printableStatus: "Running", nodeName: "a" })] },
      heartbeats: { fresh: () => true, silentMs: () => 2000, heardRenewing: () => true },
    });
    const standby = await registry.metrics();
    assert.match(standby, /^libvirt_operator_controller_leader 0$/m);
    assert.doesNotMatch(standby, /^libvirt_operator_(nodes_ready|vm_status|agent_heartbeat)/m);
    leading = true;
    const leader = await registry.metrics();
    assert.match(leader, /^libvirt_operator_controller_leader 1$/m);
    assert.match(leader, /^libvirt_operator_nodes_ready 1$/m);
    assert.match(leader, /^libvirt_operator_agent_heartbeat_age_seconds\{node="a"\} 2$/m);
    assert.match(
      leader,
      /^libvirt_operator_vm_status\{namespace="ns",name="run",node="a",status="Running"\} 1$/m,
    );
  });
});

describe("registry", () => {
  it("has no gauge named like a counter (promtool check metrics)", async () => {
    const text = await newRegistry("test").metrics();
    assert.match(text, /libvirt_operator_process_cpu_seconds_total/);
    const gaugesTotal = [...text.matchAll(/# TYPE (\S+_total) (\w+)/g)].filter((m) => m[2] !== "counter");
    assert.deepEqual(
      gaugesTotal.map((m) => m[1]),
      [],
    );
  });
});
