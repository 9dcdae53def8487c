// Prometheus metrics end to end (issue 16): the controller's and the agent's /metrics pass
// `promtool check metrics` (Debian's prometheus package); every series of a running TCG guest
// matches `virsh domstats` taken around the scrape; VMs that are stopped (one never ran, one
// stopped after running) have no usage series, only vm_ready and vm_status; the controller's
// fleet gauges say who leads, which nodes can run VMs, and each VM's status.
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { HEARTBEAT_FRESH_MS } from "../../src/controllers/node-facts.ts";
import { BOOTED, ensureGuest, type Guest, guestVmSpec, waitForConsole } from "../support/guest.ts";
import {
  agentMetrics,
  applyObject,
  applyVm,
  consoleLogOf,
  getVm,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const MiB = 2 ** 20;
let guest: Guest;
let ns = "";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Pure enough for a test: the samples of a Prometheus text exposition. */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function controllerMetrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${TEST_STACK.ports.controllerMetrics}/metrics`)).text();
}

/** Samples of NAME whose labels include WANT. */
function find(samples: Sample[], name: string, want: Record<string, string>): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
}

function one(samples: Sample[], name: string, want: Record<string, string>): number {
  const found = find(samples, name, want);
  assert.equal(found.length, 1, `one ${name}${JSON.stringify(want)}, found ${found.length}`);
  return found[0]!.value;
}

/** `virsh domstats` of one domain as field → value. */
async function domstats(domain: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await virsh("domstats", domain)).split("\n")) {
    const m = /^\s+([\w.]+)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const num = (stats: Record<string, string>, field: string) => Number(stats[field] ?? 0);
function sum(stats: Record<string, string>, prefix: string, suffix: string): number {
  let total = 0;
  for (let i = 0; i < num(stats, `${prefix}.count`); i++) total += num(stats, `${prefix}.${i}.${suffix}`);
  return total;
}
/** Guest memory in use as the operator documents it: the balloon's view, else QEMU's RSS up to what the guest was given. */
function usedBytes(stats: Record<string, string>): number {
  const [rss, current] = [num(stats, "balloon.rss"), num(stats, "balloon.current")];
  const kib =
    stats["balloon.unused"] !== undefined
      ? current - num(stats, "balloon.unused")
      : rss && current
        ? Math.min(rss, current)
        : rss || current;
  return kib * 1024;
}

/** A counter read between two virsh readings lies between them. */
function between(what: string, value: number, before: number, after: number) {
  assert.ok(
    before <= value && value <= after,
    `${what}: exported ${value} is not within virsh's ${before} … ${after}`,
  );
}

const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p)) ?? "promtool";

/** `promtool check metrics` on TEXT: its complaints ("" when none). */
async function promtoolComplaints(text: string): Promise<string> {
  try {
    const { stdout, stderr } = await run(promtool, ["check", "metrics"], { input: text });
    return `${stdout}${stderr}`.trim();
  } catch (err) {
    return (err as Error).message;
  }
}

const USAGE = /^libvirt_operator_(vm_(cpu|memory|network|disk|interface)_\w+|vm_paused_io_error)$/;

