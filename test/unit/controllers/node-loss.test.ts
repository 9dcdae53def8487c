import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Lease } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import { HeartbeatClock, WATCH_GRACE_MS } from "../../../src/controllers/cluster/heartbeat-clock.ts";
import {
  diskLossAction,
  judgeNode,
  type NodeFacts,
  snapshotLossAction,
  vmLossAction,
} from "../../../src/controllers/cluster/node-loss.ts";
import { heartbeatLeaseName } from "../../../src/controllers/node-facts.ts";

const lease = (node: string, renewTime: string): V1Lease => ({
  metadata: { name: heartbeatLeaseName(node), namespace: "op" },
  spec: { holderIdentity: node, renewTime: renewTime as unknown as Date },
});

describe("HeartbeatClock", () => {
  it("counts silence from when this process saw the renewal change, not from the holder's renewTime", () => {
    let now = 1000;
    const wall = Date.parse("2026-11-26T12:00:00Z");
    const clock = new HeartbeatClock(
      () => now,
      () => wall,
    );
    // The agent's clock is an hour behind: its renewTime looks an hour old.
    clock.observe(lease("n1", "2026-11-26T11:00:00.000Z"));
    now += 5000;
    assert.equal(clock.silentMs("n1"), 5000);
    assert.equal(clock.fresh("n1"), false, "a first read an hour old is not trusted to be alive");
    clock.observe(lease("n1", "2026-11-26T11:00:10.000Z"));
    now += 1000;
    assert.equal(clock.silentMs("n1"), 1000);
    assert.equal(clock.fresh("n1"), true, "a change seen is alive, whatever its clock says");
    // The same record again (a resync) is no renewal.
    now += 30_000;
    clock.observe(lease("n1", "2026-11-26T11:00:10.000Z"));
    assert.equal(clock.silentMs("n1"), 31_000);
    now += 10_000;
    assert.equal(clock.fresh("n1"), false);
  });

  it("a blind watch (no Lease events at all) does not make nodes look silent", () => {
    let now = 0;
    const clock = new HeartbeatClock(() => now);
    clock.observe(lease("n1", "a"));
    clock.observe(lease("n2", "a"));
    now = 5_000;
    clock.observe(lease("n2", "b"));
    // Nothing arrives for a minute: n1 is silent only as long as the watch was alive, plus grace.
    now = 65_000;
    assert.equal(clock.silentMs("n1"), 5_000 + WATCH_GRACE_MS);
    // The watch brings events again (n2, the leader's lease): n1's silence counts in full.
    clock.observe({ metadata: { name: "libvirt-operator-controller" }, spec: {} });
    assert.equal(clock.silentMs("n1"), 65_000);
  });

  it("a node never heard from is silent since it was first asked about", () => {
    let now = 0;
    const clock = new HeartbeatClock(() => now);
    assert.equal(clock.silentMs("ghost"), 0);
    now = 70_000;
    assert.equal(clock.silentMs("ghost"), 70_000);
    assert.equal(clock.fresh("ghost"), false);
  });

  it("ignores Leases that are not heartbeats", () => {
    const clock = new HeartbeatClock(() => 0);
    clock.observe({
      metadata: { name: "libvirt-operator-controller" },
      spec: { renewTime: "x" as unknown as Date },
    });
    assert.equal(clock.fresh("libvirt-operator-controller"), false);
  });
});

const facts = (extra: Partial<NodeFacts> = {}): NodeFacts => ({
  name: "n1",
  exists: true,
  outOfService: false,
  silentMs: 90_000,
  heardRenewing: true,
  ...extra,
});

describe("judgeNode", () => {
  it("is alive within the limit and looks again when it would run out", () => {
    assert.deepEqual(judgeNode(facts({ silentMs: 20_000 }), 60_000), {
      health: "alive",
      recheckInMs: 40_250,
    });
  });
  it("is lost after the limit, gone only when confirmed", () => {
    assert.equal(judgeNode(facts(), 60_000).health, "lost");
    assert.equal(judgeNode(facts({ outOfService: true }), 60_000).health, "gone");
    assert.equal(judgeNode(facts({ exists: false }), 60_000).health, "gone");
  });
  it("a deleted or tainted node whose agent still heartbeats is not gone", () => {
    assert.equal(judgeNode(facts({ exists: false, silentMs: 1000 }), 60_000).health, "alive");
    assert.equal(judgeNode(facts({ outOfService: true, silentMs: 1000 }), 60_000).health, "alive");
  });
});

