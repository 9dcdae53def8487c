// Snapshots and restores against real TCG guests, as a tenant would use them. The guest keeps a
// counter on its disk and prints it every second (lvo.counter), so a restore shows on the
// console: a disk restore boots with the counter of the snapshot (COUNTER-BOOT), a memory
// restore goes on counting from the snapshot's value with its uptime gone back and no boot at
// all. A plain restart would show neither, so each test fails if the restore were one.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { AGENT_STARTED, ensureGuest, type Guest, guestVmSpec, waitForConsole } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  consoleLogOf,
  getObject,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { finished, snapshotTools } from "../support/snapshots.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let t: ReturnType<typeof snapshotTools>;

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("snapshot-e2e");
  t = snapshotTools(ns, () => guest);
  await startTestOperator();
  await actAsTenant(ns);
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

/** Disk-only and memory snapshots of a running VM, each restored; every check fails for a plain restart. */
async function roundTrip(vm: string, format: "qcow2" | "raw", method: string) {
  await t.countingVm(vm, format);
  const disk = await t.snapshotNow(vm, `${vm}-disk`);
  assert.equal(disk.snap.status?.method, method);
  assert.deepEqual(disk.snap.status?.indications, ["Online"]);
  assert.ok((disk.snap.status?.storedBytes ?? 0) >= 0);
  assert.deepEqual(
    disk.snap.status?.disks?.map((d) => [d.name, d.vmDisk]),
    [["counter", `${vm}-counter`]],
  );
  if (method === "VolumeCopy") {
    // The copy beside the volume holds the counter as it was.
    const copy = disk.snap.status?.disks?.[0]?.volume ?? "";
    const path = (await virsh("vol-path", copy, "--pool", "libvirt-operator")).trim();
    const held = Number(readFileSync(path).subarray(0, 32).toString().split("\n")[0]);
    assert.ok(
      held >= disk.low && held <= disk.high,
      `the copy ${copy} holds ${held}, not ${disk.low}..${disk.high}`,
    );
  }
  await t.waitForTick(vm, disk.high + 3); // marker B: written after the snapshot
  const mem = await t.snapshotNow(vm, `${vm}-mem`, { memory: true });
  assert.deepEqual(mem.snap.status?.indications, ["Online", "Memory"]);
  const memUptime = t.ticks(vm).find((t) => t.n === mem.low)?.uptime ?? 0;
  await t.waitForTick(vm, mem.high + 3);

  // The VM mirrors both, oldest first, with unique timestamps.
  const v = await waitForVm(
    ns,
    vm,
    (x) => (x?.status?.snapshots?.length ?? 0) === 2,
    "two snapshots in status",
  );
  const stamps = v!.status!.snapshots!.map((s) => s.timestamp);
  assert.deepEqual(
    v!.status!.snapshots!.map((s) => s.name),
    [`${vm}-disk`, `${vm}-mem`],
  );
  assert.notEqual(stamps[0], stamps[1]);

  // Disk restore: the guest boots with the snapshot's counter, earlier than what it had written.
  const beforeRestore = t.lastTick(vm);
  const r1 = await t.restoreNow(vm, `${vm}-r1`, `${vm}-disk`);
  assert.equal(r1.restore.status?.memoryRestored, false);
  assert.deepEqual(r1.restore.status?.restoredDisks, ["counter"]);
  await t.waitForTick(vm, 0, r1.from, 60_000, true);
  const booted = t.boots(vm, r1.from, true);
  assert.equal(booted.length, 1, "one boot after the disk restore");
  assert.ok(
    booted[0]! >= disk.low && booted[0]! <= disk.high && booted[0]! < beforeRestore,
    `booted with ${booted[0]}, the snapshot held ${disk.low}..${disk.high}, the disk had ${beforeRestore}`,
  );
  await waitForVm(ns, vm, isPrintable("Running"), "Running after the disk restore");

  // Memory restore: no boot; the counter and the uptime go back to the snapshot's moment.
  const r2 = await t.restoreNow(vm, `${vm}-r2`, `${vm}-mem`);
  assert.equal(r2.restore.status?.memoryRestored, true, JSON.stringify(r2.restore.status));
  // The saved guest may still have a line or two in its serial buffer, printed as it resumes.
  const first = t.ticks(vm, r2.from, true)[0] ?? (await t.waitForTick(vm, 0, r2.from, 60_000, true));
  assert.deepEqual(t.boots(vm, r2.from, true), [], "the guest resumed, it did not boot");
  assert.ok(
    first.n >= mem.low - 3 && first.n <= mem.high + 1,
    `resumed counting at ${first.n}; the snapshot was taken at ${mem.low}..${mem.high}`,
  );
  assert.ok(
    first.uptime < memUptime + 5,
    `uptime ${first.uptime} s went back to the snapshot's (~${memUptime} s)`,
  );
  await waitForVm(ns, vm, isPrintable("Running"), "Running after the memory restore");
  process.stderr.write(
    `    ${format}: disk restore booted at ${booted[0]} (had ${beforeRestore}); memory restore resumed at ${first.n}\n`,
  );
}

