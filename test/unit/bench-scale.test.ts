// The pure parts of make bench-scale: Prometheus text and histogram quantiles, CPU profile
// self time, the compact queue-depth series.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type CpuProfile,
  profileSpan,
  profileStartedAt,
  shortFile,
  topFiles,
  topFunctions,
  topInclusive,
} from "../../bench/cpuprofile.ts";
import {
  histogramGrowth,
  histogramOf,
  histogramQuantile,
  parseSamples,
  sumOf,
} from "../../bench/scale-probe.ts";
import { compactSeries } from "../../bench/scale-report.ts";

const METRICS = `# HELP libvirt_operator_reconcile_duration_seconds Time one reconcile takes
# TYPE libvirt_operator_reconcile_duration_seconds histogram
libvirt_operator_reconcile_duration_seconds_bucket{le="0.01",controller="a"} 10
libvirt_operator_reconcile_duration_seconds_bucket{le="0.1",controller="a"} 90
libvirt_operator_reconcile_duration_seconds_bucket{le="+Inf",controller="a"} 100
libvirt_operator_reconcile_duration_seconds_sum{controller="a"} 4.5
libvirt_operator_reconcile_duration_seconds_count{controller="a"} 100
libvirt_operator_reconcile_duration_seconds_bucket{le="0.01",controller="b"} 5
libvirt_operator_reconcile_duration_seconds_bucket{le="0.1",controller="b"} 5
libvirt_operator_reconcile_duration_seconds_bucket{le="+Inf",controller="b"} 5
libvirt_operator_reconcile_duration_seconds_sum{controller="b"} 0.01
libvirt_operator_reconcile_duration_seconds_count{controller="b"} 5
libvirt_operator_workqueue_depth{controller="a"} 7
libvirt_operator_workqueue_depth{controller="b"} 2
`;

describe("bench-scale metrics", () => {
  const samples = parseSamples(METRICS);

  it("sums a metric's series whose labels match", () => {
    assert.equal(sumOf(samples, "libvirt_operator_workqueue_depth"), 9);
    assert.equal(sumOf(samples, "libvirt_operator_workqueue_depth", { controller: "a" }), 7);
    assert.equal(sumOf(samples, "missing"), 0);
  });

  it("estimates quantiles as histogram_quantile does", () => {
    const h = histogramOf(samples, "libvirt_operator_reconcile_duration_seconds", { controller: "a" });
    assert.deepEqual(h.buckets, [
      [0.01, 10],
      [0.1, 90],
      [Number.POSITIVE_INFINITY, 100],
    ]);
    assert.equal(h.count, 100);
    // Rank 50 lies 40/80 of the way through the (0.01, 0.1] bucket.
    assert.ok(Math.abs(histogramQuantile(h, 0.5) - 0.055) < 1e-9);
    // Rank 5 in the first bucket, from 0.
    assert.ok(Math.abs(histogramQuantile(h, 0.05) - 0.005) < 1e-9);
    // Rank 99 in +Inf: the highest finite bound.
    assert.equal(histogramQuantile(h, 0.99), 0.1);
    assert.ok(Number.isNaN(histogramQuantile({ buckets: [], sum: 0, count: 0 }, 0.5)));
  });

  it("sums histograms over series and takes what grew between two scrapes", () => {
    const all = histogramOf(samples, "libvirt_operator_reconcile_duration_seconds");
    assert.deepEqual(all.buckets[0], [0.01, 15]);
    const before = histogramOf(samples, "libvirt_operator_reconcile_duration_seconds", { controller: "b" });
    const grown = histogramGrowth(all, before);
    assert.deepEqual(grown.buckets, [
      [0.01, 10],
      [0.1, 90],
      [Number.POSITIVE_INFINITY, 100],
    ]);
    assert.equal(grown.count, 100);
    // A restarted process counts from zero: what it has now is all there is.
    assert.equal(histogramGrowth(before, all), before);
  });
});

