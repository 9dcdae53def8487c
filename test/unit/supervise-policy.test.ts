import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  describeExit,
  describeRestarts,
  planRestart,
  RESTART_BACKOFF,
} from "../../src/cmd/local/supervise-policy.ts";

describe("local stack restart backoff", () => {
  it("waits 1 s after the first exit, doubling with each quick exit up to 30 s", () => {
    const delays: number[] = [];
    let attempt = 0;
    for (let i = 0; i < 8; i++) {
      const plan = planRestart(attempt, 500);
      assert.equal(plan.attempt, attempt + 1);
      attempt = plan.attempt;
      delays.push(plan.delayMs);
    }
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("starts over after a run of a minute; a shorter run keeps counting", () => {
    assert.deepEqual(planRestart(6, 60_000), { attempt: 1, delayMs: 1_000 });
    assert.deepEqual(planRestart(6, 59_999), { attempt: 7, delayMs: 30_000 });
    assert.deepEqual(planRestart(2, 3_600_000), { attempt: 1, delayMs: 1_000 });
  });

  it("follows the schedule it is given", () => {
    const fast = { firstDelayMs: 10, maxDelayMs: 50, resetAfterMs: 100 };
    assert.deepEqual(planRestart(0, 0, fast), { attempt: 1, delayMs: 10 });
    assert.deepEqual(planRestart(3, 99, fast), { attempt: 4, delayMs: 50 });
    assert.deepEqual(planRestart(3, 100, fast), { attempt: 1, delayMs: 10 });
    assert.equal(RESTART_BACKOFF.maxDelayMs, 30_000);
  });
});

describe("how a supervisor reports exits", () => {
  it("names the signal, else the exit code", () => {
    assert.equal(describeExit(null, "SIGKILL"), "killed by SIGKILL");
    assert.equal(describeExit(1, null), "exited with code 1");
    assert.equal(describeExit(0, null), "exited with code 0");
    assert.equal(describeExit(null, null), "exited (status unknown)");
  });

  it("sums up a daemon's restarts for make local", () => {
    const since = "2025-01-01T10:00:00.000Z";
    assert.equal(
      describeRestarts({ daemon: "agent", pid: 1, since, restarts: 0 }),
      `agent: no restarts since ${since}`,
    );
    const last = {
      at: "2025-01-01T10:05:00.000Z",
      how: "exited with code 1",
      uptimeMs: 41_234,
      attempt: 2,
      delayMs: 2_000,
    };
    assert.equal(
      describeRestarts({ daemon: "controller", pid: 1, since, restarts: 3, lastExit: last }),
      `controller: restarted 3 times since ${since}; last at ${last.at}: exited with code 1 after 41.2 s up, restart 2 after 2.0 s`,
    );
    assert.match(
      describeRestarts({ daemon: "etcd", pid: 1, since, restarts: 1, lastExit: last }),
      /^etcd: restarted once since/,
    );
  });
});
