// --wait: when each verb's work is done or failed, and the polling loop's progress, failures,
// retries and deadline, against objects fed in order.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine, VirtualMachineStatus } from "../../src/api/virtualmachine.ts";
import type { VMSnapshot } from "../../src/api/vmsnapshot.ts";
import type { VMTemplate } from "../../src/api/vmtemplate.ts";
import { WaitError } from "../../src/cli/errors.ts";
import {
  judgeGuestFilesystems,
  judgePhase,
  judgePower,
  judgeRefresh,
  judgeTemplate,
  judgeVmReady,
  newFailure,
} from "../../src/cli/judges.ts";
import { SNAPSHOT, VM } from "../../src/cli/kinds.ts";
import { type WaitDeps, waitFor } from "../../src/cli/wait.ts";

const T0 = "2025-03-04T05:00:00Z";
type ApiCondition = NonNullable<VirtualMachineStatus["conditions"]>[number];
const cond = (
  type: string,
  status: ApiCondition["status"],
  message = "",
  lastTransitionTime = T0,
): ApiCondition => ({
  type,
  status,
  reason: "R",
  message,
  lastTransitionTime,
});

function vm(status: VirtualMachineStatus, spec: VirtualMachine["spec"] = {}, generation = 2): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "web", generation },
    spec,
    status,
  };
}

describe("power verbs are done when the agent has done them", () => {
  const v = "2025-03-04T05:06:07.890Z";
  it("start of a Manual VM: Running and its request handled (a Running from before is not enough)", () => {
    const manual = { runStrategy: "Manual" } as const;
    const req = { generation: 2, value: v };
    assert.equal(
      judgePower("start", vm({ printableStatus: "Running", powerRequestHandled: "start@old" }, manual), req)
        .state,
      "waiting",
    );
    assert.equal(
      judgePower("start", vm({ printableStatus: "Running", powerRequestHandled: `start@${v}` }, manual), req)
        .state,
      "done",
    );
  });
  it("start of a Halted VM (now Always): Running at the new generation", () => {
    const req = { generation: 3 };
    assert.equal(
      judgePower("start", vm({ printableStatus: "Running", observedGeneration: 2 }, {}, 3), req).state,
      "waiting",
    );
    assert.equal(
      judgePower("start", vm({ printableStatus: "Running", observedGeneration: 3 }, {}, 3), req).state,
      "done",
    );
  });
  it("start of a frozen VM fails at once: it will not start", () => {
    const verdict = judgePower("start", vm({ printableStatus: "Frozen" }, { runStrategy: "Manual" }), {
      generation: 2,
      value: v,
    });
    assert.equal(verdict.state, "failed");
  });
  it("stop: off, and the request handled or (strategy changed) the new generation seen", () => {
    const manual = { runStrategy: "Manual" } as const;
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Stopped" }, manual), { generation: 2, value: v }).state,
      "waiting",
    );
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Stopped", powerRequestHandled: `stop@${v}` }, manual), {
        generation: 2,
        value: v,
      }).state,
      "done",
    );
    const halted = { runStrategy: "Halted" } as const;
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Stopping", observedGeneration: 3 }, halted, 3), {
        generation: 3,
        value: v,
      }).state,
      "waiting",
    );
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Stopped", observedGeneration: 2 }, halted, 3), {
        generation: 3,
        value: v,
      }).state,
      "waiting",
    );
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Stopped", observedGeneration: 3 }, halted, 3), {
        generation: 3,
        value: v,
      }).state,
      "done",
    );
    assert.equal(
      judgePower("stop", vm({ printableStatus: "Frozen", powerRequestHandled: `stop@${v}` }), {
        generation: 2,
        value: v,
      }).state,
      "done",
    );
  });
  it("restart: its request handled and Running again", () => {
    const req = { generation: 2, value: v };
    assert.equal(
      judgePower("restart", vm({ printableStatus: "Running", restartRequestHandled: "old" }), req).state,
      "waiting",
    );
    assert.equal(
      judgePower("restart", vm({ printableStatus: "Starting", restartRequestHandled: v }), req).state,
      "waiting",
    );
    assert.equal(
      judgePower("restart", vm({ printableStatus: "Running", restartRequestHandled: v }), req).state,
      "done",
    );
    const cycling = vm({
      printableStatus: "Stopped",
      conditions: [cond("Ready", "False", "the VM is starting")],
    });
    assert.equal(judgePower("restart", cycling, req).state, "waiting", "a power cycle passes through off");
  });
  it("restart of a VM stopped as asked fails: the agent does not boot it", () => {
    const stopped = vm({
      printableStatus: "Stopped",
      conditions: [cond("Ready", "True", "stopped as asked")],
    });
    const verdict = judgePower("restart", stopped, { generation: 2, value: v });
    assert.equal(verdict.state, "failed");
    assert.match(verdict.state === "failed" ? verdict.message : "", /the VM is stopped/);
  });
  it("pause/unpause at the new generation; freeze when Frozen", () => {
    const req = { generation: 3 };
    assert.equal(
      judgePower("pause", vm({ printableStatus: "Paused", observedGeneration: 3 }, {}, 3), req).state,
      "done",
    );
    assert.equal(
      judgePower("unpause", vm({ printableStatus: "Running", observedGeneration: 2 }, {}, 3), req).state,
      "waiting",
    );
    assert.equal(judgePower("freeze", vm({ printableStatus: "Stopped" }), req).state, "waiting");
    assert.equal(judgePower("freeze", vm({ printableStatus: "Frozen" }), req).state, "done");
  });
  it("progress shows the status and, while not Ready, why", () => {
    const verdict = judgePower(
      "stop",
      vm({
        printableStatus: "Stopping",
        conditions: [cond("Ready", "False", "ACPI shutdown requested; waiting for the guest")],
      }),
      { generation: 2, value: v },
    );
    assert.deepEqual(verdict, {
      state: "waiting",
      seen: "Stopping (ACPI shutdown requested; waiting for the guest)",
    });
  });
});

