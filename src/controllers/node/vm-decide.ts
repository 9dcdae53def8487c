// Pure: from a VirtualMachine and what libvirt reports about its domain, what the node agent
// should do next (KubeVirt's shouldStart / shouldShutdown, one step at a time).
import { FROZEN_ANNOTATION, RESTART_ANNOTATION, START_ANNOTATION, STOP_ANNOTATION } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { DomainState, isActiveState } from "../../hypervisor/libvirt/constants.ts";

/** Why a domain runs (virDomainRunningReason): a start boots it. */
export const RunningReason = { Booted: 1 } as const;
/** Why a shut-off domain stopped (virDomainShutoffReason). */
export const ShutoffReason = {
  Unknown: 0,
  Shutdown: 1,
  Destroyed: 2,
  Crashed: 3,
  Saved: 5,
  Failed: 6,
} as const;
/** Why a paused domain is paused (virDomainPausedReason): the ones we act on. */
export const PausedReason = {
  User: 1,
  Migration: 2,
  Save: 3,
  Dump: 4,
  IoError: 5,
  ShuttingDown: 8,
  Snapshot: 9,
  Crashed: 10,
} as const;
/**
 * Pauses spec.paused undoes: the user's, and those of a libvirt job (a snapshot, save or dump)
 * that paused the guest and was cut short — libvirtd restarted mid-job leaves the guest paused
 * for good. A job still running refuses the resume, which is then tried again. Not Migration:
 * a guest brought back paused from a saved memory image says Migration, and it may have been
 * paused for a reason of its own (an I/O error) that is not ours to undo.
 */
const UNDONE_PAUSES: readonly number[] = [
  PausedReason.User,
  PausedReason.Save,
  PausedReason.Dump,
  PausedReason.Snapshot,
];
/**
 * A guest that has not reacted to the ACPI button (still booting, acpid not up yet) gets it
 * pressed again this often until the grace period ends: one press during boot is lost.
 */
export const REPRESS_MS = 5_000;
/** After a stop is called off, a power-off this soon is still our press's doing. */
export const CANCELLED_STOP_WINDOW_MS = 120_000;
/** A guest that stops on its own this soon after starting is looping: its next start waits. */
export const QUICK_CRASH_MS = 120_000;

/** How long a crash-looping guest waits before start N+1: 10 s doubling to 5 min. */
export function crashLoopDelay(quickCrashes: number): number {
  return Math.min(300_000, 10_000 * 2 ** quickCrashes);
}

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
  /** When the ACPI button was last pressed for the shutdown or reboot awaited. */
  lastPressAt?: number;
  /** The shutdown awaited is half of a power cycle (restart with a new definition). */
  powerCycle?: boolean;
  /** The Manual start/stop request already carried out ("start@<value>", "stop@<value>"). */
  powerRequestHandled?: string;
  /** When the user called a stop off: a power-off our press still causes is started again. */
  stopCancelledAt?: number;
  /** When the agent last started the domain. */
  lastStartAt?: number;
  /** When a crash (or a guest needing a reset) was first seen, until the next start. */
  crashSeenAt?: number;
  /** Crashes in a row, each soon after its start (crash-loop backoff). */
  quickCrashes?: number;
}

export type PowerAction =
  | { type: "none" }
  | { type: "power-cycle"; value: string }
  | { type: "start" }
  | { type: "shutdown" }
  | { type: "destroy"; why: "grace-expired" | "force" | "asked" }
  | { type: "wait-shutdown"; remainingMs: number }
  | { type: "suspend" }
  | { type: "resume" }
  | { type: "reboot"; value: string }
  | { type: "reset"; why: "grace-expired" }
  /** A restart asked with no grace (kubectl vm restart --force): reset the guest at once. */
  | { type: "reset"; why: "asked"; value: string }
  | { type: "wait-reboot"; remainingMs: number }
  /** A crash-looping guest waits before it is started again. */
  | { type: "wait-start"; remainingMs: number }
  | { type: "mark-restart-handled"; value: string }
  /** Press the ACPI button again for the shutdown (or reboot) already under way. */
  | { type: "press-again"; for: "shutdown" | "reboot" }
  /** The user wants the VM running again while it stops: stop waiting for the shutdown. */
  | { type: "cancel-stop" }
  /** QEMU left the guest needing a reset (crash, panic): force it off; runStrategy decides the rest. */
  | { type: "recover"; why: string }
  | { type: "mark-request-handled"; value: string }
  /** A start request met a frozen VM: it is answered, not carried out. */
  | { type: "refuse-start"; value: string };

/** A Manual VM's start or stop request not carried out yet (the newer of the two). */
export function pendingPowerRequest(
  vm: VirtualMachine,
  handled = vm.status?.powerRequestHandled,
): { verb: "start" | "stop"; tag: string } | undefined {
  if ((vm.spec.runStrategy ?? "Always") !== "Manual") return undefined;
  return latestPowerRequest(vm, handled);
}

/**
 * The newer of the start and stop requests, whatever the run strategy, unless handled. Only a
 * Manual VM is started or stopped by them; any VM's stop request may carry its own grace period
 * (`;grace=N`), used until the VM is off.
 */
