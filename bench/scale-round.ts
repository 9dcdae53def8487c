// One round of make bench-scale: N VMs created (a bounded number of requests in flight, as a
// client applying a big file sends them) until all are Running, then deleted until all are
// gone, with what the controller, the agents, the API server and etcd did meanwhile.
import { loadavg } from "node:os";
import type { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import { runningPid } from "../src/cmd/local/processes.ts";
import { apiRequests, apiWriteRequests, requestsGrew } from "../test/support/api-writes.ts";
import { agentLogEntries, type TestNode } from "../test/support/nodes.ts";
import {
  DaemonUse,
  durationFigures,
  histogramGrowth,
  histogramOf,
  libvirtdPid,
  machineBusySeconds,
  type Sample,
  scrape,
  sumOf,
} from "./scale-probe.ts";
import type { VmTracker } from "./scale-watch.ts";
import { progress, STACK } from "./stack.ts";
import { inPool, type Summary, summarize } from "./stats.ts";

export const CONTROLLER_QUEUE = "virtualmachine-cluster";
export const AGENT_QUEUE = "virtualmachine-node";
/** RSS is sampled every tick, the daemons' /metrics (queue depths) every SCRAPE_TICKS. */
const TICK_MS = 1000;
/**
 * Every 3 s: the controller's /metrics carries a series per VM, built at each scrape; scraped
 * every second it took ~5 % of the controller's CPU at 1000 VMs (a Prometheus scrapes every 15–30 s).
 */
const SCRAPE_TICKS = 3;
const STALL_MS = Number(process.env.BENCH_SCALE_STALL_SECONDS ?? 180) * 1000;

export interface RoundContext {
  kc: KubeConfig;
  api: CustomObjectsApi;
  tracker: VmTracker;
  namespace: string;
  nodes: readonly TestNode[];
  spec: Record<string, unknown>;
  concurrency: number;
  timeoutMs: number;
  /** Run with all N VMs Running, before they are deleted (BENCH_HEAP_SNAPSHOT's snapshots). */
  whileRunning?: (n: number) => Promise<void>;
}

interface Snapshot {
  libvirtLost: number;
  machineBusy: number;
  bench: number;
  controller: Sample[];
  agents: Sample[][];
  writes: Record<string, number>;
  /** Every request, by "VERB resource". */
  requests: Record<string, number>;
}

export interface QueueFigures {
  reconciles: number;
  perVm: number;
  errors: number;
  duration: ReturnType<typeof durationFigures>;
  queueWait: ReturnType<typeof durationFigures>;
}

export interface ProcessUse {
  cpuSeconds: number;
  rssMiB: number;
  maxRssMiB: number;
  /** New processes during the phase (a supervisor restarting it), and whether one ran at the end. */
  restarts: number;
  running: boolean;
}

export interface PhaseFigures {
  vms: number;
  done: number;
  /** First request to the last VM Running (or gone); to the timeout when not all made it. */
  seconds: number;
  latencyMs: Summary;
  /** printableStatus counts of the VMs that never made it. */
  notDone?: Record<string, number>;
  processes: {
    controller: ProcessUse;
    apiserver: ProcessUse;
    etcd: ProcessUse;
    /** The host's libvirtd (every test-driver hypervisor lives in it) and the stack's controller manager. */
    libvirtd?: ProcessUse;
    controllerManager?: ProcessUse;
    agents: Record<string, ProcessUse>;
  };
  agentsTotal: { cpuSeconds: number; maxRssMiB: number };
  apiWrites: { total: number; perVm: number; events: number; byResource: Record<string, number> };
  /** libvirt calls the agents made in the phase, by procedure (libvirt_operator_libvirt_calls_total). */
  libvirtCalls?: Record<string, number>;
  /** Every request the API server served in the phase (the bench's own too), by "VERB resource". */
  apiRequests: Record<string, number>;
  controllerQueue: QueueFigures;
  agentQueues: QueueFigures;
  /** [seconds since the phase began, keys waiting]. */
  depth: { controller: Array<[number, number]>; agents: Array<[number, number]> };
  /**
   * [seconds since the phase began, longest event-loop stall in ms since the previous scrape]
   * (prom-client's default metrics; the agents': the largest of them).
   */
  eventLoopLagMs: { controller: Array<[number, number]>; agents: Array<[number, number]> };
  /** The machine's 1-minute load average at the end (other work on it shows here). */
  loadAverage: number;
  /** CPU seconds the machine was busy, and how many of them this benchmark's processes used. */
  machineCpu: { busySeconds: number; oursSeconds: number };
  /**
   * Times an agent lost its libvirt connection: libvirtd is the host's, shared with whatever
   * else runs there, and a restart of it empties every test-driver hypervisor.
   */
  libvirtReconnects: number;
}

export interface RoundFigures {
  vms: number;
  /** When the round began (ms since the epoch). */
  startedAt: number;
  /** VMs per test node once all were placed: fewest and most. */
  perNode: { min: number; max: number };
  create: PhaseFigures;
  delete: PhaseFigures;
}

const pidOf = (daemon: string) =>
  daemon === "libvirtd" ? libvirtdPid() : runningPid(STACK.stateDir, daemon);
/** The longest event-loop stall since the previous scrape (prom-client resets it on each). */
const lagMs = (samples: Sample[]) =>
  Math.round(sumOf(samples, "libvirt_operator_nodejs_eventloop_lag_max_seconds") * 1000);

/** The agents' libvirt calls so far, summed by procedure. */
function libvirtCallsOf(agents: readonly Sample[][]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of agents.flat())
    if (s.name === "libvirt_operator_libvirt_calls_total") {
      const procedure = s.labels.procedure ?? "?";
      out[procedure] = (out[procedure] ?? 0) + s.value;
    }
  return out;
}

