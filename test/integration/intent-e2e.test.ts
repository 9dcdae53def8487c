// A user's intent is not lost: an impatient user stops, restarts, starts (Manual) and changes
// their mind right after a VM reports Running; a failing VM that the user fixes runs at once,
// whatever backoff it had built up. Real TCG guests, grace periods of 180 s.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RESTART_ANNOTATION, START_ANNOTATION, STOP_ANNOTATION } from "../../src/api/names.ts";
import {
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
  eventsOf,
  getVm,
  isPrintable,
  readyCondition,
  requestNow,
  startTestOperator,
  stopTestOperator,
  unbootableKernel,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";

function spec(extra: Record<string, unknown> = {}) {
  return guestVmSpec(guest, { shutdown: { gracePeriodSeconds: 180 }, ...extra });
}

async function patchSpec(name: string, patch: Record<string, unknown>) {
  await kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec: patch })]);
}

/** Times VM's guest has booted, from its console log. */
const boots = (vm: string) => consoleText(consoleLogOf(ns, vm)).split(BOOTED).length - 1;

/** Seconds since START, for messages. */
const since = (start: number) => ((Date.now() - start) / 1000).toFixed(1);

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("intent-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await stopTestOperator();
});

describe("a user's intent (TCG guests, 180 s grace periods)", () => {
  it("stop one second after Running is honoured within 30 s, gracefully", async () => {
    await applyVm(ns, "stop-early", spec());
    await waitForVm(ns, "stop-early", isPrintable("Running"), "Running");
    await sleep(1000);
    const asked = Date.now();
    await patchSpec("stop-early", { runStrategy: "Halted" });
    const vm = await waitForVm(ns, "stop-early", isPrintable("Stopped"), "Stopped", 30_000);
    process.stderr.write(`    stopped ${since(asked)} s after the stop was asked\n`);
    assert.doesNotMatch(
      vm?.status?.lastOperation?.message ?? "",
      /forced/,
      "an ACPI shutdown, not a forced off",
    );
    // Stopped as asked: Ready (Flux and Argo CD must not wait on it forever).
    assert.equal(readyCondition(vm)?.status, "True");
  });

  it("restart one second after Running is honoured within 30 s", async () => {
    rmSync(consoleLogOf(ns, "restart-early"), { force: true });
    await applyVm(ns, "restart-early", spec());
    await waitForVm(ns, "restart-early", isPrintable("Running"), "Running");
    await sleep(1000);
    const asked = Date.now();
    await requestNow(ns, "restart-early", RESTART_ANNOTATION);
    const log = consoleLogOf(ns, "restart-early");
    const deadline = Date.now() + 30_000;
    while (consoleText(log).split(BOOTED).length - 1 < 2 && Date.now() < deadline) await sleep(250);
    assert.equal(consoleText(log).split(BOOTED).length - 1, 2, "the guest booted a second time");
    process.stderr.write(`    rebooted ${since(asked)} s after the restart was asked\n`);
  });

  it("a change of mind while stopping is honoured at once: the VM runs on", async () => {
    await applyVm(ns, "mind", spec());
    await waitForVm(ns, "mind", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "mind"), BOOTED, 60_000);
    const halted = new Date();
    await patchSpec("mind", { runStrategy: "Halted" });
    await waitForVm(ns, "mind", (v) => v?.status?.lastOperation?.type === "Stop", "stopping", 10_000);
    await patchSpec("mind", { runStrategy: "Always" });
    // Running and Ready again, by an operation after the stop: the stop was called off, or the
    // guest had already powered off from the one press and was started again.
    const vm = await waitForVm(
      ns,
      "mind",
      (v) =>
        v?.status?.printableStatus === "Running" &&
        readyCondition(v)?.status === "True" &&
        (v.status.lastOperation?.phase !== "Running" || v.status.lastOperation.type === "Start") &&
        Date.parse(v.status.lastOperation?.completedAt ?? "") >= halted.getTime() - 1000,
      "Running and Ready after the change of mind",
      30_000,
    );
    process.stderr.write(`    change of mind: ${vm?.status?.lastOperation?.message}\n`);
  });

  it("Manual VMs start and stop on request (annotations), each request once", async () => {
    await applyVm(ns, "manual", spec({ runStrategy: "Manual" }));
    let vm = await waitForVm(ns, "manual", isPrintable("Stopped"), "Stopped (Manual never starts itself)");
    assert.equal(readyCondition(vm)?.status, "True");
    const start = await requestNow(ns, "manual", START_ANNOTATION);
    vm = await waitForVm(
      ns,
      "manual",
      (v) => v?.status?.printableStatus === "Running" && v.status.powerRequestHandled === `start@${start}`,
      "Running, with the start request handled",
      30_000,
    );
    await waitForConsole(consoleLogOf(ns, "manual"), BOOTED, 60_000);
    await sleep(1100); // a later second than the start request
    const stop = await requestNow(ns, "manual", STOP_ANNOTATION);
    vm = await waitForVm(
      ns,
      "manual",
      (v) => v?.status?.printableStatus === "Stopped" && v.status.powerRequestHandled === `stop@${stop}`,
      "Stopped, with the stop request handled",
      30_000,
    );
    // Handled requests are not repeated: it stays stopped.
    await sleep(3000);
    assert.equal((await getVm(ns, "manual"))?.status?.printableStatus, "Stopped");
  });

  it("a failing VM the user fixes is retried at once, however long its backoff has grown", async () => {
    await applyVm(ns, "fixme", spec({ boot: { kernel: unbootableKernel(), initrd: guest.initrd } }));
    // Let the failures build a backoff of several seconds (5 ms doubling: the 11th waits ~5 s).
    const deadline = Date.now() + 60_000;
    let failures = 0;
    while (Date.now() < deadline) {
      // libvirt words this failure two ways (below): each wording is its own counted Event.
      failures = (await eventsOf(ns, "fixme"))
        .filter((e) => e.reason === "StartFailed")
        .reduce((sum, e) => sum + (e.count ?? 1), 0);
      if (failures >= 11) break;
      await sleep(500);
    }
    assert.ok(failures >= 11, `the start failed ${failures} times`);
    const vm = await getVm(ns, "fixme");
    assert.equal(vm?.status?.conditions?.find((c) => c.type === "Stalled")?.status, "True");
    const events = await eventsOf(ns, "fixme");
    // One Event per wording, counted: libvirt words this one failure two ways ("process exited
    // while connecting to monitor" or "qemu unexpectedly closed the monitor"), as QEMU's exit races
    // its monitor connection.
    const startFailed = events.filter((e) => e.reason === "StartFailed");
    assert.ok(startFailed.length <= 2, `one Event per wording, counted: ${JSON.stringify(startFailed)}`);
    for (const e of startFailed) assert.match(e.message, /linux kernel too old to load a ram disk/);
    const fixed = Date.now();
    await patchSpec("fixme", {
      boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0" },
    });
    await waitForVm(ns, "fixme", isPrintable("Running"), "Running", 5_000);
    process.stderr.write(`    ${failures} failed starts; Running ${since(fixed)} s after the fix\n`);
  });

  it("a guest that keeps crashing is started again as runStrategy says, waiting longer each time", async () => {
    rmSync(consoleLogOf(ns, "crashy"), { force: true });
    // The test guest panics right after booting (lvo.panic); pvpanic tells QEMU, libvirt ends it.
    const cmdline = "console=ttyS0 lvo.panic panic=0";
    await applyVm(ns, "crashy", spec({ boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline } }));
    await waitForVm(ns, "crashy", isPrintable("Running"), "Running");
    const started = Date.now();
    const deadline = started + 60_000;
    let events: Awaited<ReturnType<typeof eventsOf>> = [];
    while (Date.now() < deadline) {
      events = await eventsOf(ns, "crashy");
      if (events.some((e) => e.reason === "CrashLoopBackOff") && boots("crashy") >= 2) break;
      await sleep(1000);
    }
    const backoff = events.find((e) => e.reason === "CrashLoopBackOff");
    assert.match(backoff?.message ?? JSON.stringify(events), /crashed .* starting it again in \d+ s/);
    // Within a minute: started again, but a handful of times, not every few seconds.
    await sleep(Math.max(0, started + 60_000 - Date.now()));
    const n = boots("crashy");
    process.stderr.write(`    ${n} boots in 60 s of crashing\n`);
    assert.ok(n >= 2 && n <= 4, `${n} boots`);
    // Once: a crash ends it; it is not started again.
    await patchSpec("crashy", { runStrategy: "Once" });
    await waitForVm(ns, "crashy", isPrintable("Stopped"), "Stopped after its crash (Once)", 90_000);
  });
});
