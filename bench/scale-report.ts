// How make bench-scale prints what it measured: the rounds side by side, the baseline and the
// ratios, the issue's targets, the work-queue depth as a short series. Pure.
import type { PartFigures } from "./scale-baseline.ts";
import type { PhaseFigures, QueueFigures, RoundFigures } from "./scale-round.ts";
import { table } from "./stats.ts";

export interface Baseline {
  vms: number;
  api: { create: PartFigures; delete: PartFigures };
  /** The API part with the operator's own requests added (scale-baseline.ts bareApiRun FLOOR). */
  floor?: { create: PartFigures; delete: PartFigures };
  libvirt: { create: PartFigures; delete: PartFigures };
}

/** At most POINTS values (the largest of each stretch of time), e.g. "every 4 s: 0 12 40 3 0". */
export function compactSeries(series: ReadonlyArray<[number, number]>, points = 30): string {
  if (!series.length) return "-";
  const last = series.at(-1)![0];
  const step = Math.max(1, Math.ceil((last + 1) / points));
  const buckets: number[] = [];
  for (const [at, value] of series) {
    const i = Math.floor(at / step);
    buckets[i] = Math.max(buckets[i] ?? 0, value);
  }
  const peak = series.reduce((best, s) => (s[1] > best[1] ? s : best), series[0]!);
  const values = Array.from(buckets, (v) => (v === undefined ? "." : String(v))).join(" ");
  return `every ${step} s: ${values}  (max ${peak[1]} at ${peak[0]} s)`;
}

const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : "-");
const mib = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
const secs = (n: number) => (Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : "-");

function queueRows(what: string, q: (p: PhaseFigures) => QueueFigures, phases: PhaseFigures[]) {
  return [
    [`${what} reconciles per VM`, ...phases.map((p) => q(p).perVm.toFixed(1))],
    [`${what} reconcile p50 / p99 / mean ms`, ...phases.map((p) => durations(q(p).duration))],
    [`${what} queue wait p50 / p99 / mean ms`, ...phases.map((p) => durations(q(p).queueWait))],
    [`${what} reconcile errors`, ...phases.map((p) => q(p).errors)],
  ];
}

/** p50 / p99 / mean; a quantile at the top bucket bound is only known to be at least that. */
function durations(d: QueueFigures["duration"]): string {
  const q = (v: number) => (v >= d.topBoundMs ? `≥${ms(v)}` : ms(v));
  return `${q(d.p50Ms)} / ${q(d.p99Ms)} / ${ms(d.meanMs)}`;
}

/** The controller's CPU time over its VM reconciles (watch handling and scrapes included). */
const cpuPerReconcileMs = (p: PhaseFigures) =>
  (p.processes.controller.cpuSeconds * 1000) / p.controllerQueue.reconciles;
/** The agents' CPU time over their VM reconciles (heartbeats, statistics and scrapes included). */
const agentCpuPerReconcileMs = (p: PhaseFigures) =>
  (p.agentsTotal.cpuSeconds * 1000) / p.agentQueues.reconciles;

/** One table per phase (create, delete): a column per round. */
export function roundsTable(rounds: readonly RoundFigures[], phase: "create" | "delete"): string {
  const phases = rounds.map((r) => r[phase]);
  const verb = phase === "create" ? "Running" : "gone";
  const rows: (string | number)[][] = [
    [`VMs ${verb} / asked`, ...phases.map((p) => `${p.done} / ${p.vms}`)],
    [`all ${verb}, s`, ...phases.map((p) => secs(p.seconds))],
    [
      `per VM p50 / p99 / max ms`,
      ...phases.map((p) => `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)} / ${ms(p.latencyMs.max)}`),
    ],
    ...(phase === "create"
      ? [["VMs per node min / max", ...rounds.map((r) => `${r.perNode.min} / ${r.perNode.max}`)]]
      : []),
    [
      "controller restarts (running at the end)",
      ...phases.map(
        (p) => `${p.processes.controller.restarts} (${p.processes.controller.running ? "yes" : "NO"})`,
      ),
    ],
    ["controller CPU s", ...phases.map((p) => secs(p.processes.controller.cpuSeconds))],
    ["controller CPU ms per reconcile", ...phases.map((p) => ms(cpuPerReconcileMs(p)))],
    [
      "controller RSS end / max MiB",
      ...phases.map(
        (p) => `${mib(p.processes.controller.rssMiB)} / ${mib(p.processes.controller.maxRssMiB)}`,
      ),
    ],
    ["agents CPU s (all)", ...phases.map((p) => secs(p.agentsTotal.cpuSeconds))],
    ["agents CPU ms per reconcile", ...phases.map((p) => ms(agentCpuPerReconcileMs(p)))],
    ["agent RSS max MiB (largest)", ...phases.map((p) => mib(p.agentsTotal.maxRssMiB))],
    ["kube-apiserver CPU s", ...phases.map((p) => secs(p.processes.apiserver.cpuSeconds))],
    ["etcd CPU s", ...phases.map((p) => secs(p.processes.etcd.cpuSeconds))],
    ["libvirtd CPU s", ...phases.map((p) => secs(p.processes.libvirtd?.cpuSeconds ?? Number.NaN))],
    [
      "kube-controller-manager CPU s",
      ...phases.map((p) => secs(p.processes.controllerManager?.cpuSeconds ?? Number.NaN)),
    ],
    ["API writes per VM (VM + status)", ...phases.map((p) => p.apiWrites.perVm.toFixed(2))],
    ["API writes, all (Events, Leases …)", ...phases.map((p) => p.apiWrites.total)],
    ["Events written", ...phases.map((p) => p.apiWrites.events)],
    ...queueRows("controller", (p) => p.controllerQueue, phases),
    ...queueRows("agents", (p) => p.agentQueues, phases),
    ["controller queue depth max", ...phases.map((p) => Math.max(0, ...p.depth.controller.map((d) => d[1])))],
    [
      "controller event-loop stall max ms",
      ...phases.map((p) => Math.max(0, ...p.eventLoopLagMs.controller.map((d) => d[1]))),
    ],
    [
      "agents event-loop stall max ms",
      ...phases.map((p) => Math.max(0, ...p.eventLoopLagMs.agents.map((d) => d[1]))),
    ],
    ["agents queue depth max (all)", ...phases.map((p) => Math.max(0, ...p.depth.agents.map((d) => d[1])))],
    ["machine load average at the end", ...phases.map((p) => p.loadAverage)],
    [
      "machine CPU busy s (of which this benchmark)",
      ...phases.map((p) => `${secs(p.machineCpu.busySeconds)} (${secs(p.machineCpu.oursSeconds)})`),
    ],
  ];
  return table([phase, ...rounds.map((r) => `${r.vms} VMs`)], rows);
}

