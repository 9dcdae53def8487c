// A stopped VM reserves nothing (issue 17): on a test-driver node of 1 CPU (8 vCPUs at the
// default overcommit of 8), more Halted VMs than would fit are all placed — each gets its node,
// its UUID and addresses, its disk on that node — and none is ErrorUnschedulable; VMs that run
// still fit as if the Halted ones were not there, and the one too many is refused as before.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import {
  startControllerAndTestNodes,
  stopControllerAndTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../support/nodes.ts";
import { applyObject, applyVm, getVm, waitForObject, waitForVm } from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

const PREFIX = "hc";
/** 8 vCPUs fit on the node; twice as many Halted VMs of 1 vCPU each. */
const HALTED = Array.from({ length: 16 }, (_, i) => `halted-${i}`);
const RUNNING = Array.from({ length: 8 }, (_, i) => `run-${i}`);
let ns = "";
let nodes: TestNode[] = [];

const spec = (runStrategy: string, extra: Record<string, unknown> = {}) => ({
  hypervisor: "qemu",
  memory: "64Mi",
  cpu: { cores: 1 },
  runStrategy,
  nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
  ...extra,
});

before(async () => {
  ns = await testNamespace("halted-capacity");
  process.env.CPU_OVERCOMMIT = "8";
  nodes = await startControllerAndTestNodes("halted-capacity", 1, {
    prefix: PREFIX,
    cpus: 1,
    memoryBytes: 8 * 2 ** 30,
  });
});

after(async () => {
  await stopControllerAndTestNodes(nodes, ns, ["vm", "vmdisk"]);
  delete process.env.CPU_OVERCOMMIT;
});

describe("capacity counts only VMs that run or should", () => {
  it("places more Halted VMs than the node has vCPUs, and still fits the running ones", async () => {
    const node = nodes[0]!.nodeName;
    let t = Date.now();
    // Two of them with a disk of their own: it goes where its VM went. The disks come once their
    // VMs are placed: a disk made first may go to any node with a live agent (here also the
    // stack's own node, whose agent an earlier test file may have left heard from).
    await Promise.all(
      HALTED.map((name, i) =>
        applyVm(
          ns,
          name,
          spec("Halted", i < 2 ? { disks: [{ name: "root", diskRef: { name: `${name}-root` } }] } : {}),
        ),
      ),
    );
    for (const name of ["halted-0", "halted-1"]) {
      await waitForVm(ns, name, (vm) => vm?.status?.nodeName === node, `placed on ${node}`, 30_000);
      await applyObject("VMDisk", ns, `${name}-root`, { provisionedSize: "16Mi" });
    }
    const halted = (await Promise.all(
      HALTED.map((name) =>
        waitForVm(ns, name, (vm) => vm?.status?.printableStatus === "Stopped", "Stopped on its node", 60_000),
      ),
    )) as VirtualMachine[];
    process.stderr.write(`# ${HALTED.length} Halted VMs placed and Stopped in ${Date.now() - t} ms\n`);
    for (const vm of halted) {
      const name = vm.metadata.name;
      assert.equal(vm.status?.nodeName, node, `${name} placed`);
      assert.ok(vm.status?.uuid, `${name} has its UUID`);
      assert.match(vm.status?.interfaces?.[0]?.mac ?? "", /^52:54:00:/, `${name} has its MAC`);
      assert.ok(vm.status?.interfaces?.[0]?.ipv4, `${name} has its address`);
    }
    assert.equal(new Set(halted.map((vm) => vm.status?.interfaces?.[0]?.ipv4)).size, HALTED.length);
    for (const name of ["halted-0-root", "halted-1-root"])
      await waitForObject<VMDisk>("vmdisk", ns, name, (d) => d?.status?.nodeName === node, `on node ${node}`);

    // The Halted ones reserve nothing: all 8 vCPUs are there for VMs that run.
    t = Date.now();
    await Promise.all(RUNNING.map((name) => applyVm(ns, name, spec("Always"))));
    await Promise.all(
      RUNNING.map((name) =>
        waitForVm(ns, name, (vm) => vm?.status?.printableStatus === "Running", "Running", 60_000),
      ),
    );
    process.stderr.write(`# ${RUNNING.length} running VMs Running in ${Date.now() - t} ms\n`);

    // A ninth that would run does not fit; one more Halted still does.
    await Promise.all([
      applyVm(ns, "one-too-many", spec("Always")),
      applyVm(ns, "halted-late", spec("Halted")),
    ]);
    const refused = await waitForVm(
      ns,
      "one-too-many",
      (vm) => vm?.status?.printableStatus === "ErrorUnschedulable",
      "ErrorUnschedulable",
      30_000,
    );
    const scheduled = refused?.status?.conditions?.find((c) => c.type === "Scheduled");
    assert.match(scheduled?.message ?? "", /too few free vCPUs/);
    const late = await waitForVm(ns, "halted-late", (vm) => vm?.status?.nodeName === node, "placed", 30_000);
    assert.notEqual(late?.status?.printableStatus, "ErrorUnschedulable");
    for (const name of HALTED)
      assert.notEqual((await getVm(ns, name))?.status?.printableStatus, "ErrorUnschedulable");

    // A running VM deleted leaves room: the one waiting is placed without waiting for a retry.
    t = Date.now();
    await kubectl(["delete", "vm", "run-0", "-n", ns, "--wait=true", "--timeout=60s"]);
    await waitForVm(
      ns,
      "one-too-many",
      (vm) => vm?.status?.nodeName === node,
      "placed once room was freed",
      20_000,
    );
    process.stderr.write(`# the waiting VM placed ${Date.now() - t} ms after a running one was deleted\n`);
  });
});