type Obj = { deletionTimestamp?: string; finalizers?: string[] };
const vm = (
  spec: Partial<VirtualMachine["spec"]> = {},
  status: Record<string, unknown> = {},
  meta: Obj = {},
) =>
  ({
    metadata: { name: "v", namespace: "t", finalizers: ["f"], ...meta },
    spec: { memory: "1Gi", ...spec },
    status: { nodeName: "n1", ...status },
  }) as unknown as VirtualMachine & { metadata: Obj };

const lostCondition = (reason: string, message = "m") => ({
  conditions: [{ type: "NodeLost", status: "True", reason, message, lastTransitionTime: "t" }],
});

describe("vmLossAction", () => {
  it("marks a VM of a lost node Unknown once, with an Event the first time", () => {
    const a = vmLossAction(vm(), facts(), "lost", [], "f");
    assert.equal(a.act, "mark");
    if (a.act !== "mark") return;
    assert.equal(a.news, true);
    assert.deepEqual(a.fields, { printableStatus: "Unknown" });
    assert.deepEqual(
      a.conditions.map((c) => [c.type, c.status, c.reason]),
      [
        ["NodeLost", "True", "NodeLost"],
        ["Ready", "False", "NodeLost"],
        ["Reconciling", "True", "NodeLost"],
        ["Stalled", "False", "Progressing"],
      ],
    );
    assert.match(a.message, /no heartbeat from the agent of node n1 for 90s/);
    // Already said: the growing silence is not written again.
    assert.deepEqual(
      vmLossAction(vm({}, lostCondition("NodeLost")), facts({ silentMs: 200_000 }), "lost", [], "f"),
      {
        act: "none",
      },
    );
  });

  it("clears NodeLost when the node is heard renewing again, and only then, leaving the state to the agent", () => {
    const cleared = vmLossAction(vm({}, lostCondition("NodeLost")), facts(), "alive", [], "f");
    assert.equal(cleared.act, "clear");
    // Only the condition: the Unknown state is left for the agent's report to take over.
    if (cleared.act === "clear") {
      assert.deepEqual(cleared.fields, {});
      assert.deepEqual(
        cleared.conditions.map((c) => [c.type, c.status, c.reason]),
        [["NodeLost", "False", "NodeReachable"]],
      );
    }
    assert.deepEqual(vmLossAction(vm(), facts(), "alive", [], "f"), { act: "none" });
    // A controller just started has not heard the agent renew: it takes nothing back yet.
    assert.deepEqual(
      vmLossAction(
        vm({}, lostCondition("NodeGone")),
        facts({ silentMs: 1000, heardRenewing: false }),
        "alive",
        [],
        "f",
      ),
      { act: "none" },
    );
  });

  it("a VM pinned to the gone node stays, saying so", () => {
    const a = vmLossAction(vm({ nodeName: "n1" }), facts({ exists: false }), "gone", [], "f");
    assert.ok(a.act === "mark" && /spec.nodeName pins the VM to it/.test(a.message));
  });

  it("never runs a VM twice: a lost node's VM is only marked, whatever its strategy and disks", () => {
    for (const runStrategy of ["Always", "RerunOnFailure", "Manual"] as const)
      assert.equal(vmLossAction(vm({ runStrategy }), facts(), "lost", [true], "f").act, "mark");
    assert.equal(vmLossAction(vm({}, {}, { deletionTimestamp: "x" }), facts(), "lost", [], "f").act, "mark");
  });

  it("on a gone node: releases a deleted VM, places again one that keeps running and can move", () => {
    assert.deepEqual(
      vmLossAction(vm({}, {}, { deletionTimestamp: "x" }), facts({ exists: false }), "gone", [], "f"),
      {
        act: "release",
        finalizer: "f",
        message: "node n1 is gone; the VM's domain went with it",
      },
    );
    assert.equal(
      vmLossAction(vm({}, {}, { deletionTimestamp: "x", finalizers: [] }), facts(), "gone", [], "f").act,
      "none",
    );
    assert.equal(vmLossAction(vm({ runStrategy: "Always" }), facts(), "gone", [], "f").act, "replace");
    assert.equal(
      vmLossAction(vm({ runStrategy: "RerunOnFailure" }), facts(), "gone", [true, true], "f").act,
      "replace",
    );
  });

  it("on a gone node: a VM with node-local disks or a strategy that does not restart it stays, Stalled, saying why", () => {
    const local = vmLossAction(vm(), facts({ outOfService: true }), "gone", [true, false], "f");
    assert.equal(local.act, "mark");
    if (local.act === "mark") {
      assert.match(
        local.message,
        /node n1 is gone \(tainted node.kubernetes.io\/out-of-service\); its VMDisks are on that node's local storage/,
      );
      assert.deepEqual(local.conditions[3], {
        type: "Stalled",
        status: "True",
        reason: "NodeGone",
        message: local.message,
      });
    }
    const manual = vmLossAction(vm({ runStrategy: "Manual" }), facts({ exists: false }), "gone", [], "f");
    assert.equal(manual.act, "mark");
    if (manual.act === "mark") {
      assert.equal(manual.news, true);
      assert.match(manual.message, /its Node was deleted\); runStrategy Manual does not start it elsewhere/);
    }
  });
});

