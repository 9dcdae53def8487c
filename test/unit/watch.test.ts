import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import type { KubernetesObject, V1Lease } from "@kubernetes/client-node";
import {
  HEARTBEAT_FRESH_MS,
  HEARTBEAT_LEASE_PREFIX,
  heartbeatRevivals,
} from "../../src/controllers/node-facts.ts";
import { intentOf, type WatchVerb, watchOwn } from "../../src/runtime/watch.ts";

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
  it("an update that changes only an ignored status field (or resourceVersion) wakes nobody", () => {
    const calls: string[] = [];
    const informer = new FakeInformer();
    watchOwn(informer, { add: (k) => calls.push(`add ${k}`), forget: () => undefined }, undefined, [
      "statistics",
    ]);
    const vm = (rv: string, status: object) => ({
      ...obj(1),
      metadata: { ...obj(1).metadata, resourceVersion: rv },
      status,
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
});