export function latestPowerRequest(
  vm: VirtualMachine,
  handled = vm.status?.powerRequestHandled,
): { verb: "start" | "stop"; tag: string } | undefined {
  return newestRequest(vm, { start: START_ANNOTATION, stop: STOP_ANNOTATION }, handled);
}

/**
 * Of two opposite requests (annotations holding the time they were made), the later one as
 * "<verb>@<value>", unless that is HANDLED already. A value that is no timestamp sorts first.
 */
export function newestRequest<V extends string>(
  vm: VirtualMachine,
  annotationOf: Record<V, string>,
  handled: string | undefined,
): { verb: V; tag: string } | undefined {
  const a = vm.metadata.annotations ?? {};
  const requests = (Object.entries(annotationOf) as Array<[V, string]>)
    .map(([verb, annotation]) => ({ verb, value: a[annotation] }))
    .filter((r): r is { verb: V; value: string } => Boolean(r.value));
  if (!requests.length) return undefined;
  const latest = requests.reduce((x, y) => (requestTime(y.value) >= requestTime(x.value) ? y : x));
  const tag = `${latest.verb}@${latest.value}`;
  return tag === handled ? undefined : { verb: latest.verb, tag };
}

/** QEMU needs a reset before this guest can run again: resuming it only fails. */
export function needsReset(domain: DomainObservation): boolean {
  return (
    domain.state === DomainState.Crashed ||
    (domain.state === DomainState.Paused &&
      (domain.reason === PausedReason.Crashed || domain.reason === PausedReason.ShuttingDown))
  );
}

export function gracePeriodMs(vm: VirtualMachine): number {
  return (vm.spec.shutdown?.gracePeriodSeconds ?? 180) * 1000;
}

/** When a request annotation's value was made (the time before any `;`); -1 if it is no time. */
export function requestTime(value: string): number {
  const at = Date.parse(value.split(";")[0] ?? "");
  return Number.isNaN(at) ? -1 : at;
}

/** The grace period a request value asks for itself (`;grace=N`, whole seconds up to a day), in ms. */
export function requestGraceMs(value: string | undefined): number | undefined {
  const seconds = value?.match(/;grace=(\d{1,5})(?:;|$)/)?.[1];
  return seconds !== undefined && Number(seconds) <= 86_400 ? Number(seconds) * 1000 : undefined;
}

/** The grace period of the stop under way: the pending stop request's own, else the spec's. */
export function stopGraceMs(vm: VirtualMachine, handled = vm.status?.powerRequestHandled): number {
  const asked =
    latestPowerRequest(vm, handled)?.verb === "stop"
      ? requestGraceMs(vm.metadata.annotations?.[STOP_ANNOTATION])
      : undefined;
  return asked ?? gracePeriodMs(vm);
}

/** The grace period of a restart: the restart request's own (0: reset at once), else the spec's. */
export function restartGraceMs(vm: VirtualMachine): number {
  return requestGraceMs(vm.metadata.annotations?.[RESTART_ANNOTATION]) ?? gracePeriodMs(vm);
}

/** Frozen (kubectl vm freeze): kept stopped whatever asks it to start, until the annotation goes. */
export function isFrozen(vm: VirtualMachine): boolean {
  return vm.metadata.annotations?.[FROZEN_ANNOTATION] !== undefined;
}

