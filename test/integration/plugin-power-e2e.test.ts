// kubectl vm's power verbs end to end: the real kubectl with the plugin on PATH, run as a
// tenant ServiceAccount with the edit role, against the node agent and real TCG guests. A guest
// booted with acpi=off ignores the power button, so grace periods run out and forcing shows.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FROZEN_ANNOTATION } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import {
  AGENT_STARTED,
  BOOTED,
  consoleText,
  ensureGuest,
  type Guest,
  guestVmSpec,
  waitForConsole,
} from "../support/guest.ts";
import {
  applyVm,
  consoleLogOf,
  getVm,
  isPrintable,
  readyCondition,
  startTestOperator,
  stopTestOperator,
  waitForEvent,
  waitForVm,
} from "../support/operator.ts";
import { kubectlVm, type PluginRun, serviceAccountKubeconfig } from "../support/plugin.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let user = "";
let viewer = "";

/** A guest that ignores the ACPI power button (no ACPI at all): only forcing stops it. */
function deafSpec(extra: Record<string, unknown> = {}) {
  const spec = guestVmSpec(guest, { shutdown: { gracePeriodSeconds: 180 }, ...extra });
  const boot = spec.boot as { cmdline: string };
  return { ...spec, boot: { ...boot, cmdline: `${boot.cmdline} acpi=off` } };
}

/** `kubectl vm ARGS -n ns` as the tenant; fails the test with what it printed unless it exits 0. */
async function vmOk(...args: string[]): Promise<PluginRun> {
  const run = await kubectlVm([...args, "-n", ns], { kubeconfig: user });
  assert.equal(run.code, 0, `kubectl vm ${args.join(" ")} exited ${run.code}: ${run.stderr}${run.stdout}`);
  return run;
}

const since = (start: number) => (Date.now() - start) / 1000;

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("plugin-power-e2e");
  user = await serviceAccountKubeconfig(ns, "user", "edit");
  viewer = await serviceAccountKubeconfig(ns, "viewer", "view");
  await startTestOperator();
});

after(async () => {
  // Guests that ignore the power button would hold their deletion for the whole 180 s grace.
  const { stdout } = await kubectl(["get", "vm", "-n", ns, "-o", "name"]).catch(() => ({ stdout: "" }));
  for (const vm of stdout.split("\n").filter(Boolean))
    await kubectl([
      "patch",
      vm,
      "-n",
      ns,
      "--type=merge",
      "-p",
      '{"spec":{"shutdown":{"gracePeriodSeconds":0}}}',
    ]);
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await stopTestOperator();
});

