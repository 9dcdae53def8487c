import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RESTART_ANNOTATION, START_ANNOTATION, STOP_ANNOTATION } from "../../../src/api/names.ts";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  decidePower,
  PausedReason,
  pendingPowerRequest,
  REPRESS_MS,
  ShutoffReason,
  shouldRun,
} from "../../../src/controllers/node/vm-decide.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

function vm(
  spec: Partial<VirtualMachine["spec"]> = {},
  status: VirtualMachine["status"] = {},
  annotations?: Record<string, string>,
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", ...(annotations ? { annotations } : {}) },
    spec: { memory: "1Gi", ...spec },
    status,
  };
}
const running = { state: DomainState.Running, reason: 1, id: 3 };
const off = (reason: number = ShutoffReason.Unknown) => ({ state: DomainState.Shutoff, reason, id: -1 });
const now = 1_000_000;

describe("shouldRun", () => {
  it("follows runStrategy", () => {
    assert.equal(shouldRun(vm(), off()), true);
    assert.equal(shouldRun(vm({ runStrategy: "Halted" }), running), false);
    assert.equal(shouldRun(vm({ runStrategy: "Manual" }), off()), false);
    assert.equal(shouldRun(vm({ runStrategy: "Manual" }), running), true);
  });

  it("RerunOnFailure restarts after a crash, not after the guest powered off", () => {
    const v = vm({ runStrategy: "RerunOnFailure" });
    assert.equal(shouldRun(v, off(ShutoffReason.Crashed)), true);
    assert.equal(shouldRun(v, off(ShutoffReason.Shutdown)), false);
  });

  it("Once runs a VM that never ran, and never again", () => {
    assert.equal(shouldRun(vm({ runStrategy: "Once" }, { startCount: 0 }), off()), true);
    assert.equal(
      shouldRun(vm({ runStrategy: "Once" }, { startCount: 1 }), off(ShutoffReason.Shutdown)),
      false,
    );
  });

  it("a VM being deleted never runs", () => {
    const v = vm();
    v.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    assert.equal(shouldRun(v, running), false);
  });
});

describe("decidePower", () => {
  it("starts a stopped VM that should run", () => {
    assert.deepEqual(decidePower(vm(), off(), {}, now), { type: "start" });
  });

  it("stops gracefully: ACPI first, waits out the grace period, then forces", () => {
    const v = vm({ runStrategy: "Halted", shutdown: { gracePeriodSeconds: 10 } });
    assert.deepEqual(decidePower(v, running, {}, now), { type: "shutdown" });
    assert.deepEqual(decidePower(v, running, { shutdownRequestedAt: now - 4000 }, now), {
      type: "wait-shutdown",
      remainingMs: 1000,
    });
    assert.deepEqual(
      decidePower(v, running, { shutdownRequestedAt: now - 8000, lastPressAt: now - 3000 }, now),
      {
        type: "wait-shutdown",
        remainingMs: 2000,
      },
    );
    assert.deepEqual(decidePower(v, running, { shutdownRequestedAt: now - 10_000 }, now), {
      type: "destroy",
      why: "grace-expired",
    });
  });

  it("grace period 0 forces at once; a paused guest is resumed so it can see the button", () => {
    assert.deepEqual(
      decidePower(vm({ runStrategy: "Halted", shutdown: { gracePeriodSeconds: 0 } }), running, {}, now),
      {
        type: "destroy",
        why: "force",
      },
    );
    assert.deepEqual(
      decidePower(vm({ runStrategy: "Halted" }), { state: DomainState.Paused, reason: 1, id: 3 }, {}, now),
      {
        type: "resume",
      },
    );
  });

  it("reboots once per new restart-requested-at value, forcing a reset after the grace period", () => {
    const v = vm({ shutdown: { gracePeriodSeconds: 5 } }, {}, { [RESTART_ANNOTATION]: "t1" });
    assert.deepEqual(decidePower(v, running, {}, now), { type: "reboot", value: "t1" });
    const handled = vm(
      { shutdown: { gracePeriodSeconds: 5 } },
      { restartRequestHandled: "t1" },
      { [RESTART_ANNOTATION]: "t1" },
    );
    assert.deepEqual(decidePower(handled, running, {}, now), { type: "none" });
    assert.deepEqual(decidePower(handled, running, { rebootRequestedAt: now - 5000 }, now), {
      type: "reset",
      why: "grace-expired",
    });
  });

  it("pauses and unpauses as spec.paused says, leaving other pauses alone", () => {
    assert.deepEqual(decidePower(vm({ paused: true }), running, {}, now), { type: "suspend" });
    assert.deepEqual(decidePower(vm(), { state: DomainState.Paused, reason: 1, id: 3 }, {}, now), {
      type: "resume",
    });
    // Paused by a snapshot or save that libvirtd's restart cut short: the guest runs on.
    for (const reason of [PausedReason.Save, PausedReason.Snapshot])
      assert.deepEqual(decidePower(vm(), { state: DomainState.Paused, reason, id: 3 }, {}, now), {
        type: "resume",
      });
    assert.deepEqual(
      decidePower(vm({ paused: true }), { state: DomainState.Paused, reason: 3, id: 3 }, {}, now),
      {
        type: "none",
      },
    );
    // Brought back paused from a memory image (reason Migration): left as it was.
    assert.deepEqual(
      decidePower(vm(), { state: DomainState.Paused, reason: PausedReason.Migration, id: 3 }, {}, now),
      { type: "none" },
    );
    // Paused by an I/O error: not the user's pause, not ours to undo.
    assert.deepEqual(decidePower(vm(), { state: DomainState.Paused, reason: 5, id: 3 }, {}, now), {
      type: "none",
    });
  });
});

