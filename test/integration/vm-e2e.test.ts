// VirtualMachine end to end: the controller and node agent against the real API server and
// libvirtd, running TCG guests that print markers on their serial console.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RESTART_ANNOTATION } from "../../src/api/virtualmachine.ts";
import { startLibvirt } from "../../src/cmd/local/libvirt.ts";
import { runningPid, stopDaemon } from "../../src/cmd/local/processes.ts";
import { BOOTED, consoleText, ensureGuest, type Guest, POWEROFF, waitForConsole } from "../support/guest.ts";
import {
  agentPid,
  applyVm,
  consoleLogOf,
  getVm,
  isPrintable,
  qemuPid,
  readyCondition,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";

function guestSpec(extra: Record<string, unknown> = {}) {
  return {
    hypervisor: "qemu",
    memory: "256Mi",
    cpu: { cores: 1 },
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1" },
    shutdown: { gracePeriodSeconds: 60 },
    ...extra,
  };
}

function bootCount(name: string): number {
  return consoleText(consoleLogOf(ns, name)).split(BOOTED).length - 1;
}

/** A fresh VM, running, with its console log starting empty. */
async function runningVm(
  name: string,
  extra: Record<string, unknown> = {},
  annotations?: Record<string, string>,
) {
  rmSync(consoleLogOf(ns, name), { force: true });
  await applyVm(ns, name, guestSpec(extra), annotations);
  await waitForVm(ns, name, isPrintable("Running"), "Running");
  await waitForConsole(consoleLogOf(ns, name), BOOTED, 90_000);
}

async function patchSpec(name: string, patch: Record<string, unknown>) {
  await kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec: patch })]);
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("vm-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await stopTestOperator();
});

