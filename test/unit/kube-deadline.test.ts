// Kubernetes API requests with a deadline, against a plain-http server on loopback: one that
// never answers, one that stalls mid-body, a healthy one, and a watch, which keeps no deadline
// but ends when it falls silent.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { coreApi } from "../../src/kube/apis.ts";
import { HttpApi, KubeRequestTimeoutError, type WatchEvent, WatchSilenceError } from "../../src/kube/http.ts";
import { connectKube } from "../../src/runtime/kube.ts";
import { closeAll, kubeConfigFor, serve } from "../support/http-servers.ts";

const T = { timeout: 10_000 };
afterEach(closeAll);

async function failure(work: Promise<unknown>): Promise<{ ms: number; error: Error }> {
  const started = Date.now();
  const error = await work.then(
    () => assert.fail("the request succeeded"),
    (e: Error) => e,
  );
  return { ms: Date.now() - started, error };
}

const NAMESPACES = JSON.stringify({ kind: "NamespaceList", apiVersion: "v1", metadata: {}, items: [] });

async function core(server: string, deadlineMs: number, maxSockets = 8) {
  const http = await HttpApi.connect(kubeConfigFor(server), {
    deadlineMs,
    maxSockets,
    userAgent: "test-agent",
  });
  return { http, core: coreApi(http) };
}

describe("Kubernetes API request deadline", () => {
  it("rejects a request to a server that never answers within the deadline", T, async () => {
    const server = await serve(() => undefined);
    const { core: api } = await core(server, 300);
    const { ms, error } = await failure(api.listNamespace());
    assert.ok(error instanceof KubeRequestTimeoutError, String(error));
    assert.equal(
      error.message,
      "Kubernetes API request GET /api/v1/namespaces got no complete answer from 127.0.0.1 within 300 ms",
    );
    assert.ok(ms >= 290 && ms < 5000, `${ms} ms`);
  });

  it("covers the body too: headers then silence still fail", T, async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"kind":"NamespaceList",'); // and nothing more
    });
    const { core: api } = await core(server, 300);
    const { ms, error } = await failure(api.listNamespace());
    assert.ok(error instanceof KubeRequestTimeoutError, String(error));
    assert.ok(ms >= 290 && ms < 5000, `${ms} ms`);
  });

  it("lets a healthy server answer, with the kubeconfig's token and our User-Agent", T, async () => {
    const seen: IncomingMessage[] = [];
    const server = await serve((req, res) => {
      seen.push(req);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(NAMESPACES);
    });
    const { core: api } = await core(server, 300);
    assert.deepEqual((await api.listNamespace()).items, []);
    // The timer of a finished request is cleared: waiting past it changes nothing.
    await sleep(350);
    assert.deepEqual((await api.listNamespace()).items, []);
    assert.equal(seen[0]?.headers.authorization, "Bearer t");
    assert.equal(seen[0]?.headers["user-agent"], "test-agent");
  });

  it("sends one after another over one kept-alive connection, and at once over several", T, async () => {
    const ports = new Set<number>();
    let inFlight = 0;
    let mostInFlight = 0;
    const server = await serve(async (req, res) => {
      ports.add(req.socket.remotePort ?? 0);
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      await sleep(100);
      inFlight--;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(NAMESPACES);
    });
    const { core: api } = await core(server, 2000, 8);
    for (let i = 0; i < 5; i++) await api.listNamespace();
    assert.equal(ports.size, 1, `5 requests in turn over ${ports.size} connections`);
    ports.clear();
    await Promise.all(Array.from({ length: 8 }, () => api.listNamespace()));
    // Eight at once are not queued behind one connection.
    assert.ok(ports.size >= 4, `8 requests at once over ${ports.size} connections`);
    assert.ok(mostInFlight >= 4, `at most ${mostInFlight} in flight`);
  });

  it("is what connectKube() gives the controllers", T, async () => {
    const server = await serve(() => undefined);
    const dir = mkdtempSync(join(tmpdir(), "lvo-kubeconfig-"));
    const saved = process.env.KUBECONFIG;
    try {
      const path = join(dir, "config");
      writeFileSync(
        path,
        JSON.stringify({
          clusters: [{ name: "c", cluster: { server } }],
          users: [{ name: "u", user: { token: "t" } }],
          contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
          "current-context": "x",
        }),
      );
      process.env.KUBECONFIG = path;
      const kube = await connectKube(250);
      const { ms, error } = await failure(
        kube.custom.listClusterCustomObject({ group: "g.example", version: "v1", plural: "things" }),
      );
      assert.ok(error instanceof KubeRequestTimeoutError, String(error));
      assert.ok(ms >= 240 && ms < 5000, `${ms} ms`);
      await assert.rejects(
        kube.coordination.listNamespacedLease({ namespace: "n" }),
        KubeRequestTimeoutError,
      );
      await assert.rejects(kube.core.listNode(), KubeRequestTimeoutError);
      kube.http.close();
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("leaves watches alone, but ends one that falls silent", T, async () => {
    const server = await serve(async (req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      if (!req.url?.includes("resourceVersion=1")) return; // headers, then silence
      for (const rv of ["2", "3"]) {
        await sleep(250); // each slower than the request deadline, faster than the silence limit
        res.write(`${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: rv } } })}\n`);
      }
      res.end();
    });
    const { http } = await core(server, 200);
    const watch = async (rv: string) => {
      const events: WatchEvent[] = [];
      const started = Date.now();
      const err = await new Promise<unknown>((done) => {
        void http.watch("/api/v1/pods", { resourceVersion: rv }, (e) => events.push(e), done, {
          silenceMs: 400,
        });
      });
      return { events, err, ms: Date.now() - started };
    };
    const talking = await watch("1");
    assert.equal(talking.err, undefined, String(talking.err));
    assert.deepEqual(
      talking.events.map(
        (e) => (e.object as { metadata: { resourceVersion: string } }).metadata.resourceVersion,
      ),
      ["2", "3"],
    );
    const silent = await watch("9");
    assert.ok(silent.err instanceof WatchSilenceError, String(silent.err));
    assert.ok(silent.ms >= 390 && silent.ms < 5000, `${silent.ms} ms`);
    http.close();
  });
});
