// Where a process spent its CPU, from a V8 .cpuprofile (node --cpu-prof): self time per function
// and per file. Pure apart from reading the files; `node bench/cpuprofile.ts FILE…` prints them.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { table } from "./stats.ts";

/** The parts of a .cpuprofile this reads (Chrome DevTools Profiler.Profile). */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
    hitCount?: number;
    children?: number[];
  }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  /** Microseconds since the previous sample, one per sample. */
  timeDeltas?: number[];
}

export interface SelfTime {
  /** function (file:line), or a file, or a V8 pseudo-frame such as (garbage collector). */
  where: string;
  selfMs: number;
  /** Share of the busy time (all sampled time but "(idle)"), percent. */
  percent: number;
}

/** The file a frame's url names, short: relative to the checkout, or node:…, or the package. */
export function shortFile(url: string): string {
  if (!url) return "";
  const path = url.replace(/^file:\/\//, "");
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(path);
  if (pkg) return `${pkg[1]}:${pkg[2]}`;
  const src = /\/((?:src|bench|test)\/.*)$/.exec(path);
  return src ? src[1]! : path;
}

/** Self time per profile node id, in ms: each sample's delta is charged to the node it hit. */
function selfByNode(profile: CpuProfile): Map<number, number> {
  const out = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length && deltas.length === samples.length) {
    // A delta is the time up to its sample; charge it to the sample before (what ran meanwhile).
    for (let i = 0; i < samples.length; i++) {
      const id = samples[Math.max(0, i - 1)]!;
      out.set(id, (out.get(id) ?? 0) + (deltas[i] ?? 0) / 1000);
    }
    return out;
  }
  // No samples: hit counts at the average interval.
  const hits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0);
  const interval = hits ? (profile.endTime - profile.startTime) / 1000 / hits : 0;
  for (const node of profile.nodes) out.set(node.id, (node.hitCount ?? 0) * interval);
  return out;
}

function frameLabel(frame: CpuProfile["nodes"][number]["callFrame"]): string {
  const file = shortFile(frame.url);
  const name = frame.functionName || "(anonymous)";
  return file ? `${name} (${file}:${frame.lineNumber + 1})` : name;
}

const IDLE = "(idle)";

/** Busy self time (idle left out) grouped by KEY of each node's frame, largest first. */
function grouped(profile: CpuProfile, key: (frame: CpuProfile["nodes"][number]["callFrame"]) => string) {
  const self = selfByNode(profile);
  const byKey = new Map<string, number>();
  for (const node of profile.nodes) {
    const ms = self.get(node.id) ?? 0;
    if (!ms || node.callFrame.functionName === IDLE) continue;
    const k = key(node.callFrame);
    byKey.set(k, (byKey.get(k) ?? 0) + ms);
  }
  const busy = [...byKey.values()].reduce((a, b) => a + b, 0);
  return [...byKey]
    .map(([where, selfMs]) => ({ where, selfMs, percent: busy ? (selfMs * 100) / busy : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

/** The TOP functions by self time (the same function at one place, summed over its call paths). */
export function topFunctions(profile: CpuProfile, top = 15): SelfTime[] {
  return grouped(profile, frameLabel).slice(0, top);
}

/** The TOP files by self time; frames without a file (GC, program, idle) keep their own names. */
export function topFiles(profile: CpuProfile, top = 10): SelfTime[] {
  return grouped(profile, (f) => shortFile(f.url) || f.functionName).slice(0, top);
}

/**
 * The TOP functions whose files match FILES by inclusive time: their own and their callees'
 * (synchronous) time, each sample counted once per function however deep it recurses.
 */
export function topInclusive(profile: CpuProfile, files: RegExp, top = 15): SelfTime[] {
  const self = selfByNode(profile);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const [id, ms] of self) {
    if (byId.get(id)?.callFrame.functionName === IDLE) continue;
    busy += ms;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (!files.test(shortFile(frame.url))) continue;
      const label = frameLabel(frame);
      if (seen.has(label)) continue;
      seen.add(label);
      inclusive.set(label, (inclusive.get(label) ?? 0) + ms);
    }
  }
  return [...inclusive]
    .map(([where, selfMs]) => ({ where, selfMs, percent: busy ? (selfMs * 100) / busy : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
}

/** Sampled time in ms, and how much of it was spent busy (not "(idle)"). */
export function profileSpan(profile: CpuProfile): { totalMs: number; busyMs: number } {
  const self = selfByNode(profile);
  let totalMs = 0;
  let idleMs = 0;
  for (const node of profile.nodes) {
    const ms = self.get(node.id) ?? 0;
    totalMs += ms;
    if (node.callFrame.functionName === IDLE) idleMs += ms;
  }
  return { totalMs, busyMs: totalMs - idleMs };
}

/** The .cpuprofile files in DIR, oldest first (node names them CPU.<date>.<time>.<pid>…). */
export async function profilesIn(dir: string): Promise<string[]> {
  const files = await readdir(dir).catch(() => [] as string[]);
  return files
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .map((f) => join(dir, f));
}

/** A profile's hotspots as printable text: span, the top functions and files, ours inclusive. */
export function describeProfile(profile: CpuProfile, top = 15): string {
  const { totalMs, busyMs } = profileSpan(profile);
  const rows = (list: SelfTime[]) => list.map((r) => [r.where, r.selfMs, r.percent]);
  return [
    `sampled ${(totalMs / 1000).toFixed(1)} s, busy ${(busyMs / 1000).toFixed(1)} s`,
    "",
    table(["function (self time)", "ms", "% busy"], rows(topFunctions(profile, top))),
    "",
    table(["file (self time)", "ms", "% busy"], rows(topFiles(profile, 10))),
    "",
    table(
      ["our function (inclusive, synchronous)", "ms", "% busy"],
      rows(topInclusive(profile, /^src\//, top)),
    ),
  ].join("\n");
}

/** When the process began, from node's file name CPU.<yyyymmdd>.<hhmmss>.<pid>… (local time). */
export function profileStartedAt(file: string): Date | undefined {
  const m = /CPU\.(\d{4})(\d{2})(\d{2})\.(\d{2})(\d{2})(\d{2})\.(\d+)\./.exec(file);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  return new Date(y, mo - 1, d, h, mi, se);
}

export async function readProfile(file: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(file, "utf8")) as CpuProfile;
}

if (import.meta.main) {
  for (const file of process.argv.slice(2)) {
    console.log(`\n${file}\n`);
    console.log(describeProfile(await readProfile(file)));
  }
}