describe("kubectl vm power verbs (TCG guests)", () => {
  it("a Manual VM is started and stopped", async () => {
    await applyVm(ns, "manual", guestVmSpec(guest, { runStrategy: "Manual" }));
    await waitForVm(ns, "manual", isPrintable("Stopped"), "Stopped (Manual: not started by the operator)");
    await vmOk("start", "manual", "--wait=90s");
    let vm = await getVm(ns, "manual");
    assert.equal(vm?.status?.printableStatus, "Running");
    assert.match(vm?.status?.powerRequestHandled ?? "", /^start@/);
    await sleep(1000); // stopped one second after Running, as an impatient user does
    await vmOk("stop", "manual", "--wait=90s");
    vm = await getVm(ns, "manual");
    assert.equal(vm?.status?.printableStatus, "Stopped");
    assert.equal(vm?.spec.runStrategy, "Manual", "a Manual VM's start and stop leave spec alone");
  });

  it("stop --force is immediate; a later stop --grace-period 5 forces after five seconds", async () => {
    await applyVm(ns, "deaf", deafSpec());
    await waitForVm(ns, "deaf", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "deaf"), BOOTED);
    let asked = Date.now();
    await vmOk("stop", "deaf", "--force");
    let vm = await waitForVm(ns, "deaf", isPrintable("Stopped"), "Stopped", 15_000);
    const forced = since(asked);
    process.stderr.write(
      `    stop --force: Stopped ${forced.toFixed(1)} s after the call (spec grace 180 s)\n`,
    );
    assert.ok(forced < 10, `stop --force took ${forced} s`);
    assert.match(vm?.status?.lastOperation?.message ?? "", /at once/);
    assert.equal(vm?.spec.runStrategy, "Halted");

    await vmOk("start", "deaf", "--wait=90s");
    vm = await getVm(ns, "deaf");
    assert.equal(vm?.spec.runStrategy, "Always");
    assert.match(vm?.status?.powerRequestHandled ?? "", /^stop@.*;grace=0$/, "the forced stop is done");
    await waitForConsole(consoleLogOf(ns, "deaf"), BOOTED, 60_000, 2);
    asked = Date.now();
    await vmOk("stop", "deaf", "--grace-period", "5", "--wait=60s");
    const graced = since(asked);
    vm = await getVm(ns, "deaf");
    process.stderr.write(`    stop --grace-period 5: Stopped ${graced.toFixed(1)} s after the call\n`);
    assert.equal(vm?.status?.printableStatus, "Stopped");
    assert.ok(graced >= 5 && graced < 20, `stop --grace-period 5 took ${graced} s`);
    assert.match(vm?.status?.lastOperation?.message ?? "", /grace period expired/);
  });

  it("restart --force resets a guest that ignores the button at once", async () => {
    await applyVm(ns, "deaf-restart", deafSpec());
    rmSync(consoleLogOf(ns, "deaf-restart"), { force: true });
    await waitForVm(ns, "deaf-restart", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "deaf-restart"), BOOTED);
    const asked = Date.now();
    await vmOk("restart", "deaf-restart", "--force", "--wait=60s");
    await waitForConsole(consoleLogOf(ns, "deaf-restart"), BOOTED, 30_000, 2);
    process.stderr.write(`    restart --force: booted again ${since(asked).toFixed(1)} s after the call\n`);
    assert.ok(since(asked) < 30);
    const vm = await getVm(ns, "deaf-restart");
    assert.match(vm?.status?.lastOperation?.message ?? "", /reset at once/);
  });

  it("a frozen VM stays off through start; unfreezing gives it back to its run strategy", async () => {
    await applyVm(ns, "frozen", guestVmSpec(guest, { runStrategy: "Manual" }));
    await vmOk("start", "frozen", "--wait=90s");
    await vmOk("freeze", "frozen", "--force", "--wait=60s");
    let vm = await getVm(ns, "frozen");
    assert.equal(vm?.status?.printableStatus, "Frozen");
    assert.equal(readyCondition(vm)?.status, "True", "frozen as asked: Ready (kstatus Current)");
    assert.ok(vm?.metadata.annotations?.[FROZEN_ANNOTATION]);
    const start = await kubectlVm(["start", "frozen", "-n", ns], { kubeconfig: user });
    assert.equal(start.code, 0, start.stderr);
    await sleep(8000);
    vm = await getVm(ns, "frozen");
    assert.equal(vm?.status?.printableStatus, "Frozen", "start must not thaw a frozen VM");
    await waitForEvent(ns, "frozen", (e) => e.reason === "StartRefused", "StartRefused");
    await vmOk("unfreeze", "frozen");
    await waitForVm(ns, "frozen", isPrintable("Stopped"), "Stopped (unfrozen)", 30_000);
    await sleep(5000); // and stays so: the start asked while frozen is not carried out late
    vm = await getVm(ns, "frozen");
    assert.equal(
      vm?.status?.printableStatus,
      "Stopped",
      "the start asked while frozen was refused, not kept",
    );

    // An Always VM frozen and unfrozen runs again.
    await applyVm(ns, "frozen-always", guestVmSpec(guest));
    await waitForVm(ns, "frozen-always", isPrintable("Running"), "Running");
    await vmOk("freeze", "frozen-always", "--force", "--wait=60s");
    vm = await getVm(ns, "frozen-always");
    assert.equal(vm?.spec.runStrategy, undefined, "freeze leaves spec alone (no GitOps drift)");
    await vmOk("unfreeze", "frozen-always");
    await waitForVm(ns, "frozen-always", isPrintable("Running"), "Running after unfreeze");
  });

  it("fsfreeze and fsthaw go through the guest agent; a stopped VM's is refused with a message", async () => {
    await applyVm(ns, "fs", guestVmSpec(guest));
    rmSync(consoleLogOf(ns, "fs"), { force: true });
    await waitForVm(ns, "fs", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "fs"), AGENT_STARTED);
    await vmOk("fsfreeze", "fs", "--wait=90s");
    let vm = await getVm(ns, "fs");
    assert.equal(vm?.status?.guestFilesystems?.frozen, true, JSON.stringify(vm?.status?.guestFilesystems));
    assert.equal(vm?.status?.printableStatus, "Running", "the VM keeps running");
    await vmOk("fsthaw", "fs", "--wait=90s");
    vm = await getVm(ns, "fs");
    assert.equal(vm?.status?.guestFilesystems?.frozen, false);

    const stopped = await kubectlVm(["fsfreeze", "manual", "-n", ns], { kubeconfig: user });
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /not running/);
  });

  it("status --refresh and stats ask the node; a viewer may read status but not refresh", async () => {
    await waitForVm(ns, "fs", isPrintable("Running"), "Running");
    const refreshed = await vmOk("status", "fs", "--refresh", "--wait=90s");
    assert.match(refreshed.stdout, /^NAME\s+STATUS/m);
    assert.match(refreshed.stdout, /\bfs\s+Running\b/);
    const vm = (await getVm(ns, "fs")) as VirtualMachine;
    assert.ok(vm.status?.refreshHandled, "the agent answered the refresh");
    const stats = await vmOk("stats", "fs", "--wait=90s");
    assert.match(stats.stdout, /memory/i);

    const all = await kubectlVm(["status", "-A", "-o", "json"], { kubeconfig: user });
    // A namespaced edit role cannot list across namespaces: kubectl's forbidden text.
    assert.equal(all.code, 1);
    assert.match(all.stderr, /forbidden/i);
    const mine = await kubectlVm(["status", "-n", ns, "-o", "json"], { kubeconfig: viewer });
    assert.equal(mine.code, 0, mine.stderr);
    assert.ok((JSON.parse(mine.stdout) as { items: unknown[] }).items.length >= 1);
    const refusal = await kubectlVm(["status", "fs", "--refresh", "-n", ns], { kubeconfig: viewer });
    assert.equal(refusal.code, 1);
    assert.match(refusal.stderr, /forbidden/i);
    assert.match(consoleText(consoleLogOf(ns, "fs")), /BOOTED/);
  });
});
