// Throwaway http servers on loopback for tests of misbehaving peers: serve() starts one,
// closeAll() (in afterEach) ends every one started, open connections included.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResolvedConfig } from "../../src/kube/kubeconfig.ts";

const servers: Server[] = [];

/** Starts a server answering with HANDLER; resolves to its base URL (no trailing slash). */
export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A self-signed certificate and key (PEM) for CN, made by openssl. */
export function selfSignedCertificate(cn: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "lvo-cert-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        `/CN=${cn}`,
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    return {
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
      key: readFileSync(join(dir, "key.pem"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** serve() over TLS, asking every client for a certificate (any is taken: HANDLER reads it). */
export async function serveTls(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  const server = createTlsServer(
    { ...selfSignedCertificate("127.0.0.1"), requestCert: true, rejectUnauthorized: false },
    handler,
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
