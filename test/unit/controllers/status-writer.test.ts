// StatusWriter against a stand-in API server: it writes only what changed, and (waitForOwnWrites)
// never judges a write on a cached object its own last write has not reached yet.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { VirtualMachineKind } from "../../../src/api/names.ts";
import { behindOwnWrite, StatusWriter } from "../../../src/controllers/status-writer.ts";
import { type StandInApi, standInApi } from "../../support/stand-in-api.ts";

let api: StandInApi;
/** The resourceVersion the stand-in API server gives each write. */
let next = 10;

before(async () => {
  api = await standInApi((req) => ({
    status: 200,
    body: {
      ...(req.body as object),
      metadata: { name: "v", namespace: "ns", resourceVersion: String(next++) },
    },
  }));
});
beforeEach(() => {
  api.requests.length = 0;
});
after(() => api.close());

const vm = (rv: string, printableStatus: string) => ({
  metadata: { name: "v", namespace: "ns", resourceVersion: rv },
  status: { printableStatus },
});

describe("StatusWriter", () => {
  it("writes only when the status would change", async () => {
    const writer = new StatusWriter(api.kube, { kind: VirtualMachineKind, fieldManager: "t" });
    assert.equal(await writer.write(vm("1", "Running"), { printableStatus: "Running" }), false);
    assert.equal(await writer.write(vm("1", "Starting"), { printableStatus: "Running" }), true);
    assert.equal(api.requests.length, 1);
    assert.match(api.requests[0]!.url, /\/virtualmachines\/v\/status\?.*fieldManager=t/);
  });

  it("waitForOwnWrites: a rerun before the cache shows its last write writes nothing", async () => {
    const writer = new StatusWriter(api.kube, {
      kind: VirtualMachineKind,
      fieldManager: "t",
      waitForOwnWrites: true,
    });
    next = 10;
    assert.equal(await writer.write(vm("5", "Starting"), { printableStatus: "Running" }), true);
    // The cache still shows resourceVersion 5: judged on it, the write would repeat the last one.
    assert.equal(await writer.write(vm("5", "Starting"), { printableStatus: "Running" }), false);
    // The cache caught up (10, the write's own) or moved on (11, someone else's): judged as usual.
    assert.equal(await writer.write(vm("10", "Running"), { printableStatus: "Paused" }), true);
    assert.equal(await writer.write(vm("12", "Running"), { printableStatus: "Stopped" }), true);
    assert.equal(api.requests.length, 3);
  });

  it("without waitForOwnWrites a stale cache is written from, as before", async () => {
    const writer = new StatusWriter(api.kube, { kind: VirtualMachineKind, fieldManager: "t" });
    await writer.write(vm("5", "Starting"), { printableStatus: "Running" });
    await writer.write(vm("5", "Starting"), { printableStatus: "Running" });
    assert.equal(api.requests.length, 2);
  });

  it("echoOfOwnWrite: only the version its last write made, unless a reconcile judged on one before it", async () => {
    const writer = new StatusWriter(api.kube, {
      kind: VirtualMachineKind,
      fieldManager: "t",
      waitForOwnWrites: true,
    });
    next = 20;
    await writer.write(vm("5", "Starting"), { printableStatus: "Running" });
    assert.equal(writer.echoOfOwnWrite(vm("20", "Running")), true);
    assert.equal(writer.echoOfOwnWrite(vm("21", "Running")), false, "someone else's write after ours");
    assert.equal(writer.echoOfOwnWrite(vm("5", "Starting")), false, "the version before");
    // A reconcile judged on the version before the write (its event not yet in): the write's event
    // must wake it again, even when that reconcile found nothing to write.
    assert.equal(writer.judging(vm("5", "Starting")), true);
    assert.equal(writer.echoOfOwnWrite(vm("20", "Running")), false);
    // The next write, judged on the current version, is an echo again.
    assert.equal(writer.judging(vm("20", "Running")), false);
    await writer.write(vm("20", "Running"), { printableStatus: "Paused" });
    assert.equal(writer.echoOfOwnWrite(vm("21", "Paused")), true);
  });

  it("echoOfOwnWrite: not when something else changed between (a relist skips versions), nor long after", async () => {
    const writer = new StatusWriter(api.kube, { kind: VirtualMachineKind, fieldManager: "t" });
    next = 30;
    const judged = { ...vm("5", "Starting"), spec: { running: true } };
    await writer.write(judged, { printableStatus: "Running" });
    const echo = { ...vm("30", "Running"), spec: { running: true } };
    assert.equal(writer.echoOfOwnWrite(echo), true);
    // A user's stop (version 6, never seen as its own event) is under our write's version.
    const stopped = { ...echo, spec: { running: false } };
    assert.equal(writer.echoOfOwnWrite(stopped), false);
    const annotated = { ...echo, metadata: { ...echo.metadata, annotations: { a: "b" } } };
    assert.equal(writer.echoOfOwnWrite(annotated), false);
    const otherStatus = { ...echo, status: { printableStatus: "Running", other: 1 } };
    assert.equal(writer.echoOfOwnWrite(otherStatus), false);
    assert.equal(writer.echoOfOwnWrite(echo, Date.now() + 60_000), false);
  });

  it("echoOfOwnWrite: the first write's echo, on an object that had no status at all", async () => {
    const writer = new StatusWriter(api.kube, { kind: VirtualMachineKind, fieldManager: "t" });
    next = 40;
    const created = { metadata: { name: "v", namespace: "ns", resourceVersion: "5" } };
    const ready = { type: "Ready", status: "True" };
    await writer.write(created, { printableStatus: "Running", conditions: [ready] });
    const echo = {
      metadata: { name: "v", namespace: "ns", resourceVersion: "40" },
      status: { printableStatus: "Running", conditions: [ready] },
    };
    assert.equal(writer.echoOfOwnWrite(echo), true);
    const withOthers = { ...echo, status: { ...echo.status, conditions: [ready, { type: "Admitted" }] } };
    assert.equal(writer.echoOfOwnWrite(withOthers), false, "another writer's condition came in between");
  });

  it("latestCopy: a cache behind the last write reads as that write's answer had it", async () => {
    const writer = new StatusWriter(api.kube, { kind: VirtualMachineKind, fieldManager: "t" });
    next = 50;
    const cached = {
      ...vm("5", "Starting"),
      metadata: { ...vm("5", "Starting").metadata, finalizers: ["f"] },
    };
    await writer.write(cached, { printableStatus: "Stopping" });
    const copy = writer.latestCopy(cached);
    assert.equal(copy.metadata.resourceVersion, "50");
    // The write's answer had no finalizers: the copy claims none the server no longer has.
    assert.equal(copy.metadata.finalizers, undefined);
    const caughtUp = { ...cached, metadata: { ...cached.metadata, resourceVersion: "50" } };
    assert.equal(writer.latestCopy(caughtUp), caughtUp);
  });

  it("behindOwnWrite: only the version the last write was judged on, only for a while", () => {
    const last = { judgedOn: "5", made: "6", at: 1000 };
    assert.equal(behindOwnWrite(last, "5", 2000), true);
    assert.equal(behindOwnWrite(last, "6", 2000), false);
    assert.equal(behindOwnWrite(last, "7", 2000), false);
    assert.equal(behindOwnWrite(undefined, "5", 2000), false);
    assert.equal(behindOwnWrite(last, undefined, 2000), false);
    assert.equal(behindOwnWrite({ ...last, made: "5" }, "5", 2000), false, "a write that changed nothing");
    assert.equal(behindOwnWrite(last, "5", 1000 + 61_000), false, "long ago: the event was lost");
  });

  it("behindOwnWrite: another writer's change made between judging and writing is older too", () => {
    // Judged on 5; the controller wrote 7 meanwhile; ours made 9: the cache showing 7 is behind.
    const last = { judgedOn: "5", made: "9", at: 1000 };
    assert.equal(behindOwnWrite(last, "7", 2000), true);
    assert.equal(behindOwnWrite(last, "10", 2000), false);
    assert.equal(
      behindOwnWrite({ ...last, made: "opaque-b" }, "opaque-a", 2000),
      false,
      "not numbers: equality only",
    );
  });
});