describe("VirtualMachine end to end (TCG guests)", () => {
  it("apply → Running: the guest boots and status mirrors the domain", async () => {
    const description = `web <frontend> & "friends" 'quoted'`;
    await runningVm("boot", { description });
    const vm = (await getVm(ns, "boot"))!;
    const s = vm.status!;
    assert.equal(s.hypervisorStatus, "RUNNING");
    assert.equal(s.syncStatus, "SYNC");
    assert.equal(s.domainName, `${ns}_boot`);
    assert.equal(s.nodeName, TEST_STACK.nodeName);
    assert.ok((s.hypervisorId ?? 0) > 0);
    assert.match(s.uuid ?? "", /^[0-9a-f-]{36}$/);
    assert.match(s.interfaces?.[0]?.mac ?? "", /^52:54:00:/);
    assert.ok(s.statusChangedAt);
    assert.equal(s.lastOperation?.type, "Start");
    assert.equal(readyCondition(vm)?.status, "True");
    assert.equal(vm.metadata.finalizers?.includes("vm.libvirt-operator.io/domain"), true);
    // The description reached libvirt intact, escaped in the XML.
    const xml = await virsh("dumpxml", `${ns}_boot`);
    assert.match(
      xml,
      /<description>web &lt;frontend&gt; &amp; (&quot;|")friends(&quot;|") ('|&apos;)quoted('|&apos;)<\/description>/,
    );
    assert.match(xml, new RegExp(`<uuid>${s.uuid}</uuid>`));
    const events = (
      await kubectl(["get", "events", "-n", ns, "--field-selector", "involvedObject.name=boot", "-o", "json"])
    ).stdout;
    assert.match(events, /"reason": "Scheduled"/);
    assert.match(events, /"reason": "Started"/);
  });

  it("Halted: the guest powers off by ACPI within the grace period; Always starts it again", async () => {
    await patchSpec("boot", { runStrategy: "Halted" });
    const stopped = await waitForVm(ns, "boot", isPrintable("Stopped"), "Stopped", 60_000);
    assert.ok(consoleText(consoleLogOf(ns, "boot")).includes(POWEROFF), "the guest ran its own power-off");
    assert.equal(stopped?.status?.hypervisorStatus, "HALTED");
    assert.equal(stopped?.status?.lastOperation?.message, "the guest powered off");
    assert.equal(readyCondition(stopped)?.status, "False");

    await patchSpec("boot", { runStrategy: "Always" });
    await waitForVm(ns, "boot", isPrintable("Running"), "Running again");
    await waitForConsole(consoleLogOf(ns, "boot"), BOOTED, 90_000, 2);
  });

  it("gracePeriodSeconds 0 forces the domain off at once", async () => {
    await runningVm("force", { shutdown: { gracePeriodSeconds: 0 } });
    const started = Date.now();
    await patchSpec("force", { runStrategy: "Halted" });
    const vm = await waitForVm(ns, "force", isPrintable("Stopped"), "Stopped", 30_000);
    assert.ok(Date.now() - started < 15_000);
    assert.ok(
      !consoleText(consoleLogOf(ns, "force")).includes(POWEROFF),
      "no guest power-off: it was forced",
    );
    assert.equal(vm?.status?.lastOperation?.message, "forced off (grace period 0)");
  });

  it("a new restart-requested-at value reboots the guest exactly once", async () => {
    await runningVm("restart");
    assert.equal(bootCount("restart"), 1);
    await kubectl(["annotate", "vm", "restart", "-n", ns, `${RESTART_ANNOTATION}=2026-11-22T10:00:00Z`]);
    await waitForVm(
      ns,
      "restart",
      (vm) => vm?.status?.restartRequestHandled === "2026-11-22T10:00:00Z",
      "restart handled",
    );
    await waitForConsole(consoleLogOf(ns, "restart"), BOOTED, 90_000, 2);
    await waitForVm(ns, "restart", isPrintable("Running"), "Running after the reboot");
    // The same value again changes nothing.
    await kubectl([
      "annotate",
      "--overwrite",
      "vm",
      "restart",
      "-n",
      ns,
      `${RESTART_ANNOTATION}=2026-11-22T10:00:00Z`,
    ]);
    await sleep(8000);
    assert.equal(bootCount("restart"), 2, "exactly one reboot");
  });

  it("paused suspends the vCPUs and unpausing resumes them", async () => {
    await patchSpec("restart", { paused: true });
    const paused = await waitForVm(ns, "restart", isPrintable("Paused"), "Paused");
    assert.equal(paused?.status?.hypervisorStatus, "PAUSED");
    assert.equal(paused?.status?.conditions?.find((c) => c.type === "Paused")?.status, "True");
    assert.equal(readyCondition(paused)?.status, "False");
    await patchSpec("restart", { paused: false });
    await waitForVm(
      ns,
      "restart",
      (vm) => isPrintable("Running")(vm) && readyCondition(vm)?.status === "True",
      "Running",
    );
  });

  it("nodeName naming a missing node is ErrorUnschedulable, with the node named", async () => {
    await applyVm(ns, "nowhere", { ...guestSpec(), nodeName: "no-such-node" });
    const vm = await waitForVm(
      ns,
      "nowhere",
      isPrintable("ErrorUnschedulable"),
      "ErrorUnschedulable",
      30_000,
    );
    const scheduled = vm?.status?.conditions?.find((c) => c.type === "Scheduled");
    assert.equal(scheduled?.status, "False");
    assert.match(scheduled?.message ?? "", /node no-such-node \(spec\.nodeName\) does not exist/);
    assert.match(readyCondition(vm)?.message ?? "", /no-such-node/);
    await kubectl(["delete", "vm", "nowhere", "-n", ns, "--wait=true", "--timeout=30s"]);
  });

  it("two VMs never share a MAC address", async () => {
    const a = await getVm(ns, "boot");
    const b = await getVm(ns, "restart");
    assert.ok(a?.status?.interfaces?.[0]?.mac && b?.status?.interfaces?.[0]?.mac);
    assert.notEqual(a.status.interfaces[0].mac, b.status.interfaces[0].mac);
    const xml = await virsh("dumpxml", `${ns}_boot`);
    assert.match(xml, new RegExp(`<mac address='${a.status.interfaces[0].mac}'/>`));
  });

  it("killing the agent leaves guests running; status recovers when it returns", async () => {
    const domain = `${ns}_boot`;
    const pidBefore = qemuPid(domain);
    assert.ok(pidBefore);
    process.kill(agentPid()!, "SIGKILL");
    await sleep(500);
    await patchSpec("boot", { paused: true });
    await sleep(2000);
    assert.equal(qemuPid(domain), pidBefore, "same QEMU process while the agent is gone");
    assert.match(await virsh("domstate", domain), /running/, "nothing acted on the spec without the agent");
    await startTestOperator();
    await waitForVm(ns, "boot", isPrintable("Paused"), "Paused after the agent returned");
    assert.equal(qemuPid(domain), pidBefore, "still the same QEMU process");
    await patchSpec("boot", { paused: false });
    await waitForVm(ns, "boot", isPrintable("Running"), "Running");
  });

  it("restarting libvirtd leaves guests running and no VM goes Failed", async (t) => {
    if (!runningPid(TEST_STACK.stateDir, "libvirtd")) {
      t.skip("libvirtd was not started by this test stack");
      return;
    }
    const domain = `${ns}_boot`;
    const pidBefore = qemuPid(domain);
    await stopDaemon(TEST_STACK.stateDir, "libvirtd");
    await sleep(1000);
    assert.equal(qemuPid(domain), pidBefore, "the guest outlives libvirtd");
    await startLibvirt(TEST_STACK.stateDir);
    await sleep(3000);
    const vm = await waitForVm(ns, "boot", isPrintable("Running"), "Running after libvirtd restart", 30_000);
    assert.equal(readyCondition(vm)?.status, "True");
    assert.equal(qemuPid(domain), pidBefore, "same QEMU process after libvirtd restart");
    const all = JSON.parse((await kubectl(["get", "vm", "-n", ns, "-o", "json"])).stdout) as {
      items: Array<{ status?: { printableStatus?: string } }>;
    };
    assert.ok(all.items.every((v) => v.status?.printableStatus !== "Failed"));
  });

  it("deleting a VM destroys and undefines its domain, then releases the finalizer", async () => {
    await kubectl(["delete", "vm", "force", "-n", ns, "--wait=true", "--timeout=60s"]);
    await assert.rejects(virsh("dominfo", `${ns}_force`), /failed to get domain|Domain not found/);
    await kubectl(["delete", "vm", "restart", "-n", ns, "--wait=true", "--timeout=120s"]);
    await assert.rejects(virsh("dominfo", `${ns}_restart`), /failed to get domain|Domain not found/);
    assert.equal(await getVm(ns, "restart"), undefined);
  });
});
