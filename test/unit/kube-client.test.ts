// The daemons' own Kubernetes client (kube/http.ts): credentials that rotate, the pod's service
// account, an informer through a 410 Gone, and that neither daemon loads @kubernetes/client-node
// (~60 MiB of each one's memory when it did).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";
import type { KubernetesObject } from "@kubernetes/client-node";
import { VirtualMachineKind } from "../../src/api/names.ts";
import { coreApi, customObjectsApi } from "../../src/kube/apis.ts";
import { ExecCredentials, execConfigOf } from "../../src/kube/exec-credential.ts";
import { ApiError, HttpApi } from "../../src/kube/http.ts";
import { defaultConfig, inClusterConfig, loadKubeconfig } from "../../src/kube/kubeconfig.ts";
import { type AnyObject, type Kube, removeFinalizer } from "../../src/runtime/kube.ts";
import { InformerHandlerError, makeSlimInformer } from "../../src/runtime/slim-informer.ts";
import { closeAll, kubeConfigFor, selfSignedCertificate, serve, serveTls } from "../support/http-servers.ts";

const T = { timeout: 20_000 };
afterEach(closeAll);

const tempDirs: string[] = [];
afterEach(() => {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "lvo-kube-client-"));
  tempDirs.push(dir);
  return dir;
}

/** Whether process PID is gone (and reaped) within 3 s. */
async function gone(pid: number): Promise<boolean> {
  for (const end = Date.now() + 3000; Date.now() < end; await sleep(50)) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return true;
    }
  }
  return false;
}

/** A kubeconfig in DIR for SERVER whose user authenticates through node run with ARGS (an exec plugin). */
function execKubeconfig(
  dir: string,
  server: string,
  args: string[],
  env: Array<{ name: string; value: string }> = [],
): string {
  const file = join(dir, "config");
  writeFileSync(
    file,
    JSON.stringify({
      clusters: [{ name: "c", cluster: { server, "insecure-skip-tls-verify": true } }],
      users: [
        {
          name: "u",
          user: {
            exec: {
              apiVersion: "client.authentication.k8s.io/v1",
              command: process.execPath,
              args,
              env,
              interactiveMode: "Never",
            },
          },
        },
      ],
      contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      "current-context": "x",
    }),
  );
  return file;
}

