// The fault-injection suite: a fault (the agent SIGKILLed, libvirtd SIGKILLed; each test file
// names one) lands while each operation is under way — define and start, an http import, a
// clone, a resize, a snapshot, a restore, a VM made from a template — and what it stopped is
// started again. After each: the guest that ran still runs (same QEMU process), no domain or
// volume twice, the markers on the disks intact, every object converged (time printed); at the
// end everything is deleted within a deadline (no finalizer stuck). One namespace, one counting
// TCG guest (lvo.counter: its disk's counter is the marker) and one 8 MiB image.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import type { VMRestore } from "../../src/api/vmsnapshot.ts";
import type { VMTemplate } from "../../src/api/vmtemplate.ts";
import { domainsOf, namesOf, seconds, volumesOf, within } from "./faults.ts";
import { ensureGuest, type Guest, guestVmSpec } from "./guest.ts";
import { closeAll, serve } from "./http-servers.ts";
import {
  applyObject,
  applyVm,
  getObject,
  getVm,
  isPrintable,
  qemuPid,
  startTestOperator,
  stopTestOperator,
  waitForObject,
  waitForVm,
} from "./operator.ts";
import { snapshotTools } from "./snapshots.ts";
import { kubectl, testNamespace } from "./stack.ts";
import { counterImage as counterImageIn, firstSector } from "./volumes.ts";

const MiB = 2 ** 20;
const MARKER = "FAULTS-IMAGE-MARKER";
let guest: Guest;
let ns = "";
let workDir = "";
let baseUrl = "";
let t: ReturnType<typeof snapshotTools>;
/** The counting guest every step checks: its QEMU process must survive what does not restart it. */
const VM = "counting";
let vmPid: number | undefined;
/** How many times the counting guest has booted so far (a restore boots it once more). */
let vmBoots = 0;

const disk = (name: string) => getObject<VMDisk>("vmdisk", ns, name);
const waitForDisk = (name: string, check: (d: VMDisk | undefined) => boolean, what: string) =>
  waitForObject<VMDisk>("vmdisk", ns, name, check, what, 90_000);
const diskReady = (d: VMDisk | undefined) =>
  d?.status?.phase === "Ready" && d.status.observedGeneration === d.metadata.generation;

/** The first bytes of a volume as a guest reads them. */
async function volumeStart(path: string, format: string, bytes = 32): Promise<string> {
  return (await firstSector(path, format)).subarray(0, bytes).toString("latin1");
}

/** No domain and no volume twice: exactly the namespace's VMs and VMDisks, plus snapshots' copies. */
async function assertNothingTwice() {
  const vms = await namesOf("vm", ns);
  assert.deepEqual(await domainsOf(ns), vms.map((v) => `${ns}_${v}`).sort(), "one domain per VM");
  const disks = await Promise.all((await namesOf("vmdisk", ns)).map(disk));
  const expected = disks.map((d) => basename(d?.status?.path ?? `${d?.metadata.name}?`)).sort();
  const volumes = await volumesOf(ns);
  const snapshots = await namesOf("vmsnapshot", ns);
  for (const v of expected) assert.ok(volumes.includes(v), `volume ${v} of a VMDisk exists: ${volumes}`);
  const others = volumes.filter((v) => !expected.includes(v));
  assert.deepEqual(
    others.filter((v) => !snapshots.some((s) => v.includes(s))),
    [],
    "no volume but the VMDisks' and their snapshots' copies",
  );
}

/** The counting guest still runs in the same QEMU process and keeps counting on from its disk. */
async function assertGuestKeptRunning() {
  const domain = `${ns}_${VM}`;
  assert.equal(qemuPid(domain), vmPid, "the same QEMU process");
  const before = t.lastTick(VM);
  await t.waitForTick(VM, before + 1, 0, 120_000);
  assert.equal(t.boots(VM).length, vmBoots, "it never booted again");
  assert.equal((await getVm(ns, VM))?.status?.printableStatus, "Running");
}

const counterImage = (name: string, n: number) => counterImageIn(workDir, name, n);

/** A fault and how the suite lands it. */
export interface Fault {
  /** What happens, as the report says it ("agent SIGKILL"). */
  name: string;
  /** The suite's namespace (one per fault, so test files do not meet). */
  namespace: string;
  /** Lands the fault and starts again what it stopped; returns once it is started again. */
  inject(): Promise<void>;
}

/**
 * Waits until UNDER_WAY says the operation has begun (at most 60 s), then lands the fault;
 * returns when it landed and whether the operation was seen under way.
 */
async function landDuring(
  fault: Fault,
  underWay: () => Promise<boolean>,
): Promise<{ killedAt: number; caught: boolean }> {
  const caught = (await within(underWay, 60_000)) !== undefined;
  const killedAt = Date.now();
  await fault.inject();
  return { killedAt, caught };
}