describe("failures the request caused", () => {
  it("Stalled or Failure True that was not so before fail; the same one from before does not", () => {
    const stalled = [cond("Stalled", "True", "the guest crashed")];
    assert.equal(newFailure(vm({ conditions: stalled }), []), "the guest crashed");
    assert.equal(newFailure(vm({ conditions: stalled }), undefined), "the guest crashed");
    assert.equal(newFailure(vm({ conditions: stalled }), stalled), undefined);
    const again = [cond("Stalled", "True", "the guest crashed", "2025-03-04T05:09:00Z")];
    assert.equal(newFailure(vm({ conditions: again }), stalled), "the guest crashed", "stalled anew");
    assert.equal(
      newFailure(vm({ conditions: [cond("Failure", "True", "no such kernel")] }), [cond("Failure", "False")]),
      "no such kernel",
    );
    assert.equal(newFailure(vm({ conditions: [cond("Stalled", "False")] }), []), undefined);
  });
  it("a power verb fails with the message", () => {
    const verdict = judgePower(
      "start",
      vm({ conditions: [cond("Failure", "True", "kernel not found")] }, { runStrategy: "Manual" }),
      {
        generation: 2,
        value: "v",
        before: [],
      },
    );
    assert.deepEqual(verdict, { state: "failed", message: "kernel not found" });
  });
});

describe("other verbs' answers", () => {
  it("fsfreeze/fsthaw: the agent's answer to this request, failed with its message", () => {
    const fs = (guestFilesystems: VirtualMachineStatus["guestFilesystems"]) =>
      vm({ printableStatus: "Running", guestFilesystems });
    assert.equal(
      judgeGuestFilesystems("freeze", fs({ frozen: false, requestHandled: "thaw@x" }), "v").state,
      "waiting",
    );
    assert.equal(
      judgeGuestFilesystems("freeze", fs({ frozen: true, requestHandled: "freeze@v" }), "v").state,
      "done",
    );
    assert.deepEqual(
      judgeGuestFilesystems(
        "thaw",
        fs({ frozen: true, requestHandled: "thaw@v", message: "no guest agent" }),
        "v",
      ),
      {
        state: "failed",
        message: "no guest agent",
      },
    );
  });
  it("refresh: refreshHandled is the request's value", () => {
    assert.equal(judgeRefresh(vm({ refreshHandled: "old" }), "v").state, "waiting");
    assert.equal(judgeRefresh(vm({ refreshHandled: "v" }), "v").state, "done");
  });
  it("spec changes and new VMs: Ready at the generation; a change for the next boot says so", () => {
    const ready = [cond("Ready", "True")];
    assert.equal(
      judgeVmReady(vm({ observedGeneration: 1, conditions: ready }), { generation: 2 }).state,
      "waiting",
    );
    assert.deepEqual(judgeVmReady(vm({ observedGeneration: 2, conditions: ready }), { generation: 2 }), {
      state: "done",
    });
    const later = judgeVmReady(
      vm({ observedGeneration: 2, conditions: [...ready, cond("RestartRequired", "True")] }),
      { generation: 2 },
    );
    assert.equal(later.state === "done" && /next start/.test(later.note ?? ""), true);
  });
  it("snapshots and restores: Succeeded, or Failed with the error", () => {
    const snap = (status: VMSnapshot["status"]): VMSnapshot => ({
      apiVersion: "v",
      kind: "VMSnapshot",
      metadata: { name: "s" },
      spec: { vmName: "web" },
      ...(status ? { status } : {}),
    });
    assert.deepEqual(judgePhase(snap(undefined)), { state: "waiting", seen: "Pending" });
    assert.deepEqual(
      judgePhase(snap({ phase: "InProgress", conditions: [cond("Ready", "False", "taking it")] })),
      {
        state: "waiting",
        seen: "InProgress (taking it)",
      },
    );
    assert.deepEqual(judgePhase(snap({ phase: "Failed", error: "libvirt refused it" })), {
      state: "failed",
      message: "libvirt refused it",
    });
    assert.equal(judgePhase(snap({ phase: "Succeeded" })).state, "done");
  });
  it("templates: Ready at the generation; Failed says why; progress in percent", () => {
    const tpl = (status: VMTemplate["status"]): VMTemplate => ({
      apiVersion: "v",
      kind: "VMTemplate",
      metadata: { name: "t", generation: 1 },
      spec: { source: { vmName: "web" } },
      ...(status ? { status } : {}),
    });
    assert.deepEqual(judgeTemplate(tpl({ phase: "Pending", progress: 40 }), 1), {
      state: "waiting",
      seen: "Pending 40%",
    });
    assert.equal(
      judgeTemplate(tpl({ phase: "Ready", observedGeneration: 1, conditions: [cond("Ready", "True")] }), 1)
        .state,
      "done",
    );
    assert.deepEqual(
      judgeTemplate(tpl({ phase: "Failed", conditions: [cond("Ready", "False", "DiskTooLarge")] }), 1),
      {
        state: "failed",
        message: "DiskTooLarge",
      },
    );
  });
});

