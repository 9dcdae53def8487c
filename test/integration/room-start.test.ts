// Room counts what runs: on two test-driver nodes of 1 CPU each (8 vCPUs at overcommit 8), a
// stopped VM takes none, so it is placed beside a 6-vCPU guest; asked to start there it is
// refused by the node's agent (InsufficientCapacity) and, with nothing tying it to the node,
// moved by the controller to the node that got room; one pinned by spec.nodeName waits and
// starts in place once its node's guest stops.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { placedNode } from "../../src/controllers/vm-placement.ts";
import {
  agentLogEntries,
  fenceLogged,
  startControllerAndTestNodes,
  stopControllerAndTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../support/nodes.ts";
import {
  applyVm,
  eventsOf,
  getVm,
  isPrintable,
  waitForEvent,
  waitForVm,
  watchVmVersions,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

const PREFIX = "room";
let ns = "";
let nodes: TestNode[] = [];
const [N1, N2] = [`${PREFIX}-1`, `${PREFIX}-2`];

function vmSpec(cores: number, extra: Record<string, unknown> = {}) {
  return {
    hypervisor: "qemu",
    memory: "64Mi",
    cpu: { cores },
    nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
    ...extra,
  };
}

const runStrategy = (name: string, strategy: string) =>
  kubectl([
    "patch",
    "vm",
    name,
    "-n",
    ns,
    "--type=merge",
    "-p",
    JSON.stringify({ spec: { runStrategy: strategy } }),
  ]);

const stalledFor = (reason: string, node: string) => (vm: VirtualMachine | undefined) => {
  const stalled = vm?.status?.conditions?.find((c) => c.type === "Stalled");
  return (
    vm?.status?.printableStatus === "ErrorUnschedulable" &&
    vm.status.nodeName === node &&
    stalled?.status === "True" &&
    stalled.reason === reason
  );
};

const runningOn = (node: string) => (vm: VirtualMachine | undefined) =>
  vm?.status?.printableStatus === "Running" && vm.status.nodeName === node;

before(async () => {
  ns = await testNamespace("room-start");
  nodes = await startControllerAndTestNodes("room-start", 2, { prefix: PREFIX, cpus: 1 });
});

after(async () => {
  await stopControllerAndTestNodes(nodes, ns);
});

describe("room for VMs that run, not for stopped ones", () => {
  it("places stopped VMs on full nodes, refuses their start there, moves one and starts the pinned one in place", async () => {
    // A 6-vCPU guest on each node leaves 2 vCPUs free on both.
    await applyVm(ns, "big-1", vmSpec(6, { nodeName: N1 }));
    await applyVm(ns, "big-2", vmSpec(6, { nodeName: N2 }));
    await waitForVm(ns, "big-1", runningOn(N1), `Running on ${N1}`, 60_000);
    await waitForVm(ns, "big-2", runningOn(N2), `Running on ${N2}`, 60_000);

    // Stopped VMs of 4 vCPUs reserve nothing: placed (the emptier-by-name node for the free one).
    await applyVm(ns, "free", vmSpec(4, { runStrategy: "Halted" }));
    await applyVm(ns, "pinned", vmSpec(4, { runStrategy: "Halted", nodeName: N1 }));
    for (const name of ["free", "pinned"]) {
      const vm = await waitForVm(ns, name, isPrintable("Stopped"), "Stopped", 60_000);
      assert.equal(vm?.status?.nodeName, N1, `${name} placed on ${vm?.status?.nodeName}`);
    }

    // Asked to run, neither fits beside big-1: the agent says so, the VMs stay off.
    await runStrategy("free", "Always");
    await runStrategy("pinned", "Always");
    for (const name of ["free", "pinned"]) {
      const vm = await waitForVm(
        ns,
        name,
        stalledFor("InsufficientCapacity", N1),
        "refused for room",
        30_000,
      );
      const stalled = vm?.status?.conditions?.find((c) => c.type === "Stalled");
      assert.match(stalled?.message ?? "", new RegExp(`^node ${N1} has 2 free vCPUs, the VM needs 4`));
    }
    await waitForEvent(ns, "free", (e) => e.reason === "InsufficientCapacity", "InsufficientCapacity");
    const refusedEvents = (await eventsOf(ns, "free")).filter((e) => e.reason === "InsufficientCapacity");
    assert.equal(
      refusedEvents.length,
      1,
      `one InsufficientCapacity Event, not one per retry: ${JSON.stringify(refusedEvents)}`,
    );
    const free = await getVm(ns, "free");
    assert.equal(free ? placedNode(free) : undefined, N1, "no node had room: not moved");

    // A user who changes their mind: asked to stop while waiting for room, it is simply Stopped.
    await applyVm(ns, "undecided", vmSpec(4, { nodeName: N1, runStrategy: "Halted" }));
    await waitForVm(ns, "undecided", isPrintable("Stopped"), "Stopped", 30_000);
    await runStrategy("undecided", "Always");
    await waitForVm(ns, "undecided", stalledFor("InsufficientCapacity", N1), "refused for room", 30_000);
    await runStrategy("undecided", "Halted");
    const stopped = await waitForVm(ns, "undecided", isPrintable("Stopped"), "Stopped", 30_000);
    assert.equal(stopped?.status?.conditions?.find((c) => c.type === "Stalled")?.status, "False");

    // big-2 stops: the free VM moves there and runs; the pinned one keeps waiting on its node.
    const versions = watchVmVersions(ns, "free");
    await runStrategy("big-2", "Halted");
    await waitForVm(ns, "big-2", isPrintable("Stopped"), "Stopped", 30_000);
    await waitForVm(ns, "free", runningOn(N2), `moved to ${N2} and Running`, 60_000);
    await versions.until((v) => v.nodeName === N2 && v.printableStatus === "Running", `Running on ${N2}`);
    versions.stop();
    // On the way a watcher (kstatus, Argo CD) sees it on its way to its new node: never the old
    // node's refusal (Stalled) under the new node's name, never Ready but Running there.
    const onN2 = versions.seen.filter((v) => v.nodeName === N2);
    assert.ok(onN2.length > 0, `the watch saw the move: ${JSON.stringify(versions.seen)}`);
    for (const v of onN2)
      assert.notEqual(v.stalled, "True", `Stalled on ${N2}: ${JSON.stringify(versions.seen)}`);
    for (const v of versions.seen.filter((x) => x.ready === "True"))
      assert.ok(
        v.nodeName === N2 && v.printableStatus === "Running",
        `Ready: ${JSON.stringify(versions.seen)}`,
      );
    await waitForEvent(
      ns,
      "free",
      (e) => e.reason === "MovedForRoom" && e.message.includes(`placed on node ${N2}`),
      "MovedForRoom",
    );
    // Its old node fences the domain on its own, not ordered with the new node's start.
    assert.ok(
      await fenceLogged(nodes[0]!, `${ns}_free`, 30_000),
      `the domain left on ${N1} was removed: ${JSON.stringify(await agentLogEntries(nodes[0]!, "domain fenced"))}`,
    );
    assert.ok(stalledFor("InsufficientCapacity", N1)(await getVm(ns, "pinned")), "the pinned VM still waits");

    // big-1 stops: the pinned VM starts where it is (the agent looks again within 30 s); the
    // undecided one, stopped, stays so.
    await runStrategy("big-1", "Halted");
    await waitForVm(ns, "pinned", runningOn(N1), `Running on ${N1}`, 60_000);
    assert.equal((await getVm(ns, "undecided"))?.status?.printableStatus, "Stopped");
  });
});