export function baselineTable(b: Baseline): string {
  const cpu = (n: number | undefined) => secs(n ?? Number.NaN);
  const row = (what: string, p: PartFigures, daemons: "api" | "libvirt") => [
    what,
    secs(p.seconds),
    p.latencyMs.p50,
    p.latencyMs.p99,
    daemons === "api"
      ? `${cpu(p.apiServerCpuSeconds)} / ${cpu(p.etcdCpuSeconds)}`
      : `libvirtd ${cpu(p.libvirtdCpuSeconds)}`,
  ];
  return table(
    ["baseline part", "all, s", "each p50 ms", "each p99 ms", "kube-apiserver / etcd CPU s"],
    [
      row(`API: create + status apply, ${b.vms} VMs`, b.api.create, "api"),
      ...(b.floor ? [row("  floor: + placement write + 2 Events", b.floor.create, "api")] : []),
      row("raw libvirt: define + start", b.libvirt.create, "libvirt"),
      row(`API: delete, ${b.vms} VMs`, b.api.delete, "api"),
      ...(b.floor ? [row("  floor: + finalizer removal", b.floor.delete, "api")] : []),
      row("raw libvirt: destroy + undefine", b.libvirt.delete, "libvirt"),
    ],
  );
}

/** An API part then the libvirt part of the baseline, in seconds. */
function baselineSeconds(b: Baseline, phase: "create" | "delete", api = b.api): number {
  return api[phase].seconds + b.libvirt[phase].seconds;
}

/** The operator's wall time over the baseline's (its API part then its libvirt part). */
export function ratios(round: RoundFigures, b: Baseline): { create: number; delete: number } {
  return {
    create: round.create.seconds / baselineSeconds(b, "create"),
    delete: round.delete.seconds / baselineSeconds(b, "delete"),
  };
}

/**
 * The floor (the operator's requests from a bare client, plus raw libvirt) over the baseline:
 * the best ratio any operator sending those requests could reach here; and the operator over
 * the floor: what its own daemons cost.
 */
export function floorLines(round: RoundFigures, b: Baseline): string[] {
  const { floor: api } = b;
  if (!api) return [];
  return (["create", "delete"] as const).map((phase) => {
    const floor = baselineSeconds(b, phase, api);
    return (
      `${phase}: floor ${secs(floor)} s = ×${(floor / baselineSeconds(b, phase)).toFixed(2)} of the baseline; ` +
      `operator ${secs(round[phase].seconds)} s = ×${(round[phase].seconds / floor).toFixed(2)} of the floor`
    );
  });
}

/** Daemons that restarted or were gone at the end of a phase, libvirt lost: figures cover less. */
/** The requests the API server served in a phase, most first (where its CPU went), per VM. */
export function requestLine(r: RoundFigures, phase: "create" | "delete", top = 10): string {
  const all = Object.entries(r[phase].apiRequests ?? {}).sort((a, b) => b[1] - a[1]);
  const shown = all.slice(0, top).map(([k, n]) => `${k} ${(n / r.vms).toFixed(2)}`);
  const rest = all.slice(top).reduce((t, [, n]) => t + n, 0);
  return `${r.vms} VMs ${phase}, per VM: ${shown.join(", ")}${rest ? `, others ${(rest / r.vms).toFixed(2)}` : ""}`;
}