describe("bench-scale CPU profile", () => {
  const frame = (functionName: string, url = "", lineNumber = 0) => ({ functionName, url, lineNumber });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)") },
      { id: 2, callFrame: frame("(idle)") },
      { id: 3, callFrame: frame("reconcile", "file:///work/x/src/controllers/cluster/vm-reconciler.ts", 9) },
      { id: 4, callFrame: frame("parse", "file:///work/x/node_modules/fast-xml-parser/src/x.js", 1) },
      { id: 5, callFrame: frame("reconcile", "file:///work/x/src/controllers/cluster/vm-reconciler.ts", 9) },
    ],
    startTime: 0,
    endTime: 10_000,
    // Each delta is the time up to its sample, charged to the sample before.
    samples: [3, 2, 4, 5, 3],
    timeDeltas: [100, 1000, 5000, 2000, 1000],
  };

  it("charges each interval to the sample it follows and sums a function over its call paths", () => {
    // 3: 100 (first) + 1000; 2 (idle): 5000; 4: 2000; 5: 1000 → reconcile 2100, parse 2000.
    assert.deepEqual(profileSpan(profile), { totalMs: 9.1, busyMs: 4.1 });
    const top = topFunctions(profile, 5);
    assert.deepEqual(
      top.map((t) => [t.where, t.selfMs]),
      [
        ["reconcile (src/controllers/cluster/vm-reconciler.ts:10)", 2.1],
        ["parse (fast-xml-parser:src/x.js:2)", 2],
      ],
    );
    assert.ok(Math.abs(top[0]!.percent - (2.1 * 100) / 4.1) < 1e-9);
    assert.deepEqual(
      topFiles(profile).map((t) => t.where),
      ["src/controllers/cluster/vm-reconciler.ts", "fast-xml-parser:src/x.js"],
    );
  });

  it("reads when the process began from node's file name", () => {
    assert.deepEqual(
      profileStartedAt("/d/CPU.20261127.063308.23850.0.001.cpuprofile"),
      new Date(2026, 10, 27, 6, 33, 8),
    );
    assert.equal(profileStartedAt("/d/other.cpuprofile"), undefined);
  });

  it("sums inclusive time of our functions once per sample", () => {
    const nested: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame("(root)"), children: [2] },
        { id: 2, callFrame: frame("outer", "file:///w/src/a.ts", 0), children: [3, 4] },
        { id: 3, callFrame: frame("parse", "file:///w/node_modules/p/x.js", 0), children: [5] },
        { id: 4, callFrame: frame("(idle)") },
        { id: 5, callFrame: frame("outer", "file:///w/src/a.ts", 0) },
      ],
      startTime: 0,
      endTime: 10_000,
      samples: [2, 3, 5, 4, 2],
      timeDeltas: [1000, 1000, 1000, 1000, 1000],
    };
    // Charged: outer 2 ms, parse 1 ms (called by outer), the inner outer 1 ms (counted once), idle 1 ms.
    assert.deepEqual(
      topInclusive(nested, /^src\//).map((t) => [t.where, t.selfMs, t.percent]),
      [["outer (src/a.ts:1)", 4, 100]],
    );
  });

  it("names files short", () => {
    assert.equal(shortFile("node:internal/tls/wrap"), "node:internal/tls/wrap");
    assert.equal(
      shortFile("file:///a/node_modules/@kubernetes/client-node/dist/x.js"),
      "@kubernetes/client-node:dist/x.js",
    );
    assert.equal(shortFile(""), "");
  });
});

describe("bench-scale depth series", () => {
  it("keeps the largest value of each stretch and says where the peak was", () => {
    const series: Array<[number, number]> = [
      [1, 0],
      [2, 5],
      [3, 9],
      [4, 2],
      [6, 0],
    ];
    assert.equal(compactSeries(series, 3), "every 3 s: 5 9 0  (max 9 at 3 s)");
    assert.equal(compactSeries([]), "-");
  });
});
