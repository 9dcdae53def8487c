// Several nodes at once: three extra node agents on libvirt's test driver (in-memory
// hypervisors, see test/support/nodes.ts) beside the controller. VMs spread over them, run
// on the node they were placed on and nowhere else, and are undefined when deleted.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import {
  agentLogEntries,
  domainsOn,
  startControllerAndTestNodes,
  stopControllerAndTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../support/nodes.ts";
import { applyVm, getVm, isPrintable, waitForVm } from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

const PREFIX = "mn";
const VMS = ["a", "b", "c", "d", "e", "f"];
let ns = "";
let nodes: TestNode[] = [];

/** Which node's hypervisor holds each VM's domain, as every node's agent reports it. */
async function domainsByNode(): Promise<Map<string, Set<string>>> {
  const seen = await Promise.all(nodes.map((n) => domainsOn(n)));
  return new Map(nodes.map((n, i) => [n.nodeName, seen[i]!]));
}

/** Polls until CHECK passes on every node's domains; the error shows the last view. */
async function waitForDomains(check: (byNode: Map<string, Set<string>>) => boolean, what: string) {
  const deadline = Date.now() + 30_000;
  let last = new Map<string, Set<string>>();
  while (Date.now() < deadline) {
    last = await domainsByNode();
    if (check(last)) return last;
    await sleep(250);
  }
  const view = [...last].map(([node, vms]) => `${node}: ${[...vms].join(", ") || "-"}`).join("; ");
  throw new Error(`domains never ${what}; last seen ${view}`);
}

before(async () => {
  const started = Date.now();
  ns = await testNamespace("multi-node");
  // Statistics every second: the agents' per-VM series are how the test sees their domains.
  process.env.STATISTICS_INTERVAL_SECONDS = "1";
  // The controller alone: the VMs go to test nodes only, so this host's agent plays no part
  // (nor do the QEMU domains other test runs keep in the libvirtd they share).
  nodes = await startControllerAndTestNodes("multi-node", 3, { prefix: PREFIX });
  process.stderr.write(`# controller and 3 test nodes up in ${Date.now() - started} ms\n`);
});

after(async () => {
  await stopControllerAndTestNodes(nodes, ns);
});

describe("VMs over several test-driver nodes", () => {
  it("spreads VMs over the nodes, runs each on its node only, and undefines them on delete", async () => {
    let t = Date.now();
    await Promise.all(
      VMS.map((name) =>
        applyVm(ns, name, {
          hypervisor: "qemu",
          memory: "64Mi",
          cpu: { cores: 1 },
          nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
        }),
      ),
    );
    const running = await Promise.all(
      VMS.map((name) => waitForVm(ns, name, isPrintable("Running"), "Running", 60_000)),
    );
    process.stderr.write(`# ${VMS.length} VMs Running in ${Date.now() - t} ms\n`);

    const placed = new Map<string, string[]>(nodes.map((n) => [n.nodeName, []]));
    for (const vm of running as VirtualMachine[]) {
      const node = vm.status?.nodeName ?? "";
      assert.ok(placed.has(node), `${vm.metadata.name} went to ${node}, not a test node`);
      placed.get(node)!.push(`${ns}/${vm.metadata.name}`);
    }
    // Equal nodes and equal VMs: least allocated first gives each node the same share.
    for (const [node, vms] of placed) assert.equal(vms.length, 2, `${node} got ${vms.join(", ") || "none"}`);

    // Each domain lives on its own node's hypervisor and on no other.
    await waitForDomains(
      (byNode) => [...placed].every(([node, vms]) => vms.every((k) => byNode.get(node)?.has(k))),
      "appeared on their nodes",
    );
    const byNode = await domainsByNode();
    for (const [node, vms] of placed) {
      const others = [...byNode].filter(([n]) => n !== node).flatMap(([, seen]) => [...seen]);
      for (const key of vms) assert.ok(!others.includes(key), `${key} also runs outside ${node}`);
    }

    t = Date.now();
    await kubectl(["delete", "vm", ...VMS, "-n", ns, "--wait=true", "--timeout=60s"]);
    process.stderr.write(`# ${VMS.length} VMs deleted in ${Date.now() - t} ms\n`);
    for (const name of VMS) assert.equal(await getVm(ns, name), undefined);
    await waitForDomains((m) => [...m.values()].every((s) => s.size === 0), "went away");
    // The finalizer let each VM go only after its node's agent undefined the domain there.
    for (const node of nodes) {
      const removed = await agentLogEntries(node, "domain destroyed and undefined");
      assert.deepEqual(
        removed.map((e) => e.domain).sort(),
        placed
          .get(node.nodeName)!
          .map((key) => key.replace("/", "_"))
          .sort(),
        `domains undefined on ${node.nodeName}`,
      );
    }
  });
});
