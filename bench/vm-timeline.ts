// Where one VM's create → Running goes, for make bench (bench/vm.ts): marks on one wall clock
// (ms since the epoch) from the bench's own watch and from the controller's and agent's pino
// logs, turned into phases. Pure apart from reading a log file from an offset.
import { readFileSync, statSync } from "node:fs";
import { type Summary, summarize, table } from "./stats.ts";

/** A wall-clock time in ms with sub-ms precision (pino logs have ms; the bench's marks more). */
export const wallNow = () => performance.timeOrigin + performance.now();

/** What the bench saw of one VM, each the first time (wall ms). */
export interface VmMarks {
  /** The create POST was sent / answered. */
  posted: number;
  created?: number;
  /** The bench's watch saw the node label (the controller's metadata patch). */
  labelled?: number;
  /** The bench's watch saw the placement (the same metadata write as the label: vm-placement.ts). */
  placed?: number;
  /** The agent logged "domain defined" / "domain started" (after libvirt's start returned). */
  defined?: number;
  started?: number;
  /** The bench's watch saw printableStatus Running (the agent's report). */
  running?: number;
}

/** The phases of MARKS, in order; each from the previous mark. */
export const PHASES = [
  ["api create", "posted", "created"],
  ["→ label seen", "created", "labelled"],
  ["→ placement seen", "labelled", "placed"],
  ["→ agent defined", "placed", "defined"],
  ["→ libvirt started", "defined", "started"],
  ["→ Running seen", "started", "running"],
] as const satisfies ReadonlyArray<readonly [string, keyof VmMarks, keyof VmMarks]>;

/** Each phase's duration (ms), NaN where a mark is missing. */
export function phasesOf(m: VmMarks): number[] {
  return PHASES.map(([, from, to]) => (m[to] ?? Number.NaN) - (m[from] ?? Number.NaN));
}

/** Log messages that mark a VM's progress, by the mark they set. */
export const LOG_MARKS: Readonly<Record<string, "defined" | "started">> = {
  "domain defined": "defined",
  "domain started": "started",
};

/**
 * The first time each VM of NAMESPACE was logged with one of LOG_MARKS' messages, from pino
 * JSON lines TEXT (lines that are not JSON are skipped): name → mark → wall ms.
 */
export function logMarks(text: string, namespace: string): Map<string, Partial<VmMarks>> {
  const out = new Map<string, Partial<VmMarks>>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let rec: { time?: string; namespace?: string; name?: string; msg?: string };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const mark = rec.msg ? LOG_MARKS[rec.msg] : undefined;
    if (!mark || rec.namespace !== namespace || !rec.name || !rec.time) continue;
    const marks = out.get(rec.name) ?? {};
    marks[mark] ??= Date.parse(rec.time);
    out.set(rec.name, marks);
  }
  return out;
}

/**
 * What is ours in create → Running seen: every phase but the agent's libvirt define → start,
 * the part raw libvirt pays too. Far steadier than a difference of two noisy totals.
 */
export const ownMs = (m: VmMarks): number =>
  (m.running ?? Number.NaN) - m.posted - ((m.started ?? Number.NaN) - (m.defined ?? Number.NaN));

/** Raw libvirt's marks of one domain, ms from its define call: the start call returned; libvirt's Started event came. */
export interface RawMarks {
  returned: number;
  event: number;
}

/** A summary as table cells: count, p50, p95, max. */
export const figures = (s: Summary): number[] => [s.count, s.p50, s.p95, s.max];

/** OURS minus RAW at p50, p95 and max (ms), and the ratios. */
export function overhead(ours: Summary, raw: Summary): string {
  const d = (a: number, b: number) => `${a - b >= 0 ? "+" : ""}${(a - b).toFixed(0)}`;
  return (
    `p50 ${d(ours.p50, raw.p50)} ms, p95 ${d(ours.p95, raw.p95)} ms, max ${d(ours.max, raw.max)} ms ` +
    `(ratio p50 ${(ours.p50 / raw.p50).toFixed(2)}x, p95 ${(ours.p95 / raw.p95).toFixed(2)}x)`
  );
}

/** One row per run: each phase, the two operator totals, raw define+start, and the overhead. */
export function breakdownTable(ours: readonly VmMarks[], raw: readonly RawMarks[]): string {
  const rows = ours.map((m, i) => {
    const started = (m.started ?? Number.NaN) - m.posted;
    const rawMs = raw[i]?.returned ?? Number.NaN;
    return [
      String(i),
      ...phasesOf(m),
      started,
      (m.running ?? Number.NaN) - m.posted,
      ownMs(m),
      rawMs,
      started - rawMs,
    ];
  });
  const columns = rows[0]?.length ?? 0;
  const at = (p: "p50" | "p95") => [
    p,
    ...Array.from({ length: columns - 1 }, (_, c) => summarize(rows.map((r) => Number(r[c + 1])))[p]),
  ];
  return table(
    ["run", ...PHASES.map(([name]) => name), "= started", "Running seen", "ours", "raw", "overhead"],
    [...rows, at("p50"), at("p95")],
  );
}

/** Each phase's p50 and p95 over MARKS (a burst: where its VMs waited). */
export function phaseSummary(marks: readonly VmMarks[]): string {
  const phases = marks.map(phasesOf);
  return table(
    ["phase", "p50", "p95"],
    PHASES.map(([name], i) => {
      const s = summarize(phases.map((p) => p[i]!));
      return [name, s.p50, s.p95];
    }),
  );
}

/** A log file read on from where the last read stopped: only what a run wrote. */
export class LogTail {
  private offset: number;
  private readonly path: string;

  constructor(path: string) {
    this.path = path;
    this.offset = sizeOf(path);
  }

  read(): string {
    const text = readFileSync(this.path).subarray(this.offset);
    this.offset += text.length;
    return text.toString("utf8");
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
