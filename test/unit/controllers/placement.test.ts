import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type NodeView, place } from "../../../src/controllers/cluster/placement.ts";

const GiB = 2 ** 30;
const policy = { cpuOvercommit: 1 };

function node(name: string, extra: Partial<NodeView> = {}): NodeView {
  return {
    name,
    labels: {},
    enabled: true,
    heartbeatFresh: true,
    capacity: { cpus: 4, memoryBytes: 8 * GiB, hypervisors: ["kvm", "qemu"] },
    allocated: { cpus: 0, memoryBytes: 0 },
    ...extra,
  };
}
const req = { hypervisor: "qemu", cpus: 1, memoryBytes: GiB };

describe("place", () => {
  it("picks the least allocated fitting node", () => {
    const nodes = [
      node("a", { allocated: { cpus: 2, memoryBytes: 4 * GiB } }),
      node("b", { allocated: { cpus: 1, memoryBytes: 1 * GiB } }),
      node("c", { allocated: { cpus: 3, memoryBytes: 1 * GiB } }),
    ];
    assert.deepEqual(place(req, nodes, policy), { node: "b" });
  });

  it("breaks ties by name, so placement is deterministic", () => {
    assert.deepEqual(place(req, [node("z"), node("m")], policy), { node: "m" });
  });

  it("skips nodes that are not labelled, silent, without the hypervisor, unmatched or full, and says so", () => {
    const nodes = [
      node("off", { enabled: false }),
      node("dead", { heartbeatFresh: false }),
      node("tcg", { capacity: { cpus: 4, memoryBytes: 8 * GiB, hypervisors: ["qemu"] } }),
      node("full", { allocated: { cpus: 0, memoryBytes: 8 * GiB } }),
      node("busy", { allocated: { cpus: 4, memoryBytes: 0 } }),
    ];
    const r = place({ ...req, hypervisor: "kvm", nodeSelector: {} }, nodes, policy);
    assert.ok("error" in r);
    assert.equal(
      r.error,
      "0/5 nodes can run the VM (kvm, 1 vCPU, 1.0GiB): 1 are not labelled vm.libvirt-operator.io/enabled=true; " +
        "1 have no node agent reporting; 1 do not offer the hypervisor; 1 have too little free memory; " +
        "1 have too few free vCPUs",
    );
  });

  it("skips cordoned and out-of-service nodes", () => {
    const r = place(req, [node("c", { cordoned: true })], policy);
    assert.deepEqual(r, {
      error: "0/1 nodes can run the VM (qemu, 1 vCPU, 1.0GiB): 1 are cordoned or out of service",
    });
    assert.deepEqual(place({ ...req, nodeName: "c" }, [node("c", { cordoned: true })], policy), {
      error: "node c (spec.nodeName) cannot run the VM: it is cordoned or tainted out-of-service",
    });
  });

  it("honours nodeSelector", () => {
    const nodes = [node("a"), node("b", { labels: { zone: "x" } })];
    assert.deepEqual(place({ ...req, nodeSelector: { zone: "x" } }, nodes, policy), { node: "b" });
  });

  it("a pinned nodeName is used, or refused with the node and the reason", () => {
    const nodes = [
      node("a"),
      node("b", { capacity: { cpus: 4, memoryBytes: GiB / 2, hypervisors: ["qemu"] } }),
    ];
    assert.deepEqual(place({ ...req, nodeName: "a" }, nodes, policy), { node: "a" });
    assert.deepEqual(place({ ...req, nodeName: "nope" }, nodes, policy), {
      error: "node nope (spec.nodeName) does not exist",
    });
    assert.deepEqual(place({ ...req, nodeName: "b" }, nodes, policy), {
      error: "node b (spec.nodeName) cannot run the VM: it has 0.5GiB free memory, the VM needs 1.0GiB",
    });
  });

  it("overcommits vCPUs by the policy's ratio, never memory", () => {
    const n = node("a", { allocated: { cpus: 4, memoryBytes: 0 } });
    assert.ok("error" in place(req, [n], { cpuOvercommit: 1 }));
    assert.deepEqual(place(req, [n], { cpuOvercommit: 2 }), { node: "a" });
    assert.ok("error" in place({ ...req, memoryBytes: 9 * GiB }, [n], { cpuOvercommit: 8 }));
  });

  it("a VM with node-local disks goes to their node, or is refused naming the disk", () => {
    const nodes = [node("a"), node("b", { allocated: { cpus: 0, memoryBytes: 0 } })];
    const disksNode = { node: "a", disk: "data" };
    assert.deepEqual(place({ ...req, disksNode }, nodes, policy), { node: "a" });
    assert.match(
      (place({ ...req, disksNode, nodeName: "b" }, nodes, policy) as { error: string }).error,
      /spec.nodeName b conflicts with VMDisk data, which lives on node a/,
    );
    assert.match(
      (place({ ...req, disksNode: { node: "gone", disk: "data" } }, nodes, policy) as { error: string })
        .error,
      /node gone, which holds VMDisk data, does not exist/,
    );
    const full = [node("a", { allocated: { cpus: 0, memoryBytes: 100 * GiB } })];
    assert.match(
      (place({ ...req, disksNode }, full, policy) as { error: string }).error,
      /node a holds VMDisk data but cannot run the VM: it has .* free memory/,
    );
  });
});
