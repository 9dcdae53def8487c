// When the work a verb started is done, has failed, or what it is doing now: pure functions of
// the object as read while waiting (--wait). Each answers "done", "failed" with the message the
// user needs, or "waiting" with what to show as progress.
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";

export type Verdict =
  | { state: "done"; note?: string }
  | { state: "failed"; message: string }
  | { state: "waiting"; seen: string };

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

interface Judged {
  metadata: { generation?: number };
  status?: { observedGeneration?: number; conditions?: Condition[] };
}

function conditionOf(obj: Judged, type: string): Condition | undefined {
  return obj.status?.conditions?.find((c) => c.type === type);
}

/**
 * A failure the request caused: Stalled or Failure True now and not, or not so, before it
 * (BEFORE: the conditions read before the write; none for a new object). One that was there
 * before, unchanged, is shown as progress instead: the request may still mend it.
 */
export function newFailure(obj: Judged, before: readonly Condition[] | undefined): string | undefined {
  for (const type of ["Stalled", "Failure"]) {
    const now = conditionOf(obj, type);
    if (now?.status !== "True") continue;
    const was = before?.find((c) => c.type === type);
    const same =
      was?.status === "True" &&
      was.lastTransitionTime === now.lastTransitionTime &&
      was.message === now.message;
    if (!same) return now.message || now.reason || `${type}=True`;
  }
  return undefined;
}

/** What a VM is doing, for progress lines: "Stopping (the VM is stopping)". */
export function vmSeen(vm: VirtualMachine): string {
  const status = vm.status?.printableStatus ?? "Pending";
  const ready = conditionOf(vm, "Ready");
  return ready?.status === "False" && ready.message ? `${status} (${ready.message})` : status;
}

/** The generation the object's status speaks of has caught up with the write's. */
function observed(obj: Judged, generation: number): boolean {
  return (obj.status?.observedGeneration ?? 0) >= generation;
}

/** What one write to a VM asked, to judge the VM against. */
export interface VmRequest {
  /** metadata.generation after the write. */
  generation: number;
  /** The VM's conditions before the write. */
  before?: readonly Condition[];
  /** The request annotation's value (start, stop, restart, fsfreeze, refresh …), when the verb wrote one. */
  value?: string;
}

export type PowerGoal = "start" | "stop" | "restart" | "pause" | "unpause" | "freeze";

/**
 * Power verbs: start → Running (a Manual VM's request carried out), stop → off (Stopped or
 * Frozen; the request carried out, or for a strategy change the new generation seen), restart →
 * the request handled and Running, pause/unpause → Paused/Running at the new generation, freeze →
 * Frozen.
 */
export function judgePower(goal: PowerGoal, vm: VirtualMachine, req: VmRequest): Verdict {
  const failure = newFailure(vm, req.before);
  if (failure) return { state: "failed", message: failure };
  const s = vm.status;
  const status = s?.printableStatus;
  const manual = vm.spec.runStrategy === "Manual";
  const done = (() => {
    switch (goal) {
      case "start": {
        const up = status === "Running" || (status === "Paused" && vm.spec.paused === true);
        return (
          up && (manual ? s?.powerRequestHandled === `start@${req.value}` : observed(vm, req.generation))
        );
      }
      case "stop":
        return (
          (status === "Stopped" || status === "Frozen") &&
          (s?.powerRequestHandled === `stop@${req.value}` || (!manual && observed(vm, req.generation)))
        );
      case "restart":
        return s?.restartRequestHandled === req.value && status === "Running";
      case "pause":
        return status === "Paused" && observed(vm, req.generation);
      case "unpause":
        return status === "Running" && observed(vm, req.generation);
      case "freeze":
        return status === "Frozen";
    }
  })();
  if (done) return { state: "done" };
  // Stopped as its run strategy asks (Ready): the agent ignores a restart, it will not boot. (A
  // restart's own power cycle is Stopping, then Starting, and not Ready.)
  if (goal === "restart" && status === "Stopped" && conditionOf(vm, "Ready")?.status === "True")
    return {
      state: "failed",
      message: "the VM is stopped: restart reboots a running VM (start it with kubectl vm start)",
    };
  if ((goal === "start" || goal === "restart") && status === "Frozen")
    return {
      state: "failed",
      message: `the VM is frozen: it does not ${goal} until unfrozen (kubectl vm unfreeze)`,
    };
  return { state: "waiting", seen: vmSeen(vm) };
}

/** fsfreeze / fsthaw: the agent's answer in status.guestFilesystems. */
export function judgeGuestFilesystems(verb: "freeze" | "thaw", vm: VirtualMachine, value: string): Verdict {
  const fs = vm.status?.guestFilesystems;
  if (fs?.requestHandled !== `${verb}@${value}`)
    return { state: "waiting", seen: `${vmSeen(vm)}, waiting for the guest agent` };
  if (fs.message) return { state: "failed", message: fs.message };
  return { state: "done" };
}

/** status --refresh / stats: the node read the domain after the request. */
export function judgeRefresh(vm: VirtualMachine, value: string): Verdict {
  return vm.status?.refreshHandled === value
    ? { state: "done" }
    : { state: "waiting", seen: `${vmSeen(vm)}, waiting for the node` };
}

/**
 * A spec change or a new VM (cdrom, disk, clone, create-from-template): as kstatus judges it,
 * Ready=True at the new generation. A change that waits for the next boot says so.
 */
export function judgeVmReady(vm: VirtualMachine, req: VmRequest): Verdict {
  const failure = newFailure(vm, req.before);
  if (failure) return { state: "failed", message: failure };
  const ready = conditionOf(vm, "Ready");
  if (!observed(vm, req.generation) || ready?.status !== "True")
    return { state: "waiting", seen: vmSeen(vm) };
  const restart = conditionOf(vm, "RestartRequired");
  return restart?.status === "True"
    ? { state: "done", note: "the change applies at the next start (kubectl vm restart applies it now)" }
    : { state: "done" };
}

/** snapshot, restore: phase Succeeded; Failed says why. */
export function judgePhase(obj: VMSnapshot | VMRestore): Verdict {
  const phase = obj.status?.phase;
  const ready = conditionOf(obj, "Ready");
  if (phase === "Succeeded") return { state: "done" };
  if (phase === "Failed")
    return { state: "failed", message: obj.status?.error || ready?.message || "failed (no reason given)" };
  const failure = newFailure(obj, undefined);
  if (failure) return { state: "failed", message: failure };
  const detail = ready?.status === "False" && ready.message ? ` (${ready.message})` : "";
  return { state: "waiting", seen: `${phase ?? "Pending"}${detail}` };
}

/** set-as-template: the VMTemplate Ready at its generation. */
export function judgeTemplate(t: VMTemplate, generation: number): Verdict {
  const ready = conditionOf(t, "Ready");
  if (ready?.status === "True" && observed(t, generation)) return { state: "done" };
  if (t.status?.phase === "Failed")
    return { state: "failed", message: ready?.message || "the template failed (no reason given)" };
  const failure = newFailure(t, undefined);
  if (failure) return { state: "failed", message: failure };
  const progress = t.status?.progress !== undefined ? ` ${t.status.progress}%` : "";
  const detail = ready?.status === "False" && ready.message ? ` (${ready.message})` : "";
  return { state: "waiting", seen: `${t.status?.phase ?? "Pending"}${progress}${detail}` };
}
