// Quiet steady state (issue 14): with VMs and disks converged, nothing is written but heartbeat
// Leases and statistics refreshes that changed a figure, and those wake no reconciler. 20 VMs
// (a few with a VMDisk) over two test-driver nodes (test/support/nodes.ts); every write is
// watched for 30 s, the API server's own request counters catch writes that changed nothing,
// and the reconcile counters of the controller and the agents say who woke.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { VirtualMachineKind, VMDiskKind } from "../../src/api/names.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { AGENT_NAMESPACE, startController } from "../../src/cmd/local/operator.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { STATISTICS_FIELD_MANAGER } from "../../src/controllers/node/stats-collector.ts";
import { heartbeatLeaseName } from "../../src/controllers/node-facts.ts";
import { loadKubeconfig } from "../../src/kube/kubeconfig.ts";
import { applyStatus, connectKube, type Kube } from "../../src/runtime/kube.ts";
import { apiWriteRequests, describeWrites, requestsGrew, WriteRecorder } from "../support/api-writes.ts";
import { startTestNodes, stopTestNodes, TEST_NODE_GROUP_LABEL, type TestNode } from "../support/nodes.ts";
import {
  applyObject,
  applyVm,
  isPrintable,
  readyCondition,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const PREFIX = "quiet";
const VMS = Array.from({ length: 20 }, (_, i) => `vm-${i}`);
/** Every fourth VM has a disk of its own. */
const withDisk = (i: number) => i % 4 === 0;
const WINDOW_MS = 30_000;
/** Statistics the test refreshes in the window, as the agents' statistics writer does. */
const REFRESHED_VMS = ["vm-1", "vm-2", "vm-3"];
const REFRESHED_DISKS = ["vm-0-data", "vm-4-data"];
let ns = "";
let nodes: TestNode[] = [];

before(async () => {
  ns = await testNamespace("steady-state");
  // Statistics sampled often: a refresh that changed no figure would show within the window.
  process.env.STATISTICS_INTERVAL_SECONDS = "3";
  await startController(TEST_STACK.stateDir, KUBECONFIG, "steady-state", TEST_STACK.ports.controllerMetrics);
  nodes = await startTestNodes(2, { prefix: PREFIX });
  for (const node of nodes)
    await kubectl(["get", "lease", heartbeatLeaseName(node.nodeName), "-n", AGENT_NAMESPACE]);
  await sleep(1_000);
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestNodes(nodes);
  await stopDaemon(TEST_STACK.stateDir, "controller");
});

/** An admin client, for writing status as the agents' statistics writer would. */
function adminKube(): Promise<Kube> {
  return connectKube(undefined, loadKubeconfig([KUBECONFIG]));
}

/** Reconciles run so far, per process and queue (libvirt_operator_reconcile_total). */
async function reconciles(): Promise<Record<string, number>> {
  const ports: Array<[string, number]> = [
    ["controller", TEST_STACK.ports.controllerMetrics],
    ...nodes.map((n): [string, number] => [n.nodeName, n.metricsPort]),
  ];
  const out: Record<string, number> = {};
  for (const [process, port] of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const m of text.matchAll(
      /^libvirt_operator_reconcile_total\{[^}]*\bcontroller="([^"]+)"[^}]*\} (\d+)/gm,
    ))
      out[`${process} ${m[1]}`] = Number(m[2]);
  }
  return out;
}

/** Waits (at most a minute) for 5 s in which the API server served no write but a Lease's. */
async function quiet(): Promise<void> {
  let before = await apiWriteRequests(TEST_STACK);
  for (const end = Date.now() + 60_000; Date.now() < end; ) {
    await sleep(5_000);
    const now = await apiWriteRequests(TEST_STACK);
    if (Object.keys(requestsGrew(before, now)).every((resource) => resource === "leases")) return;
    before = now;
  }
}

