// /healthz, /readyz and /metrics (prom-client, private registry) on one port.
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";

export function newRegistry(component: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: "libvirt_operator_" });
  return registry;
}

export function startHttpServer(port: number, registry: Registry, ready: () => boolean): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200).end("ok");
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
