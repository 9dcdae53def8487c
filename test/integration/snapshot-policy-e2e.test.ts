// Scheduled snapshots with rotation (seed 000 and 003, Harvester's schedules): a policy with a
// one-minute schedule and keep 2 leaves exactly the two newest automatic snapshots after four
// minutes, plus the one the user made sticky; the VM mirrors them. A stopped VM keeps this fast.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VMSnapshot } from "../../src/api/vmsnapshot.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  getVm,
  startTestOperator,
  stopTestOperator,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("policy-e2e");
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

async function automatic(): Promise<VMSnapshot[]> {
  const { stdout } = await kubectl([
    "get",
    "vmsnapshots",
    "-n",
    ns,
    "-l",
    "vm.libvirt-operator.io/automatic=true",
    "-o",
    "json",
  ]);
  return (JSON.parse(stdout).items as VMSnapshot[]).filter((s) => !s.metadata.deletionTimestamp);
}

describe("snapshotPolicy (a stopped TCG guest)", () => {
  it("a one-minute schedule with keep 2 leaves the two newest automatic snapshots and the sticky one", async () => {
    await applyObject("VMDisk", ns, "sched-root", { provisionedSize: "16Mi" });
    const spec = guestVmSpec(guest, {
      runStrategy: "Halted",
      disks: [{ name: "root", diskRef: { name: "sched-root" } }],
      snapshotPolicy: { schedule: "* * * * *", keep: 2 },
    });
    await applyVm(ns, "sched", spec);
    await waitForVm(
      ns,
      "sched",
      (v) => v?.status?.conditions?.find((c) => c.type === "SnapshotPolicy")?.status === "True",
      "SnapshotPolicy active",
      60_000,
    );
    // The first automatic snapshot: the user keeps it (sticky stays changeable).
    let first: VMSnapshot | undefined;
    for (const deadline = Date.now() + 150_000; !first && Date.now() < deadline; await sleep(2000))
      first = (await automatic()).find((s) => s.status?.phase === "Succeeded");
    if (!first) {
      const vm = await getVm(ns, "sched");
      const why = (vm?.status?.conditions ?? []).map(
        (c) => `${c.type}=${c.status} ${c.reason}: ${c.message}`,
      );
      const made = (await automatic()).map(
        (s) => `${s.metadata.name} ${s.status?.phase} ${s.status?.error ?? ""}`,
      );
      assert.fail(
        `no automatic snapshot within two minutes; VM: ${why.join("; ")}; snapshots: ${made.join("; ")}`,
      );
    }
    assert.equal(first.status?.isAutomatic, true);
    await applyObject("VMSnapshot", ns, first.metadata.name, { ...first.spec, sticky: true });
    const startedAt = Date.parse(first.metadata.creationTimestamp ?? "");
    // Four minutes of schedule after it: four more, of which rotation leaves two.
    await sleep(Math.max(0, startedAt + 4 * 60_000 + 20_000 - Date.now()));
    let left: VMSnapshot[] = [];
    // The VM's status.snapshots follows the snapshots' own objects (its own write): both counted.
    const mirrored = async () =>
      (await getVm(ns, "sched"))?.status?.snapshots?.filter((s) => s.isAutomatic).length;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(2000)) {
      left = (await automatic()).filter((s) => s.status?.phase === "Succeeded");
      if (left.length === 3 && (await mirrored()) === 3) break;
    }
    const names = left.map((s) => `${s.metadata.name}${s.spec.sticky ? " (sticky)" : ""}`);
    process.stderr.write(`    automatic snapshots left: ${names.join(", ")}\n`);
    assert.equal(left.length, 3, `two newest and the sticky one: ${names}`);
    assert.ok(left.some((s) => s.metadata.name === first.metadata.name && s.spec.sticky));
    const vm = await getVm(ns, "sched");
    assert.equal(vm?.status?.snapshots?.filter((s) => s.isAutomatic).length, 3);
    assert.equal(vm?.status?.snapshotPolicy?.consecutiveFailures, 0);
    assert.ok(vm?.status?.snapshotPolicy?.nextScheduleTime);
    // Suspended: no more are taken.
    await applyVm(ns, "sched", {
      ...spec,
      snapshotPolicy: { schedule: "* * * * *", keep: 2, suspend: true },
    });
    await waitForVm(
      ns,
      "sched",
      (v) => v?.status?.conditions?.find((c) => c.type === "SnapshotPolicy")?.reason === "Suspended",
      "suspended",
      30_000,
    );
  });
});
