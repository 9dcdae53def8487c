// make bench-plugin: what one `kubectl vm` write costs (issue 13: under 500 ms), next to
// kubectl's own write (`kubectl annotate`) and a bare `node -e ''`, and where the time goes.
// The bench stack without libvirtd or the operator (the plugin only writes) holds one VM that
// never runs; every figure is the wall time of a fresh process, the runs of all the paths
// interleaved so that load from elsewhere on the machine falls on each alike.
//
// This file has two more uses, in the processes the bench starts:
//  - preloaded (NODE_OPTIONS=--import=<this file's URL>?trace, BENCH_PLUGIN_MARKS=<file>), it
//    times a process from inside, whichever HTTP client it uses (node:https or undici): when
//    this file was loaded, when the first request started, the TCP + TLS handshake, when each
//    answer was in, and the exit; one JSON line appended to BENCH_PLUGIN_MARKS;
//  - `node bench/plugin.ts --lean pause|unpause NAME` (`--lean-patch`: without the GET) is the
//    same write as the plugin's with nothing but node:https and js-yaml: what a lighter plugin
//    would cost. Through kubectl too: a `kubectl-vm` that runs it.
// Those must not load the bench stack's modules, nor node:https (~60 ms) before the process they
// time does, so this file imports only light node: modules at the top.
import { subscribe } from "node:diagnostics_channel";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { ClientRequest } from "node:http";
import type { Agent } from "node:https";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";

const RUNS = Number(process.env.BENCH_PLUGIN_RUNS ?? 20);
const VM_NAME = "bench-plugin";
const TARGET_MS = 500;

// ---- preloaded: the phases of a process, from inside ----

interface Marks {
  /** This file loaded: node started, the type stripper loaded (this is a .ts file). */
  loaded: number;
  connecting?: number;
  tls?: number;
  /** Method, start and end of each request, in order. */
  requests: Array<{ method: string; start: number; end?: number }>;
  exit?: number;
}

function traceProcess(file: string): void {
  const marks: Marks = { loaded: performance.now(), requests: [] };
  const started = (method: string) => marks.requests.push({ method, start: performance.now() }) - 1;
  const ended = (i: number) => {
    const r = marks.requests[i];
    if (r) r.end = performance.now();
  };
  const connecting = () => {
    marks.connecting ??= performance.now();
  };
  const connected = () => {
    marks.tls ??= performance.now();
  };
  // node:http(s): created before its socket; the answer is in at the response's end.
  subscribe("http.client.request.created", (message) => {
    const { request: req } = message as { request: ClientRequest };
    const i = started(req.method);
    if (marks.connecting === undefined) {
      connecting();
      req.once("socket", (socket) => (socket as TLSSocket).once("secureConnect", connected));
    }
    req.once("response", (res) => res.once("end", () => ended(i)));
  });
  const byRequest = new WeakMap<object, number>();
  // undici (@kubernetes/client-node's fetch)
  subscribe("undici:request:create", (message) => {
    const { request: req } = message as { request: { method: string } };
    byRequest.set(req, started(req.method));
  });
  subscribe("undici:request:trailers", (message) => {
    const i = byRequest.get((message as { request: object }).request);
    if (i !== undefined) ended(i);
  });
  subscribe("undici:client:beforeConnect", connecting);
  subscribe("undici:client:connected", connected);
  process.once("exit", () => {
    marks.exit = performance.now();
    appendFileSync(file, `${JSON.stringify(marks)}\n`);
  });
}

// ---- --lean: the same write with node:https and js-yaml only ----

interface KubeconfigFile {
  "current-context": string;
  contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
  clusters: Array<{ name: string; cluster: { server: string; "certificate-authority-data": string } }>;
  users: Array<{ name: string; user: { "client-certificate-data": string; "client-key-data": string } }>;
}

