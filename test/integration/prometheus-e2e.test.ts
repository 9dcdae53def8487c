// A real Prometheus (Debian's package) scrapes the test stack's controller and agent on loopback
// with the chart's rendered rules (for: shortened through chart values): an unschedulable VM
// fires LibvirtOperatorVMUnhealthy, which resolves once the VM is gone; a stopped agent fires
// LibvirtOperatorAgentDown and LibvirtOperatorAgentNotHeartbeating; and every panel query of the chart's Grafana dashboard returns data
// for a running guest with a disk, a NIC and a snapshot.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  applyObject,
  applyVm,
  getObject,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import {
  dashboard,
  eventually,
  JOBS,
  type PrometheusServer,
  renderRules,
  startPrometheus,
  writeRulesFile,
} from "../support/prometheus.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let dir = "";
let prometheus: PrometheusServer | undefined;
const VM = "watched";

/** The alerts Prometheus holds named ALERT, with labels LABELS, in STATE (any state when undefined). */
async function alertsNamed(alert: string, labels: Record<string, string>, state?: "pending" | "firing") {
  const all = (await prometheus?.alerts()) ?? [];
  return all.filter(
    (a) =>
      a.labels.alertname === alert &&
      (state === undefined || a.state === state) &&
      Object.entries(labels).every(([k, v]) => a.labels[k] === v),
  );
}

/** Waits until Prometheus holds no ALERT with LABELS, pending or firing. */
function waitQuiet(what: string, alert: string, labels: Record<string, string>) {
  return eventually(what, async () => ((await alertsNamed(alert, labels)).length === 0 ? true : undefined));
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("prometheus-e2e");
  await startTestOperator();
  dir = await mkdtemp(join(tmpdir(), "lvo-prometheus-e2e-"));
  const { fromConfigMap } = await renderRules(
    "metrics.prometheusRule.for.vmUnhealthy=5s",
    "metrics.prometheusRule.for.agentDown=3s",
    // Agents renew every 10 s: 20 s of silence is a stopped agent, not a late renewal.
    "metrics.prometheusRule.agentHeartbeatAgeSeconds=20",
    "metrics.prometheusRule.for.agentNotHeartbeating=1s",
  );
  prometheus = await startPrometheus(await writeRulesFile(dir, fromConfigMap));
});

