import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Condition, standingConditions } from "../../../src/controllers/conditions.ts";
import { agentDiskStatus } from "../../../src/controllers/node/disk-status.ts";

const now = new Date("2026-11-26T10:00:00Z");
const summary = (conditions: unknown) =>
  ["Ready", "Reconciling", "Stalled"].map((t) => {
    const c = (conditions as Condition[]).find((x) => x.type === t);
    return `${c?.status}/${c?.reason}`;
  });

describe("standing conditions", () => {
  it("exactly one of Ready, Reconciling, Stalled is True", () => {
    for (const state of ["ready", "reconciling", "stalled"] as const) {
      const cs = standingConditions({ state, reason: "R", message: "m" });
      assert.equal(cs.filter((c) => c.status === "True").length, 1, state);
    }
  });

  it("a VMDisk that failed is Stalled; one on its way is Reconciling; a usable one is Ready", () => {
    const disk = { apiVersion: "v", kind: "VMDisk", metadata: { name: "d", generation: 2 }, spec: {} };
    const failed = agentDiskStatus(
      disk as never,
      { complete: false, phase: "Illegal" },
      {
        failure: { reason: "ImportFailed", message: "host not found" },
      },
      now,
    );
    assert.deepEqual(summary(failed.conditions), [
      "False/ImportFailed",
      "False/Stalled",
      "True/ImportFailed",
    ]);
    const importing = agentDiskStatus(
      disk as never,
      { complete: false, phase: "Locked", progress: 10 },
      {},
      now,
    );
    assert.deepEqual(summary(importing.conditions), ["False/Locked", "True/Locked", "False/Progressing"]);
    const ready = agentDiskStatus(disk as never, { complete: true, phase: "Ready" }, { path: "/p" }, now);
    assert.deepEqual(summary(ready.conditions), ["True/Ready", "False/Reconciled", "False/Reconciled"]);
  });
});
