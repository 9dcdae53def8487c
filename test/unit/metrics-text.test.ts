import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Counter, Gauge, Histogram, Registry, Summary } from "prom-client";
import { familyText, TextRegistry } from "../../src/runtime/metrics-text.ts";
import { sampledCounter, sampledGauge } from "../../src/runtime/sampled-metrics.ts";
import { newRegistry } from "../../src/runtime/server.ts";

/** What prom-client's own Registry writes for the same registry. */
const promClientText = (r: Registry) => Registry.prototype.metrics.call(r);

function filled(registry: TextRegistry) {
  const registers = [registry];
  const c = new Counter({
    name: "t_requests_total",
    help: "Requests\nback\\slash",
    labelNames: ["a", "b"],
    registers,
  });
  c.inc({ a: 'quote " and \\ and \n', b: "x" }, 3);
  c.inc({ b: "only b" });
  new Counter({ name: "t_plain_total", help: "no labels", registers }).inc(2);
  const g = new Gauge({ name: "t_level", help: "level", labelNames: ["component", "k"], registers });
  g.set({ component: "own wins", k: "v" }, 1.5);
  g.set({ k: "nan" }, Number.NaN);
  g.set({ k: "inf" }, Number.POSITIVE_INFINITY);
  g.set({ k: "-inf" }, Number.NEGATIVE_INFINITY);
  const h = new Histogram({ name: "t_seconds", help: "h", labelNames: ["q"], buckets: [0.1, 1], registers });
  h.observe({ q: "one" }, 0.5);
  h.observe({ q: "two" }, 3);
  new Histogram({ name: "t_bare_seconds", help: "h", buckets: [1], registers }).observe(0.2);
  const s = new Summary({ name: "t_summary", help: "s", labelNames: ["q"], percentiles: [0.5], registers });
  s.observe({ q: "x" }, 4);
  new Gauge({ name: "t_empty", help: "no series yet", labelNames: ["x"], registers });
  sampledGauge(registry, { name: "t_sampled", help: "rows", labelNames: ["namespace", "name"] }, () => [
    { labels: { namespace: "n", name: "a" }, value: 1 },
    { labels: { namespace: "n", name: 'b"c' }, value: 0 },
  ]);
  sampledCounter(registry, { name: "t_sampled_total", help: "rows", labelNames: [] }, () => [
    { labels: {}, value: 7 },
  ]);
  sampledGauge(registry, { name: "t_sampled_none", help: "no rows", labelNames: [] }, () => []);
}

describe("TextRegistry", () => {
  it("writes exactly what prom-client's Registry writes, default labels and all", async () => {
    const registry = new TextRegistry();
    registry.setDefaultLabels({ component: "agent" });
    filled(registry);
    assert.equal(await registry.metrics(), await promClientText(registry));
  });

  it("without default labels too, and for the process and Node.js figures", async () => {
    const bare = new TextRegistry();
    filled(bare);
    assert.equal(await bare.metrics(), await promClientText(bare));
    const agent = newRegistry("agent");
    assert.ok(agent instanceof TextRegistry);
    // Figures move between two reads; their lines and labels do not.
    const shape = (text: string) => text.replace(/ [-+\d.e]+$|Nan$|[+-]Inf$/gm, " N");
    assert.equal(shape(await agent.metrics()), shape(await promClientText(agent)));
  });
});

describe("familyText", () => {
  it("puts series labels first, the default labels they lack next, a histogram's shared labels last", () => {
    const text = familyText(
      { name: "x_bucket", help: "h", type: "histogram" },
      [{ value: 1, metricName: "x_bucket", labels: { le: 0.5 }, sharedLabels: { q: "a" } }],
      { component: "agent" },
    );
    assert.equal(
      text,
      '# HELP x_bucket h\n# TYPE x_bucket histogram\nx_bucket{le="0.5",component="agent",q="a"} 1',
    );
  });
});
