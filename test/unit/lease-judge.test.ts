import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkElectionTimings,
  judgeLease,
  leadershipLapsed,
  recordKey,
} from "../../src/runtime/lease-judge.ts";

const held = (renewTime: string, holderIdentity = "a") => ({
  holderIdentity,
  renewTime,
  acquireTime: "2026-01-01T00:00:00.000000Z",
  leaseDurationSeconds: 15,
  leaseTransitions: 1,
});

describe("judging a lease by this process's own clock", () => {
  it("a free lease may be taken; our own is ours", () => {
    assert.equal(judgeLease(undefined, "b", undefined, 0).verdict, "free");
    assert.equal(judgeLease({ holderIdentity: "" }, "b", undefined, 0).verdict, "free");
    assert.equal(judgeLease(held("t1", "b"), "b", undefined, 0).verdict, "ours");
  });

  it("another's lease expires only after this process saw no change for the lease duration", () => {
    let seen = judgeLease(held("t1"), "b", undefined, 1_000);
    assert.equal(seen.verdict, "held");
    seen = judgeLease(held("t1"), "b", seen.observation, 15_999);
    assert.equal(seen.verdict, "held");
    assert.equal(judgeLease(held("t1"), "b", seen.observation, 16_000).verdict, "expired");
  });

  it("a renewal, whatever time it claims, restarts the count", () => {
    let seen = judgeLease(held("t1"), "b", undefined, 0);
    seen = judgeLease(held("t2"), "b", seen.observation, 14_000);
    assert.equal(seen.observation.observedAt, 14_000);
    assert.equal(judgeLease(held("t2"), "b", seen.observation, 20_000).verdict, "held");
  });

  it("the holder's clock is never read: a renewTime far in the past or future changes nothing", () => {
    const past = judgeLease(held("1999-01-01T00:00:00.000000Z"), "b", undefined, 5_000);
    assert.equal(past.verdict, "held", "a holder with a slow clock is still alive when it renews");
    const future = judgeLease(held("2999-01-01T00:00:00.000000Z"), "b", undefined, 5_000);
    assert.equal(
      judgeLease(held("2999-01-01T00:00:00.000000Z"), "b", future.observation, 20_000).verdict,
      "expired",
    );
  });

  it("the record key covers every field a renewal or takeover changes", () => {
    const base = held("t1");
    for (const change of [
      { renewTime: "t2" },
      { holderIdentity: "c" },
      { leaseTransitions: 2 },
      { acquireTime: "x" },
      { leaseDurationSeconds: 30 },
    ])
      assert.notEqual(recordKey({ ...base, ...change }), recordKey(base), JSON.stringify(change));
  });
});

describe("the leader's own deadline", () => {
  it("lapses a renew deadline after the last successful renewal was sent", () => {
    assert.equal(leadershipLapsed(1_000, 10_000, 10_999), false);
    assert.equal(leadershipLapsed(1_000, 10_000, 11_000), true);
  });

  it("never overlaps a standby when the deadline is inside the lease duration", () => {
    // Renewal sent at 0 lands at 3 s (a slow API server); the standby sees it then at the earliest.
    const sent = 0;
    const standbySaw = judgeLease(held("t9"), "b", undefined, 3_000);
    for (let now = 0; now <= 30_000; now += 100) {
      const leaderActs = !leadershipLapsed(sent, 10_000, now);
      const standbyTakes = judgeLease(held("t9"), "b", standbySaw.observation, now).verdict === "expired";
      assert.ok(!(leaderActs && standbyTakes), `both act at ${now} ms`);
    }
  });

  it("refuses timings that would let two leaders act at once", () => {
    assert.throws(() => checkElectionTimings(15_000, 15_000, 2_000), /shorter than the lease/);
    assert.throws(() => checkElectionTimings(15_000, 10_000, 9_000), /inside the renew deadline/);
    checkElectionTimings(15_000, 10_000, 2_000);
  });
});
