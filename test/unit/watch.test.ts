import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import type { KubernetesObject, V1Lease } from "@kubernetes/client-node";
import {
  HEARTBEAT_FRESH_MS,
  HEARTBEAT_LEASE_PREFIX,
  heartbeatRevivals,
} from "../../src/controllers/node-facts.ts";
import {
  fingerprintOf,
  intentOf,
  viewedStatus,
  type WatchVerb,
  watchOwn,
  watchRelated,
} from "../../src/runtime/watch.ts";

function obj(
  generation: number,
  annotations: Record<string, string> = {},
  extra: object = {},
): KubernetesObject {
  return { metadata: { name: "v", namespace: "ns", generation, annotations, ...extra } };
}

class FakeInformer extends EventEmitter {
  emitVerb(verb: WatchVerb, o: KubernetesObject) {
    this.emit(verb, o);
  }
}

describe("watchOwn", () => {
  it("forgets a key's backoff only when the user's intent changes", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    watchOwn(informer, { add: (k) => calls.push(`add ${k}`), forget: (k) => calls.push(`forget ${k}`) });
    informer.emitVerb("add", obj(1));
    // Our own status write, labels, finalizers: same intent.
    informer.emitVerb("update", obj(1, { "example.com/other": "x" }));
    informer.emitVerb("update", obj(2)); // spec changed
    informer.emitVerb("update", obj(2, { "vm.libvirt-operator.io/stop-requested-at": "t1" }));
    informer.emitVerb("update", obj(2, { "vm.libvirt-operator.io/stop-requested-at": "t1" }));
    informer.emitVerb("update", obj(2, {}, { deletionTimestamp: new Date(0) }));
    informer.emitVerb("delete", obj(2));
    assert.deepEqual(calls, [
      "add ns/v",
      "add ns/v",
      "forget ns/v",
      "forget ns/v",
      "add ns/v",
      "forget ns/v",
      "forget ns/v",
    ]);
  });

  it("queues nothing for what the reconciler says is its own write coming back, a deletion too", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    const ours = new Set(["update uid-1", "delete uid-1"]);
    watchOwn(
      informer,
      { add: (k) => calls.push(`add ${k}`), forget: (k) => calls.push(`forget ${k}`) },
      undefined,
      undefined,
      (o, verb) => ours.has(`${verb} ${o.metadata?.uid}`),
    );
    informer.emitVerb("add", obj(1, {}, { uid: "uid-1" }));
    informer.emitVerb("update", obj(1, {}, { uid: "uid-1" }));
    informer.emitVerb("delete", obj(1, {}, { uid: "uid-1" }));
    // Another object of the name: its deletion is news.
    informer.emitVerb("add", obj(1, {}, { uid: "uid-2" }));
    informer.emitVerb("delete", obj(1, {}, { uid: "uid-2" }));
    assert.deepEqual(calls, ["add ns/v", "add ns/v", "forget ns/v"]);
  });

  it("intent ignores annotations that are not requests", () => {
    assert.equal(intentOf(obj(1, { a: "1" })), intentOf(obj(1, { a: "2" })));
    assert.notEqual(
      intentOf(obj(1)),
      intentOf(obj(1, { "vm.libvirt-operator.io/restart-requested-at": "now" })),
    );
  });
});

describe("heartbeatRevivals", () => {
  it("passes heartbeats that appear, go, or renew after going stale; not fresh renewals or other Leases", () => {
    const revived = heartbeatRevivals();
    const lease = (name: string, renewTime: number) =>
      ({ metadata: { name }, spec: { renewTime: new Date(renewTime) } }) as V1Lease;
    const hb = `${HEARTBEAT_LEASE_PREFIX}node-a`;
    assert.equal(revived(lease(hb, 0), "add"), true);
    assert.equal(revived(lease(hb, 10_000), "update"), false);
    assert.equal(revived(lease(hb, 10_000 + HEARTBEAT_FRESH_MS + 1), "update"), true);
    assert.equal(revived(lease("libvirt-operator-controller", 0), "update"), false);
    assert.equal(revived(lease(hb, 0), "delete"), true);
  });
});

