// Kubernetes API requests with a deadline, against a plain-http server on loopback that a
// KubeConfig points at: one that never answers, one that stalls mid-body, a healthy one, and
// a watch, which keeps no deadline.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, HttpMethod, IsomorphicFetchHttpLibrary, RequestContext } from "@kubernetes/client-node";
import { connectKube } from "../../src/runtime/kube.ts";
import {
  isLongLived,
  KubeRequestTimeoutError,
  makeApiClientWithDeadline,
  withDeadline,
} from "../../src/runtime/kube-deadline.ts";
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

describe("Kubernetes API request deadline", () => {
  it("rejects a request to a server that never answers within the deadline", T, async () => {
    const server = await serve(() => undefined);
    const core = makeApiClientWithDeadline(kubeConfigFor(server), CoreV1Api, 300);
    const { ms, error } = await failure(core.listNamespace());
    assert.ok(error instanceof KubeRequestTimeoutError, String(error));
    assert.equal(
      error.message,
      "Kubernetes API request GET /api/v1/namespaces got no complete answer within 300 ms",
    );
    assert.ok(ms >= 290 && ms < 5000, `${ms} ms`);
  });

  it("covers the body too: headers then silence still fail", T, async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"kind":"NamespaceList",'); // and nothing more
    });
    const core = makeApiClientWithDeadline(kubeConfigFor(server), CoreV1Api, 300);
    const { ms, error } = await failure(core.listNamespace());
    assert.ok(error instanceof KubeRequestTimeoutError, String(error));
    assert.ok(ms >= 290 && ms < 5000, `${ms} ms`);
  });

  it("lets a healthy server answer, with client-node's own authentication and User-Agent", T, async () => {
    const seen: IncomingMessage[] = [];
    const server = await serve((req, res) => {
      seen.push(req);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(NAMESPACES);
    });
    const core = makeApiClientWithDeadline(kubeConfigFor(server), CoreV1Api, 300);
    assert.deepEqual((await core.listNamespace()).items, []);
    // The timer of a finished request is cleared: waiting past it changes nothing.
    await sleep(350);
    assert.deepEqual((await core.listNamespace()).items, []);
    assert.equal(seen[0]?.headers.authorization, "Bearer t");
    assert.match(seen[0]?.headers["user-agent"] ?? "", /^kubernetes-client-javascript\//);
  });

  it(
    "sends the requests of one KubeConfig over kept-alive connections of one pool, not a new one each",
    T,
    async () => {
      const ports = new Set<number>();
      const server = await serve((req, res) => {
        ports.add(req.socket.remotePort ?? 0);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(NAMESPACES);
      });
      const kc = kubeConfigFor(server);
      const core = makeApiClientWithDeadline(kc, CoreV1Api, 2000);
      const other = makeApiClientWithDeadline(kc, CoreV1Api, 2000);
      for (let i = 0; i < 5; i++) {
        await core.listNamespace();
        await other.listNamespace();
      }
      // A connection goes back to the pool a moment after its answer: the next request may open a
      // second one, never one each.
      assert.ok(ports.size <= 2, `10 requests over ${ports.size} connections: ${[...ports].join(", ")}`);
    },
  );

  it("is what connectKube() gives the controllers", T, async () => {
    const server = await serve(() => undefined);
    const dir = mkdtempSync(join(tmpdir(), "lvo-kubeconfig-"));
    const saved = process.env.KUBECONFIG;
    try {
      const path = join(dir, "config");
      writeFileSync(path, kubeConfigFor(server).exportConfig());
      process.env.KUBECONFIG = path;
      const kube = connectKube(250);
      const { ms, error } = await failure(
        kube.custom.listClusterCustomObject({ group: "g.example", version: "v1", plural: "things" }),
      );
      assert.ok(error instanceof KubeRequestTimeoutError, String(error));
      assert.ok(ms >= 240 && ms < 5000, `${ms} ms`);
      await assert.rejects(kube.coordination.listLeaseForAllNamespaces(), KubeRequestTimeoutError);
      await assert.rejects(kube.core.listNode(), KubeRequestTimeoutError);
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("leaves watches alone", T, async () => {
    assert.equal(isLongLived("http://h/api/v1/pods?watch=true"), true);
    assert.equal(isLongLived("http://h/api/v1/pods?watch=1&resourceVersion=5"), true);
    assert.equal(isLongLived("http://h/api/v1/pods?labelSelector=watch%3Dtrue"), false);
    const server = await serve(async (_req, res) => {
      await sleep(400); // slower than the deadline
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
    const http = withDeadline(new IsomorphicFetchHttpLibrary(), 200);
    const watch = new RequestContext(`${server}/api/v1/pods?watch=true`, HttpMethod.GET);
    const response = await http.send(watch).toPromise();
    assert.equal(await response.body.text(), "{}");
    const list = new RequestContext(`${server}/api/v1/pods`, HttpMethod.GET);
    await assert.rejects(http.send(list).toPromise(), KubeRequestTimeoutError);
  });
});