/** One request on AGENT's connection; resolves when the answer is in, rejects on an HTTP error. */
async function send(url: URL, agent: Agent, method: string, body?: unknown): Promise<void> {
  const { request } = await import("node:https");
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body) headers["content-type"] = "application/merge-patch+json";
    const req = request(url, { method, agent, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () =>
        (res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`${method} ${res.statusCode}: ${text}`)),
      );
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** `kubectl vm pause|unpause NAME -n NS` for a kubeconfig with a client certificate (the bench's). */
async function leanWrite(args: string[], withGet: boolean): Promise<void> {
  const [verb, name] = args;
  const ns = args[args.indexOf("-n") + 1];
  if ((verb !== "pause" && verb !== "unpause") || !name || !ns)
    throw new Error("usage: pause|unpause NAME -n NS");
  const { Agent } = await import("node:https");
  const yaml = (await import("js-yaml")).default;
  const file = (process.env.KUBECONFIG ?? join(homedir(), ".kube", "config")).split(":")[0]!;
  const kc = yaml.load(readFileSync(file, "utf8")) as KubeconfigFile;
  const context = kc.contexts.find((c) => c.name === kc["current-context"])!.context;
  const cluster = kc.clusters.find((c) => c.name === context.cluster)!.cluster;
  const user = kc.users.find((u) => u.name === context.user)!.user;
  const b64 = (s: string) => Buffer.from(s, "base64");
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 1,
    ca: b64(cluster["certificate-authority-data"]),
    cert: b64(user["client-certificate-data"]),
    key: b64(user["client-key-data"]),
  });
  const url = new URL(
    `${cluster.server}/apis/vm.libvirt-operator.io/v1alpha1/namespaces/${ns}/virtualmachines/${name}`,
  );
  if (withGet) await send(url, agent, "GET");
  await send(url, agent, "PATCH", { spec: { paused: verb === "pause" } });
  agent.destroy();
}

// ---- the bench ----

interface Path {
  label: string;
  file: string;
  /** The arguments of the next run. */
  args: () => string[];
  env?: Record<string, string>;
  /** Preload this file to time the process from inside. */
  traced?: boolean;
}

interface Timed {
  ms: number;
  marks?: Marks;
}

/** A directory in SCRATCH with a `kubectl-vm` that runs this file's lean write (MODE), for kubectl. */
function leanPluginDir(scratch: string, mode: string): string {
  const dir = join(scratch, mode.replace(/^-+/, ""));
  mkdirSync(dir);
  const script = `#!/bin/sh\nexec '${process.execPath}' '${import.meta.filename}' ${mode} "$@"\n`;
  writeFileSync(join(dir, "kubectl-vm"), script, { mode: 0o755 });
  return dir;
}