describe("snapshots and restores (TCG guests)", () => {
  it("qcow2: libvirt's internal snapshots, disk-only and with memory, of a running VM, each restored", async () => {
    await roundTrip("q", "qcow2", "Internal");
    assert.match(await virsh("snapshot-list", `${ns}_q`, "--name"), /lvo-\d+/);
  });

  it("raw: volume copies and a memory image, each restored", async () => {
    await roundTrip("r", "raw", "VolumeCopy");
    const vols = await virsh("vol-list", "libvirt-operator");
    assert.match(vols, new RegExp(`${ns}_r-counter_snap-\\d+\\.img`));
  });

  it("consistent: the real guest agent freezes the guest's file system; a hung agent gives a crash-consistent snapshot in time", async () => {
    rmSync(consoleLogOf(ns, "c"), { force: true });
    await applyObject("VMDisk", ns, "c-counter", { provisionedSize: "16Mi" });
    await applyObject("VMDisk", ns, "c-data", { provisionedSize: "64Mi" });
    await applyVm(
      ns,
      "c",
      guestVmSpec(guest, {
        memory: "128Mi",
        boot: {
          kernel: guest.kernel,
          initrd: guest.initrd,
          cmdline: "console=ttyS0 panic=-1 lvo.counter=vda lvo.ext4=vdb",
        },
        disks: [
          { name: "counter", diskRef: { name: "c-counter" } },
          { name: "data", diskRef: { name: "c-data" } },
        ],
      }),
    );
    await waitForVm(ns, "c", isPrintable("Running"), "Running", 120_000);
    await waitForConsole(consoleLogOf(ns, "c"), AGENT_STARTED, 90_000);
    const frozen = await t.snapshotNow("c", "c-consistent", { consistent: true });
    assert.deepEqual(frozen.snap.status?.indications, ["Online", "GuestAgent"]);
    assert.equal(frozen.snap.status?.isConsistent, true);
    const taken = frozen.snap.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "";
    assert.match(taken, /the guest agent froze 1 file system\b/);

    // The agent stops itself (SIGSTOP, through its own guest-exec) and never answers again.
    await virsh(
      "qemu-agent-command",
      `${ns}_c`,
      JSON.stringify({
        execute: "guest-exec",
        arguments: { path: "/bin/sh", arg: ["-c", "sleep 1; kill -STOP $(pidof qemu-ga)"] },
      }),
    );
    // A slow TCG guest may take a while to run it: wait until the agent no longer answers.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const answers = await virsh(
        "qemu-agent-command",
        "--timeout",
        "2",
        `${ns}_c`,
        JSON.stringify({ execute: "guest-ping" }),
      ).then(
        () => true,
        // Only its silence counts (not an error of the channel before the kill ran).
        (err: Error) => !/timed out|timeout|not responding/i.test(err.message),
      );
      if (!answers) break;
      assert.ok(Date.now() < deadline, "the guest agent stopped itself");
      await sleep(500);
    }
    const started = Date.now();
    const hung = await t.snapshotNow("c", "c-hung-agent", { consistent: true, failureDeadline: "2m" });
    const tookMs = Date.now() - started;
    assert.deepEqual(hung.snap.status?.indications, ["Online", "NoGuestAgent"]);
    assert.equal(hung.snap.status?.isConsistent, false);
    assert.match(
      hung.snap.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "",
      /crash-consistent/,
    );
    assert.ok(tookMs < 120_000, `within its deadline (${tookMs} ms)`);
    // The guest runs on.
    await t.waitForTick("c", t.lastTick("c") + 3);
    process.stderr.write(`    hung agent: crash-consistent snapshot in ${(tookMs / 1000).toFixed(1)} s\n`);
  });

  it("a VM with snapshots: its disk grows, a disk plugged later stays through a restore, a detached one refuses it", async () => {
    // Grow (qcow2 v3 grows with internal snapshots inside) while the guest runs.
    await applyObject("VMDisk", ns, "q-counter", { provisionedSize: "32Mi", format: "qcow2" });
    await waitForObject<{ status?: { provisionedSize?: number; phase?: string } }>(
      "vmdisk",
      ns,
      "q-counter",
      (d) => d?.status?.provisionedSize === 32 * 2 ** 20 && d.status.phase === "Ready",
      "grown to 32Mi",
    );
    // Hot-plug a disk the snapshots do not hold, then restore the memory snapshot.
    await applyObject("VMDisk", ns, "q-extra", { provisionedSize: "8Mi" });
    const vm = (await getObject<VirtualMachine>("virtualmachine", ns, "q"))!;
    const withExtra = [...(vm.spec.disks ?? []), { name: "extra", diskRef: { name: "q-extra" } }];
    await applyVm(ns, "q", { ...vm.spec, disks: withExtra });
    const hasExtra = (v: VirtualMachine | undefined) =>
      Boolean(v?.status?.disks?.some((d) => d.name === "extra"));
    await waitForVm(ns, "q", hasExtra, "with the extra disk plugged");
    await t.snapshotNow("q", "q-mem2", { memory: true });
    const r = await t.restoreNow("q", "q-r3", "q-mem2");
    assert.equal(r.restore.status?.memoryRestored, true);
    await waitForVm(ns, "q", (v) => hasExtra(v) && isPrintable("Running")(v), "Running with the extra disk");
    // Unplug the disk the snapshots hold: an internal snapshot cannot restore without it.
    await applyVm(ns, "q", { ...vm.spec, disks: [{ name: "extra", diskRef: { name: "q-extra" } }] });
    await waitForVm(
      ns,
      "q",
      (v) => !v?.status?.disks?.some((d) => d.name === "counter"),
      "counter unplugged",
    );
    await applyObject("VMRestore", ns, "q-r4", { vmName: "q", snapshotName: "q-mem2" });
    const refused = await t.waitForRestore("q-r4", finished, "refused", 30_000);
    assert.equal(refused?.status?.phase, "Failed");
    assert.match(
      refused?.status?.error ?? "",
      /disk counter \(VMDisk q-counter\) left the VM since the snapshot/,
    );
    await applyVm(ns, "q", vm.spec);
    await waitForVm(
      ns,
      "q",
      (v) => Boolean(v?.status?.disks?.some((d) => d.name === "counter")),
      "counter back",
    );
  });

  it("a paused VM's memory snapshot restored to a Halted VM gives back only the disks; a deleted disk's snapshot is Lost", async () => {
    await t.countingVm("h", "qcow2");
    const vm = (await getObject<VirtualMachine>("virtualmachine", ns, "h"))!;
    await applyVm(ns, "h", { ...vm.spec, paused: true });
    await waitForVm(ns, "h", isPrintable("Paused"), "Paused");
    const paused = await t.snapshotNow("h", "h-paused", { memory: true });
    assert.deepEqual(paused.snap.status?.indications, ["Online", "Memory"]);
    await applyVm(ns, "h", { ...vm.spec, paused: false, runStrategy: "Halted" });
    await waitForVm(ns, "h", isPrintable("Stopped"), "Stopped");
    const r = await t.restoreNow("h", "h-r1", "h-paused");
    assert.equal(r.restore.status?.memoryRestored, false);
    const said = r.restore.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "";
    assert.match(said, /should not run: only its disks were restored, not its memory/);
    await sleep(3000);
    assert.equal(
      (await getObject<VirtualMachine>("virtualmachine", ns, "h"))?.status?.printableStatus,
      "Stopped",
    );
    // The disk the internal snapshot lives in is detached and deleted: the snapshot says it is lost.
    await applyVm(ns, "h", { ...vm.spec, runStrategy: "Halted", disks: [] });
    await kubectl(["delete", "vmdisk", "h-counter", "-n", ns, "--wait=true", "--timeout=60s"]);
    const lost = await t.waitForSnapshot(
      "h-paused",
      (s) => s?.status?.readyToUse === false,
      "not ready to use",
      60_000,
    );
    assert.equal(lost?.status?.conditions?.find((c) => c.type === "Stalled")?.reason, "Lost");
    // Halted and without disks, the VM holds nothing a snapshot could keep: refused, saying so.
    await applyObject("VMSnapshot", ns, "h-empty", { vmName: "h" });
    const empty = await t.waitForSnapshot("h-empty", (s) => s?.status?.phase === "Failed", "Failed", 60_000);
    assert.match(empty?.status?.error ?? "", /does not run and has no disk a snapshot could keep/);
  });

  it("refuses a snapshot of another VM, a missing or failed snapshot, and a second restore in flight", async () => {
    await applyObject("VMSnapshot", ns, "orphan", { vmName: "no-such-vm", failureDeadline: "3s" });
    const failed = await t.waitForSnapshot("orphan", (s) => s?.status?.phase === "Failed", "Failed");
    assert.match(failed?.status?.error ?? "", /no-such-vm does not exist; its failureDeadline passed/);
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ["wrong-vm", { vmName: "q", snapshotName: "r-disk" }, /snapshot of VirtualMachine r, not of q/],
      ["missing", { vmName: "q", snapshotName: "nope" }, /VMSnapshot nope does not exist/],
      ["failed", { vmName: "q", snapshotName: "orphan" }, /snapshot of VirtualMachine no-such-vm|failed/],
    ];
    for (const [name, spec, message] of cases) {
      await applyObject("VMRestore", ns, name, spec);
      const r = await t.waitForRestore(name, (x) => x?.status?.phase === "Failed", "refused", 30_000);
      assert.match(r?.status?.error ?? "", message, name);
      assert.equal(r?.status?.conditions?.find((c) => c.type === "Stalled")?.status, "True");
    }
    // Two restores at once: one runs, the other is refused while it does.
    await applyObject("VMRestore", ns, "twin-a", { vmName: "q", snapshotName: "q-disk" });
    await applyObject("VMRestore", ns, "twin-b", { vmName: "q", snapshotName: "q-disk" });
    const a = await t.waitForRestore("twin-a", finished, "finished");
    const b = await t.waitForRestore("twin-b", finished, "finished");
    const phases = [a?.status?.phase, b?.status?.phase].sort();
    assert.deepEqual(phases, ["Failed", "Succeeded"], JSON.stringify([a?.status, b?.status]));
    const refused = a?.status?.phase === "Failed" ? a : b;
    assert.match(refused?.status?.error ?? "", /is restoring VirtualMachine q now/);
    await waitForVm(ns, "q", isPrintable("Running"), "Running after the twin restores");
  });

  it("a deleted snapshot is removed from the node; a deleted VM takes its snapshots with it", async () => {
    const gone = (await t.snapshotOf("q-mem"))?.status?.libvirtName;
    const wanted = await Promise.all(
      ["q-disk", "q-mem2"].map(async (n) => (await t.snapshotOf(n))?.status?.libvirtName),
    );
    await kubectl(["delete", "vmsnapshot", "q-mem", "-n", ns, "--wait=true", "--timeout=60s"]);
    const left = (await virsh("snapshot-list", `${ns}_q`, "--name")).trim().split(/\s+/).filter(Boolean);
    assert.deepEqual(left.sort(), wanted.sort(), `${gone} is gone from libvirt, the others stay`);
    await kubectl(["delete", "vmsnapshot", "r-mem", "-n", ns, "--wait=true", "--timeout=60s"]);
    const copies =
      (await virsh("vol-list", "libvirt-operator")).match(/^\s*\S*_r-counter_snap-\d+\.img/gm) ?? [];
    assert.equal(copies.length, 1, `only r-disk's copy is left: ${copies}`);
    await kubectl(["delete", "vm", "r", "-n", ns, "--wait=true", "--timeout=120s"]);
    const deadline = Date.now() + 60_000;
    while ((await t.snapshotOf("r-disk")) && Date.now() < deadline) await sleep(500);
    assert.equal(await t.snapshotOf("r-disk"), undefined, "the VM's snapshots went with it");
    assert.doesNotMatch(await virsh("vol-list", "libvirt-operator"), /r-counter_snap-/, "and their copies");
    const vm = await waitForVm(ns, "q", (v) => v?.status?.snapshots?.length === 2, "two snapshots left");
    assert.deepEqual(
      vm?.status?.snapshots?.map((s) => s.name),
      ["q-disk", "q-mem2"],
    );
    assert.ok((vm?.status?.storedData ?? 0) > 0, "storedData counts disks and snapshots");
  });
});
