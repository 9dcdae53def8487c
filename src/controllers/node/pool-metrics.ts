// The agent's storage pool series: each active pool's capacity and free space, exact, as the
// node publisher last read them (every heartbeat).
import type { Registry } from "prom-client";
import { type Row, sampledGauge } from "../../runtime/sampled-metrics.ts";
import type { StoragePoolFacts } from "../node-facts.ts";

/** Pure: capacity and available rows per pool of NODE. */
export function poolSeries(
  node: string,
  pools: Record<string, StoragePoolFacts>,
): { capacity: Row[]; available: Row[] } {
  const entries = Object.entries(pools).sort(([a], [b]) => a.localeCompare(b));
  return {
    capacity: entries.map(([pool, p]) => ({ labels: { node, pool }, value: p.capacityBytes })),
    available: entries.map(([pool, p]) => ({ labels: { node, pool }, value: p.availableBytes })),
  };
}

export class PoolMetrics {
  private pools: Record<string, StoragePoolFacts> = {};

  constructor(registry: Registry, node: string) {
    const labelNames = ["node", "pool"];
    sampledGauge(
      registry,
      {
        name: "libvirt_operator_pool_capacity_bytes",
        help: "Size of the active libvirt storage pool on the node",
        labelNames,
      },
      () => poolSeries(node, this.pools).capacity,
    );
    sampledGauge(
      registry,
      {
        name: "libvirt_operator_pool_available_bytes",
        help: "Free space of the active libvirt storage pool on the node",
        labelNames,
      },
      () => poolSeries(node, this.pools).available,
    );
  }

  /** The node's active pools as just read (replaces the last reading). */
  update(pools: Record<string, StoragePoolFacts>): void {
    this.pools = pools;
  }
}