describe("decidePower: restart with changes pending", () => {
  it("power-cycles (stop, then start) when the running domain predates its definition", () => {
    const v = vm({ shutdown: { gracePeriodSeconds: 5 } }, {}, { [RESTART_ANNOTATION]: "t2" });
    assert.deepEqual(decidePower(v, running, {}, now, false), { type: "power-cycle", value: "t2" });
    const handled = vm(
      { shutdown: { gracePeriodSeconds: 5 } },
      { restartRequestHandled: "t2" },
      { [RESTART_ANNOTATION]: "t2" },
    );
    const cycling = { powerCycle: true };
    assert.deepEqual(
      decidePower(handled, running, { ...cycling, shutdownRequestedAt: now - 1000 }, now, false),
      { type: "wait-shutdown", remainingMs: 4000 },
    );
    assert.deepEqual(
      decidePower(handled, running, { ...cycling, shutdownRequestedAt: now - 6000 }, now, false),
      {
        type: "destroy",
        why: "grace-expired",
      },
    );
    assert.deepEqual(decidePower(handled, off(ShutoffReason.Shutdown), {}, now, false), { type: "start" });
  });
});

describe("decidePower: a user's intent", () => {
  it("presses the ACPI button again every few seconds while a stop or reboot is awaited", () => {
    const halted = vm({ runStrategy: "Halted" });
    assert.deepEqual(decidePower(halted, running, { shutdownRequestedAt: now - REPRESS_MS }, now), {
      type: "press-again",
      for: "shutdown",
    });
    const rebooting = vm({}, { restartRequestHandled: "t1" }, { [RESTART_ANNOTATION]: "t1" });
    assert.deepEqual(decidePower(rebooting, running, { rebootRequestedAt: now - REPRESS_MS - 1 }, now), {
      type: "press-again",
      for: "reboot",
    });
  });

  it("a change of mind while stopping is honoured at once: the wait ends, the VM runs on", () => {
    assert.deepEqual(decidePower(vm(), running, { shutdownRequestedAt: now - 1000 }, now), {
      type: "cancel-stop",
    });
  });

  it("Manual VMs start and stop on request, the later request winning, each carried out once", () => {
    const manual = (annotations: Record<string, string>, status = {}) =>
      vm({ runStrategy: "Manual" }, status, annotations);
    const t1 = "2026-11-26T10:00:00Z";
    const t2 = "2026-11-26T10:00:05Z";
    assert.deepEqual(decidePower(manual({}), off(), {}, now), { type: "none" });
    assert.deepEqual(decidePower(manual({ [START_ANNOTATION]: t1 }), off(), {}, now), { type: "start" });
    assert.deepEqual(decidePower(manual({ [START_ANNOTATION]: t1 }), running, {}, now), {
      type: "mark-request-handled",
      value: `start@${t1}`,
    });
    const handled = { powerRequestHandled: `start@${t1}` };
    assert.deepEqual(decidePower(manual({ [START_ANNOTATION]: t1 }, handled), running, {}, now), {
      type: "none",
    });
    // Handled: a guest that powers itself off stays off.
    assert.deepEqual(decidePower(manual({ [START_ANNOTATION]: t1 }, handled), off(), {}, now), {
      type: "none",
    });
    const stop = manual({ [START_ANNOTATION]: t1, [STOP_ANNOTATION]: t2 }, handled);
    assert.deepEqual(decidePower(stop, running, {}, now), { type: "shutdown" });
    assert.deepEqual(decidePower(stop, off(ShutoffReason.Shutdown), {}, now), {
      type: "mark-request-handled",
      value: `stop@${t2}`,
    });
    assert.deepEqual(pendingPowerRequest(stop), { verb: "stop", tag: `stop@${t2}` });
    // Requests mean nothing to other run strategies (they say themselves what should run).
    assert.equal(pendingPowerRequest(vm({}, {}, { [STOP_ANNOTATION]: t2 })), undefined);
  });

  it("a guest QEMU must reset is forced off, whatever the run strategy, never resumed", () => {
    const panicked = { state: DomainState.Paused, reason: PausedReason.Crashed, id: 3 };
    assert.equal(decidePower(vm(), panicked, {}, now).type, "recover");
    assert.equal(decidePower(vm({ runStrategy: "Halted" }), panicked, {}, now).type, "recover");
    assert.equal(
      decidePower(vm(), { state: DomainState.Crashed, reason: 0, id: 3 }, {}, now).type,
      "recover",
    );
    // After the forced off, runStrategy decides: Always starts it, Once leaves it.
    assert.deepEqual(decidePower(vm(), off(ShutoffReason.Destroyed), {}, now), { type: "start" });
    assert.deepEqual(
      decidePower(vm({ runStrategy: "Once" }, { startCount: 1 }), off(ShutoffReason.Destroyed), {}, now),
      { type: "none" },
    );
  });

  it("a shutdown we caused (a restart's, or a stop called off too late) is started again", () => {
    for (const runStrategy of ["RerunOnFailure", "Once", "Manual"] as const) {
      const v = vm({ runStrategy }, { startCount: 1 });
      assert.deepEqual(decidePower(v, off(ShutoffReason.Shutdown), { powerCycle: true }, now), {
        type: "start",
      });
    }
    const rerun = vm({ runStrategy: "RerunOnFailure" });
    assert.deepEqual(decidePower(rerun, off(ShutoffReason.Shutdown), { stopCancelledAt: now - 2000 }, now), {
      type: "start",
    });
    // The user asked to stop again meanwhile: it stays off.
    assert.deepEqual(
      decidePower(vm({ runStrategy: "Halted" }), off(ShutoffReason.Shutdown), { powerCycle: true }, now),
      { type: "none" },
    );
  });

  it("a Manual start request that meets a stop in flight is carried out after the stop", () => {
    const t1 = "2026-11-26T10:00:00Z";
    const t2 = "2026-11-26T10:00:05Z";
    const v = vm(
      { runStrategy: "Manual" },
      { powerRequestHandled: `stop@${t1}` },
      { [STOP_ANNOTATION]: t1, [START_ANNOTATION]: t2 },
    );
    const stopping = { shutdownRequestedAt: now - 1000 };
    assert.deepEqual(decidePower(v, running, stopping, now), { type: "cancel-stop" });
    assert.deepEqual(decidePower(v, off(ShutoffReason.Shutdown), {}, now), { type: "start" });
  });

  it("a guest that keeps crashing soon after starting waits longer before each start", () => {
    const crashed = off(ShutoffReason.Crashed);
    const first = { lastStartAt: now - 30_000, crashSeenAt: now - 1000, quickCrashes: 0 };
    assert.deepEqual(decidePower(vm(), crashed, first, now), { type: "wait-start", remainingMs: 9000 });
    assert.deepEqual(decidePower(vm(), crashed, { ...first, quickCrashes: 3 }, now), {
      type: "wait-start",
      remainingMs: 79_000,
    });
    assert.deepEqual(decidePower(vm(), crashed, { ...first, crashSeenAt: now - 10_000 }, now), {
      type: "start",
    });
    // A crash after a long, stable run starts again at once.
    assert.deepEqual(decidePower(vm(), crashed, { lastStartAt: now - 3_600_000, crashSeenAt: now }, now), {
      type: "start",
    });
  });
});
