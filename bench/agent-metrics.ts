// make bench: one node agent with 100 VMs (issue 17, "statistics at scale"). A test-driver node
// (test/support/nodes.ts) on a stack of its own (ports 26xxx, apart from the bench stack and the
// test stacks), the real controller placing the VMs. Prints:
//  - /metrics latency: 200 scrapes one after another and 200 by 4 at once (p50/p99/max);
//  - libvirt calls per statistics sweep (the agent's libvirt_operator_libvirt_calls_total over a
//    steady window) and per VM while 100 VMs are created and deleted;
//  - the agent's RSS (now and peak) and CPU seconds: idle, creating, steady, scraped, deleting.
// BENCH_AGENT_VMS (100), BENCH_AGENT_SCRAPES (200), BENCH_AGENT_STEADY_SECONDS (30),
// STATISTICS_INTERVAL_SECONDS (5 here), BENCH_AGENT_CPU_PROF=<dir>: the agent runs with
// --cpu-prof and writes its profile there when it stops; BENCH_AGENT_NODE_OPTIONS: more flags for
// the agent's node (V8 heap sizes, say). BENCH_AGENT_JSON=<file>: the figures.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { kubectl, localNodeName } from "../src/cmd/local/kube.ts";
import { AGENT_NAMESPACE, startController } from "../src/cmd/local/operator.ts";
import { describeBuild, operatorBuild } from "../src/cmd/local/operator-build.ts";
import { runningPid, stopDaemon } from "../src/cmd/local/processes.ts";
import { kubeconfigPath, type StackConfig, stackDown, stackUp } from "../src/cmd/local/stack.ts";
import { REPO_ROOT, run } from "../src/cmd/local/tools.ts";
import { heartbeatLeaseName } from "../src/controllers/node-facts.ts";
import {
  agentLogEntries,
  startTestNodes,
  stopTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../test/support/nodes.ts";
import { benchOperatorBuild, progress } from "./stack.ts";
import { summarize, table } from "./stats.ts";

const VMS = Number(process.env.BENCH_AGENT_VMS ?? 100);
const SCRAPES = Number(process.env.BENCH_AGENT_SCRAPES ?? 200);
const CONCURRENT = 4;
const STEADY_SECONDS = Number(process.env.BENCH_AGENT_STEADY_SECONDS ?? 30);
const CPU_PROF = process.env.BENCH_AGENT_CPU_PROF;
const NS = "agent-bench";
const GROUP_NAME = "agentbench";

/** Its own ports and state: the bench stack (bench/stack.ts) and test stacks may run beside it. */
const STACK: StackConfig = {
  stateDir: join(REPO_ROOT, ".local", "agent-bench-stack"),
  ports: {
    etcdClient: 26379,
    etcdPeer: 26380,
    apiserver: 26443,
    controllerManager: 26257,
    scheduler: 26259,
    controllerMetrics: 26090,
    agentMetrics: 26091,
  },
  libvirt: true,
  operator: false,
  nodeName: localNodeName(),
};
const KUBECONFIG = kubeconfigPath(STACK);

interface ProcessFigures {
  rssMiB: number;
  /** Of RSS: private memory (the heaps), and pages of files (mostly the node binary's, shared). */
  anonMiB: number;
  fileMiB: number;
  peakRssMiB: number;
  cpuSeconds: number;
}

/** RSS, peak RSS and CPU seconds (user + system) of PID, from /proc. */
function processFigures(pid: number): ProcessFigures {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th, in
  // clock ticks (100 per second on Linux).
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    rssMiB: kib("VmRSS") / 1024,
    anonMiB: kib("RssAnon") / 1024,
    fileMiB: kib("RssFile") / 1024,
    peakRssMiB: kib("VmHWM") / 1024,
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100,
  };
}

/** Sum of every sample of NAME whose labels include WANT (key="value" pairs). */
function metricSum(text: string, name: string, want: Record<string, string> = {}): number {
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm"))) {
    const labels = m[1] ?? "";
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) total += Number(m[2]);
  }
  return total;
}

/** The agent's libvirt calls so far, by procedure. */
function libvirtCalls(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^libvirt_operator_libvirt_calls_total\{[^}]*procedure="([^"]+)"[^}]*\} (\S+)$/gm,
  ))
    out.set(m[1]!, Number(m[2]));
  return out;
}

