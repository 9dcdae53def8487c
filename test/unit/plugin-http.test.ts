// The plugin's lean client: kubeconfig read as kubectl reads it, and requests over node:http(s)
// with kubectl's credentials, a deadline, and API errors in the shape formatError reads.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import yaml from "js-yaml";
import { connect } from "../../src/cli/client.ts";
import { formatError } from "../../src/cli/errors.ts";
import { ApiError } from "../../src/kube/http.ts";
import { contextNames, KubeconfigError, kubeconfigFiles, loadKubeconfig } from "../../src/kube/kubeconfig.ts";
import { closeAll, serve } from "../support/http-servers.ts";

afterEach(closeAll);

const dir = mkdtempSync(join(tmpdir(), "plugin-http-"));
function kubeconfigFile(name: string, doc: object): string {
  const path = join(dir, name);
  writeFileSync(path, yaml.dump(doc));
  return path;
}

function config(server: string, extra: { namespace?: string; user?: object } = {}) {
  return {
    clusters: [{ name: "c", cluster: { server } }],
    users: [{ name: "u", user: extra.user ?? { token: "secret-token" } }],
    contexts: [
      {
        name: "x",
        context: { cluster: "c", user: "u", ...(extra.namespace ? { namespace: extra.namespace } : {}) },
      },
    ],
    "current-context": "x",
  };
}

describe("kubeconfig, as kubectl reads it", () => {
  it("--kubeconfig, else $KUBECONFIG's files, else ~/.kube/config", () => {
    assert.deepEqual(kubeconfigFiles("/f", { KUBECONFIG: "/a:/b" }), ["/f"]);
    assert.deepEqual(kubeconfigFiles(undefined, { KUBECONFIG: "/a:/b" }), ["/a", "/b"]);
    assert.deepEqual(kubeconfigFiles(undefined, { HOME: "/home/u" }), ["/home/u/.kube/config"]);
  });
  it("merges files, the first to name a thing wins; --context picks another; relative paths are the file's", () => {
    const first = kubeconfigFile("first", {
      ...config("https://one:6443", { namespace: "team" }),
      users: [{ name: "u", user: { "client-certificate": "certs/me.crt" } }],
    });
    const second = kubeconfigFile("second", {
      clusters: [
        { name: "c", cluster: { server: "https://ignored" } },
        { name: "d", cluster: { server: "https://two" } },
      ],
      contexts: [{ name: "y", context: { cluster: "d", user: "u" } }],
      "current-context": "y",
    });
    const merged = loadKubeconfig([first, second]);
    assert.equal(merged.contextName, "x", "the first file's current context");
    assert.equal(merged.cluster.server, "https://one:6443");
    assert.equal(merged.context.namespace, "team");
    assert.equal(merged.user["client-certificate"], join(dir, "certs/me.crt"));
    assert.equal(loadKubeconfig([first, second], "y").cluster.server, "https://two");
    assert.deepEqual(contextNames(`${first}`).sort(), ["x"]);
  });
  it("says what is wrong with a kubeconfig", () => {
    const file = kubeconfigFile("plain", config("https://one"));
    assert.throws(
      () => loadKubeconfig([file], "nope"),
      (e: Error) => e instanceof KubeconfigError && /context "nope" does not exist/.test(e.message),
    );
    assert.throws(() => loadKubeconfig([join(dir, "missing")]), /cannot read kubeconfig/);
    assert.equal(
      formatError(new KubeconfigError('context "nope" does not exist')),
      'error: context "nope" does not exist',
    );
  });
});

describe("requests", () => {
  it("send the token, JSON merge patches and dry runs, and use the context's namespace", async () => {
    const seen: Array<{ req: IncomingMessage; body: string }> = [];
    const server = await serve((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        seen.push({ req, body });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ metadata: { name: "web" } }));
      });
    });
    const client = await connect({ kubeconfig: kubeconfigFile("ok", config(server, { namespace: "team" })) });
    assert.equal(client.namespace, "team");
    const ref = { group: "g.io", version: "v1", namespace: client.namespace, plural: "things", name: "web" };
    assert.deepEqual(await client.custom.getNamespacedCustomObject(ref), { metadata: { name: "web" } });
    await client.custom.patchNamespacedCustomObject({
      ...ref,
      body: { spec: { paused: true } },
      dryRun: "All",
    });
    client.close();
    assert.equal(seen[0]?.req.url, "/apis/g.io/v1/namespaces/team/things/web");
    assert.equal(seen[0]?.req.headers.authorization, "Bearer secret-token");
    assert.equal(seen[1]?.req.method, "PATCH");
    assert.equal(seen[1]?.req.url, "/apis/g.io/v1/namespaces/team/things/web?dryRun=All");
    assert.equal(seen[1]?.req.headers["content-type"], "application/merge-patch+json");
    assert.deepEqual(JSON.parse(seen[1]?.body ?? ""), { spec: { paused: true } });
  });
  it("an API error keeps the server's Status for kubectl's error line", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", reason: "NotFound", message: 'things.g.io "web" not found' }));
    });
    const client = await connect({ kubeconfig: kubeconfigFile("nf", config(server)) });
    const err = await client.custom
      .getNamespacedCustomObject({
        group: "g.io",
        version: "v1",
        namespace: "default",
        plural: "things",
        name: "web",
      })
      .catch((e: unknown) => e);
    client.close();
    assert.ok(err instanceof ApiError);
    assert.equal(formatError(err), 'Error from server (NotFound): things.g.io "web" not found');
  });
  it("a server that never answers fails within the deadline", async () => {
    const server = await serve(() => undefined);
    const client = await connect({ kubeconfig: kubeconfigFile("slow", config(server)) }, 300);
    const started = Date.now();
    const err = await client.get("/api/v1/namespaces").catch((e: Error) => e);
    client.close();
    assert.match(String(err), /no complete answer from 127\.0\.0\.1 within 300 ms/);
    assert.ok(Date.now() - started < 3000);
  });
});
