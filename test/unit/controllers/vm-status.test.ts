import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  AGENT_STATUS_FIELDS,
  type AgentObservation,
  agentStatus,
} from "../../../src/controllers/node/vm-status.ts";
import { ownedStatusChanged } from "../../../src/controllers/status-diff.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

const t0 = new Date("2026-11-22T10:00:00Z");
const t1 = new Date("2026-11-22T10:05:00Z");

function vm(
  status: VirtualMachine["status"] = {},
  spec: Partial<VirtualMachine["spec"]> = {},
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", generation: 3 },
    spec: { memory: "1Gi", ...spec },
    status,
  };
}
const base: AgentObservation = {
  domainName: "ns_v",
  domain: { state: DomainState.Running, reason: 1, id: 7 },
  definitionInSync: true,
  stopping: false,
  startCount: 1,
};

type Status = ReturnType<typeof agentStatus>;
const condition = (s: Status, type: string) => {
  const c = s.conditions?.find((x) => x.type === type);
  return `${c?.status}/${c?.reason}`;
};
const standing = (s: Status) => ["Ready", "Reconciling", "Stalled"].map((t) => condition(s, t));

describe("agentStatus", () => {
  it("a running, in-sync VM is Running, Ready and SYNC, with the seeds' fields", () => {
    const s = agentStatus(vm(), base, t0);
    assert.equal(s.printableStatus, "Running");
    assert.equal(s.hypervisorStatus, "RUNNING");
    assert.equal(s.hypervisorId, 7);
    assert.equal(s.syncStatus, "SYNC");
    assert.equal(s.domainName, "ns_v");
    assert.equal(s.observedGeneration, 3);
    assert.equal(s.statusChangedAt, t0.toISOString());
    const ready = s.conditions?.find((c) => c.type === "Ready");
    assert.equal(ready?.status, "True");
    assert.equal(ready?.observedGeneration, 3);
    assert.deepEqual(
      s.conditions?.map((c) => c.type),
      ["Ready", "Reconciling", "Stalled", "RestartRequired", "Synchronized", "Paused", "Failure"],
    );
  });

  it("steady state computes the same status: nothing to write", () => {
    const first = agentStatus(vm(), base, t0);
    const again = agentStatus(vm(first), base, t1);
    assert.deepEqual(again, first, "transition times and statusChangedAt keep their values");
    assert.equal(ownedStatusChanged(first as Record<string, unknown>, again, AGENT_STATUS_FIELDS), false);
  });

  it("a state change moves statusChangedAt and the Ready transition time", () => {
    const first = agentStatus(vm(), base, t0);
    const paused = agentStatus(
      vm(first, { paused: true }),
      { ...base, domain: { state: DomainState.Paused, reason: 1, id: 7 } },
      t1,
    );
    assert.equal(paused.printableStatus, "Paused");
    assert.equal(paused.statusChangedAt, t1.toISOString());
    // Paused as asked: still Ready (as its spec asks); the Paused condition moves.
    assert.equal(paused.conditions?.find((c) => c.type === "Ready")?.status, "True");
    assert.equal(paused.conditions?.find((c) => c.type === "Paused")?.lastTransitionTime, t1.toISOString());
    assert.equal(paused.conditions?.find((c) => c.type === "Paused")?.status, "True");
    assert.equal(ownedStatusChanged(first as Record<string, unknown>, paused, AGENT_STATUS_FIELDS), true);
  });

  it("a shut-off VM that should run is Starting; one that should not is Stopped, without hypervisorId", () => {
    const shutoff = { ...base, domain: { state: DomainState.Shutoff, reason: 0, id: -1 } };
    assert.equal(agentStatus(vm(), shutoff, t0).printableStatus, "Starting");
    const stopped = agentStatus(vm({}, { runStrategy: "Halted" }), shutoff, t0);
    assert.equal(stopped.printableStatus, "Stopped");
    assert.equal(stopped.hypervisorStatus, "HALTED");
    assert.equal(stopped.hypervisorId, undefined);
  });

  it("a failure is reported in Failure, Synchronized and Ready with its message", () => {
    const s = agentStatus(
      vm(),
      { ...base, domain: undefined, failure: { reason: "DomainConflict", message: "taken" } },
      t0,
    );
    assert.equal(s.printableStatus, "Failed");
    assert.equal(s.syncStatus, "SYNC_NOK");
    const failure = s.conditions?.find((c) => c.type === "Failure");
    assert.deepEqual(
      [failure?.status, failure?.reason, failure?.message],
      ["True", "DomainConflict", "taken"],
    );
  });

  it("a definition changed while running is SYNC_NOK and RestartRequired, and still Ready", () => {
    const s = agentStatus(vm(), { ...base, definitionInSync: false }, t0);
    assert.equal(s.syncStatus, "SYNC_NOK");
    assert.equal(condition(s, "Ready"), "True/Running");
    assert.equal(condition(s, "RestartRequired"), "True/PendingChanges");
  });

  it("Ready means as the spec asks: a stopped VM that should be stopped is Ready", () => {
    const shutoff = { ...base, domain: { state: DomainState.Shutoff, reason: 1, id: -1 } };
    const halted = agentStatus(vm({}, { runStrategy: "Halted" }), shutoff, t0);
    assert.deepEqual(standing(halted), ["True/Stopped", "False/Reconciled", "False/Reconciled"]);
    const starting = agentStatus(vm(), shutoff, t0);
    assert.deepEqual(standing(starting), ["False/Starting", "True/Starting", "False/Progressing"]);
    const failed = agentStatus(vm(), { ...base, failure: { reason: "StartFailed", message: "no" } }, t0);
    assert.deepEqual(standing(failed), ["False/StartFailed", "False/Stalled", "True/StartFailed"]);
    for (const c of failed.conditions ?? []) assert.equal(c.observedGeneration, vm().metadata.generation);
  });

  it("a crash that runStrategy does not restart, and a crash loop, are Stalled", () => {
    const crashed = { ...base, domain: { state: DomainState.Shutoff, reason: 3, id: -1 } };
    const once = agentStatus(vm({ startCount: 1 }, { runStrategy: "Once" }), crashed, t0);
    assert.deepEqual(standing(once), ["False/Crashed", "False/Stalled", "True/Crashed"]);
    const looping = agentStatus(vm(), { ...crashed, crashLoops: 3 }, t0);
    assert.deepEqual(standing(looping), ["False/CrashLoopBackOff", "False/Stalled", "True/CrashLoopBackOff"]);
    const once2 = agentStatus(vm(), { ...crashed, crashLoops: 1 }, t0);
    assert.equal(condition(once2, "Reconciling"), "True/Starting", "one quick crash: still on its way");
  });

  it("leaves the controller's conditions out of its own apply", () => {
    const withScheduled = vm({
      conditions: [
        {
          type: "Scheduled",
          status: "True",
          reason: "Scheduled",
          message: "",
          lastTransitionTime: t0.toISOString(),
        },
      ],
    });
    assert.ok(!agentStatus(withScheduled, base, t0).conditions?.some((c) => c.type === "Scheduled"));
  });
});