export function faultSuite(fault: Fault): void {
  const table: string[] = [];
  const report = (operation: string, at: { killedAt: number; caught: boolean }) => {
    const line = `${operation} × ${fault.name} (${at.caught ? "mid-operation" : "operation not seen under way"}) → converged in ${seconds(Date.now() - at.killedAt)}`;
    table.push(line);
    process.stderr.write(`# ${line}\n`);
  };
  const injectDuring = (underWay: () => Promise<boolean>) => landDuring(fault, underWay);

  before(async () => {
    guest = await ensureGuest();
    workDir = mkdtempSync(join(tmpdir(), `lvo-${fault.namespace}-`));
    process.env.IMAGE_IMPORT_DIRS = workDir;
    const image = Buffer.alloc(8 * MiB);
    image.write(MARKER, 0, "latin1");
    // Trickled out over ~5 s, so the kill lands in the middle of the download.
    baseUrl = await serve((_req, res) => {
      res.writeHead(200, { "content-length": image.length, "content-type": "application/octet-stream" });
      let at = 0;
      const timer = setInterval(() => {
        if (res.destroyed || at >= image.length) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(image.subarray(at, at + 256 * 1024));
        at += 256 * 1024;
      }, 150);
    });
    ns = await testNamespace(fault.namespace);
    t = snapshotTools(ns, () => guest);
    await startTestOperator();
  });

  after(async () => {
    for (const kind of ["vmrestore", "vmsnapshot", "vm", "vmtemplate", "vmdisk"])
      await kubectl(["delete", kind, "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
        () => undefined,
      );
    await stopTestOperator();
    await closeAll();
    rmSync(workDir, { recursive: true, force: true });
    process.stderr.write(`# faults × ${fault.name}:\n${table.map((l) => `#   ${l}\n`).join("")}`);
  });

  describe(`${fault.name} during each operation`, () => {
    it("define and start: the VM runs once, counting on its disk", async () => {
      rmSync(`/var/log/libvirt/qemu/${ns}_${VM}-console.log`, { force: true });
      await applyObject("VMDisk", ns, `${VM}-counter`, { provisionedSize: "16Mi", format: "qcow2" });
      await applyVm(
        ns,
        VM,
        guestVmSpec(guest, {
          memory: "128Mi",
          boot: {
            kernel: guest.kernel,
            initrd: guest.initrd,
            cmdline: "console=ttyS0 panic=-1 lvo.counter=vda",
          },
          disks: [{ name: "counter", diskRef: { name: `${VM}-counter` } }],
        }),
      );
      // Under way: the agent has defined the domain, or says it is on it, and the guest has not
      // booted yet (a quiet machine takes the VM to Running within a poll or two).
      const fault = await injectDuring(async () => {
        if (t.lastTick(VM) >= 0) return false;
        if ((await domainsOf(ns)).includes(`${ns}_${VM}`)) return true;
        const vm = await getVm(ns, VM);
        return Boolean(vm?.status?.printableStatus) && vm?.status?.printableStatus !== "Running";
      });
      await waitForVm(ns, VM, isPrintable("Running"), "Running", 180_000);
      await t.waitForTick(VM, 2, 0, 300_000); // TCG on a loaded machine boots slowly
      report("define + start", fault);
      vmPid = qemuPid(`${ns}_${VM}`);
      assert.ok(vmPid);
      assert.deepEqual(t.boots(VM), [0], "booted once, from a blank counter");
      vmBoots = 1;
      await assertNothingTwice();
    });

    it("an http import: done again from the start, the image's marker on the volume", async () => {
      await applyObject("VMDisk", ns, "imported", {
        provisionedSize: "8Mi",
        format: "raw",
        source: { image: { url: `${baseUrl}/image.raw` } },
      });
      const fault = await injectDuring(async () => {
        const d = await disk("imported");
        return d?.status?.phase === "Locked" && (d.status.progress ?? 0) > 0;
      });
      const done = await waitForDisk("imported", diskReady, "Ready");
      report("import (http, 8 MiB)", fault);
      assert.equal(done!.status!.provisionedSize, 8 * MiB);
      assert.equal((await volumeStart(done!.status!.path!, "raw")).slice(0, MARKER.length), MARKER);
      await assertNothingTwice();
      await assertGuestKeptRunning();
    });

    it("a clone of a VMDisk: one copy, with the marker", async () => {
      await applyObject("VMDisk", ns, "cloned", {
        provisionedSize: "8Mi",
        format: "qcow2",
        source: { disk: { name: "imported" } },
      });
      const fault = await injectDuring(async () => Boolean((await disk("cloned"))?.status?.phase));
      const done = await waitForDisk("cloned", diskReady, "Ready");
      report("clone (VMDisk from VMDisk)", fault);
      assert.equal((await volumeStart(done!.status!.path!, "qcow2")).slice(0, MARKER.length), MARKER);
      await assertNothingTwice();
      await assertGuestKeptRunning();
    });

    it("a resize: grown once, the marker kept", async () => {
      await kubectl([
        "patch",
        "vmdisk",
        "cloned",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"provisionedSize":"24Mi"}}',
      ]);
      const fault = await injectDuring(async () => {
        const d = await disk("cloned");
        return d?.status?.phase === "Resizing" || d?.status?.observedGeneration === d?.metadata.generation;
      });
      const done = await waitForDisk(
        "cloned",
        (d) => diskReady(d) && d?.status?.provisionedSize === 24 * MiB,
        "Ready at 24 MiB",
      );
      report("resize (8 → 24 MiB)", fault);
      assert.equal((await volumeStart(done!.status!.path!, "qcow2")).slice(0, MARKER.length), MARKER);
      await assertNothingTwice();
      await assertGuestKeptRunning();
    });

    let snapshotRange = { low: 0, high: 0 };
    it("a snapshot of the running guest: taken once, the guest keeps running", async () => {
      const low = t.lastTick(VM);
      await applyObject("VMSnapshot", ns, "snap", { vmName: VM });
      const fault = await injectDuring(async () => Boolean((await t.snapshotOf("snap"))?.status?.phase));
      const snap = await t.waitForSnapshot(
        "snap",
        (s) => s?.status?.phase === "Succeeded" || s?.status?.phase === "Failed",
        "finished",
      );
      report("snapshot (VMSnapshot of a running guest)", fault);
      assert.equal(snap?.status?.phase, "Succeeded", JSON.stringify(snap?.status));
      snapshotRange = { low, high: t.lastTick(VM) + 1 };
      await assertNothingTwice();
      await assertGuestKeptRunning();
    });

    it("a restore: the guest comes back once, from the snapshot's counter", async () => {
      await t.waitForTick(VM, snapshotRange.high + 3, 0, 60_000); // moved on from the snapshot
      const from = t.consoleLength(VM);
      await applyObject("VMRestore", ns, "restore", { vmName: VM, snapshotName: "snap" });
      const fault = await injectDuring(async () =>
        Boolean((await getObject<VMRestore>("vmrestore", ns, "restore"))?.status?.phase),
      );
      const r = await t.waitForRestore(
        "restore",
        (x) => x?.status?.phase === "Succeeded" || x?.status?.phase === "Failed",
        "finished",
      );
      assert.equal(r?.status?.phase, "Succeeded", JSON.stringify(r?.status));
      await waitForVm(ns, VM, isPrintable("Running"), "Running after the restore", 120_000);
      const boots = await within(() => t.boots(VM, from, true).length > 0, 120_000);
      assert.ok(boots !== undefined, "the restored guest booted");
      report("restore (VMRestore, guest stopped and started)", fault);
      const [restoredFrom, ...more] = t.boots(VM, from, true);
      assert.deepEqual(more, [], "booted once after the restore");
      assert.ok(
        restoredFrom! >= snapshotRange.low && restoredFrom! <= snapshotRange.high,
        `restored counter ${restoredFrom} within the snapshot's [${snapshotRange.low}, ${snapshotRange.high}]`,
      );
      vmPid = qemuPid(`${ns}_${VM}`);
      assert.ok(vmPid);
      vmBoots = t.boots(VM).length;
      await assertNothingTwice();
    });

    it("a VM made from a template: its disks made once, it boots from the template's marker", async () => {
      const image = await counterImage("template", 1000);
      await applyObject("VMTemplate", ns, "tpl", {
        template: guestVmSpec(guest, {
          memory: "128Mi",
          boot: {
            kernel: guest.kernel,
            initrd: guest.initrd,
            cmdline: "console=ttyS0 panic=-1 lvo.counter=vda",
          },
          disks: [{ name: "counter", size: "16Mi", image, bootOrder: 1 }],
        }),
      });
      await waitForObject<VMTemplate>(
        "vmtemplate",
        ns,
        "tpl",
        (x) => x?.status?.phase === "Ready",
        "Ready",
        120_000,
      );
      rmSync(`/var/log/libvirt/qemu/${ns}_from-tpl-console.log`, { force: true });
      await applyVm(ns, "from-tpl", { source: { template: "tpl" } });
      const fault = await injectDuring(async () => Boolean((await disk("from-tpl-counter"))?.status?.phase));
      await waitForVm(ns, "from-tpl", isPrintable("Running"), "Running", 180_000);
      await t.waitForTick("from-tpl", 1000, 0, 120_000);
      report("VM from a VMTemplate (linked clone of the base)", fault);
      assert.deepEqual(t.boots("from-tpl"), [1000], "booted once, from the template image's marker");
      await assertNothingTwice();
      await assertGuestKeptRunning();
    });

    it("deleting everything: every finalizer released within 120 s, nothing left on the node", async () => {
      const started = Date.now();
      for (const kind of ["vmrestore", "vmsnapshot", "vm", "vmtemplate", "vmdisk"])
        await kubectl(["delete", kind, "--all", "-n", ns, "--wait=false"]);
      const gone = await within(async () => {
        const left = await Promise.all(
          ["vmrestore", "vmsnapshot", "vm", "vmtemplate", "vmdisk"].map((k) => namesOf(k, ns)),
        );
        return left.every((l) => l.length === 0);
      }, 120_000);
      assert.ok(gone !== undefined, "everything deleted within 120 s");
      process.stderr.write(`# everything deleted in ${seconds(Date.now() - started)}\n`);
      assert.deepEqual(await domainsOf(ns), [], "no domain left");
      assert.deepEqual(await volumesOf(ns), [], "no volume left");
    });
  });
}
