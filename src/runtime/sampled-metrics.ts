// Metric families read at scrape time from what a component already holds (a cache, its last
// sample): each scrape shows exactly the rows given then, so a series whose row is gone (a VM
// stopped or deleted) is gone, with no bookkeeping of removals.
import { Counter, Gauge, type Registry } from "prom-client";

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
  return new Counter({
    ...config(registry, spec),
    collect: collector(spec, rows, (m: Counter, r) => m.inc(r.labels, r.value)),
  });
}

/** A gauge whose series are ROWS at each scrape. */
export function sampledGauge(registry: Registry, spec: FamilySpec, rows: () => Iterable<Row>): Gauge {
  return new Gauge({
    ...config(registry, spec),
    collect: collector(spec, rows, (m: Gauge, r) => m.set(r.labels, r.value)),
  });
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