after(async () => {
  await prometheus?.stop();
  await rm(dir, { recursive: true, force: true });
  await kubectl(["delete", "vm,vmsnapshot,vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

describe("Prometheus scraping the operator, with the chart's rules", () => {
  it("scrapes the controller and the agent", async () => {
    const targets = await eventually("both targets up", async () => {
      const t = (await prometheus?.targets()) ?? [];
      return t.length === 2 && t.every((x) => x.health === "up") ? t : undefined;
    });
    assert.deepEqual(targets.map((t) => t.labels.job).sort(), [JOBS.agent, JOBS.controller].sort());
    const components = await prometheus?.query(
      'count by (job, component) ({__name__=~"libvirt_operator_.+"})',
    );
    assert.deepEqual(
      components?.map((r) => `${r.metric.job} ${r.metric.component}`).sort(),
      [`${JOBS.agent} agent`, `${JOBS.controller} controller`].sort(),
    );
  });

  it("every rule evaluates, and the fleet alerts stay quiet on a healthy stack", async () => {
    const rules = await eventually("every rule evaluated", async () => {
      const r = (await prometheus?.rules()) ?? [];
      return r.length > 0 && r.every((x) => x.health !== "unknown") ? r : undefined;
    });
    assert.deepEqual(
      rules.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.lastError}`),
      [],
    );
    for (const alert of [
      "LibvirtOperatorNoLeader",
      "LibvirtOperatorNoNodeCanRunVMs",
      "LibvirtOperatorAgentNotHeartbeating",
      "LibvirtOperatorAgentDown",
    ])
      await waitQuiet(`${alert} quiet`, alert, {});
  });

  it("LibvirtOperatorVMUnhealthy fires for an unschedulable VM and resolves once it is deleted", async () => {
    await applyVm(ns, "nowhere", {
      ...guestVmSpec(guest, { memory: "128Mi" }),
      nodeSelector: { "prometheus-e2e.libvirt-operator.io/no-node": "has-this" },
    });
    await waitForVm(ns, "nowhere", isPrintable("ErrorUnschedulable"), "ErrorUnschedulable", 30_000);
    const labels = { namespace: ns, name: "nowhere" };
    await eventually("the alert pending", async () =>
      (await alertsNamed("LibvirtOperatorVMUnhealthy", labels, "pending")).at(0),
    );
    const [firing] = await eventually("the alert firing", async () => {
      const a = await alertsNamed("LibvirtOperatorVMUnhealthy", labels, "firing");
      return a.length ? a : undefined;
    });
    assert.equal(firing?.labels.severity, "warning");
    await kubectl(["delete", "vm", "nowhere", "-n", ns, "--wait=true", "--timeout=30s"]);
    await waitQuiet("the alert resolved", "LibvirtOperatorVMUnhealthy", labels);
  });

  it("every panel of the dashboard returns data for a running VM with a disk, a NIC and a snapshot", async () => {
    await applyObject("VMDisk", ns, `${VM}-data`, { provisionedSize: "16Mi", format: "qcow2" });
    await applyVm(
      ns,
      VM,
      // The guest's kernel probes the disk at boot: its I/O series exist.
      guestVmSpec(guest, { memory: "128Mi", disks: [{ name: "data", diskRef: { name: `${VM}-data` } }] }),
    );
    await waitForVm(ns, VM, isPrintable("Running"), "Running", 180_000);
    await applyObject("VMSnapshot", ns, `${VM}-snap`, { vmName: VM });
    await waitForObject<{ status?: { phase?: string } }>(
      "vmsnapshot",
      ns,
      `${VM}-snap`,
      (s) => s?.status?.phase === "Succeeded",
      "Succeeded",
      180_000,
    );
    // Running and Ready, the VM is not unhealthy (its agent's vm_ready may lag the start by a sample).
    const healthy = { namespace: ns, name: VM };
    await waitQuiet("no VMUnhealthy alert for the running VM", "LibvirtOperatorVMUnhealthy", healthy);
    const queries = (await dashboard()).panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: `${p.title} (${t.refId})`, expr: t.expr })),
    );
    assert.ok(queries.length > 20, `${queries.length} queries`);
    const substituted = queries.map((q) => ({
      ...q,
      expr: q.expr.replaceAll("$namespace", ns).replaceAll("$vm", VM).replaceAll("$__rate_interval", "30s"),
    }));
    const empty = async () => {
      const missing: string[] = [];
      for (const q of substituted)
        if (((await prometheus?.query(q.expr)) ?? []).length === 0) missing.push(`${q.panel}: ${q.expr}`);
      return missing;
    };
    let missing: string[] = [];
    await eventually(
      "every panel query returning data",
      async () => {
        missing = await empty();
        return missing.length === 0 ? true : undefined;
      },
      90_000,
    ).catch(() => assert.fail(`queries without data:\n${missing.join("\n")}`));
    // The per-VM panels are about this VM only.
    const cpu = await prometheus?.query(`libvirt_operator_vm_cpu_seconds_total{namespace="${ns}"}`);
    assert.deepEqual([...new Set(cpu?.map((r) => r.metric.name))], [VM]);
    assert.ok(await getObject("virtualmachine", ns, VM));
  });

  it("LibvirtOperatorAgentDown and AgentNotHeartbeating fire while the agent is stopped and resolve when it is back", async () => {
    const instance = `127.0.0.1:${TEST_STACK.ports.agentMetrics}`;
    const node = { node: TEST_STACK.nodeName };
    await stopDaemon(TEST_STACK.stateDir, "agent");
    await eventually("the agent alert firing", async () =>
      (await alertsNamed("LibvirtOperatorAgentDown", { job: JOBS.agent, instance }, "firing")).at(0),
    );
    await eventually("the heartbeat alert firing", async () =>
      (await alertsNamed("LibvirtOperatorAgentNotHeartbeating", node, "firing")).at(0),
    );
    await startTestOperator();
    await waitQuiet("the agent alert resolved", "LibvirtOperatorAgentDown", {});
    await waitQuiet("the heartbeat alert resolved", "LibvirtOperatorAgentNotHeartbeating", node);
  });
});
