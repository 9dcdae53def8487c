// The pure parts of make bench's VM timeline (bench/vm-timeline.ts): marks from pino log lines,
// phases from marks, and the percentiles they are summed up with.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { summarize } from "../../bench/stats.ts";
import { logMarks, overhead, ownMs, PHASES, phaseSummary, phasesOf } from "../../bench/vm-timeline.ts";

const line = (time: string, name: string, msg: string, namespace = "bench") =>
  JSON.stringify({ level: "info", time, component: "agent", kind: "VirtualMachine", namespace, name, msg });

describe("bench VM timeline", () => {
  it("takes each VM's first defined and started lines of its namespace from a pino log", () => {
    const text = [
      line("2026-11-27T09:58:08.549Z", "one-1", "domain defined"),
      "not json at all",
      '{"broken": ',
      line("2026-11-27T09:58:09.113Z", "one-1", "domain started"),
      // A later start of the same VM (a restart) is not its first.
      line("2026-11-27T09:58:19.000Z", "one-1", "domain started"),
      line("2026-11-27T09:58:09.200Z", "one-1", "domain started", "other"),
      line("2026-11-27T09:58:09.300Z", "one-2", "domain destroyed and undefined"),
      "",
    ].join("\n");
    const marks = logMarks(text, "bench");
    assert.deepEqual([...marks.keys()], ["one-1"]);
    assert.deepEqual(marks.get("one-1"), {
      defined: Date.parse("2026-11-27T09:58:08.549Z"),
      started: Date.parse("2026-11-27T09:58:09.113Z"),
    });
  });

  it("splits create → Running into phases between consecutive marks, NaN where one is missing", () => {
    const phases = phasesOf({
      posted: 1000,
      created: 1010,
      labelled: 1030,
      placed: 1045,
      defined: 1060,
      started: 1560,
      running: 1600,
    });
    assert.deepEqual(phases, [10, 20, 15, 15, 500, 40]);
    // Ours: all of it but libvirt's start in the agent (what raw libvirt pays too).
    assert.equal(
      ownMs({ posted: 1000, created: 1010, defined: 1060, started: 1560, running: 1600 }),
      600 - 500,
    );
    assert.ok(Number.isNaN(ownMs({ posted: 1000, running: 1600 })));
    assert.equal(phases.length, PHASES.length);
    const missing = phasesOf({ posted: 1000, created: 1010 });
    assert.equal(missing[0], 10);
    assert.ok(missing.slice(1).every(Number.isNaN));
  });

  it("leaves samples never seen out of percentiles instead of sorting NaN among them", () => {
    const s = summarize([30, Number.NaN, 10, 20]);
    assert.deepEqual(s, { count: 3, p50: 20, p95: 30, p99: 30, max: 30 });
    assert.ok(phaseSummary([{ posted: 0, created: 5 }]).includes("api create"));
  });

  it("says the overhead at each percentile with its sign, and the ratios", () => {
    const ours = summarize([600, 650, 700]);
    const raw = summarize([500, 520, 720]);
    assert.equal(overhead(ours, raw), "p50 +130 ms, p95 -20 ms, max -20 ms (ratio p50 1.25x, p95 0.97x)");
  });
});
