// Pure: from a VirtualMachine and what libvirt reports about its domain, what the node agent
// should do next (KubeVirt's shouldStart / shouldShutdown, one step at a time).
import { RESTART_ANNOTATION, type VirtualMachine } from "../../api/virtualmachine.ts";
import { DomainState } from "../../hypervisor/libvirt/constants.ts";

/** Why a shut-off domain stopped (virDomainShutoffReason). */
export const ShutoffReason = { Unknown: 0, Shutdown: 1, Destroyed: 2, Crashed: 3, Failed: 6 } as const;
const PAUSED_REASON_USER = 1;

export interface DomainObservation {
  state: number;
  reason: number;
  id: number;
}

export interface PowerProgress {
  /** When the agent asked the guest to shut down (ACPI), if it is waiting for it. */
  shutdownRequestedAt?: number;
  /** When the agent asked the guest to reboot, if it is waiting for the reboot. */
  rebootRequestedAt?: number;
}

export type PowerAction =
  | { type: "none" }
  | { type: "power-cycle"; value: string }
  | { type: "start" }
  | { type: "shutdown" }
  | { type: "destroy"; why: "grace-expired" | "force" }
  | { type: "wait-shutdown"; remainingMs: number }
  | { type: "suspend" }
  | { type: "resume" }
  | { type: "reboot"; value: string }
  | { type: "reset"; why: "grace-expired" }
  | { type: "wait-reboot"; remainingMs: number }
  | { type: "mark-restart-handled"; value: string };

export function gracePeriodMs(vm: VirtualMachine): number {
  return (vm.spec.shutdown?.gracePeriodSeconds ?? 180) * 1000;
}

function isActive(state: number): boolean {
  return (
    state === DomainState.Running ||
    state === DomainState.Paused ||
    state === DomainState.Blocked ||
    state === DomainState.Shutdown ||
    state === DomainState.PmSuspended
  );
}

/** Whether the VM should be running now, per spec.runStrategy (never starts a deleted VM). */
export function shouldRun(vm: VirtualMachine, domain: DomainObservation | undefined): boolean {
  if (vm.metadata.deletionTimestamp) return false;
  const active = domain ? isActive(domain.state) : false;
  switch (vm.spec.runStrategy ?? "Always") {
    case "Always":
      return true;
    case "Halted":
      return false;
    case "RerunOnFailure":
      // A guest that powered itself off stays off; a crash or failure is started again.
      return active || !(domain?.state === DomainState.Shutoff && domain.reason === ShutoffReason.Shutdown);
    case "Once":
      return active || (vm.status?.startCount ?? 0) === 0;
    case "Manual":
      return active;
  }
}

/** The single next power action. */
export function decidePower(
  vm: VirtualMachine,
  domain: DomainObservation,
  progress: PowerProgress,
  now: number,
  /** The running domain was started from the current definition (no changes pending). */
  definitionInSync = true,
): PowerAction {
  const run = shouldRun(vm, domain);
  const active = isActive(domain.state);
  if (!run) {
    if (!active) return { type: "none" };
    const grace = gracePeriodMs(vm);
    if (grace === 0) return { type: "destroy", why: "force" };
    // A paused guest cannot see the power button; let it run to shut down.
    if (domain.state === DomainState.Paused) return { type: "resume" };
    if (progress.shutdownRequestedAt === undefined) return { type: "shutdown" };
    const remainingMs = progress.shutdownRequestedAt + grace - now;
    if (remainingMs <= 0) return { type: "destroy", why: "grace-expired" };
    return { type: "wait-shutdown", remainingMs };
  }
  if (!active) return { type: "start" };
  // A power cycle (restart with changes pending) is under way: wait for the guest to stop.
  if (progress.shutdownRequestedAt !== undefined) {
    const remainingMs = progress.shutdownRequestedAt + gracePeriodMs(vm) - now;
    if (remainingMs <= 0) return { type: "destroy", why: "grace-expired" };
    return { type: "wait-shutdown", remainingMs };
  }

  const restart = vm.metadata.annotations?.[RESTART_ANNOTATION];
  if (restart && restart !== vm.status?.restartRequestHandled) {
    // A reboot keeps the running definition; pending changes need a stop and a fresh start.
    if (domain.state === DomainState.Running) {
      return definitionInSync ? { type: "reboot", value: restart } : { type: "power-cycle", value: restart };
    }
    return { type: "mark-restart-handled", value: restart };
  }
  if (progress.rebootRequestedAt !== undefined) {
    const remainingMs = progress.rebootRequestedAt + gracePeriodMs(vm) - now;
    if (remainingMs <= 0) return { type: "reset", why: "grace-expired" };
    return { type: "wait-reboot", remainingMs };
  }
  const paused = domain.state === DomainState.Paused;
  if (vm.spec.paused && !paused) return { type: "suspend" };
  if (!vm.spec.paused && paused && domain.reason === PAUSED_REASON_USER) return { type: "resume" };
  return { type: "none" };
}
