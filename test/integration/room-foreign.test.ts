// The room a node agent counts is what libvirt runs, not only our VMs: a guest someone else
// starts on the host after the agent came up takes its vCPUs too (libvirt's lifecycle events),
// so our VM waits (InsufficientCapacity), and starts as soon as that guest is gone.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import { applyVm, startTestOperator, stopTestOperator, virsh, waitForVm } from "../support/operator.ts";
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
  await removeForeignGuest();
  await stopTestOperator();
});

const stalledForRoom = (vm: VirtualMachine | undefined) =>
  vm?.status?.printableStatus === "ErrorUnschedulable" &&
  vm.status.conditions?.some((c) => c.type === "Stalled" && c.reason === "InsufficientCapacity") === true;

describe("room counts every guest libvirt runs", () => {
  it("a guest started by someone else after the agent takes room; our VM starts once it is gone", async () => {
    const cpus = Number((await virsh("nodeinfo")).match(/^CPU\(s\):\s+(\d+)/m)?.[1] ?? 0);
    assert.ok(cpus > 0, "virsh nodeinfo names the host's CPUs");
    await startForeignGuest(cpus * 8);
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
});
