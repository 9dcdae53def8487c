// Lost nodes on test-driver nodes: an agent that stops heartbeating (SIGSTOP: its guests and
// libvirt state stay as they were) makes its VMs and VMDisks Unknown and nothing runs twice;
// when it comes back they are its again; once an admin taints the node out-of-service, deleted
// objects are let go and a VM that keeps running and has no local disks runs on another node.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import type { VMSnapshot } from "../../src/api/vmsnapshot.ts";
import { AGENT_NAMESPACE, startController } from "../../src/cmd/local/operator.ts";
import { runningPid, stopDaemon } from "../../src/cmd/local/processes.ts";
import { HEARTBEAT_INTERVAL_MS, heartbeatLeaseName } from "../../src/controllers/node-facts.ts";
import { placedNode } from "../../src/controllers/vm-placement.ts";
import { domainsOn, fenceLogged, startTestNodes, stopTestNodes, type TestNode } from "../support/nodes.ts";
import {
  applyObject,
  applyVm,
  getObject,
  getVm,
  waitForEvent,
  waitForObject,
  waitForVm,
  watchVmVersions,
} from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const LOST_AFTER_SECONDS = 20;
const POOL_LABEL = "test.vm.libvirt-operator.io/lost-node";
let ns = "";
let first: TestNode[] = [];
let second: TestNode[] = [];

const condition = (obj: { status?: { conditions?: Array<{ type: string }> } } | undefined, type: string) =>
  obj?.status?.conditions?.find((c) => c.type === type) as
    | { type: string; status: string; reason: string; message: string }
    | undefined;
const nodeLost = (reason: string) => (vm: VirtualMachine | undefined) =>
  vm?.status?.printableStatus === "Unknown" &&
  condition(vm, "NodeLost")?.status === "True" &&
  condition(vm, "NodeLost")?.reason === reason;

function agentPid(node: TestNode): number {
  const pid = runningPid(TEST_STACK.stateDir, `agent-${node.nodeName}`);
  assert.ok(pid, `agent of ${node.nodeName} is not running`);
  return pid;
}

/**
 * SIGSTOPs NODE's agent just before its next heartbeat renewal: the time it stays frozen stays
 * well under libvirtd's keepalive limit (~30 s), past which libvirtd drops its connection and a
 * test-driver hypervisor loses everything, as a rebooted node would.
 */
async function freezeBeforeRenewal(node: TestNode) {
  const { stdout } = await kubectl([
    "get",
    "lease",
    heartbeatLeaseName(node.nodeName),
    "-n",
    AGENT_NAMESPACE,
    "-o",
    "jsonpath={.spec.renewTime}",
  ]);
  const wait = Date.parse(stdout) + HEARTBEAT_INTERVAL_MS - 1500 - Date.now();
  if (wait > 0) await sleep(Math.min(wait, HEARTBEAT_INTERVAL_MS));
  process.kill(agentPid(node), "SIGSTOP");
}

/** Waits for an Event of REASON on VM NAME (sent after the status that reports the same). */
const eventOf = (name: string, reason: string) => waitForEvent(ns, name, (e) => e.reason === reason, reason);

before(async () => {
  ns = await testNamespace("lost-node");
  process.env.NODE_LOST_AFTER_SECONDS = String(LOST_AFTER_SECONDS);
  // Statistics every second: the agents' per-VM series are how the test sees their domains.
  process.env.STATISTICS_INTERVAL_SECONDS = "1";
  // Under the controller's own ServiceAccount; the stack's agent plays no part.
  await startController(TEST_STACK.stateDir, KUBECONFIG, "lost-node", TEST_STACK.ports.controllerMetrics);
  first = await startTestNodes(1, { prefix: "lna", labels: { [POOL_LABEL]: "yes" } });
});