function daemonsOf(nodes: readonly TestNode[]): Record<string, string> {
  return {
    controller: "controller",
    apiserver: "kube-apiserver",
    etcd: "etcd",
    libvirtd: "libvirtd",
    controllerManager: "kube-controller-manager",
    ...Object.fromEntries(nodes.map((n) => [n.nodeName, `agent-${n.nodeName}`])),
  };
}

async function snapshot(nodes: readonly TestNode[]): Promise<Snapshot> {
  const [controller, agents, writes, requests] = await Promise.all([
    scrape(STACK.ports.controllerMetrics),
    Promise.all(nodes.map((n) => scrape(n.metricsPort))),
    apiWriteRequests(STACK),
    apiRequests(STACK),
  ]);
  const { user, system } = process.cpuUsage();
  const lost = await Promise.all(
    nodes.map((n) => agentLogEntries(n, "libvirt connection lost; reconnecting")),
  );
  return {
    libvirtLost: sum(lost.map((l) => l.length)),
    machineBusy: machineBusySeconds(),
    bench: (user + system) / 1e6,
    controller,
    agents,
    writes,
    requests,
  };
}

/** What a counter grew by; a process that restarted counts from zero (its new value). */
const grewBy = (after: number, before: number) => (after >= before ? after - before : after);

