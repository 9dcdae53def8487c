// What make bench-scale reads off the running daemons: Prometheus text of their /metrics
// (counters, gauges, histograms, and quantiles of a histogram's growth between two scrapes) and
// their resident memory and CPU time from /proc. The parsing is pure; the reads are the I/O.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments and blank lines skipped). */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const matches = (s: Sample, labels: Record<string, string>) =>
  Object.entries(labels).every(([k, v]) => s.labels[k] === v);

/** The sum of NAME's series whose labels include LABELS (0 when there are none). */
export function sumOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && matches(s, labels)).reduce((n, s) => n + s.value, 0);
}

/** A histogram summed over the series that match: cumulative counts by upper bound. */
export interface Histogram {
  /** [upper bound, cumulative count], ascending; the last bound is Infinity. */
  buckets: Array<[number, number]>;
  sum: number;
  count: number;
}

export function histogramOf(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): Histogram {
  const byBound = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !matches(s, labels)) continue;
    const le = s.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(s.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + s.value);
  }
  return {
    buckets: [...byBound].sort((a, b) => a[0] - b[0]),
    sum: sumOf(samples, `${name}_sum`, labels),
    count: sumOf(samples, `${name}_count`, labels),
  };
}

/** What was observed between BEFORE and AFTER (a process restarted in between: AFTER alone). */
export function histogramGrowth(after: Histogram, before: Histogram): Histogram {
  if (after.count < before.count) return after;
  const was = new Map(before.buckets);
  return {
    buckets: after.buckets.map(([le, n]) => [le, n - (was.get(le) ?? 0)]),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  };
}

/**
 * The Q-quantile (0…1) as Prometheus's histogram_quantile estimates it: linear within the
 * bucket the rank falls in; in the +Inf bucket, the highest finite bound. NaN when empty.
 */
export function histogramQuantile(h: Histogram, q: number): number {
  const total = h.buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, n] of h.buckets) {
    if (n >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lowerBound;
      return n === lowerCount
        ? le
        : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (n - lowerCount);
    }
    lowerBound = le;
    lowerCount = n;
  }
  return lowerBound;
}

/**
 * A histogram of seconds as milliseconds: count, mean, p50, p99, and the highest finite bucket
 * bound (a quantile at it may lie anywhere above: "≥").
 */
export function durationFigures(h: Histogram): {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  topBoundMs: number;
} {
  const finite = h.buckets.filter(([le]) => Number.isFinite(le));
  return {
    count: h.count,
    meanMs: h.count ? (h.sum / h.count) * 1000 : Number.NaN,
    p50Ms: histogramQuantile(h, 0.5) * 1000,
    p99Ms: histogramQuantile(h, 0.99) * 1000,
    topBoundMs: (finite.at(-1)?.[0] ?? Number.NaN) * 1000,
  };
}

/** The Prometheus text a daemon serves on 127.0.0.1:PORT (empty when it does not answer). */
export async function scrape(port: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) }).catch(
    () => undefined,
  );
  return res?.ok ? parseSamples(await res.text()) : [];
}

export interface ProcessFigures {
  rssMiB: number;
  /** Peak resident memory over the process's life (VmHWM). */
  peakRssMiB: number;
  /** User + system CPU time so far. */
  cpuSeconds: number;
}

let ticksPerSecond: number | undefined;
const clockTicks = () => Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** RSS and CPU time of PID from /proc; NaNs when it is gone. */
export function processFigures(pid: number | undefined): ProcessFigures {
  const gone = { rssMiB: Number.NaN, peakRssMiB: Number.NaN, cpuSeconds: Number.NaN };
  if (!pid) return gone;
  try {
    ticksPerSecond ??= clockTicks();
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) =>
      Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command's closing parenthesis start at field 3 (state); utime and stime are 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(rest[11]) + Number(rest[12]);
    return {
      rssMiB: kib("VmRSS") / 1024,
      peakRssMiB: kib("VmHWM") / 1024,
      cpuSeconds: ticks / ticksPerSecond,
    };
  } catch {
    return gone;
  }
}

/** CPU seconds the whole machine has been busy (all CPUs; /proc/stat less idle and iowait). */
export function machineBusySeconds(): number {
  ticksPerSecond ??= clockTicks();
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - (cpu[3] ?? 0) - (cpu[4] ?? 0)) / ticksPerSecond;
}

/**
 * A daemon's CPU time and RSS over a stretch of time, across restarts: its pid file names the
 * current process, sampled now and then. A process first seen after the start counts from zero;
 * what one did between its last sample and its exit is lost.
 */
export class DaemonUse {
  /** New processes seen after the first (a supervisor's restarts). */
  restarts = 0;
  maxRssMiB = 0;
  private pid: number | undefined;
  private segmentStart = 0;
  private last = 0;
  private closed = 0;
  private readonly pidOf: () => number | undefined;

  constructor(pidOf: () => number | undefined) {
    this.pidOf = pidOf;
    this.pid = pidOf();
    const f = processFigures(this.pid);
    this.segmentStart = this.last = Number.isFinite(f.cpuSeconds) ? f.cpuSeconds : 0;
  }

  sample(): void {
    const pid = this.pidOf();
    const f = processFigures(pid);
    if (pid !== this.pid) {
      this.closed += this.last - this.segmentStart;
      if (pid !== undefined) this.restarts++;
      this.pid = pid;
      this.segmentStart = 0;
      this.last = 0;
    }
    if (Number.isFinite(f.cpuSeconds)) this.last = f.cpuSeconds;
    if (Number.isFinite(f.rssMiB)) this.maxRssMiB = Math.max(this.maxRssMiB, f.rssMiB);
  }

  get running(): boolean {
    return this.pid !== undefined && Number.isFinite(processFigures(this.pid).rssMiB);
  }

  get cpuSeconds(): number {
    return this.closed + this.last - this.segmentStart;
  }

  get rssMiB(): number {
    return processFigures(this.pid).rssMiB;
  }
}

/** libvirtd writes its own pid file (the stack leaves one that answered already alone). */
const LIBVIRTD_PID_FILE = "/run/libvirtd.pid";

/** The host's libvirtd: every test-driver hypervisor lives in it. */
export function libvirtdPid(): number | undefined {
  const pid = Number(
    existsSync(LIBVIRTD_PID_FILE) ? readFileSync(LIBVIRTD_PID_FILE, "utf8").trim() : Number.NaN,
  );
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}