describe("watchOwn, status-only updates", () => {
  const vm = (rv: string, status: object) => ({
    ...obj(1),
    metadata: { ...obj(1).metadata, resourceVersion: rv },
    status,
  });

  it("an update that changes only an ignored status field (or resourceVersion) wakes nobody", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    watchOwn(informer, { add: (k) => calls.push(`add ${k}`), forget: () => undefined }, undefined, {
      ignores: ["statistics"],
    });
    informer.emitVerb("add", vm("1", { printableStatus: "Running" }));
    informer.emitVerb("update", vm("2", { printableStatus: "Running", statistics: { cpuTotalPercent: 3 } }));
    informer.emitVerb("update", vm("3", { printableStatus: "Running", statistics: { cpuTotalPercent: 4 } }));
    assert.deepEqual(calls, ["add ns/v"], "statistics writes are not queued");
    informer.emitVerb("update", vm("4", { printableStatus: "Stopped", statistics: { cpuTotalPercent: 4 } }));
    informer.emitVerb("update", vm("5", { printableStatus: "Stopped" }));
    // A resync (same object again) after the informer relisted is queued as before.
    informer.emitVerb("add", vm("5", { printableStatus: "Stopped" }));
    assert.deepEqual(calls, ["add ns/v", "add ns/v", "add ns/v"]);
  });

  it("with a list of the fields read, only those (and spec and metadata) wake it; deletions always do", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    const queue = {
      add: (k: string) => calls.push(`add ${k}`),
      forget: (k: string) => calls.push(`forget ${k}`),
    };
    watchOwn(informer, queue, undefined, { reads: ["nodeName", "conditions/Scheduled"] });
    const scheduled = { type: "Scheduled", status: "True" };
    informer.emitVerb("add", vm("1", { nodeName: "a", conditions: [scheduled] }));
    // The agent's fields and conditions: nobody wakes.
    informer.emitVerb(
      "update",
      vm("2", {
        nodeName: "a",
        printableStatus: "Running",
        conditions: [scheduled, { type: "Paused", status: "False" }],
      }),
    );
    assert.deepEqual(calls, ["add ns/v"]);
    informer.emitVerb("update", vm("3", { nodeName: "b", conditions: [scheduled] }));
    informer.emitVerb("update", vm("4", { nodeName: "b", conditions: [{ ...scheduled, status: "False" }] }));
    informer.emitVerb("update", {
      ...vm("5", { nodeName: "b" }),
      metadata: { ...obj(1).metadata, labels: { x: "y" } },
    });
    informer.emitVerb("delete", vm("6", { nodeName: "b" }));
    assert.deepEqual(calls, ["add ns/v", "add ns/v", "add ns/v", "add ns/v", "forget ns/v"]);
  });

  it("an object its filter turned away and took back is news again", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    let accept = true;
    watchOwn(informer, { add: (k) => calls.push(k), forget: () => undefined }, () => accept, { reads: [] });
    informer.emitVerb("add", vm("1", {}));
    accept = false;
    informer.emitVerb("update", vm("2", {}));
    accept = true;
    informer.emitVerb("update", vm("3", {}));
    assert.deepEqual(calls, ["ns/v", "ns/v"]);
  });
});

describe("watchRelated with a view", () => {
  it("maps only updates that change what the view sees", () => {
    const mapped: string[] = [];
    const informer = new FakeInformer();
    watchRelated(
      informer,
      { add: (k) => mapped.push(k) },
      (o, verb) => [`${verb}:${o.metadata?.resourceVersion}`],
      { reads: ["uuid"] },
    );
    const v = (rv: string, status: object) => ({
      metadata: { name: "v", namespace: "ns", resourceVersion: rv },
      status,
    });
    informer.emitVerb("add", v("1", { uuid: "u1" }));
    informer.emitVerb("update", v("2", { uuid: "u1", statistics: { cpuTotalPercent: 1 } }));
    informer.emitVerb("update", v("3", { uuid: "u2" }));
    informer.emitVerb("delete", v("4", { uuid: "u2" }));
    assert.deepEqual(mapped, ["add:1", "update:3", "delete:4"]);
  });

  it("without a view maps every event, as before", () => {
    const mapped: string[] = [];
    const informer = new FakeInformer();
    watchRelated(informer, { add: (k) => mapped.push(k) }, (_o, verb) => [verb]);
    informer.emitVerb("add", obj(1));
    informer.emitVerb("update", obj(1));
    assert.deepEqual(mapped, ["add", "update"]);
  });
});

describe("viewedStatus and fingerprintOf", () => {
  const status = {
    nodeName: "a",
    statistics: { cpuTotalPercent: 1 },
    conditions: [
      { type: "Ready", status: "True" },
      { type: "Paused", status: "False" },
    ],
  };

  it("reads picks fields and condition types; ignores drops them", () => {
    assert.deepEqual(viewedStatus(status, { reads: ["nodeName", "conditions/Ready", "absent"] }), {
      nodeName: "a",
      conditions: [{ type: "Ready", status: "True" }],
    });
    assert.deepEqual(viewedStatus(status, { reads: ["conditions"] }), { conditions: status.conditions });
    assert.deepEqual(viewedStatus(status, { ignores: ["statistics", "conditions/Paused"] }), {
      nodeName: "a",
      conditions: [{ type: "Ready", status: "True" }],
    });
    assert.equal(viewedStatus(undefined, { reads: ["nodeName"] }), undefined);
  });

  it("does not depend on resourceVersion and managedFields; a change anywhere else is one", () => {
    const a = { metadata: { name: "v", resourceVersion: "1" }, spec: { a: 1, b: 2 }, status };
    const b = {
      metadata: { name: "v", resourceVersion: "2", managedFields: [{ manager: "x" }] },
      spec: { a: 1, b: 2 },
      status: { ...status, statistics: { cpuTotalPercent: 9 } },
    } as KubernetesObject;
    const view = { ignores: ["statistics"] };
    assert.equal(fingerprintOf(a, view), fingerprintOf(b, view));
    assert.notEqual(fingerprintOf(a), fingerprintOf(b), "without a view all of status counts");
    assert.notEqual(
      fingerprintOf(a, view),
      fingerprintOf({ ...a, spec: { a: 1, b: 3 } } as KubernetesObject, view),
    );
    // Keys in another order (never from the API server) can only look changed: one reconcile more.
    assert.notEqual(
      fingerprintOf(a, view),
      fingerprintOf({ ...a, spec: { b: 2, a: 1 } } as KubernetesObject, view),
    );
  });
});
