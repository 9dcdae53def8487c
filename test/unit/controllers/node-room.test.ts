import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { movableForRoom, waitsForRoom } from "../../../src/controllers/cluster/room-move.ts";
import { cpuOvercommitOf, NodeRoom, startRefusal } from "../../../src/controllers/node/node-room.ts";
import { type AgentObservation, agentStatus } from "../../../src/controllers/node/vm-status.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

const GiB = 2 ** 30;
const host = { cpus: 1, memoryBytes: 8 * GiB };

describe("room to start on a node", () => {
  it("refuses a start whose vCPUs or memory do not fit beside the running guests", () => {
    assert.equal(
      startRefusal("n1", host, 8, { cpus: 6, memoryBytes: GiB }, { cpus: 2, memoryBytes: GiB }),
      undefined,
    );
    const cpu = startRefusal("n1", host, 8, { cpus: 6, memoryBytes: GiB }, { cpus: 3, memoryBytes: GiB });
    assert.equal(cpu?.reason, "InsufficientCapacity");
    assert.match(cpu?.message ?? "", /^node n1 has 2 free vCPUs, the VM needs 3/);
    const mem = startRefusal(
      "n1",
      host,
      8,
      { cpus: 0, memoryBytes: 7 * GiB },
      { cpus: 1, memoryBytes: 2 * GiB },
    );
    assert.match(mem?.message ?? "", /^node n1 has 1\.0GiB free memory, the VM needs 2\.0GiB/);
  });

  it("reserves at once, so two starts never take the same room; a stopped guest frees it", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("ns_big", { cpus: 4, memoryBytes: GiB });
    assert.equal(room.claim("ns_a", { cpus: 3, memoryBytes: GiB }), undefined);
    assert.equal(room.claim("ns_b", { cpus: 3, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    // A VM claiming again (its start retried) does not count against itself.
    assert.equal(room.claim("ns_a", { cpus: 3, memoryBytes: GiB }), undefined);
    room.observe("ns_big", undefined);
    assert.equal(room.claim("ns_b", { cpus: 3, memoryBytes: GiB }), undefined);
  });

  it("holds a claim while its start is under way, then counts what libvirt says the guest has", () => {
    const room = new NodeRoom("n1", () => host, 8);
    assert.equal(room.claim("ns_a", { cpus: 4, memoryBytes: GiB }), undefined);
    // Defined and not yet running: an event of that moment must not give the room away.
    room.observe("ns_a", undefined);
    assert.equal(room.claim("ns_b", { cpus: 5, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    // It runs with 2 vCPUs (a spec changed since counts for nothing until it restarts).
    room.settle("ns_a", { cpus: 2, memoryBytes: GiB });
    assert.equal(room.claim("ns_b", { cpus: 5, memoryBytes: GiB }), undefined);
    room.settle("ns_b", undefined); // its start failed and nothing runs
    room.observe("ns_a", undefined); // stopped: no start under way, so it counts no more
    assert.equal(room.claim("ns_c", { cpus: 8, memoryBytes: GiB }), undefined);
  });

  it("after a reconnection counts exactly what runs, domains not ours too, and starts under way", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("ns_gone", { cpus: 4, memoryBytes: GiB });
    assert.equal(room.claim("ns_starting", { cpus: 2, memoryBytes: GiB }), undefined);
    room.reset(new Map([["someone-elses", { cpus: 5, memoryBytes: GiB }]]), room.mark());
    // 5 (not ours) + 2 (starting) of 8: ns_gone's 4 are free again, 1 is left.
    assert.equal(room.claim("ns_x", { cpus: 2, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    assert.equal(room.claim("ns_x", { cpus: 1, memoryBytes: GiB }), undefined);
  });

  it("a listing taken before a change says nothing of the domain that changed", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("ns_stops", { cpus: 3, memoryBytes: GiB });
    const mark = room.mark(); // the listing begins: it will show ns_stops running, ns_new not yet
    assert.equal(room.claim("ns_new", { cpus: 3, memoryBytes: GiB }), undefined);
    room.settle("ns_new", { cpus: 3, memoryBytes: GiB }); // started and settled while listing
    room.observe("ns_stops", undefined); // its stop event came while listing
    room.reset(new Map([["ns_stops", { cpus: 3, memoryBytes: GiB }]]), mark);
    // ns_new still counts (3), ns_stops does not: 5 free.
    assert.equal(room.claim("ns_x", { cpus: 6, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    assert.equal(room.claim("ns_x", { cpus: 5, memoryBytes: GiB }), undefined);
  });

  it("holds a guest's count while it is saved for a snapshot, until it is restored", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("ns_snap", { cpus: 6, memoryBytes: GiB });
    room.hold("ns_snap");
    room.observe("ns_snap", undefined); // saved: off, yet coming back
    assert.equal(room.claim("ns_b", { cpus: 3, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    room.unhold("ns_snap"); // restored: its count stays as it was
    assert.equal(room.claim("ns_b", { cpus: 3, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    room.observe("ns_snap", undefined); // stopped for good now
    assert.equal(room.claim("ns_b", { cpus: 3, memoryBytes: GiB }), undefined);
  });

  it("a guest running here that claims no more than it has (a restore of it) is never refused", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("someone-elses", { cpus: 6, memoryBytes: GiB }); // the node is overfull
    room.observe("ns_vm", { cpus: 4, memoryBytes: GiB });
    assert.equal(room.claim("ns_vm", { cpus: 4, memoryBytes: GiB }), undefined);
    room.observe("ns_vm", undefined); // stopped for the restore: still held
    assert.equal(room.claim("ns_b", { cpus: 1, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    // Asking for more than it has is judged like any start.
    room.settle("ns_vm", { cpus: 4, memoryBytes: GiB });
    assert.equal(room.claim("ns_vm", { cpus: 5, memoryBytes: GiB })?.reason, "InsufficientCapacity");
  });

  it("a reconcile that sees our guest off frees its room; one it sees running and uncounted is counted", () => {
    const room = new NodeRoom("n1", () => host, 8);
    room.observe("ns_a", { cpus: 8, memoryBytes: GiB });
    room.seen("ns_a", false, { cpus: 8, memoryBytes: GiB }); // its stop event was missed
    room.seen("ns_b", true, { cpus: 7, memoryBytes: GiB }); // its start event was missed
    room.seen("ns_b", true, { cpus: 1, memoryBytes: GiB }); // already counted: kept as it was
    assert.equal(room.claim("ns_c", { cpus: 2, memoryBytes: GiB })?.reason, "InsufficientCapacity");
    assert.equal(room.claim("ns_c", { cpus: 1, memoryBytes: GiB }), undefined);
  });

  it("tells the VMs refused for room when a guest stops or shrinks, until they start or are forgotten", () => {
    const room = new NodeRoom("n1", () => host, 8);
    const told: string[][] = [];
    room.onFreed((names) => told.push(names));
    room.observe("ns_big", { cpus: 8, memoryBytes: GiB });
    assert.ok(room.claim("ns_a", { cpus: 1, memoryBytes: GiB }));
    assert.ok(room.claim("ns_b", { cpus: 1, memoryBytes: GiB }));
    room.observe("ns_big", { cpus: 8, memoryBytes: GiB }); // nothing freed
    assert.deepEqual(told, []);
    room.observe("ns_big", { cpus: 7, memoryBytes: GiB });
    assert.deepEqual(told, [["ns_a", "ns_b"]]);
    assert.equal(room.claim("ns_a", { cpus: 1, memoryBytes: GiB }), undefined);
    room.settle("ns_a", { cpus: 1, memoryBytes: GiB });
    room.forget("ns_b");
    room.observe("ns_big", undefined);
    assert.deepEqual(told, [["ns_a", "ns_b"], []], "told again, with no one waiting any more");
  });

  it("tells every listener (VMs and restores wait for room alike)", () => {
    const room = new NodeRoom("n1", () => host, 8);
    const vms: string[][] = [];
    let restores = 0;
    room.onFreed((names) => vms.push(names));
    room.onFreed(() => restores++);
    room.observe("ns_big", { cpus: 8, memoryBytes: GiB });
    room.observe("ns_big", undefined);
    assert.deepEqual(vms, [[]]);
    assert.equal(restores, 1);
  });

  it("refuses nothing before the host's capacity is known", () => {
    const room = new NodeRoom("n1", () => undefined, 8);
    assert.equal(room.claim("ns_a", { cpus: 64, memoryBytes: 64 * GiB }), undefined);
  });

  it("reads CPU_OVERCOMMIT like the controller (default 8) and refuses nonsense", () => {
    assert.equal(cpuOvercommitOf(undefined), 8);
    assert.equal(cpuOvercommitOf("2.5"), 2.5);
    assert.throws(() => cpuOvercommitOf("lots"), /CPU_OVERCOMMIT/);
    assert.throws(() => cpuOvercommitOf("0"), /CPU_OVERCOMMIT/);
  });
});

function vm(
  spec: Partial<VirtualMachine["spec"]> = {},
  status: VirtualMachine["status"] = {},
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", generation: 1 },
    spec: { memory: "1Gi", ...spec },
    status,
  };
}

const refusedOn = (node: string) => ({
  conditions: [
    {
      type: "Stalled",
      status: "True" as const,
      reason: "InsufficientCapacity",
      message: `node ${node} has 2 free vCPUs, the VM needs 4 beside the VMs running there`,
      lastTransitionTime: "2026-11-27T00:00:00Z",
    },
  ],
});

describe("moving a VM for room", () => {
  it("the agent's refusal shows as ErrorUnschedulable and Stalled InsufficientCapacity", () => {
    const observation: AgentObservation = {
      domainName: "ns_v",
      domain: { state: DomainState.Shutoff, reason: 0, id: -1 },
      definitionInSync: true,
      stopping: false,
      links: {},
      startRefused: { reason: "InsufficientCapacity", message: "node n1 has 2 free vCPUs, the VM needs 4" },
    } as AgentObservation;
    const status = agentStatus(vm(), observation, new Date());
    assert.equal(status.printableStatus, "ErrorUnschedulable");
    const stalled = (status.conditions as Array<{ type: string; status: string; reason: string }>).find(
      (c) => c.type === "Stalled",
    );
    assert.equal(stalled?.status, "True");
    assert.equal(stalled?.reason, "InsufficientCapacity");
  });

  it("counts only a refusal from the node the VM is placed on", () => {
    assert.equal(waitsForRoom(vm({}, refusedOn("n1")), "n1"), true);
    assert.equal(waitsForRoom(vm({}, refusedOn("n1")), "n2"), false);
    assert.equal(waitsForRoom(vm(), "n1"), false);
  });

  it("moves only what nothing ties to the node and still wants to run: no nodeName, no disks", () => {
    const withDisk = { disks: [{ name: "root", diskRef: { name: "d" } }] } as Partial<VirtualMachine["spec"]>;
    assert.equal(movableForRoom(vm({}, refusedOn("n1")), "n1"), true);
    assert.equal(movableForRoom(vm({ nodeName: "n1" }, refusedOn("n1")), "n1"), false);
    // Disks, even in a shared pool: the old node might start it as the move is decided.
    assert.equal(movableForRoom(vm(withDisk, refusedOn("n1")), "n1"), false);
    // Stopped by its user while it waited: nothing to move.
    assert.equal(movableForRoom(vm({ runStrategy: "Halted" }, refusedOn("n1")), "n1"), false);
    assert.equal(movableForRoom(vm({}, {}), "n1"), false);
  });
});

describe("the room kept to libvirt's events", () => {
  it("counts a stopped guest out at once, and an older read answering late does not count it back", async () => {
    const { EventEmitter } = await import("node:events");
    const { keepRoomCurrent } = await import("../../../src/controllers/node/room-observer.ts");
    const { DomainEventType } = await import("../../../src/hypervisor/libvirt/index.ts");
    let answer: (info: unknown) => void = () => undefined;
    let reads = 0;
    const libvirt = Object.assign(new EventEmitter(), {
      domainInfo: () => {
        reads++;
        return new Promise((r) => (answer = r));
      },
      listAllDomains: async () => [],
    });
    const room = new NodeRoom("n1", () => host, 1);
    const silent = { warn: () => undefined } as never;
    keepRoomCurrent(room, libvirt as never, silent);
    const dom = { name: "ns_a", uuid: Buffer.alloc(16), id: 1 };
    const need = { cpus: 1, memoryBytes: GiB };
    libvirt.emit("lifecycle", { domain: dom, event: DomainEventType.Started, detail: 0 });
    libvirt.emit("lifecycle", { domain: dom, event: DomainEventType.Stopped, detail: 0 });
    assert.equal(reads, 1, "a stop asks libvirt nothing");
    // The start's read answers after the stop: the guest was running when it was read.
    answer({ state: DomainState.Running, vcpus: 1, maxMemKiB: GiB / 1024 });
    await new Promise((r) => setImmediate(r));
    assert.equal(room.claim("ns_b", need), undefined, "the stopped guest takes no room");
  });
});