/** The libvirt calls the agents made in a phase, most first, per VM. */
export function libvirtCallLine(r: RoundFigures, phase: "create" | "delete", top = 12): string {
  const all = Object.entries(r[phase].libvirtCalls ?? {}).sort((a, b) => b[1] - a[1]);
  const total = all.reduce((t, [, n]) => t + n, 0);
  const shown = all.slice(0, top).map(([k, n]) => `${k} ${(n / r.vms).toFixed(2)}`);
  return `${r.vms} VMs ${phase}, per VM: ${(total / r.vms).toFixed(1)} calls: ${shown.join(", ")}`;
}

export function restartLines(rounds: readonly RoundFigures[]): string[] {
  return rounds.flatMap((r) =>
    (["create", "delete"] as const).flatMap((phase) => {
      const p = r[phase].processes;
      const lost = r[phase].libvirtReconnects;
      const libvirt = lost
        ? [
            `${r.vms} VMs ${phase}: agents lost their libvirt connection ${lost}× (libvirtd restarted: figures disturbed)`,
          ]
        : [];
      return [
        ...libvirt,
        ...Object.entries({
          controller: p.controller,
          "kube-apiserver": p.apiserver,
          etcd: p.etcd,
          ...p.agents,
        })
          .filter(([, u]) => u.restarts > 0 || !u.running)
          .map(
            ([name, u]) =>
              `${r.vms} VMs ${phase}: ${name} ${u.running ? `restarted ${u.restarts}×` : "was gone at the end"}` +
              " (its counters cover only its last process; see its log in .local/bench-stack/logs)",
          ),
      ];
    }),
  );
}

/** The issue's targets, each with what was measured. */
export function targetLines(rounds: readonly RoundFigures[], b: Baseline | undefined): string[] {
  const big = rounds.at(-1)!;
  const small = rounds[0]!;
  const mark = (ok: boolean) => (ok ? "met" : "NOT met");
  const lines: string[] = [];
  // The peak over both phases: a daemon's memory may still grow while the VMs go.
  const ctl = Math.max(big.create.processes.controller.maxRssMiB, big.delete.processes.controller.maxRssMiB);
  lines.push(`controller RSS ≤ 120 MiB at ${big.vms} VMs: ${mib(ctl)} MiB (${mark(ctl <= 120)})`);
  const agent = Math.max(big.create.agentsTotal.maxRssMiB, big.delete.agentsTotal.maxRssMiB);
  lines.push(`per-agent RSS ≤ 100 MiB: largest ${mib(agent)} MiB (${mark(agent <= 100)})`);
  const writes = big.create.apiWrites.perVm;
  lines.push(`API writes per VM create → Running ≤ 2: ${writes.toFixed(2)} (${mark(writes <= 2)})`);
  if (rounds.length > 1) {
    const a = small.create.controllerQueue.duration;
    const z = big.create.controllerQueue.duration;
    lines.push(
      `controller reconcile duration, ${small.vms} → ${big.vms} VMs: p50 ${ms(a.p50Ms)} → ${ms(z.p50Ms)} ms, ` +
        `p99 ${ms(a.p99Ms)} → ${ms(z.p99Ms)} ms, mean ${ms(a.meanMs)} → ${ms(z.meanMs)} ms ` +
        `(×${(z.meanMs / a.meanMs).toFixed(1)} mean for ×${(big.vms / small.vms).toFixed(0)} VMs; independent of fleet size: ${mark(z.meanMs <= a.meanMs * 1.5)})`,
    );
    const ca = cpuPerReconcileMs(small.create);
    const cz = cpuPerReconcileMs(big.create);
    lines.push(
      `controller CPU per reconcile, ${small.vms} → ${big.vms} VMs: ${ms(ca)} → ${ms(cz)} ms (×${(cz / ca).toFixed(1)}; ${mark(cz <= ca * 1.5)})`,
    );
    const aa = agentCpuPerReconcileMs(small.create);
    const az = agentCpuPerReconcileMs(big.create);
    const perNode = (r: RoundFigures) => `${r.perNode.max} VMs per node`;
    lines.push(
      `agents CPU per reconcile, ${perNode(small)} → ${perNode(big)}: ${ms(aa)} → ${ms(az)} ms (×${(az / aa).toFixed(1)}; ${mark(az <= aa * 1.5)})`,
    );
  }
  if (b) {
    const r = ratios(big, b);
    const base = baselineSeconds(b, "create");
    lines.push(
      `all ${big.vms} Running ≤ 1.5× baseline: ${secs(big.create.seconds)} s vs ${secs(base)} s ` +
        `(API ${secs(b.api.create.seconds)} s + libvirt ${secs(b.libvirt.create.seconds)} s) = ×${r.create.toFixed(2)} (${mark(r.create <= 1.5)})`,
    );
    const baseDel = baselineSeconds(b, "delete");
    lines.push(
      `all ${big.vms} gone: ${secs(big.delete.seconds)} s vs ${secs(baseDel)} s ` +
        `(API ${secs(b.api.delete.seconds)} s + libvirt ${secs(b.libvirt.delete.seconds)} s) = ×${r.delete.toFixed(2)}`,
    );
  }
  return lines;
}