after(async () => {
  for (const node of first) {
    const pid = runningPid(TEST_STACK.stateDir, `agent-${node.nodeName}`);
    if (pid) process.kill(pid, "SIGCONT");
  }
  await kubectl(["delete", "vmsnapshot,vm,vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestNodes([...first, ...second]);
  await stopDaemon(TEST_STACK.stateDir, "controller");
  delete process.env.NODE_LOST_AFTER_SECONDS;
  delete process.env.STATISTICS_INTERVAL_SECONDS;
});

describe("a node whose agent stops heartbeating", () => {
  const spec = (runStrategy: string) => ({
    hypervisor: "qemu",
    memory: "64Mi",
    runStrategy,
    nodeSelector: { [POOL_LABEL]: "yes" },
  });

  it("makes its VMs and disks Unknown, runs nothing twice, holds deletions, and recovers when it answers", async () => {
    const a = first[0]!;
    await Promise.all([
      applyVm(ns, "mover", spec("Always")),
      applyVm(ns, "leaver", spec("Always")),
      applyVm(ns, "manual", spec("Manual")),
      applyObject("VMDisk", ns, "local", { provisionedSize: "16Mi", nodeName: a.nodeName }),
    ]);
    await waitForVm(ns, "mover", (vm) => vm?.status?.printableStatus === "Running", "Running");
    await waitForVm(ns, "leaver", (vm) => vm?.status?.printableStatus === "Running", "Running");
    await waitForVm(ns, "manual", (vm) => vm?.status?.printableStatus === "Stopped", "Stopped");
    await waitForObject<VMDisk>("vmdisk", ns, "local", (d) => d?.status?.phase === "Ready", "Ready");
    // A snapshot handed to the node's agent: its finalizer is the agent's to remove.
    await applyObject("VMSnapshot", ns, "manual-snap", { vmName: "manual" });
    await waitForObject<VMSnapshot>(
      "vmsnapshot",
      ns,
      "manual-snap",
      (s) => s?.status?.nodeName === a.nodeName && Boolean(s.metadata.finalizers?.length),
      "handed to the node's agent",
    );
    // Metrics ports count up per group: the second group's first port is after the first's.
    second = await startTestNodes(1, {
      prefix: "lnb",
      labels: { [POOL_LABEL]: "yes" },
      firstMetricsPort: TEST_STACK.ports.agentMetrics + 2,
    });
    const b = second[0]!;

    let t = Date.now();
    await freezeBeforeRenewal(a);
    await waitForVm(ns, "mover", nodeLost("NodeLost"), "Unknown (NodeLost)", 90_000);
    const lostIn = Date.now() - t;
    process.stderr.write(
      `# VMs Unknown ${lostIn} ms after the agent stopped (limit ${LOST_AFTER_SECONDS} s)\n`,
    );
    // Counted from the last renewal seen, up to one heartbeat interval before the stop.
    assert.ok(
      lostIn >= (LOST_AFTER_SECONDS - HEARTBEAT_INTERVAL_MS / 1000 - 1) * 1000,
      `marked lost after only ${lostIn} ms`,
    );
    const mover = await getVm(ns, "mover");
    assert.equal(condition(mover, "Ready")?.status, "False");
    assert.match(condition(mover, "NodeLost")?.message ?? "", /no heartbeat from the agent of node lna-1/);
    await waitForObject<VMDisk>("vmdisk", ns, "local", (d) => d?.status?.phase === "Unknown", "Unknown");
    await eventOf("mover", "NodeLost");

    // Without an admin's word nothing moves and a deletion waits for the node.
    await kubectl(["delete", "vm", "leaver", "-n", ns, "--wait=false"]);
    await sleep(1_500);
    const unmoved = await getVm(ns, "mover");
    assert.equal(unmoved ? placedNode(unmoved) : undefined, a.nodeName, "not moved");
    assert.ok(await getVm(ns, "leaver"), "a VM of a lost node was let go without confirmation");
    assert.equal((await domainsOn(b)).size, 0, "a VM of the lost node runs on the other node");

    t = Date.now();
    process.kill(agentPid(a), "SIGCONT");
    await waitForVm(
      ns,
      "mover",
      (vm) => vm?.status?.printableStatus === "Running" && condition(vm, "NodeLost")?.status === "False",
      "Running again",
      60_000,
    );
    await waitForVm(ns, "leaver", (vm) => vm === undefined, "deleted by its agent", 60_000);
    await waitForObject<VMDisk>(
      "vmdisk",
      ns,
      "local",
      (d) => d?.status?.phase === "Ready",
      "Ready again",
      60_000,
    );
    process.stderr.write(`# back to Running ${Date.now() - t} ms after the agent resumed\n`);
    await eventOf("mover", "NodeReachable");
  });

  it("once tainted out-of-service: lets deleted objects go, places a VM that keeps running elsewhere, says why the rest stay", async () => {
    const [a, b] = [first[0]!, second[0]!];
    await freezeBeforeRenewal(a);
    await waitForVm(ns, "mover", nodeLost("NodeLost"), "Unknown (NodeLost)", 90_000);
    await kubectl(["delete", "vmdisk", "local", "-n", ns, "--wait=false"]);
    await kubectl(["delete", "vmsnapshot", "manual-snap", "-n", ns, "--wait=false"]);
    const t = Date.now();
    await kubectl(["taint", "node", a.nodeName, "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"]);
    const moved = await waitForVm(
      ns,
      "mover",
      (vm) => vm?.status?.nodeName === b.nodeName && vm.status.printableStatus === "Running",
      `Running on ${b.nodeName}`,
      60_000,
    );
    process.stderr.write(`# running on ${b.nodeName} ${Date.now() - t} ms after the taint\n`);
    assert.equal(condition(moved, "NodeLost")?.status, "False");
    assert.equal(moved?.metadata.labels?.["vm.libvirt-operator.io/node"], b.nodeName);
    const deadline = Date.now() + 15_000;
    while (!(await domainsOn(b)).has(`${ns}/mover`)) {
      assert.ok(Date.now() < deadline, `no domain of mover on ${b.nodeName}`);
      await sleep(500);
    }
    await waitForObject<VMDisk>("vmdisk", ns, "local", (d) => d === undefined, "released", 30_000);
    await waitForObject<VMSnapshot>(
      "vmsnapshot",
      ns,
      "manual-snap",
      (s) => s === undefined,
      "released",
      30_000,
    );
    const manual = await waitForVm(ns, "manual", nodeLost("NodeGone"), "Unknown (NodeGone)", 30_000);
    assert.match(
      condition(manual, "NodeLost")?.message ?? "",
      /runStrategy Manual does not start it elsewhere/,
    );
    assert.equal(condition(manual, "Stalled")?.status, "True");
    const stays = await getObject<VirtualMachine>("vm", ns, "manual");
    assert.equal(stays ? placedNode(stays) : undefined, a.nodeName, "not moved");

    // The node comes back after all: its agent stops its copy of the moved VM (fencing), and
    // nothing it says of it (a report judged before it stopped) reaches the VM.
    const versions = watchVmVersions(ns, "mover");
    const resumed = Date.now();
    process.kill(agentPid(a), "SIGCONT");
    await eventOf("mover", "Fenced");
    process.stderr.write(
      `# the returning node fenced its copy ${Date.now() - resumed} ms after it resumed\n`,
    );
    assert.ok(await fenceLogged(a, `${ns}_mover`, 10_000), "the returning node's agent logged the fence");
    assert.ok((await domainsOn(b)).has(`${ns}/mover`));
    const after = await getVm(ns, "mover");
    assert.equal(after?.status?.printableStatus, "Running");
    assert.equal(after?.status?.nodeName, b.nodeName);
    await versions.until((v) => v.nodeName !== "", "the VM");
    // What the returning agent might still write comes right after its fence.
    await sleep(1000);
    versions.stop();
    for (const v of versions.seen)
      assert.equal(
        v.nodeName,
        b.nodeName,
        `a version of the VM names another node: ${JSON.stringify(versions.seen)}`,
      );
  });
});
