import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RESTART_ANNOTATION, type VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { decidePower, ShutoffReason, shouldRun } from "../../../src/controllers/node/vm-decide.ts";
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
      remainingMs: 6000,
    });
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
    assert.deepEqual(decidePower(handled, running, { shutdownRequestedAt: now - 1000 }, now, false), {
      type: "wait-shutdown",
      remainingMs: 4000,
    });
    assert.deepEqual(decidePower(handled, running, { shutdownRequestedAt: now - 6000 }, now, false), {
      type: "destroy",
      why: "grace-expired",
    });
    assert.deepEqual(decidePower(handled, off(ShutoffReason.Shutdown), {}, now, false), { type: "start" });
  });
});