describe("diskLossAction", () => {
  const disk = (status: Record<string, unknown> = {}, meta: Obj = {}) =>
    ({
      metadata: { name: "d", namespace: "t", finalizers: ["vol"], ...meta },
      spec: {},
      status: { nodeName: "n1", phase: "Ready", ...status },
    }) as unknown as VMDisk & { metadata: Obj };

  it("marks a lost node's disk Unknown, releases a deleted one when gone, says what became of the rest", () => {
    const lost = diskLossAction(disk(), facts(), "lost", "vol");
    assert.equal(lost.act, "mark");
    if (lost.act === "mark") assert.deepEqual(lost.fields, { phase: "Unknown" });
    assert.equal(diskLossAction(disk({}, { deletionTimestamp: "x" }), facts(), "lost", "vol").act, "mark");
    assert.equal(diskLossAction(disk({}, { deletionTimestamp: "x" }), facts(), "gone", "vol").act, "release");
    // A shared pool's volume is not lost with the node: left as it is, let go when deleted.
    const inShared = { storagePoolShared: true, pool: "nfs", path: "/nfs/t-d" };
    assert.deepEqual(diskLossAction(disk(inShared), facts(), "lost", "vol"), { act: "none" });
    assert.deepEqual(diskLossAction(disk(inShared), facts(), "gone", "vol"), { act: "none" });
    const released = diskLossAction(disk(inShared, { deletionTimestamp: "x" }), facts(), "gone", "vol");
    assert.ok(
      released.act === "release" &&
        /volume \/nfs\/t-d is left in shared storage pool nfs/.test(released.message),
    );
    const local = diskLossAction(disk(), facts(), "gone", "vol");
    assert.ok(
      local.act === "mark" && /local storage and is lost unless the node comes back/.test(local.message),
    );
  });
});

describe("snapshotLossAction", () => {
  const snapshot = (meta: Obj = {}) => ({ metadata: { finalizers: ["snap"], ...meta } });

  it("lets a deleted snapshot of a gone node go, and nothing else", () => {
    const deleted = snapshot({ deletionTimestamp: "x" });
    const released = snapshotLossAction(deleted, facts({ exists: false }), "gone", "snap");
    assert.ok(released.act === "release" && released.finalizer === "snap");
    assert.match(released.message, /node n1 is gone \(its Node was deleted\)/);
    // Lost is not gone: its agent may still remove what it stored.
    assert.deepEqual(snapshotLossAction(deleted, facts(), "lost", "snap"), { act: "none" });
    assert.deepEqual(snapshotLossAction(snapshot(), facts(), "gone", "snap"), { act: "none" });
    assert.deepEqual(
      snapshotLossAction(snapshot({ deletionTimestamp: "x", finalizers: [] }), facts(), "gone", "snap"),
      { act: "none" },
    );
  });
});
