import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { type FailureInfo, TerminalError, WorkQueue } from "../../src/runtime/workqueue.ts";

describe("WorkQueue", () => {
  it("collapses duplicate keys that are waiting", async () => {
    const seen: string[] = [];
    const q = new WorkQueue(
      "t",
      async (k) => {
        seen.push(k);
        return undefined;
      },
      { concurrency: 1 },
    );
    q.add("a");
    q.add("b");
    q.add("a");
    q.add("b");
    await q.idle();
    // "a" starts at once; the second "a" waits for it to finish; the second "b" collapses.
    assert.deepEqual(seen, ["a", "b", "a"]);
  });

  it("never runs one key twice at the same time, and reruns a key added while it ran", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = new WorkQueue(
      "t",
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        await sleep(20);
        running--;
        return undefined;
      },
      { concurrency: 4 },
    );
    q.add("x");
    await sleep(5);
    q.add("x"); // while running
    q.add("x"); // collapses with the previous add
    await sleep(100);
    await q.idle();
    assert.equal(maxRunning, 1);
    assert.equal(runs, 2);
  });

  it("retries failures with per-key exponential backoff, and not terminal errors", async () => {
    const times: number[] = [];
    const q = new WorkQueue(
      "t",
      async (k) => {
        if (k === "bad") throw new TerminalError("bad input");
        times.push(Date.now());
        if (times.length < 4) throw new Error("transient");
        return undefined;
      },
      { baseDelayMs: 10, maxDelayMs: 1000 },
    );
    assert.deepEqual(
      [1, 2, 3, 4, 20].map((a) => q.backoff(a)),
      [10, 20, 40, 80, 1000],
    );
    q.add("flaky");
    q.add("bad");
    await sleep(300);
    await q.idle();
    assert.equal(times.length, 4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[0]! >= 9 && gaps[1]! >= 19 && gaps[2]! >= 39, `gaps ${gaps}`);
  });

  it("requeues after the time a reconcile asks for", async () => {
    let runs = 0;
    const q = new WorkQueue("t", async () => {
      runs++;
      return runs < 3 ? { requeueAfterMs: 20 } : undefined;
    });
    q.add("k");
    await sleep(150);
    assert.equal(runs, 3);
  });

  it("counts reconciles and errors in its registry", async () => {
    const registry = new Registry();
    const q = new WorkQueue(
      "counted",
      async (k) => {
        if (k === "e") throw new TerminalError("x");
        return undefined;
      },
      { registry },
    );
    q.add("ok");
    q.add("e");
    await q.idle();
    const text = await registry.metrics();
    assert.match(text, /libvirt_operator_reconcile_total\{controller="counted"\} 2/);
    assert.match(text, /libvirt_operator_reconcile_errors_total\{controller="counted"\} 1/);
  });

  it("stops taking work on shutdown", async () => {
    let runs = 0;
    const q = new WorkQueue("t", async () => {
      runs++;
      return undefined;
    });
    await q.shutdown();
    q.add("late");
    await sleep(20);
    assert.equal(runs, 0);
  });

  it("a key backing off ignores add() (our own writes, related events) until its backoff ends", async () => {
    let runs = 0;
    const failures: FailureInfo[] = [];
    const q = new WorkQueue(
      "t",
      async () => {
        runs++;
        throw new Error("cannot succeed");
      },
      { baseDelayMs: 200, maxDelayMs: 200, onError: (_k, _e, f) => failures.push(f) },
    );
    q.add("k");
    await sleep(20);
    for (let i = 0; i < 50; i++) q.add("k"); // a status write, an Event, a disk event …
    await sleep(100);
    assert.equal(runs, 1, "nothing ran it again before the backoff ended");
    await sleep(200);
    assert.equal(runs, 2);
    assert.deepEqual(
      failures.map((f) => [f.attempt, f.repeated, f.retryInMs]),
      [
        [1, false, 200],
        [2, true, 200],
      ],
    );
    await q.shutdown();
  });

  it("forget() starts a backed-off key over at once (the user changed or deleted it)", async () => {
    let runs = 0;
    let fixed = false;
    const q = new WorkQueue(
      "t",
      async () => {
        runs++;
        if (!fixed) throw new Error("bad spec");
        return undefined;
      },
      { baseDelayMs: 60_000 },
    );
    q.add("k");
    await sleep(20);
    assert.equal(runs, 1);
    assert.equal(q.failuresOf("k"), 1);
    fixed = true;
    q.forget("k");
    await q.idle();
    assert.equal(runs, 2);
    assert.equal(q.failuresOf("k"), 0);
    await q.shutdown();
  });

  it("a change while a failing reconcile runs is retried at once, not after the backoff", async () => {
    let runs = 0;
    const q = new WorkQueue(
      "t",
      async () => {
        runs++;
        await sleep(30);
        if (runs === 1) throw new Error("old spec fails");
        return undefined;
      },
      { baseDelayMs: 60_000 },
    );
    q.add("k");
    await sleep(5);
    q.forget("k"); // the user edits the object while the first attempt runs
    await sleep(100);
    assert.equal(runs, 2);
    await q.shutdown();
  });

  it("reports keys held by a worker past a limit (liveness)", async () => {
    const q = new WorkQueue("t", async () => {
      await sleep(80);
      return undefined;
    });
    q.add("slow");
    await sleep(40);
    assert.deepEqual(q.stuck(20), ["slow"]);
    assert.deepEqual(q.stuck(1000), []);
    await q.idle();
    assert.deepEqual(q.stuck(0), []);
  });
});
