// Templates over several nodes (test-driver agents of our own, see test/support/nodes.ts): where
// a template's VMs can run (status.targetNodes: a node lacking the network or pool room is not a
// target), ten VMs web-5 … web-14 from the Helm example chart spread over two nodes, and the
// template's deletion held until they are gone.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { V1Node } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import type { VMTemplate } from "../../src/api/vmtemplate.ts";
import { AGENT_NAMESPACE, startController } from "../../src/cmd/local/operator.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { cachedBinary, REPO_ROOT, run } from "../../src/cmd/local/tools.ts";
import { CAPACITY_ANNOTATION, heartbeatLeaseName, parseCapacity } from "../../src/controllers/node-facts.ts";
import { startTestNodes, stopTestNodes, type TestNode } from "../support/nodes.ts";
import {
  actAsTenant,
  applyObject,
  getObject,
  isPrintable,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

let ns = "";
let nodes: TestNode[] = [];
let odd: TestNode[] = [];

const targetsOf = async (name: string) =>
  (await getObject<VMTemplate>("vmtemplate", ns, name))?.status?.targetNodes ?? [];

/**
 * A node whose agent just stopped (the stack's own, stopped by the previous test file) stays a
 * target until its heartbeat is 40 s old and the template's next 30 s recheck: wait past both.
 */
async function waitForTargets(name: string, want: string[]) {
  const deadline = Date.now() + 100_000;
  let seen: string[] = [];
  while (Date.now() < deadline) {
    seen = await targetsOf(name);
    if (JSON.stringify(seen) === JSON.stringify(want)) return;
    await sleep(250);
  }
  assert.deepEqual(seen, want, `targetNodes of ${name}`);
}

before(async () => {
  ns = await testNamespace("template-nodes");
  await startController(
    TEST_STACK.stateDir,
    KUBECONFIG,
    "template-nodes",
    TEST_STACK.ports.controllerMetrics,
  );
  nodes = await startTestNodes(2, { prefix: "tn" });
  // A third node whose only network is not the one the template's VMs use.
  odd = await startTestNodes(1, {
    prefix: "tnx",
    network: "other",
    firstMetricsPort: TEST_STACK.ports.agentMetrics + 1 + nodes.length,
  });
  for (const node of [...nodes, ...odd])
    await kubectl(["get", "lease", heartbeatLeaseName(node.nodeName), "-n", AGENT_NAMESPACE]);
  await actAsTenant(ns);
  await sleep(1_000);
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmtemplate", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestNodes([...nodes, ...odd]);
  await stopDaemon(TEST_STACK.stateDir, "controller");
});

const shape = {
  hypervisor: "qemu",
  memory: "64Mi",
  cpu: { cores: 1 },
  disks: [{ name: "root", size: "1Gi" }],
};

describe("a template over several nodes", () => {
  it("names as targets only the nodes with the network and pool room", async () => {
    await applyObject("VMTemplate", ns, "web", { template: shape });
    await waitForTargets("web", ["tn-1", "tn-2"]);

    // Fill tn-2's pool: a disk of all but half a GiB of its capacity leaves no room for a VM's 1 GiB.
    const { stdout } = await kubectl(["get", "node", "tn-2", "-o", "json"]);
    const capacity = parseCapacity(
      (JSON.parse(stdout) as V1Node).metadata?.annotations?.[CAPACITY_ANNOTATION],
    );
    const pool = Object.values(capacity?.storagePools ?? {})[0];
    assert.ok(pool?.capacityBytes, JSON.stringify(capacity));
    await applyObject("VMDisk", ns, "filler", {
      provisionedSize: String(pool.capacityBytes - 2 ** 29),
      nodeName: "tn-2",
    });
    await waitForObject<VMDisk>("vmdisk", ns, "filler", (d) => d?.status?.phase === "Ready", "Ready");
    await waitForTargets("web", ["tn-1"]);
    await kubectl(["delete", "vmdisk", "filler", "-n", ns, "--wait=true", "--timeout=60s"]);
    await waitForTargets("web", ["tn-1", "tn-2"]);
  });

  it("makes web-5 … web-14 from the Helm example over two nodes, and holds its deletion until they are gone", async () => {
    const values = join(tmpdir(), `template-nodes-${process.pid}.yaml`);
    writeFileSync(values, "template: web\nname: web\nstart: 5\namount: 10\nnodes: [tn-1, tn-2]\n");
    const chart = join(REPO_ROOT, "examples", "vms-from-template");
    const { stdout: rendered } = await run(cachedBinary("helm"), [
      "template",
      "web",
      chart,
      "-n",
      ns,
      "-f",
      values,
    ]);
    await kubectl(["apply", "-n", ns, "-f", "-"], rendered);
    const names = Array.from({ length: 10 }, (_, i) => `web-${i + 5}`);
    const vms = (await Promise.all(
      names.map((n) => waitForVm(ns, n, isPrintable("Running"), "Running", 180_000)),
    )) as VirtualMachine[];
    for (const [i, vm] of vms.entries()) {
      assert.equal(vm.status?.nodeName, i % 2 === 0 ? "tn-1" : "tn-2", vm.metadata.name);
      assert.equal(vm.status?.template?.name, "web");
      assert.equal(vm.status?.template?.generation, 1);
      const disk = await getObject<VMDisk>("vmdisk", ns, `${vm.metadata.name}-root`);
      assert.equal(disk?.status?.phase, "Ready");
      assert.equal(disk?.status?.nodeName, vm.status?.nodeName);
    }
    const tpl = await waitForObject<VMTemplate>(
      "vmtemplate",
      ns,
      "web",
      (t) => t?.status?.children?.length === 10,
      "with ten children",
    );
    assert.deepEqual(tpl?.status?.children, [...names].sort());

    await kubectl(["delete", "vmtemplate", "web", "-n", ns, "--wait=false"]);
    await waitForObject<VMTemplate>(
      "vmtemplate",
      ns,
      "web",
      (t) => t?.status?.conditions?.some((c) => c.reason === "DeletionBlocked") ?? false,
      "blocked",
    );
    const blocked = await waitForEvent(ns, "web", (e) => e.reason === "DeletionBlocked", "DeletionBlocked");
    assert.match(blocked.message, /web-10, web-11/);
    await kubectl(["delete", "vm", ...names, "-n", ns, "--wait=true", "--timeout=120s"]);
    await waitForObject("vmtemplate", ns, "web", (t) => t === undefined, "gone", 60_000);
  });
});
