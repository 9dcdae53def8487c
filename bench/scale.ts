// make bench-scale: BENCH_SCALE_VMS VMs (default 1000) over BENCH_SCALE_NODES test-driver
// nodes (default 10), through the real controller and one real agent per node, on a fresh
// bench stack; a round of 100 first, so the cost per reconcile at 100 and at N shows side by
// side. Each round: create (BENCH_SCALE_CONCURRENCY requests in flight, default 16) until all
// are Running, then delete until all are gone; what the controller, the agents, the API server
// and etcd did meanwhile. The baseline, in the same run: the same VirtualMachines and a status
// each written by a bare client with the controller stopped, plus raw libvirt define + start
// of the same domains on test-driver hypervisors. BENCH_PROFILE=1 runs the controller under
// node --cpu-prof and prints where its CPU went. Figures also go to .local/bench/scale-*.json.
// A phase ends early when no VM got further for BENCH_SCALE_STALL_SECONDS (default 180); the
// figures then say what state the rest were in. BENCH_HEAP_SNAPSHOT=1 has the controller and one
// agent write a heap snapshot while the largest round's VMs all run (scale-heap.ts);
// BENCH_SCALE_BASELINE=0 skips the round of 100 and the baseline (a memory run only).
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg, cpus as machineCpus } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { kubectl } from "../src/cmd/local/kube.ts";
import { AGENT_NAMESPACE, startController } from "../src/cmd/local/operator.ts";
import { describeBuild, type OperatorBuild } from "../src/cmd/local/operator-build.ts";
import { stopDaemon } from "../src/cmd/local/processes.ts";
import { stackDown } from "../src/cmd/local/stack.ts";
import { REPO_ROOT } from "../src/cmd/local/tools.ts";
import { heartbeatLeaseName } from "../src/controllers/node-facts.ts";
import {
  startTestNodes,
  stopTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../test/support/nodes.ts";
import {
  describeProfile,
  profileStartedAt,
  profilesIn,
  readProfile,
  topFiles,
  topFunctions,
} from "./cpuprofile.ts";
import { bareApiRun, rawLibvirtRun } from "./scale-baseline.ts";
import { type HeapSnapshotFigures, heapSnapshotArgs, takeHeapSnapshots } from "./scale-heap.ts";
import {
  type Baseline,
  baselineTable,
  compactSeries,
  floorLines,
  libvirtCallLine,
  ratios,
  requestLine,
  restartLines,
  roundsTable,
  targetLines,
} from "./scale-report.ts";
import { operatorRound, type RoundContext, type RoundFigures } from "./scale-round.ts";
import { VmTracker } from "./scale-watch.ts";
import { apiClient, benchOperatorBuild, freshStack, KUBECONFIG, NS, progress, STACK } from "./stack.ts";

const VMS = Number(process.env.BENCH_SCALE_VMS ?? 1000);
const NODES = Number(process.env.BENCH_SCALE_NODES ?? 10);
const CONCURRENCY = Number(process.env.BENCH_SCALE_CONCURRENCY ?? 16);
const PROFILE = process.env.BENCH_PROFILE === "1";
const HEAP_SNAPSHOT = process.env.BENCH_HEAP_SNAPSHOT === "1";
const BASELINE = process.env.BENCH_SCALE_BASELINE !== "0";
const SMALL_ROUND = 100;
/** Room for 100 one-vCPU, 64 MiB VMs on each node with room to spare (the controller's overcommit: 8). */
const NODE_CPUS = 64;
const NODE_MEMORY = 256 * 2 ** 30;
/** The agent's VM workers (RECONCILE_WORKERS' default): the raw libvirt side gets as many per hypervisor. */
const AGENT_WORKERS = 4;
const PREFIX = "scale";
const BASELINE_NS = "bench-baseline";
/** What a VM asks for: small, no disks, one NIC on the node's default network (none in spec: the default). */
const SPEC = {
  // The test-driver agents offer kvm and qemu (backed by libvirt's "test" domain type).
  hypervisor: "qemu",
  memory: "64Mi",
  cpu: { cores: 1 },
  nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
  shutdown: { gracePeriodSeconds: 0 },
};

const timeoutMs = (n: number) => Number(process.env.BENCH_SCALE_TIMEOUT_SECONDS ?? 300 + 1.5 * n) * 1000;

/**
 * The controller under a supervisor, restarted whenever it exits as a Deployment would restart
 * it (it exits when it loses its leader Lease: renewals failing for 10 s under load).
 */
async function restartController(): Promise<void> {
  await stopDaemon(STACK.stateDir, "controller");
  await startController(
    STACK.stateDir,
    KUBECONFIG,
    `local-${STACK.nodeName}`,
    STACK.ports.controllerMetrics,
    true,
  );
}

/** One VM per node created and deleted: every node and the controller's leadership are ready. */
async function warmUp(ctx: RoundContext, label: string): Promise<void> {
  progress(`warm-up (${label}): ${ctx.nodes.length} VMs`);
  const round = await operatorRound({ ...ctx, timeoutMs: 180_000 }, `warm-${label}`, ctx.nodes.length);
  if (round.create.notDone || round.delete.notDone)
    throw new Error(
      `warm-up did not finish: ${JSON.stringify(round.create.notDone ?? round.delete.notDone)}`,
    );
}

async function baseline(ctx: RoundContext, status: Record<string, unknown>): Promise<Baseline> {
  // Nothing of ours acts on the baseline's objects: the controller is stopped, and no agent
  // sees a VM the controller has not labelled for its node.
  progress("baseline: controller stopped; bare client writes the VMs and a status each");
  await stopDaemon(STACK.stateDir, "controller");
  const names = Array.from({ length: VMS }, (_, i) => `base-${String(i).padStart(4, "0")}`);
  const api = await bareApiRun(ctx.api, {
    names,
    namespace: BASELINE_NS,
    spec: SPEC,
    status,
    concurrency: CONCURRENCY,
  });
  progress(
    "baseline: the floor, bare client sending the operator's requests too (placement, Events, finalizer)",
  );
  const floor = await bareApiRun(ctx.api, {
    names: names.map((n) => n.replace("base-", "floor-")),
    namespace: BASELINE_NS,
    spec: SPEC,
    status,
    concurrency: CONCURRENCY,
    floor: true,
  });
  progress(`baseline: raw libvirt define + start of ${VMS} domains on ${NODES} test-driver hypervisors`);
  const libvirt = await rawLibvirtRun({
    names,
    spec: SPEC,
    interfaceNames: ["default"],
    connections: NODES,
    inFlight: AGENT_WORKERS,
    cpus: NODE_CPUS,
    memoryBytes: NODE_MEMORY,
  });
  progress("baseline done; controller started again");
  await restartController();
  return { vms: VMS, api, floor, libvirt };
}

/** Each controller process's profile, with the rounds that began while it ran. */
async function profileFigures(dir: string, rounds: readonly RoundFigures[]) {
  const files = await profilesIn(dir);
  const starts = files.map((f) => profileStartedAt(f)?.getTime() ?? 0);
  return Promise.all(
    files.map(async (file, i) => {
      const profile = await readProfile(file);
      const until = starts[i + 1] ?? Number.POSITIVE_INFINITY;
      // The file names the second it began: a round a second earlier is still the previous one's.
      const ran = rounds.filter((r) => r.startedAt >= starts[i]! + 1000 && r.startedAt < until + 1000);
      const covers = ran.length ? `rounds of ${ran.map((r) => r.vms).join(", ")} VMs` : "no round";
      return {
        file,
        rounds: ran.map((r) => r.vms),
        covers: `controller started ${new Date(starts[i]!).toLocaleTimeString()}; ${covers}`,
        text: describeProfile(profile),
        topFunctions: topFunctions(profile, 15),
        topFiles: topFiles(profile, 10),
      };
    }),
  );
}

async function main() {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const outDir = join(REPO_ROOT, ".local", "bench");
  const profileDir = join(outDir, `profile-${stamp}`);
  await mkdir(outDir, { recursive: true });
  const heapDir = join(outDir, `heap-${stamp}`);
  // Flags already in CONTROLLER_NODE_ARGS / AGENT_NODE_ARGS (heap settings under trial) are kept.
  const controllerArgs = [
    process.env.CONTROLLER_NODE_ARGS ?? "",
    PROFILE ? `--cpu-prof --cpu-prof-dir=${profileDir}` : "",
    HEAP_SNAPSHOT ? heapSnapshotArgs(heapDir) : "",
  ];
  process.env.CONTROLLER_NODE_ARGS = controllerArgs.filter(Boolean).join(" ");
  if (HEAP_SNAPSHOT) {
    await mkdir(heapDir, { recursive: true });
    process.env.AGENT_NODE_ARGS = `${process.env.AGENT_NODE_ARGS ?? ""} ${heapSnapshotArgs(heapDir)}`.trim();
  }
  const heapSnapshots: HeapSnapshotFigures[] = [];
  const setup = {
    operatorBuild: await benchOperatorBuild(),
    vms: VMS,
    nodes: NODES,
    nodeCpus: NODE_CPUS,
    nodeMemoryGiB: NODE_MEMORY / 2 ** 30,
    cpuOvercommit: Number(process.env.CPU_OVERCOMMIT ?? 8),
    concurrency: CONCURRENCY,
    spec: SPEC,
    machineCpus: machineCpus().length,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
    profile: PROFILE,
  };
  const sizes = VMS > SMALL_ROUND && BASELINE ? [SMALL_ROUND, VMS] : [VMS];
  progress(
    `bench-scale: ${sizes.join(" then ")} VMs over ${NODES} test-driver nodes; starting the bench stack`,
  );
  await freshStack();
  let nodes: TestNode[] = [];
  let tracker: VmTracker | undefined;
  const rounds: RoundFigures[] = [];
  let base: Baseline | undefined;
  let failure: unknown;
  try {
    for (const ns of [NS, BASELINE_NS]) await kubectl(KUBECONFIG, ["create", "namespace", ns]);
    progress(`starting ${NODES} test nodes (${NODE_CPUS} CPUs, ${setup.nodeMemoryGiB} GiB each)`);
    nodes = await startTestNodes(NODES, {
      prefix: PREFIX,
      stack: STACK,
      cpus: NODE_CPUS,
      memoryBytes: NODE_MEMORY,
    });
    // The controller places only on nodes whose heartbeat it has seen.
    for (const node of nodes)
      await kubectl(KUBECONFIG, ["get", "lease", heartbeatLeaseName(node.nodeName), "-n", AGENT_NAMESPACE]);
    await sleep(1000);
    const { kc, api } = await apiClient("virtualmachines");
    tracker = new VmTracker(kc, api, NS);
    await tracker.start();
    const ctx: RoundContext = {
      kc,
      api,
      tracker,
      namespace: NS,
      nodes,
      spec: SPEC,
      concurrency: CONCURRENCY,
      timeoutMs: 0,
    };
    const largest = Math.max(...sizes);
    const whileRunning = async (n: number) => {
      if (n === largest)
        heapSnapshots.push(
          ...(await takeHeapSnapshots(heapDir, ["controller", `agent-${nodes[0]!.nodeName}`], n)),
        );
    };
    await restartController();
    await warmUp(ctx, "start");
    for (const [i, n] of sizes.entries()) {
      progress(`round: ${n} VMs`);
      const snapshotting = HEAP_SNAPSHOT ? { whileRunning } : {};
      rounds.push(await operatorRound({ ...ctx, ...snapshotting, timeoutMs: timeoutMs(n) }, `r${n}`, n));
      if (i === 0 && BASELINE) {
        const status = tracker.lastRunningStatus;
        if (!status) throw new Error("no VM ever ran: nothing to compare with");
        base = await baseline(ctx, status);
        await warmUp(ctx, "restarted");
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    tracker?.stop();
    progress("stopping the test nodes and the bench stack");
    await stopTestNodes(nodes).catch((err) => progress(`stopping test nodes: ${(err as Error).message}`));
    await stackDown(STACK);
  }
  const profiles = PROFILE ? await profileFigures(profileDir, rounds) : [];
  if (rounds.length) report(setup, rounds, base, profiles);
  for (const h of heapSnapshots)
    console.log(`heap snapshot: ${h.daemon}, RSS ${h.rssMiB.toFixed(0)} MiB with ${h.vms} VMs: ${h.file}`);
  // What was measured is kept even when the run failed part way.
  const file = join(outDir, `scale-${stamp}.json`);
  const figures = {
    setup,
    rounds,
    baseline: base,
    profiles: profiles.map(({ text: _text, ...p }) => p),
    heapSnapshots,
    ...(failure ? { error: String((failure as Error).stack ?? failure) } : {}),
  };
  await writeFile(file, `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`\nfigures: ${file}`);
  if (failure) throw failure;
}

function report(
  setup: Record<string, unknown>,
  rounds: RoundFigures[],
  base: Baseline | undefined,
  profiles: Array<{ file: string; covers: string; text: string; rounds: number[] }>,
) {
  console.log(
    `\nScale benchmark: ${rounds.map((r) => r.vms).join(" and ")} VMs over ${setup.nodes} test-driver nodes ` +
      `(${setup.nodeCpus} CPUs, ${setup.nodeMemoryGiB} GiB each, CPU overcommit ${setup.cpuOvercommit}), ` +
      `${setup.concurrency} requests in flight; machine: ${setup.machineCpus} CPUs, load ${JSON.stringify(setup.loadAverageAtStart)}; ` +
      `controller and agents: ${describeBuild(setup.operatorBuild as OperatorBuild)}\n`,
  );
  console.log(roundsTable(rounds, "create"));
  console.log("");
  console.log(roundsTable(rounds, "delete"));
  if (base) {
    console.log(
      "\nBaseline: the same VirtualMachines written by a bare client (create, then a server-side apply of a\n" +
        "Running VM's status) with the controller stopped, and raw libvirt on test-driver hypervisors\n" +
        `(${setup.nodes} connections, ${AGENT_WORKERS} calls in flight each, as the agents' workers). The floor:\n` +
        "the bare client sends the operator's other requests too (the placement write, the Scheduled and\n" +
        "Started Events; on delete, the finalizer's removal), as fast as the API server takes them\n",
    );
    console.log(baselineTable(base));
    const r = ratios(rounds.at(-1)!, base);
    console.log(
      `\noperator / baseline: create → all Running ×${r.create.toFixed(2)}, delete → all gone ×${r.delete.toFixed(2)}`,
    );
    for (const line of floorLines(rounds.at(-1)!, base)) console.log(`  ${line}`);
  }
  for (const line of restartLines(rounds)) console.log(`\nNOTE: ${line}`);
  console.log("\nTargets (issue 17)");
  for (const line of targetLines(rounds, base)) console.log(`  ${line}`);
  console.log("\nOver time: work-queue depth (keys waiting), the controller's longest event-loop stall");
  for (const r of rounds)
    for (const phase of ["create", "delete"] as const) {
      const p = r[phase];
      console.log(`  ${r.vms} VMs ${phase}, controller: ${compactSeries(p.depth.controller)}`);
      console.log(`  ${r.vms} VMs ${phase}, agents:     ${compactSeries(p.depth.agents)}`);
      console.log(
        `  ${r.vms} VMs ${phase}, controller event-loop stall ms: ${compactSeries(p.eventLoopLagMs.controller)}`,
      );
    }
  console.log("\nRequests the API server served (the benchmark's own create or delete and watches too)");
  for (const r of rounds)
    for (const phase of ["create", "delete"] as const) console.log(`  ${requestLine(r, phase)}`);
  console.log("\nlibvirt calls the agents made (statistics sweeps included)");
  for (const r of rounds)
    for (const phase of ["create", "delete"] as const) console.log(`  ${libvirtCallLine(r, phase)}`);
  for (const r of rounds)
    for (const phase of ["create", "delete"] as const)
      if (r[phase].notDone)
        console.log(
          `\n${r.vms} VMs ${phase}: not all made it; by status: ${JSON.stringify(r[phase].notDone)}`,
        );
  // Processes that ran no round (start-up, warm-up only) are in the JSON file only.
  for (const p of profiles.filter((x) => x.rounds.length))
    console.log(`\nController CPU profile (${p.covers}): ${p.file}\n${p.text}`);
}

await main();
// Keep-alive sockets of the API client would hold the process open.
process.exit(0);