describe("steady state", () => {
  it("writes nothing but heartbeats and statistics that changed once VMs and disks converged", async () => {
    let t = Date.now();
    await Promise.all(
      VMS.map(async (name, i) => {
        // On a node of this test: the stack's own node "vm" may still look alive for a while
        // after the previous test file stopped its agent.
        const nodeName = nodes[Math.floor(i / 4) % nodes.length]!.nodeName;
        if (withDisk(i))
          await applyObject("VMDisk", ns, `${name}-data`, { provisionedSize: "64Mi", nodeName });
        await applyVm(ns, name, {
          hypervisor: "qemu",
          memory: "64Mi",
          cpu: { cores: 1 },
          nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
          ...(withDisk(i) ? { disks: [{ name: "data", diskRef: { name: `${name}-data` } }] } : {}),
        });
      }),
    );
    await Promise.all(
      VMS.map((name) =>
        waitForVm(
          ns,
          name,
          (vm) => isPrintable("Running")(vm) && readyCondition(vm)?.status === "True",
          "Ready",
          90_000,
        ),
      ),
    );
    await Promise.all(
      VMS.filter((_, i) => withDisk(i)).map((name) =>
        waitForObject<VMDisk>("vmdisk", ns, `${name}-data`, (d) => d?.status?.phase === "Ready", "Ready"),
      ),
    );
    process.stderr.write(`# ${VMS.length} VMs Ready in ${Date.now() - t} ms\n`);
    // Placed at once, the VMs still got addresses of their own: no agent took back a reservation
    // (an address the controller gave twice, then gave one of them anew).
    for (const node of nodes) {
      const takenBack = readFileSync(node.log, "utf8")
        .split("\n")
        .filter((line) => line.includes("DHCP reservations updated") && line.includes("removed"));
      assert.deepEqual(
        takenBack,
        [],
        `${node.nodeName}: DHCP reservations taken back while VMs were created`,
      );
    }

    const recorder = new WriteRecorder(TEST_STACK);
    await recorder.open();
    // Converged: the last status writes and Events of the start-up, and the first statistics, are done.
    await sleep(5_000);
    await quiet();
    await recorder.start();
    const reconcilesBefore = await reconciles();
    t = Date.now();
    await sleep(WINDOW_MS / 3);
    // Statistics that changed (test-driver guests keep the same figures, so the test moves them):
    // status-only writes of another writer, which no reconciler on either side reads.
    const kube = await adminKube();
    for (const name of REFRESHED_VMS)
      await applyStatus(
        kube,
        VirtualMachineKind,
        { metadata: { name, namespace: ns } },
        STATISTICS_FIELD_MANAGER,
        {
          statistics: { cpuTotalPercent: 42, updatedAt: new Date().toISOString() },
        },
      );
    for (const name of REFRESHED_DISKS)
      await applyStatus(kube, VMDiskKind, { metadata: { name, namespace: ns } }, STATISTICS_FIELD_MANAGER, {
        statistics: { readBytesPerSecond: 4096, updatedAt: new Date().toISOString() },
      });
    await sleep((WINDOW_MS * 2) / 3);
    const reconcilesAfter = await reconciles();
    const report = await recorder.stop();
    const allowed = (kind: string) => report.writes.filter((w) => w.allowed === kind).length;
    process.stderr.write(
      `# ${Math.round((Date.now() - t) / 1000)} s: ${report.writes.length} writes seen (${allowed("heartbeat")} heartbeats, ` +
        `${allowed("statistics")} statistics refreshes), write requests besides Leases: ${JSON.stringify(report.requests)}\n`,
    );
    assert.deepEqual(
      report.disallowed,
      [],
      `writes in steady state besides heartbeats and statistics refreshes that changed a figure:\n${describeWrites(report.disallowed)}`,
    );
    assert.equal(
      report.unseenRequests,
      0,
      `${report.unseenRequests} write requests changed nothing a watch saw (requests ${JSON.stringify(report.requests)})`,
    );
    assert.ok(allowed("heartbeat") >= nodes.length, "the agents' heartbeats were seen: the watches worked");
    assert.ok(
      allowed("statistics") >= REFRESHED_VMS.length + REFRESHED_DISKS.length,
      "the statistics refreshes were seen",
    );
    assert.ok(
      ["controller virtualmachine-cluster", `${nodes[0]!.nodeName} virtualmachine-node`].every(
        (q) => q in reconcilesBefore,
      ),
      `reconcile counters read: ${Object.keys(reconcilesBefore).join(", ")}`,
    );
    // Periodic by design: the node disk reconciler reads each volume's allocation again, and
    // lost-node handling looks at each node once per NODE_LOST_AFTER_SECONDS (a timer; it writes
    // nothing while the node's agent renews).
    const periodic = (queue: string) => queue.endsWith("vmdisk-node") || queue.endsWith("node-loss");
    const woken = Object.entries(reconcilesAfter)
      .filter(([queue, n]) => n !== reconcilesBefore[queue] && !periodic(queue))
      .map(([queue, n]) => `${queue}: ${n - (reconcilesBefore[queue] ?? 0)}`);
    assert.deepEqual(woken, [], "reconciles in steady state (statistics refreshes woke them?)");
  });
});
