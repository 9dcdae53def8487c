// What the node agent remembers per VM between reconciles: slow guest actions in flight, and
// the status fields only it writes (pure).
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import type { PowerProgress } from "./vm-decide.ts";

type LastOperation = NonNullable<VirtualMachineStatus["lastOperation"]>;

/** In-memory progress of slow guest actions, per key (seeded from status after a restart). */
export interface Progress extends PowerProgress {
  lastOperation?: LastOperation;
  /**
   * Status fields only the agent writes. Its memory is ahead of the informer cache, which
   * may not yet hold its last write; applying a stale value would undo it (a second reboot).
   */
  startCount: number;
  restartHandled?: string;
  cdromBootedImage?: string;
  /** The refresh request last answered (status.refreshHandled). */
  refreshHandled?: string;
  /** Where the guest's file systems stand after the last freeze or thaw request. */
  guestFilesystems?: NonNullable<VirtualMachineStatus["guestFilesystems"]>;
  /** The start refusal last told (Event and log): said once, not at every reconcile. */
  startRefusalSaid?: string;
}

/** Progress as the status last recorded it: after an agent restart, a shutdown or reboot in flight goes on. */
export function progressFromStatus(vm: VirtualMachine): Progress {
  const last = vm.status?.lastOperation;
  const startedAt = last?.startedAt ? Date.parse(last.startedAt) : undefined;
  const p: Progress = {
    ...(last ? { lastOperation: last } : {}),
    startCount: vm.status?.startCount ?? 0,
    ...(vm.status?.restartRequestHandled ? { restartHandled: vm.status.restartRequestHandled } : {}),
    ...(vm.status?.cdromBootedImage ? { cdromBootedImage: vm.status.cdromBootedImage } : {}),
    ...(vm.status?.powerRequestHandled ? { powerRequestHandled: vm.status.powerRequestHandled } : {}),
    ...(vm.status?.refreshHandled ? { refreshHandled: vm.status.refreshHandled } : {}),
    ...(vm.status?.guestFilesystems ? { guestFilesystems: vm.status.guestFilesystems } : {}),
  };
  if (last?.phase === "Running" && (last.type === "Stop" || last.type === "Restart"))
    p.shutdownRequestedAt = startedAt;
  if (last?.phase === "Running" && last.type === "Restart") p.powerCycle = true;
  if (last?.phase === "Running" && last.type === "Reboot") p.rebootRequestedAt = startedAt;
  return p;
}

/** VM as the agent knows it: its own status fields from memory, which is never behind. */
export function withMemory(vm: VirtualMachine, p: Progress): VirtualMachine {
  return {
    ...vm,
    status: {
      ...vm.status,
      startCount: p.startCount,
      ...(p.restartHandled ? { restartRequestHandled: p.restartHandled } : {}),
      ...(p.cdromBootedImage ? { cdromBootedImage: p.cdromBootedImage } : {}),
      ...(p.powerRequestHandled ? { powerRequestHandled: p.powerRequestHandled } : {}),
    },
  };
}

export function op(type: string, phase: LastOperation["phase"], message: string): LastOperation {
  const now = new Date().toISOString();
  return { type, phase, startedAt: now, ...(phase === "Running" ? {} : { completedAt: now }), message };
}

export function finished(
  prev: LastOperation | undefined,
  phase: LastOperation["phase"],
  message: string,
): LastOperation {
  const now = new Date().toISOString();
  return { type: prev?.type ?? "Stop", phase, startedAt: prev?.startedAt ?? now, completedAt: now, message };
}
