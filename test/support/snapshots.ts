// Snapshot tests' view of a namespace: the counting test guest's console (lvo.counter), and
// taking snapshots and restores the way a tenant does, waiting for their outcome.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { VMRestore, VMSnapshot } from "../../src/api/vmsnapshot.ts";
import {
  type CounterReading,
  consoleText,
  counterBoots,
  counterReadings,
  type Guest,
  guestVmSpec,
  POWEROFF,
} from "./guest.ts";
import {
  applyObject,
  applyVm,
  consoleLogOf,
  getObject,
  isPrintable,
  waitForObject,
  waitForVm,
} from "./operator.ts";

export const finished = (r: { status?: { phase?: string } } | undefined) =>
  r?.status?.phase === "Succeeded" || r?.status?.phase === "Failed";

export function snapshotTools(ns: string, guest: () => Guest) {
  /**
   * VM's console from character FROM on; with AFTER_STOP, only what follows the guest's power-off
   * after FROM (a restore stops the guest gracefully: what comes after is the restored guest).
   */
  const consoleFrom = (vm: string, from: number, afterStop: boolean): string => {
    const text = consoleText(consoleLogOf(ns, vm)).slice(from);
    if (!afterStop) return text;
    const stop = text.indexOf(POWEROFF);
    return stop < 0 ? "" : text.slice(stop + POWEROFF.length);
  };
  const ticks = (vm: string, from = 0, afterStop = false): CounterReading[] =>
    counterReadings(consoleFrom(vm, from, afterStop));
  const boots = (vm: string, from = 0, afterStop = false): number[] =>
    counterBoots(consoleFrom(vm, from, afterStop));
  const lastTick = (vm: string) => ticks(vm).at(-1)?.n ?? -1;
  const consoleLength = (vm: string) => consoleText(consoleLogOf(ns, vm)).length;

  async function waitForTick(vm: string, atLeast: number, from = 0, timeoutMs = 60_000, afterStop = false) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const t = ticks(vm, from, afterStop).at(-1);
      if (t && t.n >= atLeast) return t;
      await sleep(200);
    }
    throw new Error(
      `${vm}: the counter never reached ${atLeast}: ${consoleText(consoleLogOf(ns, vm)).slice(-1500)}`,
    );
  }

  const snapshotOf = (name: string) => getObject<VMSnapshot>("vmsnapshot", ns, name);
  const waitForSnapshot = (
    name: string,
    check: (s: VMSnapshot | undefined) => boolean,
    what: string,
    ms = 120_000,
  ) => waitForObject<VMSnapshot>("vmsnapshot", ns, name, check, what, ms);
  const waitForRestore = (
    name: string,
    check: (r: VMRestore | undefined) => boolean,
    what: string,
    ms = 240_000,
  ) => waitForObject<VMRestore>("vmrestore", ns, name, check, what, ms);

  /** Takes snapshot NAME of VM; returns it and the counter range it must hold. */
  async function snapshotNow(vm: string, name: string, spec: Record<string, unknown> = {}) {
    const low = lastTick(vm);
    await applyObject("VMSnapshot", ns, name, { vmName: vm, ...spec });
    const snap = await waitForSnapshot(name, finished, "taken");
    assert.equal(snap?.status?.phase, "Succeeded", JSON.stringify(snap?.status));
    return { snap: snap!, low, high: lastTick(vm) + 1 };
  }

  /** Restores VM to SNAPSHOT and waits for the outcome; FROM is where the console stood before. */
  async function restoreNow(vm: string, name: string, snapshot: string) {
    const from = consoleLength(vm);
    await applyObject("VMRestore", ns, name, { vmName: vm, snapshotName: snapshot });
    const r = await waitForRestore(name, finished, "finished");
    assert.equal(r?.status?.phase, "Succeeded", JSON.stringify(r?.status));
    return { restore: r!, from };
  }

  /** A running guest counting on a FORMAT disk (its own VMDisk <vm>-counter); returns once it counts. */
  async function countingVm(vm: string, format: "qcow2" | "raw", extra: Record<string, unknown> = {}) {
    rmSync(consoleLogOf(ns, vm), { force: true }); // an earlier run's console is appended to
    await applyObject("VMDisk", ns, `${vm}-counter`, { provisionedSize: "16Mi", format });
    const g = guest();
    await applyVm(
      ns,
      vm,
      guestVmSpec(g, {
        memory: "128Mi",
        boot: { kernel: g.kernel, initrd: g.initrd, cmdline: "console=ttyS0 panic=-1 lvo.counter=vda" },
        disks: [{ name: "counter", diskRef: { name: `${vm}-counter` } }],
        ...extra,
      }),
    );
    await waitForVm(ns, vm, isPrintable("Running"), "Running", 180_000);
    await waitForTick(vm, 3, 0, 120_000);
  }

  return {
    ticks,
    boots,
    lastTick,
    consoleLength,
    waitForTick,
    snapshotOf,
    waitForSnapshot,
    waitForRestore,
    snapshotNow,
    restoreNow,
    countingVm,
  };
}