/** Whether the VM should be running now, per spec.runStrategy (never starts a deleted VM). */
export function shouldRun(vm: VirtualMachine, domain: DomainObservation | undefined): boolean {
  if (vm.metadata.deletionTimestamp || isFrozen(vm)) return false;
  const active = domain ? isActiveState(domain.state) : false;
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
    case "Manual": {
      const request = pendingPowerRequest(vm);
      return request ? request.verb === "start" : active;
    }
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
  const active = isActiveState(domain.state);
  if (needsReset(domain)) return { type: "recover", why: describeState(domain) };
  const handled = progress.powerRequestHandled ?? vm.status?.powerRequestHandled;
  const request = pendingPowerRequest(vm, handled);
  const stopping = progress.shutdownRequestedAt !== undefined;
  if (request && !vm.metadata.deletionTimestamp) {
    if (request.verb === "start" && isFrozen(vm)) return { type: "refuse-start", value: request.tag };
    // A stop is done once the domain is off; a start that met a stop in flight waits for it.
    if (request.verb === "stop" && !active) return { type: "mark-request-handled", value: request.tag };
    if (request.verb === "start" && active && !stopping)
      return { type: "mark-request-handled", value: request.tag };
  }
  // Any VM's stop request is done once it is off: its grace period no longer applies.
  const stopRequest = latestPowerRequest(vm, handled);
  if (stopRequest?.verb === "stop" && !active && !vm.metadata.deletionTimestamp)
    return { type: "mark-request-handled", value: stopRequest.tag };
  // One its run strategy overrode (the VM runs on, GitOps put Always back): done too, so its
  // grace period cannot force a later stop or deletion.
  if (
    stopRequest?.verb === "stop" &&
    run &&
    active &&
    !stopping &&
    (vm.spec.runStrategy ?? "Always") !== "Manual" &&
    !vm.metadata.deletionTimestamp
  )
    return { type: "mark-request-handled", value: stopRequest.tag };
  // Off because of us (a restart's shutdown, or a stop called off too late): start it again,
  // whatever runStrategy would say of a guest that powered itself off.
  if (!active && offByUs(vm, progress, request, now)) return startOrWait(progress, now);
  if (!run) {
    if (!active) return { type: "none" };
    const grace = stopGraceMs(vm, handled);
    if (grace === 0) return { type: "destroy", why: gracePeriodMs(vm) === 0 ? "force" : "asked" };
    // A paused guest cannot see the power button; let it run to shut down.
    if (domain.state === DomainState.Paused) return { type: "resume" };
    if (!stopping || progress.powerCycle) return { type: "shutdown" };
    return waitForShutdown(progress, grace, now);
  }
  if (!active) return startOrWait(progress, now);
  if (progress.shutdownRequestedAt !== undefined) {
    // A power cycle (restart with changes pending) is under way: wait for the guest to stop.
    if (progress.powerCycle) return waitForShutdown(progress, restartGraceMs(vm), now);
    // A stop the user took back (runStrategy, or a start request, says run again).
    return { type: "cancel-stop" };
  }

  const restart = vm.metadata.annotations?.[RESTART_ANNOTATION];
  if (restart && restart !== vm.status?.restartRequestHandled) {
    // A reboot keeps the running definition; pending changes need a stop and a fresh start.
    if (domain.state === DomainState.Running) {
      // No grace asked: a reset now; a definition to apply needs the power cycle (forced at once).
      if (definitionInSync && restartGraceMs(vm) === 0)
        return { type: "reset", why: "asked", value: restart };
      return definitionInSync ? { type: "reboot", value: restart } : { type: "power-cycle", value: restart };
    }
    return { type: "mark-restart-handled", value: restart };
  }
  if (progress.rebootRequestedAt !== undefined) {
    const remainingMs = progress.rebootRequestedAt + restartGraceMs(vm) - now;
    if (remainingMs <= 0) return { type: "reset", why: "grace-expired" };
    const sincePress = now - (progress.lastPressAt ?? progress.rebootRequestedAt);
    if (sincePress >= REPRESS_MS) return { type: "press-again", for: "reboot" };
    return { type: "wait-reboot", remainingMs: Math.min(remainingMs, REPRESS_MS - sincePress) };
  }
  const paused = domain.state === DomainState.Paused;
  if (vm.spec.paused && !paused) return { type: "suspend" };
  if (!vm.spec.paused && paused && UNDONE_PAUSES.includes(domain.reason)) return { type: "resume" };
  return { type: "none" };
}

function offByUs(
  vm: VirtualMachine,
  progress: PowerProgress,
  request: ReturnType<typeof pendingPowerRequest>,
  now: number,
): boolean {
  if (vm.metadata.deletionTimestamp || isFrozen(vm) || (vm.spec.runStrategy ?? "Always") === "Halted")
    return false;
  if (request?.verb === "stop") return false;
  // A guest reacts to a press within a couple of minutes; a power-off later is its own.
  const window = Math.min(gracePeriodMs(vm), CANCELLED_STOP_WINDOW_MS);
  const cancelled = progress.stopCancelledAt !== undefined && now - progress.stopCancelledAt < window;
  return Boolean(progress.powerCycle) || cancelled;
}

/** The guest stopped on its own soon after the agent last started it (a loop, if repeated). */
export function stoppedSoonAfterStart(progress: PowerProgress): boolean {
  const { crashSeenAt, lastStartAt } = progress;
  return crashSeenAt !== undefined && lastStartAt !== undefined && crashSeenAt - lastStartAt < QUICK_CRASH_MS;
}

/** Start, unless the guest is crash-looping: then wait, longer each time. */
function startOrWait(progress: PowerProgress, now: number): PowerAction {
  if (stoppedSoonAfterStart(progress)) {
    const at = (progress.crashSeenAt ?? now) + crashLoopDelay(progress.quickCrashes ?? 0);
    if (now < at) return { type: "wait-start", remainingMs: at - now };
  }
  return { type: "start" };
}

/** Waiting for an ACPI shutdown: press again now and then, force off when the grace ends. */
function waitForShutdown(progress: PowerProgress, graceMs: number, now: number): PowerAction {
  const requested = progress.shutdownRequestedAt ?? now;
  const remainingMs = requested + graceMs - now;
  if (remainingMs <= 0) return { type: "destroy", why: "grace-expired" };
  const sincePress = now - (progress.lastPressAt ?? requested);
  if (sincePress >= REPRESS_MS) return { type: "press-again", for: "shutdown" };
  return { type: "wait-shutdown", remainingMs: Math.min(remainingMs, REPRESS_MS - sincePress) };
}

function describeState(d: DomainObservation): string {
  if (d.state === DomainState.Crashed) return "the guest crashed";
  return d.reason === PausedReason.Crashed
    ? "the guest panicked and QEMU paused it"
    : "the guest shut down but QEMU kept it paused";
}
