// Metric families read at scrape time from what a component already holds (a cache, its last
// sample): each scrape shows exactly the rows given then, so a series whose row is gone (a VM
// stopped or deleted) is gone, with no bookkeeping of removals. One row per label set. A
// TextRegistry (metrics-text.ts) writes them straight from the rows; the prom-client metric
// behind each serves everything else (JSON, other registries).
import { Counter, Gauge, type Registry } from "prom-client";
import { writeFromRows } from "./metrics-text.ts";

export type Labels = Record<string, string>;
export interface Row {
  labels: Labels;
  value: number;
}
export interface FamilySpec {
  name: string;
  help: string;
  labelNames: readonly string[];
}

/**
 * A counter of a cumulative figure something else counts (libvirt's CPU time, bytes read…):
 * each series is the figure as last read. A real Counter type, so rate() and promtool accept it.
 */
export function sampledCounter(registry: Registry, spec: FamilySpec, rows: () => Iterable<Row>): Counter {
  const metric = new Counter({
    ...config(registry, spec),
    collect: collector(spec, rows, (m: Counter, r) => m.inc(r.labels, r.value)),
  });
  writeFromRows(metric, { name: spec.name, help: spec.help, type: "counter" }, rows);
  return metric;
}

/** A gauge whose series are ROWS at each scrape. */
export function sampledGauge(registry: Registry, spec: FamilySpec, rows: () => Iterable<Row>): Gauge {
  const metric = new Gauge({
    ...config(registry, spec),
    collect: collector(spec, rows, (m: Gauge, r) => m.set(r.labels, r.value)),
  });
  writeFromRows(metric, { name: spec.name, help: spec.help, type: "gauge" }, rows);
  return metric;
}

function config(registry: Registry, spec: FamilySpec) {
  return { name: spec.name, help: spec.help, labelNames: [...spec.labelNames], registers: [registry] };
}

/** Collects exactly ROWS (reset() alone would leave a family without labels at 0, which no row said). */
function collector<M extends Counter | Gauge>(
  spec: FamilySpec,
  rows: () => Iterable<Row>,
  put: (m: M, r: Row) => void,
) {
  return function (this: M) {
    this.reset();
    if (spec.labelNames.length === 0) this.remove({});
    for (const r of rows()) put(this, r);
  };
}