describe("Kubernetes API client", () => {
  it("reads a token file again after a 401 (a rotated service account token)", T, async () => {
    const dir = tempDir();
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "old\n");
    const seen: string[] = [];
    const server = await serve((req, res) => {
      seen.push(req.headers.authorization ?? "");
      const ok = req.headers.authorization === "Bearer new";
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(JSON.stringify(ok ? { metadata: { uid: "u1" } } : { kind: "Status", code: 401 }));
    });
    const http = await HttpApi.connect(kubeConfigFor(server, { tokenFile }), { deadlineMs: 2000 });
    const core = coreApi(http);
    const refused = await core.readNamespace({ name: "kube-system" }).catch((e: unknown) => e);
    assert.ok(refused instanceof ApiError && refused.code === 401, String(refused));
    writeFileSync(tokenFile, "new\n");
    assert.equal((await core.readNamespace({ name: "kube-system" })).metadata?.uid, "u1");
    assert.deepEqual(seen, ["Bearer old", "Bearer new"]);
    http.close();
  });

  it("authenticates through an exec plugin, telling it nobody answers prompts", T, async () => {
    const dir = tempDir();
    const seen: string[] = [];
    const server = await serve((req, res) => {
      seen.push(req.headers.authorization ?? "");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ metadata: { uid: "u1" } }));
    });
    // The token carries what the plugin was told: KUBERNETES_EXEC_INFO and the kubeconfig's env.
    const plugin = `
      const info = JSON.parse(process.env.KUBERNETES_EXEC_INFO);
      const token = [info.kind, info.apiVersion, info.spec.interactive, process.env.REGION].join(",");
      console.log(JSON.stringify({ apiVersion: info.apiVersion, kind: "ExecCredential", status: { token } }));`;
    const file = execKubeconfig(dir, server, ["-e", plugin], [{ name: "REGION", value: "eu-1" }]);
    const http = await HttpApi.connect(loadKubeconfig([file]), { deadlineMs: 5000 });
    assert.equal((await coreApi(http).readNamespace({ name: "kube-system" })).metadata?.uid, "u1");
    assert.deepEqual(seen, ["Bearer ExecCredential,client.authentication.k8s.io/v1,false,eu-1"]);
    http.close();
  });

  it("asks the exec plugin again after a 401, and not before its credential expires", T, async () => {
    const dir = tempDir();
    const runs = join(dir, "runs");
    writeFileSync(runs, "");
    const seen: string[] = [];
    const server = await serve((req, res) => {
      seen.push(req.headers.authorization ?? "");
      const ok = req.headers.authorization === "Bearer t2";
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(JSON.stringify(ok ? { metadata: { uid: "u1" } } : { kind: "Status", code: 401 }));
    });
    const expires = new Date(Date.now() + 3_600_000).toISOString();
    const plugin = `
      const fs = require("node:fs");
      fs.appendFileSync(${JSON.stringify(runs)}, "x");
      const n = fs.readFileSync(${JSON.stringify(runs)}, "utf8").length;
      console.log(JSON.stringify({ status: { token: "t" + n, expirationTimestamp: ${JSON.stringify(expires)} } }));`;
    const http = await HttpApi.connect(loadKubeconfig([execKubeconfig(dir, server, ["-e", plugin])]), {
      deadlineMs: 5000,
    });
    const core = coreApi(http);
    const refused = await core.readNamespace({ name: "kube-system" }).catch((e: unknown) => e);
    assert.ok(refused instanceof ApiError && refused.code === 401, String(refused));
    assert.equal((await core.readNamespace({ name: "kube-system" })).metadata?.uid, "u1");
    assert.equal((await core.readNamespace({ name: "kube-system" })).metadata?.uid, "u1");
    assert.deepEqual(seen, ["Bearer t1", "Bearer t2", "Bearer t2"]);
    assert.equal(readFileSync(runs, "utf8").length, 2, "the plugin ran once per credential");
    http.close();
  });

  it("gives up on an exec plugin that does not answer, saying so, and stops it", T, async () => {
    const dir = tempDir();
    const pidFile = join(dir, "pid");
    const plugin = `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setTimeout(() => {}, 60_000)`;
    const file = execKubeconfig(dir, "http://127.0.0.1:9", ["-e", plugin]);
    const started = Date.now();
    await assert.rejects(
      HttpApi.connect(loadKubeconfig([file]), { deadlineMs: 5000, credentialDeadlineMs: 1500 }),
      /credential plugin \(node\) did not answer within 1.5 s/,
    );
    assert.ok(Date.now() - started < 10_000, "not waiting for the plugin");
    // (a machine so slow that node did not start within the deadline killed it before it wrote)
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, "utf8"));
      assert.ok(await gone(pid), "the hung plugin was killed");
    }
  });

  it(
    "finds an exec plugin named by a relative path beside its kubeconfig, and says why one fails",
    T,
    async () => {
      const dir = tempDir();
      const file = execKubeconfig(dir, "http://127.0.0.1:9", []);
      const config = JSON.parse(readFileSync(file, "utf8"));
      config.users[0].user.exec.command = "./bin/login";
      writeFileSync(file, JSON.stringify(config));
      assert.equal((loadKubeconfig([file]).user.exec as { command: string }).command, join(dir, "bin/login"));
      await assert.rejects(
        HttpApi.connect(loadKubeconfig([file]), { deadlineMs: 2000 }),
        /credential plugin \(login\) could not be run: ENOENT/,
      );
      const failing = execKubeconfig(dir, "http://127.0.0.1:9", [
        "-e",
        "console.error('token expired, log in'); process.exit(3)",
      ]);
      await assert.rejects(
        HttpApi.connect(loadKubeconfig([failing]), { deadlineMs: 2000 }),
        /credential plugin \(node\) failed \(exit code 3\): token expired, log in/,
      );
      const silent = execKubeconfig(dir, "http://127.0.0.1:9", [
        "-e",
        "console.log(JSON.stringify({ status: {} }))",
      ]);
      await assert.rejects(
        HttpApi.connect(loadKubeconfig([silent]), { deadlineMs: 2000 }),
        /gave neither a token nor a client certificate/,
      );
    },
  );

  it(
    "kills a hung plugin's children too, and is not kept waiting by one that holds its output",
    T,
    async () => {
      const dir = tempDir();
      const pids = join(dir, "pids");
      // A wrapper whose child sleeps: at the deadline, both go.
      const wrapper = `
      const { spawn } = require("node:child_process");
      const child = spawn("sleep", ["60"], { stdio: "ignore" });
      require("node:fs").writeFileSync(${JSON.stringify(pids)}, process.pid + " " + child.pid);
      setTimeout(() => {}, 60_000);`;
      await assert.rejects(
        HttpApi.connect(loadKubeconfig([execKubeconfig(dir, "http://127.0.0.1:9", ["-e", wrapper])]), {
          deadlineMs: 5000,
          credentialDeadlineMs: 1500,
        }),
        /did not answer within 1.5 s/,
      );
      if (existsSync(pids))
        for (const pid of readFileSync(pids, "utf8").split(" ").map(Number))
          assert.ok(await gone(pid), `process ${pid} of the plugin was killed`);
      // A plugin that answers and leaves a child holding its stdout: answered at once, not at the deadline.
      const server = await serve((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ metadata: { uid: "u1" } }));
      });
      const leaver = `
      const { spawn } = require("node:child_process");
      spawn("sleep", ["3"], { stdio: ["ignore", "inherit", "ignore"] });
      console.log(JSON.stringify({ status: { token: "t" } }));
      process.exit(0);`;
      const started = Date.now();
      const http = await HttpApi.connect(loadKubeconfig([execKubeconfig(dir, server, ["-e", leaver])]), {
        deadlineMs: 5000,
        credentialDeadlineMs: 10_000,
      });
      assert.ok(Date.now() - started < 2500, `answered in ${Date.now() - started} ms`);
      http.close();
    },
  );

  it(
    "renews a plugin's client certificate when it expires (a new connection with the new one)",
    T,
    async () => {
      const dir = tempDir();
      const certs = ["one", "two"].map((cn) => selfSignedCertificate(cn));
      const seen: string[] = [];
      const server = await serveTls((req, res) => {
        seen.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? "none"));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ metadata: { uid: "u1" } }));
      });
      const runs = join(dir, "runs");
      writeFileSync(runs, "");
      // Each answer is good for 11 s: 1 s before the renewal margin.
      const plugin = `
      const fs = require("node:fs");
      fs.appendFileSync(${JSON.stringify(runs)}, "x");
      const certs = ${JSON.stringify(certs)};
      const c = certs[Math.min(fs.readFileSync(${JSON.stringify(runs)}, "utf8").length, 2) - 1];
      const expirationTimestamp = new Date(Date.now() + 11_000).toISOString();
      console.log(JSON.stringify({ status: { clientCertificateData: c.cert, clientKeyData: c.key, expirationTimestamp } }));`;
      const http = await HttpApi.connect(loadKubeconfig([execKubeconfig(dir, server, ["-e", plugin])]), {
        deadlineMs: 5000,
      });
      const core = coreApi(http);
      await core.readNamespace({ name: "kube-system" });
      await core.readNamespace({ name: "kube-system" });
      await sleep(1200);
      await core.readNamespace({ name: "kube-system" });
      assert.deepEqual(seen, ["one", "one", "two"]);
      http.close();
    },
  );

  it(
    "runs the plugin once for requests that ask at the same time, and holds a failure for a moment",
    T,
    async () => {
      const dir = tempDir();
      const runs = join(dir, "runs");
      writeFileSync(runs, "");
      const server = await serve((_req, res) => {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ kind: "Status", code: 401 }));
      });
      const plugin = `
      require("node:fs").appendFileSync(${JSON.stringify(runs)}, "x");
      setTimeout(() => console.log(JSON.stringify({ status: { token: "t" } })), 200);`;
      const http = await HttpApi.connect(loadKubeconfig([execKubeconfig(dir, server, ["-e", plugin])]), {
        deadlineMs: 5000,
      });
      const core = coreApi(http);
      // Each is refused: the next requests all ask again, together.
      await Promise.allSettled(Array.from({ length: 8 }, () => core.readNamespace({ name: "kube-system" })));
      await Promise.allSettled(Array.from({ length: 8 }, () => core.readNamespace({ name: "kube-system" })));
      assert.equal(readFileSync(runs, "utf8").length, 2, "one run to connect, one after the 401s");
      http.close();
      // A plugin that fails is not run again by the requests right after.
      const failing = join(dir, "failing");
      writeFileSync(failing, "");
      const failingConfig = execConfigOf({
        command: process.execPath,
        args: ["-e", `require("node:fs").appendFileSync(${JSON.stringify(failing)}, "x"); process.exit(1)`],
      });
      const credentials = new ExecCredentials(failingConfig, { interactive: false, deadlineMs: 5000 });
      await assert.rejects(credentials.get(), /failed \(exit code 1\)/);
      await assert.rejects(credentials.get(), /failed \(exit code 1\)/);
      assert.equal(readFileSync(failing, "utf8").length, 1, "run once");
    },
  );

  it("connects as the pod's service account without a kubeconfig", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "namespace"), "libvirt-operator\n");
    const env = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443", HOME: dir };
    const config = inClusterConfig(env, dir);
    assert.equal(config.cluster.server, "https://10.96.0.1:443");
    assert.equal(config.cluster["certificate-authority"], join(dir, "ca.crt"));
    assert.equal(config.user.tokenFile, join(dir, "token"));
    assert.equal(config.context.namespace, "libvirt-operator");
    assert.equal(
      inClusterConfig({ ...env, KUBERNETES_SERVICE_HOST: "fd00::1" }, dir).cluster.server,
      "https://[fd00::1]:443",
    );
    // No ~/.kube/config in HOME and no $KUBECONFIG: the service account, as client-node did.
    assert.equal(defaultConfig(env).contextName, "in-cluster");
    assert.throws(() => inClusterConfig({}, dir), /not in a cluster/);
  });

  it(
    "an informer goes on past a handler that throws, and takes a 200 that is no list for a failure",
    T,
    async () => {
      const obj = (name: string) => ({ metadata: { name, namespace: "ns", resourceVersion: "2" } });
      let lists = 0;
      const server = await serve((req, res) => {
        if (!req.url?.includes("watch=true")) {
          lists++;
          // First a proxy's page with 200, then a real list.
          if (lists === 1) {
            res.writeHead(200, { "content-type": "text/html" });
            return res.end("<html>sign in</html>");
          }
          res.writeHead(200, { "content-type": "application/json" });
          return res.end(JSON.stringify({ metadata: { resourceVersion: "1" }, items: [obj("a")] }));
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.write(`${JSON.stringify({ type: "ADDED", object: obj("bad") })}\n`);
        res.write(`${JSON.stringify({ type: "ADDED", object: obj("b") })}\n`);
      });
      const http = await HttpApi.connect(kubeConfigFor(server));
      const informer = makeSlimInformer<KubernetesObject>(http, "/api/v1/things");
      const added: string[] = [];
      informer.on("add", (o) => {
        if (o.metadata?.name === "bad") throw new Error("a reconciler bug");
        added.push(o.metadata?.name ?? "");
      });
      const errors: unknown[] = [];
      informer.on("error", (e) => errors.push(e));
      await informer.start(); // the page: an error, nothing cached
      assert.equal(informer.latestResourceVersion(), "");
      assert.match(String(errors[0]), /no list/);
      await informer.start();
      for (let i = 0; i < 100 && !informer.get("b", "ns"); i++) await sleep(20);
      await informer.stop();
      http.close();
      assert.deepEqual(added, ["a", "b"], "the handler's failure on one object stopped nothing");
      assert.ok(informer.get("bad", "ns"), "the cache has the object its handler failed on");
      assert.ok(errors[1] instanceof InformerHandlerError, String(errors[1]));
    },
  );

  it(
    "sends a request once more when the kept-alive socket it went out on was closed under it",
    T,
    async () => {
      let requests = 0;
      const server = await serve((req, res) => {
        requests++;
        // The second request meets its socket closed without an answer (as an idle close crossing it).
        if (requests === 2) return req.socket.destroy();
        // The fourth gets an answer cut off halfway: it reached the server, so it is not sent again.
        if (requests === 4) {
          res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
          res.write("{");
          return setTimeout(() => req.socket.destroy(), 20);
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ metadata: { uid: `u${requests}` } }));
      });
      const http = await HttpApi.connect(kubeConfigFor(server), { deadlineMs: 2000 });
      const core = coreApi(http);
      assert.equal((await core.readNamespace({ name: "a" })).metadata?.uid, "u1");
      assert.equal(
        (await core.readNamespace({ name: "b" })).metadata?.uid,
        "u3",
        "sent again on a fresh socket",
      );
      const cut = await core.readNamespace({ name: "c" }).catch((e: unknown) => e);
      assert.ok(cut instanceof Error, "an answer cut off is an error, not a second request");
      assert.equal(requests, 4);
      http.close();
    },
  );

  it("removes a finalizer from a fresh read, never from a new object of the same name", T, async () => {
    const patches: string[] = [];
    let uid = "old";
    const server = await serve((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        if (req.method === "PATCH") patches.push(body);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            metadata: { name: "v", namespace: "ns", uid, resourceVersion: "7", finalizers: ["f", "other"] },
          }),
        );
      });
    });
    const http = await HttpApi.connect(kubeConfigFor(server), { deadlineMs: 2000 });
    const kube = { custom: customObjectsApi(http) } as unknown as Kube;
    const gone = { metadata: { name: "v", namespace: "ns", uid: "old", resourceVersion: "3" } } as AnyObject;
    await removeFinalizer(kube, VirtualMachineKind, gone, "f");
    assert.equal(patches.length, 1);
    assert.deepEqual(JSON.parse(patches[0]!).metadata, {
      finalizers: ["other"],
      resourceVersion: "7",
      uid: "old",
    });
    uid = "new"; // deleted and made again meanwhile
    await removeFinalizer(kube, VirtualMachineKind, gone, "f");
    assert.equal(patches.length, 1, "the new VM keeps its finalizer");
    http.close();
  });

  it("removes a finalizer in one write from a current copy; a copy behind is read afresh", T, async () => {
    const requests: string[] = [];
    const server = await serve((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        const rv = req.method === "PATCH" ? JSON.parse(body).metadata.resourceVersion : "";
        requests.push(`${req.method} ${rv}`);
        const behind = req.method === "PATCH" && rv !== "7";
        res.writeHead(behind ? 409 : 200, { "content-type": "application/json" });
        res.end(
          JSON.stringify(
            behind
              ? { kind: "Status", code: 409, reason: "Conflict", message: "the object has been modified" }
              : {
                  metadata: { name: "v", namespace: "ns", uid: "u", resourceVersion: "7", finalizers: ["f"] },
                },
          ),
        );
      });
    });
    const http = await HttpApi.connect(kubeConfigFor(server), { deadlineMs: 2000 });
    const kube = { custom: customObjectsApi(http) } as unknown as Kube;
    const copy = (rv: string) =>
      ({
        metadata: { name: "v", namespace: "ns", uid: "u", resourceVersion: rv, finalizers: ["f"] },
      }) as AnyObject;
    await removeFinalizer(kube, VirtualMachineKind, copy("7"), "f");
    assert.deepEqual(requests, ["PATCH 7"], "no read first");
    requests.length = 0;
    await removeFinalizer(kube, VirtualMachineKind, copy("3"), "f");
    assert.deepEqual(requests, ["PATCH 3", "GET ", "PATCH 7"]);
    http.close();
  });

  it("refuses a request whose header node rejects, without a stray timer", T, async () => {
    const server = await serve((_req, res) => res.end("{}"));
    const http = await HttpApi.connect(kubeConfigFor(server, { token: "abc\ndef" }), 200);
    await assert.rejects(http.request("GET", "/api/v1/namespaces"), /Invalid character/);
    await sleep(400); // past the deadline: its timer must not fire on a request never made
    http.close();
  });

  it("lists again after a 410 Gone, deleting what vanished and adding what came", T, async () => {
    const obj = (name: string, rv: string) => ({ metadata: { name, namespace: "ns", resourceVersion: rv } });
    let lists = 0;
    const server = await serve((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      if (!req.url?.includes("watch=true")) {
        lists++;
        const items = lists === 1 ? [obj("a", "1"), obj("b", "1")] : [obj("b", "1"), obj("c", "7")];
        return res.end(JSON.stringify({ metadata: { resourceVersion: lists === 1 ? "1" : "7" }, items }));
      }
      if (req.url.includes("resourceVersion=1")) {
        assert.match(req.url, /allowWatchBookmarks=true/);
        return res.end(`${JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 410 } })}\n`);
      }
      // Resumed from the second list's resourceVersion: stays open.
    });
    const http = await HttpApi.connect(kubeConfigFor(server));
    const informer = makeSlimInformer<KubernetesObject>(http, "/api/v1/things");
    const seen: string[] = [];
    for (const verb of ["add", "update", "delete"] as const)
      informer.on(verb, (o) => seen.push(`${verb} ${o.metadata?.name}`));
    const errors: unknown[] = [];
    informer.on("error", (e) => errors.push(e));
    await informer.start();
    for (let i = 0; i < 100 && lists < 2; i++) await sleep(20);
    await sleep(50);
    await informer.stop();
    http.close();
    assert.deepEqual(errors, []);
    assert.deepEqual(seen, ["add a", "add b", "delete a", "add c"]);
    assert.equal(informer.latestResourceVersion(), "7");
    assert.deepEqual(
      informer.list().map((o) => o.metadata?.name),
      ["b", "c"],
    );
  });

  for (const daemon of ["controller", "agent"]) {
    it(`keeps @kubernetes/client-node out of the ${daemon}`, T, async () => {
      // Every module the daemon's entry point imports is loaded (not run: the entry's own code
      // exits first); the hook appends each resolved URL to a file (stdout written to a pipe the
      // test is slow to read would be cut short by that exit).
      const dir = mkdtempSync(join(tmpdir(), "modules-"));
      const list = join(dir, "loaded");
      const hook = `
        import { appendFileSync } from "node:fs";
        import { registerHooks } from "node:module";
        const entry = new URL(${JSON.stringify(`../../src/cmd/${daemon}.ts`)}, ${JSON.stringify(import.meta.url)}).href;
        registerHooks({
          resolve(specifier, context, next) {
            const r = next(specifier, context);
            appendFileSync(${JSON.stringify(list)}, r.url + "\\n");
            return r;
          },
          load(url, context, next) {
            const r = next(url, context);
            if (url !== entry) return r;
            return { ...r, source: "process.exit(0);\\n" + String(r.source) };
          },
        });
        await import(entry);
      `;
      await promisify(execFile)(process.execPath, ["--input-type=module", "--eval", hook]);
      const loaded = readFileSync(list, "utf8").split("\n").filter(Boolean);
      rmSync(dir, { recursive: true, force: true });
      assert.ok(
        loaded.some((u) => u.endsWith("/src/runtime/kube.ts")),
        `${loaded.length} modules`,
      );
      assert.ok(loaded.some((u) => u.endsWith("/src/kube/http.ts")));
      assert.deepEqual(
        loaded.filter((u) => u.includes("@kubernetes/client-node")),
        [],
      );
    });
  }
});
