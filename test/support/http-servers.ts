// Throwaway http servers on loopback for tests of misbehaving peers: serve() starts one,
// closeAll() (in afterEach) ends every one started, open connections included.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ResolvedConfig } from "../../src/kube/kubeconfig.ts";

const servers: Server[] = [];

/** Starts a server answering with HANDLER; resolves to its base URL (no trailing slash). */
export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function closeAll(): Promise<void> {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** A kubeconfig context for a plain or TLS test server at SERVER (its certificate not checked), with USER. */
export function kubeConfigFor(server: string, user: ResolvedConfig["user"] = { token: "t" }): ResolvedConfig {
  return {
    files: [],
    contextName: "x",
    context: { cluster: "c", user: "u" },
    cluster: { server, "insecure-skip-tls-verify": true },
    user,
  };
}