/** A fake API and clock: each get returns the next of the objects queued for that name. */
function fakeDeps(queues: Record<string, unknown[]>) {
  let clock = 0;
  const progress: string[] = [];
  const deps: WaitDeps = {
    get: async (_kind, name) => {
      const queue = queues[name] ?? [];
      const next = queue.length > 1 ? queue.shift() : queue[0];
      if (next instanceof Error) throw next;
      return next;
    },
    sleep: async (ms) => {
      clock += ms;
    },
    clock: () => clock,
    progress: (line) => progress.push(line),
    describeError: (err) => (err as Error).message,
  };
  return { deps, progress, elapsed: () => clock };
}

const snapshotIn = (phase: string, extra = {}) => ({
  metadata: { name: "s" },
  spec: { vmName: "web" },
  status: { phase, ...extra },
});
const target = (name: string) => ({ kind: SNAPSHOT, name, goal: "to be taken", judge: judgePhase });

describe("the wait loop", () => {
  it("polls every 500 ms, prints a line when what it sees changes, returns when done", async () => {
    const { deps, progress, elapsed } = fakeDeps({
      s: [snapshotIn("InProgress"), snapshotIn("InProgress"), snapshotIn("Succeeded")],
    });
    await waitFor([target("s")], 60_000, deps);
    assert.deepEqual(progress, ["s: InProgress"]);
    assert.equal(elapsed(), 1000);
  });
  it("a failure ends it with kind/name: message", async () => {
    const { deps } = fakeDeps({ s: [snapshotIn("Failed", { error: "libvirt refused it" })] });
    await assert.rejects(waitFor([target("s")], 60_000, deps), (err: Error) => {
      assert.ok(err instanceof WaitError);
      assert.equal(err.message, "vmsnapshot/s: libvirt refused it");
      return true;
    });
  });
  it("the deadline ends it, saying what it last saw", async () => {
    const { deps, elapsed } = fakeDeps({ s: [snapshotIn("InProgress")] });
    await assert.rejects(
      waitFor([target("s")], 2_000, deps),
      /: timed out waiting for vmsnapshot\/s to be taken \(last seen: InProgress\) \(waited 2s\)$/,
    );
    assert.equal(elapsed(), 2000);
  });
  it("a transient error is retried; NotFound or Forbidden ends the wait", async () => {
    const transient = fakeDeps({ s: [new Error("socket hang up"), snapshotIn("Succeeded")] });
    await waitFor([target("s")], 60_000, transient.deps);
    assert.match(transient.progress[0] ?? "", /last read failed: socket hang up/);
    const gone = Object.assign(new Error("HTTP 404"), { code: 404, body: {} });
    await assert.rejects(waitFor([target("s")], 60_000, fakeDeps({ s: [gone] }).deps), /HTTP 404/);
  });
  it("waits for every target; notes of those done are returned", async () => {
    const ready = {
      metadata: { name: "a", generation: 1 },
      spec: {},
      status: { observedGeneration: 1, conditions: [cond("Ready", "True"), cond("RestartRequired", "True")] },
    };
    const { deps } = fakeDeps({ a: [ready], s: [snapshotIn("InProgress"), snapshotIn("Succeeded")] });
    const notes = await waitFor(
      [
        {
          kind: VM,
          name: "a",
          goal: "to be Ready",
          judge: (x: VirtualMachine) => judgeVmReady(x, { generation: 1 }),
        },
        target("s"),
      ],
      60_000,
      deps,
    );
    assert.equal(notes.length, 1);
    assert.match(notes[0] ?? "", /^a: the change applies at the next start/);
  });
});