async function main(): Promise<void> {
  const { execFile } = await import("node:child_process");
  const { REPO_ROOT, cachedBinary, CACHE_BIN, run } = await import("../src/cmd/local/tools.ts");
  const { kubectl } = await import("../src/cmd/local/kube.ts");
  const { stackDown, stackUp } = await import("../src/cmd/local/stack.ts");
  const { installPlugin } = await import("../src/cmd/local/plugin-install.ts");
  const { KUBECONFIG, NS, progress, STACK } = await import("./stack.ts");
  const { percentile, table } = await import("./stats.ts");
  // The bench stack's ports and state, without libvirtd or the operator: nothing acts on the VM.
  const config = { ...STACK, libvirt: false, operator: false };
  const kubectlBin = cachedBinary("kubectl");
  const scratch = mkdtempSync(join(tmpdir(), "bench-plugin-"));
  const pluginDir = join(scratch, "bin");
  await installPlugin(pluginDir);
  const marksFile = join(scratch, "marks.jsonl");
  const basePath = `${CACHE_BIN}:${process.env.PATH}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KUBECONFIG,
    PATH: `${pluginDir}:${basePath}`,
    // A compile cache of this run's own (the wrapper's default otherwise), warmed by the warm-up runs.
    NODE_COMPILE_CACHE: join(scratch, "compile-cache"),
  };
  const cacheOff = { NODE_DISABLE_COMPILE_CACHE: "1" };
  const tracedWarm = { NODE_OPTIONS: `--import=${import.meta.url}?trace`, BENCH_PLUGIN_MARKS: marksFile };
  const traced = { ...cacheOff, ...tracedWarm };
  // Every write changes the VM: pause and unpause alternate over all the paths, annotations count up.
  let paused = false;
  const pause = () => {
    paused = !paused;
    return [paused ? "pause" : "unpause", VM_NAME, "-n", NS];
  };
  let annotations = 0;
  const entry = join(REPO_ROOT, "src", "cmd", "kubectl-vm.ts");

  const paths = {
    floor: { label: "node -e '' (the floor)", file: process.execPath, args: () => ["-e", ""] },
    annotate: {
      label: "kubectl annotate vm --overwrite",
      file: kubectlBin,
      args: () => ["annotate", "vm", VM_NAME, "-n", NS, `bench=v${++annotations}`, "--overwrite"],
    },
    plugin: {
      label: "kubectl vm pause|unpause (as installed)",
      file: kubectlBin,
      args: () => ["vm", ...pause()],
    },
    pluginCold: {
      label: "  the same, compile cache off",
      file: kubectlBin,
      args: () => ["vm", ...pause()],
      env: cacheOff,
    },
    help: {
      label: "(a) kubectl vm help, cache off",
      file: kubectlBin,
      args: () => ["vm", "help"],
      env: cacheOff,
    },
    helpDirect: {
      label: "(a) node src/cmd/kubectl-vm.ts help, cache off",
      file: process.execPath,
      args: () => [entry, "help"],
      env: cacheOff,
    },
    library: {
      label: "(b) import @kubernetes/client-node, cache off",
      file: process.execPath,
      args: () => ["-e", 'await import("@kubernetes/client-node")'],
      env: cacheOff,
    },
    pluginTraced: {
      label: "(c) plugin: node src/cmd/kubectl-vm.ts pause, traced, cache off",
      file: process.execPath,
      args: () => [entry, ...pause()],
      env: traced,
      traced: true,
    },
    pluginTracedWarm: {
      label: "    the same, compile cache warm",
      file: process.execPath,
      args: () => [entry, ...pause()],
      env: tracedWarm,
      traced: true,
    },
    leanTraced: {
      label: "    lean: node bench/plugin.ts --lean pause, traced, cache off",
      file: process.execPath,
      args: () => [import.meta.filename, "--lean", ...pause()],
      env: traced,
      traced: true,
    },
    leanTracedWarm: {
      label: "    the same, compile cache warm",
      file: process.execPath,
      args: () => [import.meta.filename, "--lean", ...pause()],
      env: tracedWarm,
      traced: true,
    },
    lean: {
      label: "kubectl vm pause|unpause, lean GET+PATCH",
      file: kubectlBin,
      args: () => ["vm", ...pause()],
      env: { PATH: `${leanPluginDir(scratch, "--lean")}:${basePath}` },
    },
    leanPatch: {
      label: "kubectl vm pause|unpause, lean PATCH only",
      file: kubectlBin,
      args: () => ["vm", ...pause()],
      env: { PATH: `${leanPluginDir(scratch, "--lean-patch")}:${basePath}` },
    },
  } satisfies Record<string, Path>;
  type Id = keyof typeof paths;
  const ids = Object.keys(paths) as Id[];

  const timedRun = (path: Path): Promise<Timed> => {
    const args = path.args();
    if (path.traced) writeFileSync(marksFile, "");
    const started = performance.now();
    return new Promise((resolve, reject) => {
      execFile(path.file, args, { env: { ...env, ...path.env }, cwd: REPO_ROOT }, (err, _stdout, stderr) => {
        const ms = performance.now() - started;
        if (err)
          return reject(new Error(`${path.label}: ${path.file} ${args.join(" ")}: ${stderr || err.message}`));
        if (!path.traced) return resolve({ ms });
        const line = readFileSync(marksFile, "utf8").trim().split("\n")[0];
        resolve({ ms, ...(line ? { marks: JSON.parse(line) as Marks } : {}) });
      });
    });
  };

  try {
    progress("starting the bench stack (no libvirtd, no operator)");
    await stackDown(config);
    await run("rm", ["-rf", join(config.stateDir, "etcd")]);
    await stackUp(config);
    await kubectl(KUBECONFIG, ["create", "namespace", NS]);
    const vm = {
      apiVersion: "vm.libvirt-operator.io/v1alpha1",
      kind: "VirtualMachine",
      metadata: { name: VM_NAME, namespace: NS },
      spec: { runStrategy: "Halted", hypervisor: "qemu", memory: "64Mi" },
    };
    await kubectl(KUBECONFIG, ["apply", "-f", "-"], JSON.stringify(vm));

    progress("one warm-up run of each path (kubectl's discovery cache, the compile cache)");
    for (const id of ids) await timedRun(paths[id]);
    progress(`${RUNS} runs of ${ids.length} paths, interleaved`);
    const results = Object.fromEntries(ids.map((id) => [id, [] as Timed[]])) as Record<Id, Timed[]>;
    for (let i = 0; i < RUNS; i++) {
      for (const id of ids) results[id].push(await timedRun(paths[id]));
    }

    const stats = (xs: number[]) => {
      const sorted = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
      return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), max: sorted.at(-1) ?? Number.NaN };
    };
    const wall = (id: Id) => stats(results[id].map((t) => t.ms));
    const p50 = (id: Id) => wall(id).p50;
    const annotate = p50("annotate");
    console.log(`\nkubectl vm: wall time of one call, ${RUNS} runs each (ms)\n`);
    console.log(
      table(
        ["path", "p50", "p90", "max", "p50 ÷ annotate"],
        ids.map((id) => {
          const w = wall(id);
          return [paths[id].label, w.p50, w.p90, w.max, `${(w.p50 / annotate).toFixed(2)}x`];
        }),
      ),
    );

    // The traced runs: from one mark to the next, p50 over the runs (0: the process's start).
    const phase = (id: Id, from: (m: Marks) => number | undefined, to: (m: Marks) => number | undefined) =>
      stats(
        results[id].map(({ marks }) =>
          marks ? (to(marks) ?? Number.NaN) - (from(marks) ?? Number.NaN) : Number.NaN,
        ),
      ).p50;
    const phases: Array<[string, (m: Marks) => number | undefined, (m: Marks) => number | undefined]> = [
      ["node start, the type stripper and the first .ts file loaded", () => 0, (m) => m.loaded],
      [
        "modules loaded, kubeconfig read, until the first request",
        (m) => m.loaded,
        (m) => m.requests[0]?.start,
      ],
      ["first request (TLS handshake included)", (m) => m.requests[0]?.start, (m) => m.requests[0]?.end],
      ["  of it: connection set-up, TCP + TLS handshake", (m) => m.connecting, (m) => m.tls],
      ["second request (same connection)", (m) => m.requests[1]?.start, (m) => m.requests[1]?.end],
      ["after the last answer, until exit", (m) => m.requests.at(-1)?.end, (m) => m.exit],
      ["total inside the process", () => 0, (m) => m.exit],
    ];
    // The requests of the last traced run, e.g. "GET, PATCH".
    const requests = (id: Id) =>
      results[id]
        .at(-1)
        ?.marks?.requests.map((r) => r.method)
        .join(", ") ?? "-";
    console.log("\nWhere a write's time goes, inside the process (p50, ms)\n");
    console.log(
      table(
        ["phase", "plugin, cache off", "plugin, cache warm", "lean, cache off", "lean, cache warm"],
        [
          ...phases.map(([label, from, to]) => [
            label,
            phase("pluginTraced", from, to),
            phase("pluginTracedWarm", from, to),
            phase("leanTraced", from, to),
            phase("leanTracedWarm", from, to),
          ]),
          [
            "requests",
            ...(["pluginTraced", "pluginTracedWarm", "leanTraced", "leanTracedWarm"] as const).map(requests),
          ],
        ],
      ),
    );
    const plugin = p50("plugin");
    console.log(`
kubectl vm pause p50 ${plugin.toFixed(0)} ms = ${(plugin / annotate).toFixed(2)}x kubectl annotate (${annotate.toFixed(0)} ms), ${(plugin - p50("floor")).toFixed(0)} ms over node -e '' (${p50("floor").toFixed(0)} ms)
target, a write under ${TARGET_MS} ms: ${plugin < TARGET_MS ? "met" : "MISSED"}; the lean write through kubectl (compile cache warm): ${p50("lean").toFixed(0)} ms with the GET, ${p50("leanPatch").toFixed(0)} ms without
kubectl's own part of a plugin call (kubectl vm help − node kubectl-vm.ts help): ${(p50("help") - p50("helpDirect")).toFixed(0)} ms`);
  } finally {
    await stackDown(config);
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (new URL(import.meta.url).search === "?trace") {
  traceProcess(process.env.BENCH_PLUGIN_MARKS ?? join(tmpdir(), "bench-plugin-marks.jsonl"));
} else if (process.argv[2] === "--lean" || process.argv[2] === "--lean-patch") {
  await leanWrite(process.argv.slice(3), process.argv[2] === "--lean");
} else {
  await main();
}