/** Usage series (per VM, NIC, or disk attached to it) of VM NAME. */
function usageOf(samples: Sample[], name: string): Sample[] {
  return samples.filter(
    (s) =>
      s.labels.namespace === ns &&
      ((USAGE.test(s.name) && s.labels.name === name) ||
        (s.name.startsWith("libvirt_operator_vmdisk_") && s.labels.vm === name)),
  );
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("metrics-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

describe("Prometheus metrics (TCG guests)", () => {
  it("running, never-run and stopped VMs: series match virsh domstats; stopped ones have no usage series", async () => {
    await applyObject("VMDisk", ns, "data", { provisionedSize: "16Mi", format: "qcow2" });
    await waitForObject<VMDisk>("vmdisk", ns, "data", (d) => d?.status?.phase === "Ready", "Ready");
    rmSync(consoleLogOf(ns, "running"), { force: true });
    await applyVm(
      ns,
      "running",
      guestVmSpec(guest, { disks: [{ name: "data", diskRef: { name: "data" } }] }),
    );
    await applyVm(ns, "never", guestVmSpec(guest, { runStrategy: "Halted" }));
    await waitForVm(ns, "never", isPrintable("Stopped"), "Stopped");
    await waitForVm(ns, "running", isPrintable("Running"), "Running");
    // Booted, so its balloon figures hold still (TCG on a busy machine boots slowly).
    await waitForConsole(consoleLogOf(ns, "running"), BOOTED, 240_000);
    // One that runs, is sampled by the agent, and stops.
    await applyVm(ns, "stopped", guestVmSpec(guest, { shutdown: { gracePeriodSeconds: 0 } }));
    await waitForVm(ns, "stopped", isPrintable("Running"), "Running");
    await waitForMetrics((s) => usageOf(s, "stopped").length > 0, "the stopped VM's usage while it ran");
    await waitForVm(
      ns,
      "stopped",
      (v) => v?.status?.statistics?.updatedAt !== undefined,
      "statistics",
      30_000,
    );
    await kubectl([
      "patch",
      "vm",
      "stopped",
      "-n",
      ns,
      "--type=merge",
      "-p",
      '{"spec":{"runStrategy":"Halted"}}',
    ]);
    await waitForVm(ns, "stopped", isPrintable("Stopped"), "Stopped", 60_000);
    const agent = await waitForMetrics(
      (s) => usageOf(s, "stopped").length === 0,
      "the stopped VM's usage series gone",
    );
    // Its status.statistics say it uses nothing now (written once, like every statistics write).
    await waitForVm(
      ns,
      "stopped",
      (v) => v?.status?.statistics?.cpuTotalPercent === 0 && v.status.statistics.memoryUsedBytes === 0,
      "idle statistics",
      30_000,
    );
    for (const name of ["never", "stopped"]) {
      assert.deepEqual(
        usageOf(agent, name).map((s) => s.name),
        [],
        `${name} has no usage series`,
      );
      assert.equal(one(agent, "libvirt_operator_vm_ready", { namespace: ns, name }), 1, `${name} is Ready`);
    }

    // The running VM: virsh before, a sample after it, virsh after.
    const domain = `${ns}_running`;
    const cpuOf = (s: Sample[]) =>
      one(s, "libvirt_operator_vm_cpu_seconds_total", { namespace: ns, name: "running" });
    const v0 = await domstats(domain);
    const m0 = cpuOf(parseMetrics(await agentMetrics()));
    const m = await waitForMetrics((s) => cpuOf(s) !== m0, "a sample after virsh's first reading");
    const v1 = await domstats(domain);
    const vmLabels = { namespace: ns, name: "running" };
    const counter = (metric: string, read: (v: Record<string, string>) => number, labels = vmLabels) =>
      between(metric, one(m, `libvirt_operator_${metric}`, labels), read(v0), read(v1));
    counter("vm_cpu_seconds_total", (v) => num(v, "cpu.time") / 1e9);
    counter("vm_network_receive_bytes_total", (v) => sum(v, "net", "rx.bytes"));
    counter("vm_network_transmit_bytes_total", (v) => sum(v, "net", "tx.bytes"));
    counter("vm_network_receive_errors_total", (v) => sum(v, "net", "rx.errs"));
    counter("vm_network_transmit_errors_total", (v) => sum(v, "net", "tx.errs"));
    counter("vm_disk_read_bytes_total", (v) => sum(v, "block", "rd.bytes"));
    counter("vm_disk_write_bytes_total", (v) => sum(v, "block", "wr.bytes"));
    assert.equal(
      one(m, "libvirt_operator_vm_memory_installed_bytes", vmLabels),
      num(v1, "balloon.maximum") * 1024,
    );
    assert.equal(one(m, "libvirt_operator_vm_memory_installed_bytes", vmLabels), 256 * MiB);
    const used = one(m, "libvirt_operator_vm_memory_used_bytes", vmLabels);
    const [lo, hi] = [usedBytes(v0), usedBytes(v1)].sort((a, b) => a - b) as [number, number];
    assert.ok(used >= lo * 0.9 && used <= hi * 1.1, `memory used ${used} not near virsh's ${lo} … ${hi}`);
    assert.equal(one(m, "libvirt_operator_vm_paused_io_error", vmLabels), 0);

    // Per NIC: libvirt's host device → MAC (domiflist) → the NIC's name in status.interfaces.
    const vm = (await getVm(ns, "running"))!;
    const nameByMac = new Map((vm.status?.interfaces ?? []).map((i) => [i.mac?.toLowerCase(), i.name]));
    const macByDev = new Map(
      (await virsh("domiflist", domain))
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .filter((cols) => /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(cols.at(-1) ?? ""))
        .map((cols) => [cols[0]!, cols.at(-1)!.toLowerCase()]),
    );
    assert.ok(num(v1, "net.count") >= 1, "the guest has a NIC");
    for (let i = 0; i < num(v1, "net.count"); i++) {
      const nic = nameByMac.get(macByDev.get(v1[`net.${i}.name`] ?? ""));
      assert.ok(nic, `net.${i} (${v1[`net.${i}.name`]}) is one of the VM's NICs`);
      const labels = { ...vmLabels, interface: nic };
      const field = (suffix: string) => (v: Record<string, string>) => num(v, `net.${i}.${suffix}`);
      counter("vm_interface_receive_bytes_total", field("rx.bytes"), labels);
      counter("vm_interface_transmit_bytes_total", field("tx.bytes"), labels);
      counter("vm_interface_receive_packets_total", field("rx.pkts"), labels);
      counter("vm_interface_transmit_packets_total", field("tx.pkts"), labels);
      counter("vm_interface_receive_errors_total", field("rx.errs"), labels);
      counter("vm_interface_transmit_errors_total", field("tx.errs"), labels);
      counter("vm_interface_receive_drops_total", field("rx.drop"), labels);
      counter("vm_interface_transmit_drops_total", field("tx.drop"), labels);
    }
    assert.equal(
      find(m, "libvirt_operator_vm_interface_receive_bytes_total", vmLabels).length,
      num(v1, "net.count"),
      "one series per NIC",
    );

    // Per disk: the VMDisk's volume path names its block.<i>.
    const disk = await waitForObject<VMDisk>("vmdisk", ns, "data", (d) => !!d?.status?.path, "with a path");
    const b = [...Array(num(v1, "block.count")).keys()].find(
      (i) => v1[`block.${i}.path`] === disk!.status!.path,
    );
    assert.ok(b !== undefined, `block device of ${disk!.status!.path}`);
    const diskLabels = { namespace: ns, name: "data", vm: "running" };
    const blockField = (suffix: string) => (v: Record<string, string>) => num(v, `block.${b}.${suffix}`);
    counter("vmdisk_read_bytes_total", blockField("rd.bytes"), diskLabels);
    counter("vmdisk_write_bytes_total", blockField("wr.bytes"), diskLabels);
    counter("vmdisk_read_operations_total", blockField("rd.reqs"), diskLabels);
    counter("vmdisk_write_operations_total", blockField("wr.reqs"), diskLabels);

    // Pools: exact sizes as libvirt has them.
    const pool = vm.status?.disks?.[0]?.pool ?? disk!.status?.pool ?? "";
    assert.ok(pool, "the disk's pool");
    const info = await virsh("pool-info", "--bytes", pool);
    const capacity = Number(/Capacity:\s+(\d+)/.exec(info)?.[1]);
    const poolLabels = { node: TEST_STACK.nodeName, pool };
    assert.equal(one(m, "libvirt_operator_pool_capacity_bytes", poolLabels), capacity);
    const available = one(m, "libvirt_operator_pool_available_bytes", poolLabels);
    assert.ok(available > 0 && available <= capacity, `available ${available} of ${capacity}`);
  });

  it("the controller's fleet gauges: leader, ready nodes, heartbeat age, one status series per VM", async () => {
    // A VM pinned to a node that does not exist: never placed.
    await applyVm(ns, "nowhere", guestVmSpec(guest, { nodeName: "no-such-node" }));
    await waitForVm(ns, "nowhere", isPrintable("ErrorUnschedulable"), "ErrorUnschedulable");
    const { stdout } = await kubectl(["get", "vm", "-n", ns, "-o", "json"]);
    const vms = JSON.parse(stdout).items as VirtualMachine[];
    const expected = vms
      .map((v) => `${v.metadata.name} ${v.status?.nodeName ?? ""} ${v.status?.printableStatus}`)
      .sort();
    let seen: string[] = [];
    const c = await waitFor(
      async () => {
        const s = parseMetrics(await controllerMetrics());
        seen = find(s, "libvirt_operator_vm_status", { namespace: ns })
          .map((x) => `${x.labels.name} ${x.labels.node} ${x.labels.status}`)
          .sort();
        return JSON.stringify(seen) === JSON.stringify(expected) ? s : undefined;
      },
      () => `vm_status ${JSON.stringify(seen)} never matched ${JSON.stringify(expected)}`,
    );
    assert.ok(expected.includes("nowhere  ErrorUnschedulable"), "the unplaced VM is among them");
    assert.ok(find(c, "libvirt_operator_vm_status", { namespace: ns }).every((x) => x.value === 1));
    assert.equal(one(c, "libvirt_operator_controller_leader", { component: "controller" }), 1);
    assert.ok(one(c, "libvirt_operator_nodes_ready", {}) >= 1, "the test node can run VMs");
    const age = one(c, "libvirt_operator_agent_heartbeat_age_seconds", { node: TEST_STACK.nodeName });
    assert.ok(age >= 0 && age < HEARTBEAT_FRESH_MS / 1000, `heartbeat age ${age}s`);
  });

  it("promtool check metrics passes on the controller's and the agent's /metrics", async () => {
    for (const [who, text] of [
      ["controller", await controllerMetrics()],
      ["agent", await agentMetrics()],
    ] as const) {
      assert.match(text, /libvirt_operator_/, `${who} serves metrics`);
      assert.equal(await promtoolComplaints(text), "", `promtool on the ${who}'s metrics`);
    }
  });
});

/** Polls CHECK until it gives a value. */
async function waitFor<T>(
  check: () => Promise<T | undefined>,
  what: () => string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== undefined) return v;
    await sleep(250);
  }
  throw new Error(what());
}

/** Scrapes the agent until CHECK passes; returns that scrape's samples. */
function waitForMetrics(
  check: (s: Sample[]) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<Sample[]> {
  return waitFor(
    async () => {
      const s = parseMetrics(await agentMetrics());
      return check(s) ? s : undefined;
    },
    () => `agent metrics never showed ${what}`,
    timeoutMs,
  );
}
