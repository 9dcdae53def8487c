// /healthz, /readyz and /metrics (prom-client, private registry) on one port.
import type { Server } from "node:http";
import { Counter, collectDefaultMetrics, type Registry } from "prom-client";
import { http } from "../kube/node-http.ts";
import { TextRegistry } from "./metrics-text.ts";

export function newRegistry(component: string): Registry {
  // Writes /metrics without prom-client's per-series copies (metrics-text.ts).
  const registry = new TextRegistry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: "libvirt_operator_" });
  // prom-client's nodejs_active_{handles,requests,resources}_total are gauges named like
  // counters, which `promtool check metrics` rejects; the same figures stay as nodejs_active_*
  // (by type).
  for (const m of registry.getMetricsAsArray())
    if (m.name.endsWith("_total") && !(m instanceof Counter)) registry.removeSingleMetric(m.name);
  return registry;
}

/**
 * Serves the probes and metrics. LIVE returns why the process is not live (a worker stuck
 * past its deadline, libvirt unreachable too long) — the kubelet then restarts it.
 */
export function startHttpServer(
  port: number,
  registry: Registry,
  ready: () => boolean,
  live: () => string | undefined = () => undefined,
): Promise<Server> {
  const server = http.createServer(async (req, res) => {
    if (req.url === "/healthz") {
      const problem = live();
      res.writeHead(problem ? 503 : 200).end(problem ?? "ok");
    } else if (req.url === "/readyz") {
      const ok = ready();
      res.writeHead(ok ? 200 : 503).end(ok ? "ok" : "not ready");
    } else if (req.url === "/metrics") {
      res.writeHead(200, { "Content-Type": registry.contentType }).end(await registry.metrics());
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(port, "0.0.0.0", () => resolve(server)));
}

/** Liveness from work queues: a key held by a worker longer than STUCK_MS means a stuck call. */
export function stuckWorkers(queues: Record<string, { stuck(limitMs: number): string[] }>, stuckMs: number) {
  return (): string | undefined => {
    for (const [name, q] of Object.entries(queues)) {
      const keys = q.stuck(stuckMs);
      if (keys.length) return `${name}: ${keys.join(", ")} held by a worker for over ${stuckMs / 1000}s`;
    }
    return undefined;
  };
}