function callsBetween(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [p, n] of after) if (n - (before.get(p) ?? 0) > 0) out.set(p, n - (before.get(p) ?? 0));
  return new Map([...out].sort((a, b) => b[1] - a[1]));
}

const total = (calls: Map<string, number>) => [...calls.values()].reduce((a, b) => a + b, 0);

class Agent {
  readonly node: TestNode;
  readonly pid: number;
  constructor(node: TestNode, pid: number) {
    this.node = node;
    this.pid = pid;
  }
  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.node.metricsPort}/metrics`)).text();
  }
  /** Duration of one scrape, ms, and the size of its answer. */
  async scrape(): Promise<{ ms: number; bytes: number }> {
    const t = performance.now();
    const text = await this.metrics();
    return { ms: performance.now() - t, bytes: text.length };
  }
  figures(): ProcessFigures {
    return processFigures(this.pid);
  }
}

/** One phase: its duration, the agent's CPU seconds in it and its libvirt calls. */
interface Phase {
  name: string;
  seconds: number;
  cpuSeconds: number;
  rssMiB: number;
  /** The highest RSS seen in the phase (sampled every 100 ms), and at its end: private and file pages. */
  peakRssMiB: number;
  anonMiB: number;
  fileMiB: number;
  calls: Map<string, number>;
  reconciles: number;
}

async function measure(agent: Agent, name: string, work: () => Promise<void>): Promise<Phase> {
  const before = { text: await agent.metrics(), f: agent.figures(), t: performance.now() };
  let peakRssMiB = before.f.rssMiB;
  const sampler = setInterval(() => {
    try {
      peakRssMiB = Math.max(peakRssMiB, agent.figures().rssMiB);
    } catch {
      // The agent is gone: the phase's own end reports it.
    }
  }, 100);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  const after = { text: await agent.metrics(), f: agent.figures(), t: performance.now() };
  const reconciles = (text: string) =>
    metricSum(text, "libvirt_operator_reconcile_total", { controller: "virtualmachine-node" });
  return {
    name,
    seconds: (after.t - before.t) / 1000,
    cpuSeconds: after.f.cpuSeconds - before.f.cpuSeconds,
    rssMiB: after.f.rssMiB,
    peakRssMiB: Math.max(peakRssMiB, after.f.rssMiB),
    anonMiB: after.f.anonMiB,
    fileMiB: after.f.fileMiB,
    calls: callsBetween(libvirtCalls(before.text), libvirtCalls(after.text)),
    reconciles: reconciles(after.text) - reconciles(before.text),
  };
}

function vmBody(name: string) {
  return {
    apiVersion: API_VERSION,
    kind: "VirtualMachine",
    metadata: { name, namespace: NS },
    spec: {
      hypervisor: "qemu",
      memory: "64Mi",
      cpu: { cores: 1 },
      nodeSelector: { [TEST_NODE_GROUP_LABEL]: GROUP_NAME },
      shutdown: { gracePeriodSeconds: 0 },
    },
  };
}

async function vmsRunning(api: CustomObjectsApi): Promise<number> {
  const list = (await api.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: "virtualmachines",
  })) as { items: VirtualMachine[] };
  return list.items.filter((vm) => vm.status?.printableStatus === "Running").length;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(500);
  }
}

async function scrapes(agent: Agent): Promise<{ sequential: number[]; concurrent: number[]; bytes: number }> {
  const sequential: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SCRAPES; i++) {
    const s = await agent.scrape();
    sequential.push(s.ms);
    bytes = s.bytes;
  }
  const concurrent: number[] = [];
  await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      for (let i = 0; i < SCRAPES / CONCURRENT; i++) concurrent.push((await agent.scrape()).ms);
    }),
  );
  return { sequential, concurrent, bytes };
}

function callRows(phase: Phase, per: number, perLabel: string): (string | number)[][] {
  return [...phase.calls].map(([p, n]) => [phase.name, p, n, n / per, perLabel]);
}

async function main() {
  process.env.STATISTICS_INTERVAL_SECONDS ??= "5";
  const statisticsSeconds = Number(process.env.STATISTICS_INTERVAL_SECONDS);
  progress(`starting the agent bench stack (${STACK.stateDir}, API server :${STACK.ports.apiserver})`);
  await benchOperatorBuild(STACK.stateDir);
  await stackDown(STACK);
  await run("rm", ["-rf", join(STACK.stateDir, "etcd")]);
  await stackUp(STACK);
  let nodes: TestNode[] = [];
  try {
    await startController(STACK.stateDir, KUBECONFIG, "agent-bench", STACK.ports.controllerMetrics);
    // Only the agent inherits these flags: the controller runs already.
    const agentFlags = [
      process.env.BENCH_AGENT_NODE_OPTIONS,
      CPU_PROF && `--cpu-prof --cpu-prof-dir=${CPU_PROF}`,
    ];
    if (agentFlags.some(Boolean)) process.env.NODE_OPTIONS = agentFlags.filter(Boolean).join(" ");
    nodes = await startTestNodes(1, {
      prefix: GROUP_NAME,
      stack: STACK,
      cpus: 16,
      memoryBytes: 64 * 2 ** 30,
    });
    delete process.env.NODE_OPTIONS;
    const node = nodes[0]!;
    await kubectl(KUBECONFIG, ["get", "lease", heartbeatLeaseName(node.nodeName), "-n", AGENT_NAMESPACE]);
    const pid = runningPid(STACK.stateDir, `agent-${node.nodeName}`);
    if (!pid) throw new Error("the test node's agent is not running");
    const agent = new Agent(node, pid);
    await kubectl(KUBECONFIG, ["create", "namespace", NS]);
    const kc = new KubeConfig();
    kc.loadFromFile(KUBECONFIG);
    const api = kc.makeApiClient(CustomObjectsApi);
    // The controller places only on nodes whose heartbeat its watch brought.
    await sleep(2_000);

    const idle = await measure(agent, "idle, 0 VMs", () => sleep(STEADY_SECONDS * 1000));
    const idleScrape = await scrapes(agent);

    progress(`creating ${VMS} VMs`);
    const create = await measure(agent, `create ${VMS}`, async () => {
      const names = Array.from({ length: VMS }, (_, i) => `vm-${String(i).padStart(3, "0")}`);
      for (let i = 0; i < names.length; i += 20)
        await Promise.all(
          names.slice(i, i + 20).map((name) =>
            api.createNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: NS,
              plural: "virtualmachines",
              body: vmBody(name),
            }),
          ),
        );
      let last = -1;
      await until(
        `${VMS} VMs Running`,
        async () => {
          const n = await vmsRunning(api);
          if (n !== last && n % 10 === 0) progress(`${n}/${VMS} Running`);
          last = n;
          return n === VMS;
        },
        600_000,
      );
    });
    // The last status writes and each VM's first sweep are start-up, not steady state.
    progress(`settling ${3 * statisticsSeconds}s`);
    await sleep(3 * statisticsSeconds * 1000);
    progress(
      `steady state: ${STEADY_SECONDS}s with ${VMS} VMs, a statistics sweep every ${statisticsSeconds}s`,
    );
    const steady = await measure(agent, `steady ${VMS}`, () => sleep(STEADY_SECONDS * 1000));
    const sweeps = steady.calls.get("connect-get-all-domain-stats") ?? 0;

    progress(`${SCRAPES} scrapes one after another, ${SCRAPES} by ${CONCURRENT} at once`);
    let scraped = { sequential: [] as number[], concurrent: [] as number[], bytes: 0 };
    const scrapePhase = await measure(agent, "scrapes", async () => {
      scraped = await scrapes(agent);
    });
    const loaded = agent.figures();
    // What libvirt's statistics give for one VM (the test driver's domains report fewer fields).
    const oneVm = (await agent.metrics())
      .split("\n")
      .filter((l) => l.includes(`namespace="${NS}"`) && l.includes('name="vm-000"'))
      .map((l) => l.slice(0, l.indexOf("{")).replace("libvirt_operator_", ""));

    progress(`deleting ${VMS} VMs`);
    const remove = await measure(agent, `delete ${VMS}`, async () => {
      await kubectl(
        KUBECONFIG,
        ["delete", "vm", "--all", "-n", NS, "--wait=true", "--timeout=600s"],
        undefined,
      );
    });
    const end = agent.figures();

    const seq = summarize(scraped.sequential);
    const con = summarize(scraped.concurrent);
    const idleSeq = summarize(idleScrape.sequential);
    console.log(`\nNode agent with ${VMS} VMs (test-driver node, statistics every ${statisticsSeconds}s)\n`);
    console.log(
      table(
        ["/metrics scrape (ms)", "scrapes", "p50", "p99", "max", "KiB"],
        [
          [
            "0 VMs, one at a time",
            idleSeq.count,
            idleSeq.p50,
            idleSeq.p99,
            idleSeq.max,
            idleScrape.bytes / 1024,
          ],
          [`${VMS} VMs, one at a time`, seq.count, seq.p50, seq.p99, seq.max, scraped.bytes / 1024],
          [`${VMS} VMs, ${CONCURRENT} at once`, con.count, con.p50, con.p99, con.max, scraped.bytes / 1024],
        ],
      ),
    );
    console.log("");
    const phases = [idle, create, steady, scrapePhase, remove];
    console.log(
      table(
        [
          "phase",
          "s",
          "agent CPU s",
          "RSS MiB",
          "peak",
          "private",
          "file pages",
          "libvirt calls",
          "VM reconciles",
        ],
        phases.map((p) => [
          p.name,
          p.seconds,
          p.cpuSeconds,
          p.rssMiB,
          p.peakRssMiB,
          p.anonMiB,
          p.fileMiB,
          total(p.calls),
          p.reconciles,
        ]),
      ),
    );
    console.log(
      "RSS at a phase's end and its peak (sampled every 100 ms); of it, private memory (JS heap, malloc) and " +
        "pages of files, mostly the node binary's code, shared by every node process on the host",
    );
    console.log(`series of one VM (vm-000): ${oneVm.length}: ${oneVm.join(", ")}`);
    console.log(
      `agent peak RSS ${end.peakRssMiB.toFixed(0)} MiB; RSS with ${VMS} VMs after the scrapes ${loaded.rssMiB.toFixed(0)} MiB (${describeBuild(operatorBuild())})`,
    );
    console.log("");
    console.log(
      table(
        ["phase", "libvirt procedure", "calls", "per", ""],
        [
          ...callRows(steady, Math.max(sweeps, 1), "sweep"),
          ...callRows(create, VMS, "VM"),
          ...callRows(remove, VMS, "VM"),
        ],
      ),
    );
    console.log(
      `\nstatistics sweeps in ${STEADY_SECONDS}s of steady state: ${sweeps}, libvirt calls in that window: ` +
        `${total(steady.calls)} (${(total(steady.calls) / Math.max(sweeps, 1)).toFixed(1)} per sweep, ` +
        "heartbeats and orphan scans included)",
    );
    // libvirtd is the machine's, shared with every stack here: one restarted under the run
    // (another stack going down) loses the test driver's domains and disturbs every figure.
    const lost = (await agentLogEntries(node, "libvirt connection lost; reconnecting")).length;
    if (lost)
      console.log(`\nWARNING: the agent lost libvirtd ${lost} times during the run: figures disturbed`);
    const json = process.env.BENCH_AGENT_JSON;
    if (json) {
      const phaseJson = phases.map((p) => ({ ...p, calls: Object.fromEntries(p.calls) }));
      writeFileSync(
        json,
        `${JSON.stringify({ libvirtLost: lost, vms: VMS, statisticsSeconds, scrapes: { idle: idleSeq, sequential: seq, concurrent: con }, sweeps, phases: phaseJson, peakRssMiB: end.peakRssMiB, loadedRssMiB: loaded.rssMiB, operatorBuild: operatorBuild() }, null, 2)}\n`,
      );
    }
  } finally {
    await kubectl(KUBECONFIG, ["delete", "vm", "--all", "-n", NS, "--wait=true", "--timeout=120s"]).catch(
      () => undefined,
    );
    await stopTestNodes(nodes);
    await stopDaemon(STACK.stateDir, "controller");
    await stackDown(STACK);
  }
}

await main();
// Keep-alive sockets of the API client would hold the process open.
process.exit(0);
