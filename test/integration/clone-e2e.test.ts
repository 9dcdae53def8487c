// Clones from snapshots (seed 000 clone_from_snapshot, oVirt's clone from a snapshot), as a
// tenant makes them: a VirtualMachine with spec.source.snapshot and nothing else boots with the
// snapshot's disk content and the snapshotted VM's hardware, but a UUID, MACs and addresses of
// its own, while the source VM runs on untouched. Real TCG guests counting on their disk.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { ensureGuest, type Guest } from "../support/guest.ts";
import {
  actAsTenant,
  applyVm,
  consoleLogOf,
  getObject,
  getVm,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { snapshotTools } from "../support/snapshots.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let t: ReturnType<typeof snapshotTools>;

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("clone-e2e");
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

/** Clones snapshot SNAP of SOURCE as CLONE (with EXTRA over it) and checks what a clone must be. */
async function cloneAndCheck(
  source: string,
  snap: string,
  clone: string,
  range: { low: number; high: number },
  extra = {},
) {
  rmSync(consoleLogOf(ns, clone), { force: true });
  await applyVm(ns, clone, { source: { snapshot: snap }, ...extra });
  const vm = await waitForVm(ns, clone, isPrintable("Running"), "Running", 240_000);
  await t.waitForTick(clone, 0, 0, 120_000);
  const booted = t.boots(clone);
  assert.equal(booted.length, 1, "the clone booted once");
  assert.ok(
    booted[0]! >= range.low && booted[0]! <= range.high,
    `the clone booted with ${booted[0]}, the snapshot held ${range.low}..${range.high}`,
  );
  const src = (await getVm(ns, source))!;
  assert.notEqual(vm?.status?.uuid, src.status?.uuid, "a UUID of its own");
  const mac = (v: VirtualMachine | undefined) => v?.status?.interfaces?.[0]?.mac;
  const ip = (v: VirtualMachine | undefined) => v?.status?.interfaces?.[0]?.ipv4;
  assert.ok(mac(vm) && mac(vm) !== mac(src), `a MAC of its own: ${mac(vm)} / ${mac(src)}`);
  assert.ok(ip(vm) && ip(vm) !== ip(src), `an address of its own: ${ip(vm)} / ${ip(src)}`);
  assert.equal(vm?.status?.clonedFrom?.snapshot, snap);
  assert.equal(vm?.status?.clonedFrom?.vmName, source);
  // Its disk is its own, and goes with it.
  const disk = await waitForObject<VMDisk>(
    "vmdisk",
    ns,
    `${clone}-counter`,
    (d) => d?.status?.phase === "Ready",
    "Ready",
  );
  assert.equal(disk?.metadata.ownerReferences?.[0]?.name, clone);
  assert.deepEqual(disk?.spec.source, { snapshot: { name: snap, disk: "counter" } });
  return vm!;
}

describe("clones from snapshots (TCG guests)", () => {
  it("qcow2: a clone of an internal snapshot boots with its content, new identity, while the source runs", async () => {
    await t.countingVm("src", "qcow2");
    const { low, high } = await t.snapshotNow("src", "src-snap");
    await t.waitForTick("src", high + 3);
    const clone = await cloneAndCheck("src", "src-snap", "copy", { low, high });
    // The snapshotted VM's hardware, the clone's spec giving none.
    assert.equal(clone.spec.memory, undefined);
    const xml = await virsh("dumpxml", `${ns}_copy`);
    assert.match(xml, /<memory unit='KiB'>131072<\/memory>/, "128Mi, as the source at the snapshot");
    // The source ran on, untouched.
    const before = t.lastTick("src");
    await t.waitForTick("src", before + 2);
    assert.equal((await t.snapshotOf("src-snap"))?.status?.readyToUse, true);
  });

  it("raw: a clone of a volume-copy snapshot; its own spec overrides the snapshotted VM's; deleted with its disks", async () => {
    await t.countingVm("rsrc", "raw");
    const { low, high } = await t.snapshotNow("rsrc", "rsrc-snap");
    await t.waitForTick("rsrc", high + 3);
    await cloneAndCheck("rsrc", "rsrc-snap", "rcopy", { low, high }, { memory: "192Mi" });
    assert.match(await virsh("dumpxml", `${ns}_rcopy`), /<memory unit='KiB'>196608<\/memory>/);
    await kubectl(["delete", "vm", "rcopy", "-n", ns, "--wait=true", "--timeout=120s"]);
    const deadline = Date.now() + 60_000;
    while ((await getObject("vmdisk", ns, "rcopy-counter")) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 500));
    assert.equal(await getObject("vmdisk", ns, "rcopy-counter"), undefined, "the clone's disk went with it");
    assert.equal((await t.snapshotOf("rsrc-snap"))?.status?.readyToUse, true, "the snapshot stays");
  });

  it("a clone of a snapshot that does not exist waits and says so", async () => {
    await applyVm(ns, "orphan", { source: { snapshot: "nope" } });
    const vm = await waitForVm(
      ns,
      "orphan",
      (v) =>
        v?.status?.conditions?.some((c) => c.type === "Scheduled" && c.reason === "WaitingForSnapshot") ??
        false,
      "waiting for its snapshot",
      30_000,
    );
    assert.match(
      vm?.status?.conditions?.find((c) => c.type === "Scheduled")?.message ?? "",
      /VMSnapshot nope/,
    );
  });
});
