// make bench-scale with BENCH_HEAP_SNAPSHOT=1: the controller and one agent write a V8 heap
// snapshot while all VMs of the largest round are Running (node --heapsnapshot-signal), with
// their RSS just before; the files open in Chrome's DevTools (Memory) or memlab.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runningPid } from "../src/cmd/local/processes.ts";
import { processFigures } from "./scale-probe.ts";
import { progress, STACK } from "./stack.ts";

const SIGNAL = "SIGUSR2";

/** Node's flags that make a process write a snapshot into DIR on SIGNAL. */
export const heapSnapshotArgs = (dir: string) => `--heapsnapshot-signal=${SIGNAL} --diagnostic-dir=${dir}`;

async function snapshotsIn(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith(".heapsnapshot")).map((n) => join(dir, n));
}

/** Waits until PID's new snapshot in DIR stops growing (V8 writes it in one go, but not instantly). */
async function awaitSnapshot(dir: string, pid: number, before: readonly string[]): Promise<string> {
  const deadline = Date.now() + 300_000;
  let lastSize = -1;
  while (Date.now() < deadline) {
    await sleep(2000);
    const file = (await snapshotsIn(dir)).find((f) => !before.includes(f) && f.includes(`.${pid}.`));
    if (!file) continue;
    const { size } = await stat(file);
    if (size > 0 && size === lastSize) return file;
    lastSize = size;
  }
  throw new Error(`no heap snapshot from pid ${pid} in ${dir}`);
}

export interface HeapSnapshotFigures {
  daemon: string;
  vms: number;
  rssMiB: number;
  file: string;
}

/** Each daemon in turn (one snapshot at a time: writing one takes memory and CPU of its own). */
export async function takeHeapSnapshots(
  dir: string,
  daemons: readonly string[],
  vms: number,
): Promise<HeapSnapshotFigures[]> {
  // Let the last writes and their garbage settle first.
  await sleep(15_000);
  const out: HeapSnapshotFigures[] = [];
  for (const daemon of daemons) {
    const pid = runningPid(STACK.stateDir, daemon);
    if (!pid) continue;
    const rssMiB = processFigures(pid).rssMiB;
    const before = await snapshotsIn(dir);
    process.kill(pid, SIGNAL);
    const file = await awaitSnapshot(dir, pid, before);
    progress(`heap snapshot of ${daemon} (RSS ${rssMiB.toFixed(0)} MiB with ${vms} VMs): ${file}`);
    out.push({ daemon, vms, rssMiB, file });
  }
  return out;
}
