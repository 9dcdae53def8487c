// The room a node agent counts is what libvirt runs, not only our VMs: a guest someone else
// starts on the host after the agent came up takes its vCPUs too (libvirt's lifecycle events),
// so our VM waits (InsufficientCapacity), and starts as soon as that guest is gone; a restore
// that would start a guest waits the same way.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../../src/api/vmsnapshot.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  applyObject,
  applyVm,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

const FOREIGN = `room-foreign-${process.env.TEST_STACK_SLOT ?? "0"}`;
let guest: Guest;
let ns = "";

/** A guest of nobody's cluster with every vCPU the node offers (CPUs × overcommit 8: 16 on a 2-CPU machine). */
async function startForeignGuest(vcpus: number) {
  const xml = `<domain type='qemu'><name>${FOREIGN}</name><memory unit='MiB'>32</memory>
  <vcpu>${vcpus}</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff></domain>`;
  const file = join(tmpdir(), `${FOREIGN}.xml`);
  await writeFile(file, xml);
  await virsh("define", file);
  await virsh("start", FOREIGN);
}

async function removeForeignGuest() {
  await virsh("destroy", FOREIGN).catch(() => undefined);
  await virsh("undefine", FOREIGN).catch(() => undefined);
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("room-foreign");
  await removeForeignGuest();
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await removeForeignGuest();
  await stopTestOperator();
});

/** Every vCPU the node offers to guests: its CPUs × the overcommit of 8. */
async function nodeVcpus(): Promise<number> {
  const cpus = Number((await virsh("nodeinfo")).match(/^CPU\(s\):\s+(\d+)/m)?.[1] ?? 0);
  assert.ok(cpus > 0, "virsh nodeinfo names the host's CPUs");
  return cpus * 8;
}

const stalledForRoom = (vm: VirtualMachine | undefined) =>
  vm?.status?.printableStatus === "ErrorUnschedulable" &&
  vm.status.conditions?.some((c) => c.type === "Stalled" && c.reason === "InsufficientCapacity") === true;

describe("room counts every guest libvirt runs", () => {
  it("a guest started by someone else after the agent takes room; our VM starts once it is gone", async () => {
    await startForeignGuest(await nodeVcpus());
    await applyVm(ns, "waits", guestVmSpec(guest, { memory: "64Mi", shutdown: { gracePeriodSeconds: 0 } }));
    const refused = await waitForVm(
      ns,
      "waits",
      stalledForRoom,
      "refused for room (the foreign guest fills the node)",
    );
    assert.match(
      refused?.status?.conditions?.find((c) => c.type === "Stalled")?.message ?? "",
      /free vCPUs, the VM needs 1/,
    );
    await removeForeignGuest();
    // At once, not at the 30 s recheck of a VM waiting for room: the guest's stop frees it.
    await waitForVm(
      ns,
      "waits",
      (vm) => vm?.status?.printableStatus === "Running",
      "Running once room freed",
      15_000,
    );
  });

  it("a restore that would start the guest waits for room, and runs as soon as a guest stops", async () => {
    await startForeignGuest(await nodeVcpus());
    await applyObject("VMDisk", ns, "later-data", { provisionedSize: "16Mi", format: "qcow2" });
    await applyVm(
      ns,
      "later",
      guestVmSpec(guest, {
        memory: "64Mi",
        shutdown: { gracePeriodSeconds: 0 },
        disks: [{ name: "data", diskRef: { name: "later-data" } }],
      }),
    );
    await waitForVm(ns, "later", stalledForRoom, "refused for room");
    // Defined, never started: a snapshot of its disks as they are; restoring it starts the guest.
    await applyObject("VMSnapshot", ns, "later-0", { vmName: "later" });
    await waitForObject<VMSnapshot>(
      "vmsnapshot",
      ns,
      "later-0",
      (s) => s?.status?.readyToUse === true,
      "ready",
    );
    await applyObject("VMRestore", ns, "later-r", { vmName: "later", snapshotName: "later-0" });
    const waiting = await waitForObject<VMRestore>(
      "vmrestore",
      ns,
      "later-r",
      (r) =>
        r?.status?.conditions?.some(
          (c) => c.type === "Reconciling" && c.reason === "InsufficientCapacity",
        ) === true,
      "waiting for room",
    );
    assert.equal(waiting?.status?.complete, false, "nothing restored while it waits");
    await removeForeignGuest();
    // At once, not at the 30 s retry of a restore waiting for room.
    await waitForObject<VMRestore>(
      "vmrestore",
      ns,
      "later-r",
      (r) => r?.status?.complete === true,
      "complete once room freed",
      20_000,
    );
    await waitForVm(
      ns,
      "later",
      (vm) => vm?.status?.printableStatus === "Running",
      "Running after the restore",
    );
  });
});
