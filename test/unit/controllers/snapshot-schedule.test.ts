import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMSnapshot } from "../../../src/api/vmsnapshot.ts";
import { AUTOMATIC_LABEL, decidePolicy } from "../../../src/controllers/cluster/snapshot-schedule.ts";
import {
  restoreRunning,
  snapshotOfCloneToBe,
  snapshotOfDiskBeingMade,
} from "../../../src/controllers/cluster/snapshot-uses.ts";

const T0 = Date.parse("2026-11-26T10:00:30Z");
const vm = (
  policy: NonNullable<VirtualMachine["spec"]["snapshotPolicy"]>,
  status: VirtualMachine["status"] = {},
) =>
  ({
    apiVersion: "v",
    kind: "VirtualMachine",
    metadata: { name: "web", namespace: "team", uid: "vm-1" },
    spec: { memory: "1Gi", snapshotPolicy: policy },
    status,
  }) as VirtualMachine;
const auto = (
  name: string,
  at: number,
  phase: string,
  extra: Partial<VMSnapshot["spec"]> = {},
): VMSnapshot => ({
  apiVersion: "v",
  kind: "VMSnapshot",
  metadata: {
    name,
    namespace: "team",
    creationTimestamp: new Date(at).toISOString(),
    labels: { [AUTOMATIC_LABEL]: "true" },
    ownerReferences: [{ apiVersion: "v", kind: "VirtualMachine", name: "web", uid: "vm-1" }],
  },
  spec: { vmName: "web", ...extra },
  status: { phase: phase as "Succeeded", timestamp: at / 1000, creationTime: new Date(at).toISOString() },
});
const minute = (n: number) => T0 - n * 60_000;

describe("snapshotPolicy", () => {
  it("starts counting when first seen, then takes one snapshot per due time", () => {
    const first = decidePolicy(vm({ schedule: "* * * * *", keep: 2 }), [], new Set(), T0)!;
    assert.equal(first.create, undefined);
    assert.equal(first.status.lastScheduleTime, new Date(T0).toISOString());
    assert.equal(first.status.nextScheduleTime, "2026-11-26T10:01:00.000Z");
    const later = decidePolicy(
      vm({ schedule: "* * * * *", keep: 2, memory: true }, { snapshotPolicy: first.status }),
      [],
      new Set(),
      T0 + 40_000,
    )!;
    assert.equal(later.create?.name, `web-auto-${Math.floor((T0 + 40_000) / 1000)}`);
    assert.equal(later.create?.spec.memory, true);
  });

  it("missed schedules give one catch-up snapshot, not a burst", () => {
    const d = decidePolicy(
      vm(
        { schedule: "* * * * *", keep: 5 },
        { snapshotPolicy: { lastScheduleTime: new Date(minute(90)).toISOString() } },
      ),
      [],
      new Set(),
      T0,
    )!;
    assert.ok(d.create);
    assert.equal(d.status.lastScheduleTime, new Date(T0).toISOString());
    assert.equal(d.status.nextScheduleTime, "2026-11-26T10:01:00.000Z");
  });

  it("rotates the oldest automatic snapshots beyond keep; never sticky, excluded, in use, failed or manual ones", () => {
    const snaps = [
      auto("a1", minute(6), "Succeeded"),
      auto("a2", minute(5), "Succeeded", { sticky: true }),
      auto("a3", minute(4), "Succeeded"),
      auto("a4", minute(3), "Succeeded"),
      auto("a5", minute(2), "Failed"),
      auto("a6", minute(1), "Succeeded"),
      { ...auto("manual", minute(7), "Succeeded"), metadata: { name: "manual", namespace: "team" } },
    ];
    const d = decidePolicy(
      vm({ schedule: "@hourly", keep: 2, exclude: ["a1"] }),
      snaps,
      new Set(["a3"]),
      T0,
    )!;
    // Rotatable, newest first: a6, a4 (kept), then a3 is in use, a2 sticky, a1 excluded.
    assert.deepEqual(d.delete, []);
    const d2 = decidePolicy(vm({ schedule: "@hourly", keep: 1 }), snaps, new Set(), T0)!;
    assert.deepEqual(
      d2.delete.map((x) => x.name),
      ["a4", "a3", "a1"],
    );
  });

  it("counts failures in a row, suspends at maxFailures until resumed, and deletes old failures", () => {
    const snaps = [
      auto("f1", minute(3), "Failed"),
      auto("f2", minute(2), "Failed"),
      auto("ok", minute(90), "Succeeded"),
    ];
    const d = decidePolicy(vm({ schedule: "* * * * *", keep: 2, maxFailures: 2 }), snaps, new Set(), T0)!;
    assert.equal(d.status.consecutiveFailures, 2);
    assert.equal(d.condition.reason, "TooManyFailures");
    assert.equal(d.create, undefined);
    const resumed = decidePolicy(
      vm({ schedule: "* * * * *", keep: 2, maxFailures: 2, resume: "now" }),
      snaps,
      new Set(),
      T0,
    )!;
    assert.equal(resumed.status.consecutiveFailures, 0);
    assert.equal(resumed.condition.status, "True");
    assert.equal(resumed.status.resumedWith, "now");
    const old = decidePolicy(
      vm({ schedule: "@yearly", keep: 2 }),
      [auto("f0", minute(61), "Failed")],
      new Set(),
      T0,
    )!;
    assert.deepEqual(
      old.delete.map((x) => x.name),
      ["f0"],
    );
  });

  it("says so when suspended or when the schedule is no cron schedule", () => {
    assert.equal(
      decidePolicy(vm({ schedule: "* * * * *", keep: 1, suspend: true }), [], new Set(), T0)?.condition
        .reason,
      "Suspended",
    );
    const bad = decidePolicy(vm({ schedule: "99 * * * *", keep: 1 }), [], new Set(), T0)!;
    assert.equal(bad.condition.reason, "InvalidSchedule");
  });

  it("knows the snapshots a restore, a clone or a disk still needs", () => {
    const restore = (phase: string) =>
      ({ metadata: { name: "r" }, spec: { vmName: "web", snapshotName: "s1" }, status: { phase } }) as never;
    assert.equal(restoreRunning(restore("InProgress")), true);
    assert.equal(restoreRunning(restore("Succeeded")), false);
    assert.equal(restoreRunning(restore("Failed")), false);
    const disk = (phase: string) =>
      ({
        metadata: { name: "d" },
        spec: { provisionedSize: 1, source: { snapshot: { name: "s2", disk: "x" } } },
        status: { phase },
      }) as never;
    assert.equal(snapshotOfDiskBeingMade(disk("Locked")), "s2");
    assert.equal(snapshotOfDiskBeingMade(disk("Ready")), undefined);
    assert.equal(snapshotOfDiskBeingMade(disk("Illegal")), undefined);
    const clone = { metadata: { name: "c" }, spec: { source: { snapshot: "s3" } } } as never;
    assert.equal(snapshotOfCloneToBe(clone), "s3");
    const cloned = {
      metadata: { name: "c" },
      spec: { source: { snapshot: "s3" } },
      status: { clonedFrom: "s3" },
    };
    assert.equal(snapshotOfCloneToBe(cloned as never), undefined);
  });
});