/** A queue's figures between two scrapes; NaNs when a daemon did not answer at the end. */
function queueFigures(after: Sample[][], before: Sample[][], queue: string, vms: number): QueueFigures {
  const labels = { controller: queue };
  const total = (s: Sample[][], name: string) =>
    after.some((one) => one.length === 0)
      ? Number.NaN
      : s.reduce((n, one) => n + sumOf(one, name, labels), 0);
  const hist = (s: Sample[][], name: string) => {
    const all = s.flatMap((one) => one.filter((x) => x.name.startsWith(name)));
    return histogramOf(all, name, labels);
  };
  const grown = (name: string) => durationFigures(histogramGrowth(hist(after, name), hist(before, name)));
  const grew = (name: string) => grewBy(total(after, name), total(before, name));
  const reconciles = grew("libvirt_operator_reconcile_total");
  return {
    reconciles,
    perVm: reconciles / vms,
    errors: grew("libvirt_operator_reconcile_errors_total"),
    duration: grown("libvirt_operator_reconcile_duration_seconds"),
    queueWait: grown("libvirt_operator_workqueue_queue_duration_seconds"),
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * Runs ACT (the requests of one phase, noting in SENT_AT when each VM's went out), sampling all
 * the while, until DONE_AT (filled by the watch) holds every name or the timeout. The figures
 * compare the daemons' metrics, /proc and the API server's write counters at both ends.
 */
async function phase(
  ctx: RoundContext,
  label: string,
  names: readonly string[],
  act: (sentAt: Map<string, number>) => Promise<void>,
  doneAt: ReadonlyMap<string, number>,
): Promise<PhaseFigures> {
  const sentAt = new Map<string, number>();
  const finished = () => names.filter((x) => doneAt.has(x));
  const done = () => finished().length;
  const daemons = daemonsOf(ctx.nodes);
  const before = await snapshot(ctx.nodes);
  const uses = Object.fromEntries(
    Object.entries(daemons).map(([k, daemon]) => [k, new DaemonUse(() => pidOf(daemon))]),
  );
  const depth: PhaseFigures["depth"] = { controller: [], agents: [] };
  const eventLoopLagMs: PhaseFigures["eventLoopLagMs"] = { controller: [], agents: [] };
  const started = performance.now();
  let ticks = 0;
  const sampling = setInterval(() => {
    const at = Math.round((performance.now() - started) / 1000);
    for (const use of Object.values(uses)) use.sample();
    const tick = ticks++;
    void (async () => {
      if (tick % SCRAPE_TICKS !== 0) return;
      const [controllerSamples, agents] = await Promise.all([
        scrape(STACK.ports.controllerMetrics),
        Promise.all(ctx.nodes.map((n) => scrape(n.metricsPort))),
      ]);
      const controller = sumOf(controllerSamples, "libvirt_operator_workqueue_depth", {
        controller: CONTROLLER_QUEUE,
      });
      const waiting = sum(
        agents.map((s) => sumOf(s, "libvirt_operator_workqueue_depth", { controller: AGENT_QUEUE })),
      );
      depth.controller.push([at, controller]);
      depth.agents.push([at, waiting]);
      if (controllerSamples.length) eventLoopLagMs.controller.push([at, lagMs(controllerSamples)]);
      eventLoopLagMs.agents.push([at, Math.max(0, ...agents.filter((a) => a.length).map(lagMs))]);
      if (tick % (SCRAPE_TICKS * 2) === 0)
        progress(
          `${label}: ${done()}/${names.length} after ${at} s; queue depth controller ${controller}, ` +
            `agents ${waiting}; controller RSS ${uses.controller?.rssMiB.toFixed(0)} MiB`,
        );
    })().catch(() => undefined);
  }, TICK_MS);
  let ended = started;
  try {
    const acting = act(sentAt);
    const deadline = started + ctx.timeoutMs;
    // No VM got further for STALL_MS: the rest will not either (the figures say which states they are in).
    let progressAt = performance.now();
    let count = 0;
    while (
      done() < names.length &&
      performance.now() < deadline &&
      performance.now() - progressAt < STALL_MS
    ) {
      await new Promise((r) => setTimeout(r, 100));
      if (done() > count) {
        count = done();
        progressAt = performance.now();
      }
    }
    // All made it: the last one's moment; otherwise the timeout.
    ended = done() === names.length ? Math.max(...names.map((x) => doneAt.get(x)!)) : performance.now();
    await acting;
  } finally {
    clearInterval(sampling);
  }
  const after = await snapshot(ctx.nodes);
  for (const u of Object.values(uses)) u.sample();
  const use = (k: string): ProcessUse => {
    const u = uses[k]!;
    return {
      cpuSeconds: u.cpuSeconds,
      rssMiB: u.rssMiB,
      maxRssMiB: u.maxRssMiB,
      restarts: u.restarts,
      running: u.running,
    };
  };
  const agents = Object.fromEntries(ctx.nodes.map((n) => [n.nodeName, use(n.nodeName)]));
  const byResource: Record<string, number> = {};
  for (const [k, n] of Object.entries(after.writes)) {
    const grew = n - (before.writes[k] ?? 0);
    if (grew) byResource[k] = grew;
  }
  const count = done();
  const vmWrites = (byResource.virtualmachines ?? 0) + (byResource["virtualmachines/status"] ?? 0);
  return {
    vms: names.length,
    done: count,
    seconds: (ended - started) / 1000,
    latencyMs: summarize(finished().map((x) => doneAt.get(x)! - sentAt.get(x)!)),
    ...(count < names.length ? { notDone: ctx.tracker.statusCounts(names) } : {}),
    processes: {
      controller: use("controller"),
      apiserver: use("apiserver"),
      etcd: use("etcd"),
      libvirtd: use("libvirtd"),
      controllerManager: use("controllerManager"),
      agents,
    },
    agentsTotal: {
      cpuSeconds: sum(Object.values(agents).map((a) => a.cpuSeconds)),
      maxRssMiB: Math.max(...Object.values(agents).map((a) => a.maxRssMiB)),
    },
    // The user's own requests (one create or delete per VM) are not the operator's.
    apiWrites: {
      total: sum(Object.values(byResource)) - names.length,
      perVm: (vmWrites - names.length) / names.length,
      events: byResource.events ?? 0,
      byResource,
    },
    apiRequests: requestsGrew(before.requests, after.requests),
    libvirtCalls: requestsGrew(libvirtCallsOf(before.agents), libvirtCallsOf(after.agents)),
    controllerQueue: queueFigures([after.controller], [before.controller], CONTROLLER_QUEUE, names.length),
    agentQueues: queueFigures(after.agents, before.agents, AGENT_QUEUE, names.length),
    depth,
    eventLoopLagMs,
    loadAverage: Number(loadavg()[0]!.toFixed(2)),
    machineCpu: {
      busySeconds: after.machineBusy - before.machineBusy,
      oursSeconds: sum(Object.values(uses).map((u) => u.cpuSeconds)) + after.bench - before.bench,
    },
    libvirtReconnects: after.libvirtLost - before.libvirtLost,
  };
}

/** N VMs named PREFIX-0000 …: created until all Running, then deleted until all gone. */
export async function operatorRound(ctx: RoundContext, prefix: string, n: number): Promise<RoundFigures> {
  const startedAt = Date.now();
  const names = Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);
  const where = { group: GROUP, version: VERSION, namespace: ctx.namespace, plural: "virtualmachines" };
  const { tracker } = ctx;
  tracker.reset();
  const create = await phase(
    ctx,
    `create ${n}`,
    names,
    (sentAt) =>
      inPool(names, ctx.concurrency, async (name) => {
        sentAt.set(name, performance.now());
        await ctx.api.createNamespacedCustomObject({
          ...where,
          body: { apiVersion: API_VERSION, kind: "VirtualMachine", metadata: { name }, spec: ctx.spec },
        });
      }),
    tracker.runningAt,
  );
  const placed = new Map(ctx.nodes.map((node) => [node.nodeName, 0]));
  for (const name of names) {
    const node = tracker.nodeOf.get(name);
    if (node !== undefined) placed.set(node, (placed.get(node) ?? 0) + 1);
  }
  await ctx.whileRunning?.(n);
  const del = await phase(
    ctx,
    `delete ${n}`,
    names,
    (sentAt) =>
      inPool(names, ctx.concurrency, async (name) => {
        sentAt.set(name, performance.now());
        await ctx.api.deleteNamespacedCustomObject({ ...where, name }).catch(() => undefined);
      }),
    tracker.goneAt,
  );
  return {
    vms: n,
    startedAt,
    perNode: { min: Math.min(...placed.values()), max: Math.max(...placed.values()) },
    create,
    delete: del,
  };
}
