// Carrying out one power action on a domain (the node agent's decision, from vm-decide.ts),
// and recording what it started in the VM's progress.
import { FROZEN_ANNOTATION, RESTART_ANNOTATION } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { buildDomainXml, type DomainDefinition, type HostFacts } from "../../hypervisor/domain/xml.ts";
import {
  DomainEventType,
  DomainRebootFlags,
  type DomainRef,
  DomainShutdownFlags,
  DomainState,
  ErrorCode,
  type LibvirtClient,
  LibvirtError,
} from "../../hypervisor/libvirt/index.ts";
import type { Logger } from "../../runtime/logging.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { type CausedEvents, causing } from "./caused-events.ts";
import { type PowerAction, pendingPowerRequest, ShutoffReason, stoppedSoonAfterStart } from "./vm-decide.ts";
import { finished, op, type Progress } from "./vm-progress.ts";

/** While waiting on a guest (shutdown, reboot), look again at least this often. */
export const POLL_MS = 2000;

export interface PowerContext {
  libvirt: LibvirtClient;
  host: HostFacts;
  nodeName: string;
  log: Logger;
  event: (reason: EventReason, message: string) => void;
  /** Where the events our define and start calls cause are expected. */
  caused?: CausedEvents;
}

/** QEMU's refusal to continue a guest that must be reset first (after a panic, say). */
const RESET_REQUIRED = /Resetting the Virtual Machine is required/i;

/** A guest QEMU cannot continue is forced off; runStrategy decides whether it starts again. */
async function recover(
  ctx: PowerContext,
  dom: DomainRef,
  progress: Progress,
  why: string,
  runStrategy: string,
) {
  await ctx.libvirt.destroyDomain(dom);
  progress.crashSeenAt ??= Date.now();
  progress.shutdownRequestedAt = undefined;
  progress.rebootRequestedAt = undefined;
  progress.powerCycle = undefined;
  const message = `${why}; QEMU needs a reset: the guest was forced off and runStrategy ${runStrategy} decides whether it starts again`;
  progress.lastOperation = op("Recover", "Succeeded", message);
  ctx.log.warn({ domain: dom.name, why }, "guest needed a reset; forced off");
  ctx.event(Reason.GuestNeedsReset, message);
}

/**
 * Notes, once per stop, a guest that stopped without us: a crash (libvirt ended it: on_crash),
 * a failure, or a power-off from inside. One that does so soon after every start is looping,
 * whichever way it stops, and waits before it is started again.
 */
export function noteCrash(progress: Progress, state: { state: number; reason: number }, now: number) {
  const unasked =
    state.state === DomainState.Shutoff &&
    (state.reason === ShutoffReason.Crashed ||
      state.reason === ShutoffReason.Failed ||
      state.reason === ShutoffReason.Shutdown) &&
    progress.shutdownRequestedAt === undefined &&
    !progress.powerCycle &&
    progress.stopCancelledAt === undefined;
  if (unasked && progress.crashSeenAt === undefined && progress.lastStartAt !== undefined)
    progress.crashSeenAt = now;
}

/** What a fresh start settles: awaited stops and reboots, pending restart and start requests. */
function startedFresh(vm: VirtualMachine, progress: Progress, now: number) {
  const quick = stoppedSoonAfterStart(progress);
  progress.quickCrashes = quick ? (progress.quickCrashes ?? 0) + 1 : 0;
  progress.crashSeenAt = undefined;
  progress.lastStartAt = now;
  progress.shutdownRequestedAt = undefined;
  progress.rebootRequestedAt = undefined;
  progress.powerCycle = undefined;
  progress.stopCancelledAt = undefined;
  // A fresh boot is what a restart request asks for.
  const restart = vm.metadata.annotations?.[RESTART_ANNOTATION];
  if (restart) progress.restartHandled = restart;
  const request = pendingPowerRequest(vm, progress.powerRequestHandled ?? vm.status?.powerRequestHandled);
  if (request?.verb === "start") progress.powerRequestHandled = request.tag;
}

/** The Warning reason when libvirt fails ACTION (the steps without a libvirt call share one). */
const POWER_ACTION_FAILED: { readonly [T in PowerAction["type"]]?: EventReason } = {
  start: Reason.StartFailed,
  shutdown: Reason.ShutdownFailed,
  "press-again": Reason.PressAgainFailed,
  destroy: Reason.DestroyFailed,
  suspend: Reason.SuspendFailed,
  resume: Reason.ResumeFailed,
  "power-cycle": Reason.PowerCycleFailed,
  reboot: Reason.RebootFailed,
  reset: Reason.ResetFailed,
  recover: Reason.RecoverFailed,
};

export function powerActionFailed(action: PowerAction["type"]): EventReason {
  return POWER_ACTION_FAILED[action] ?? Reason.PowerActionFailed;
}

/** Runs ACTION; returns the domain (a start gives it an id) and when to look again. */
export async function applyPowerAction(
  ctx: PowerContext,
  vm: VirtualMachine,
  definition: DomainDefinition,
  domain: DomainRef,
  action: PowerAction,
  progress: Progress,
): Promise<{ dom: DomainRef; requeueAfterMs?: number }> {
  let dom = domain;
  let requeueAfterMs: number | undefined;
  const domainName = definition.name;
  switch (action.type) {
    case "start": {
      // seed 004 cdimage_once: this one boot comes from the CD-ROM, later ones from the disks.
      const cdrom = definition.cdrom;
      const bootOnce = Boolean(
        vm.spec.cdrom?.bootOnce && cdrom?.image && progress.cdromBootedImage !== cdrom.image,
      );
      const caused = <T>(event: number, act: () => Promise<T>) => causing(ctx.caused, domainName, event, act);
      if (bootOnce && cdrom) {
        const once = buildDomainXml({ ...definition, cdrom: { ...cdrom, bootFirst: true } }, ctx.host);
        await caused(DomainEventType.Defined, () => ctx.libvirt.defineDomain(once));
      }
      const started = dom;
      dom = await caused(DomainEventType.Started, () => ctx.libvirt.startDomain(started));
      if (bootOnce && cdrom) {
        const after = buildDomainXml(definition, ctx.host);
        await caused(DomainEventType.Defined, () => ctx.libvirt.defineDomain(after));
        progress.cdromBootedImage = cdrom.image;
        ctx.log.info({ domain: domainName, image: cdrom.image }, "booted once from the CD-ROM");
      }
      progress.startCount++;
      startedFresh(vm, progress, Date.now());
      progress.lastOperation = op("Start", "Succeeded", `started on ${ctx.nodeName}`);
      ctx.log.info({ domain: domainName, id: dom.id }, "domain started");
      ctx.event(Reason.Started, `domain ${domainName} started`);
      break;
    }
    case "shutdown":
      await ctx.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
      progress.shutdownRequestedAt = Date.now();
      progress.lastPressAt = progress.shutdownRequestedAt;
      progress.powerCycle = undefined;
      progress.lastOperation = op("Stop", "Running", "ACPI shutdown requested; waiting for the guest");
      ctx.log.info({ domain: domainName }, "ACPI shutdown requested");
      ctx.event(Reason.Stopping, "ACPI shutdown requested; forced off if the guest does not stop in time");
      requeueAfterMs = POLL_MS;
      break;
    case "press-again":
      // A guest still booting ignores the button; press until it listens or the grace ends.
      try {
        if (action.for === "shutdown")
          await ctx.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
        else await ctx.libvirt.rebootDomain(dom, DomainRebootFlags.AcpiPowerButton);
      } catch (err) {
        // It powered off between our look and the press: the next look sees that.
        if (!(err instanceof LibvirtError && err.code === ErrorCode.OperationInvalid)) throw err;
      }
      progress.lastPressAt = Date.now();
      ctx.log.info({ domain: domainName, for: action.for }, "ACPI button pressed again");
      requeueAfterMs = POLL_MS;
      break;
    case "cancel-stop":
      progress.shutdownRequestedAt = undefined;
      progress.lastPressAt = undefined;
      progress.stopCancelledAt = Date.now();
      progress.lastOperation = finished(
        progress.lastOperation,
        "Failed",
        "stop cancelled: the VM should run again",
      );
      ctx.log.info({ domain: domainName }, "stop cancelled; the VM runs on");
      ctx.event(Reason.StopCancelled, "the VM should run again; no longer waiting for it to stop");
      requeueAfterMs = 0;
      break;
    case "recover":
      await recover(ctx, dom, progress, action.why, vm.spec.runStrategy ?? "Always");
      requeueAfterMs = 0;
      break;
    case "refuse-start": {
      progress.powerRequestHandled = action.value;
      const message = `start request ${action.value.replace(/^start@/, "")} refused: the VM is frozen (annotation ${FROZEN_ANNOTATION}); unfreeze it first (kubectl vm unfreeze)`;
      progress.lastOperation = op("Start", "Failed", message);
      ctx.log.info({ domain: domainName, request: action.value }, "start request refused: frozen");
      ctx.event(Reason.StartRefused, message);
      break;
    }
    case "mark-request-handled":
      progress.powerRequestHandled = action.value;
      ctx.log.info({ domain: domainName, request: action.value }, "power request carried out");
      break;
    case "wait-start":
      if (progress.lastOperation?.phase !== "Pending") {
        const message = `the guest crashed ${(progress.quickCrashes ?? 0) + 1} time(s) in a row soon after starting; starting it again in ${Math.ceil(action.remainingMs / 1000)} s`;
        progress.lastOperation = op("Start", "Pending", message);
        ctx.log.info({ domain: domainName, waitMs: action.remainingMs }, "crash loop: start delayed");
        ctx.event(Reason.CrashLoopBackOff, message);
      }
      requeueAfterMs = action.remainingMs;
      break;
    case "wait-shutdown":
    case "wait-reboot":
      requeueAfterMs = Math.min(action.remainingMs, POLL_MS);
      break;
    case "destroy":
      await ctx.libvirt.destroyDomain(dom);
      progress.shutdownRequestedAt = undefined;
      progress.lastOperation = finished(
        progress.lastOperation ?? op("Stop", "Running", ""),
        "Succeeded",
        action.why === "force"
          ? "forced off (grace period 0)"
          : action.why === "asked"
            ? "forced off at once, as the stop request asked (grace period 0)"
            : "forced off after the grace period expired",
      );
      ctx.log.info({ domain: domainName, why: action.why }, "domain forced off");
      ctx.event(Reason.ForcedOff, progress.lastOperation.message ?? "forced off");
      break;
    case "suspend":
      await ctx.libvirt.suspendDomain(dom);
      progress.lastOperation = op("Pause", "Succeeded", "vCPUs suspended");
      ctx.log.info({ domain: domainName }, "domain paused");
      ctx.event(Reason.Paused, "the VM was paused");
      break;
    case "resume":
      try {
        await ctx.libvirt.resumeDomain(dom);
      } catch (err) {
        if (!RESET_REQUIRED.test((err as Error).message)) throw err;
        await recover(ctx, dom, progress, (err as Error).message, vm.spec.runStrategy ?? "Always");
        requeueAfterMs = 0;
        break;
      }
      progress.lastOperation = op("Unpause", "Succeeded", "vCPUs resumed");
      ctx.log.info({ domain: domainName }, "domain resumed");
      ctx.event(Reason.Resumed, "the VM was resumed");
      break;
    case "power-cycle":
      await ctx.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
      progress.shutdownRequestedAt = Date.now();
      progress.lastPressAt = progress.shutdownRequestedAt;
      progress.powerCycle = true;
      progress.restartHandled = action.value;
      progress.lastOperation = op(
        "Restart",
        "Running",
        `restart requested at ${action.value}; stopping to apply the new definition`,
      );
      ctx.log.info({ domain: domainName, value: action.value }, "power cycle: ACPI shutdown, then start");
      ctx.event(
        Reason.Restarting,
        `restart requested (${action.value}); the VM stops and starts with its new definition`,
      );
      requeueAfterMs = POLL_MS;
      break;
    case "reboot":
      await ctx.libvirt.rebootDomain(dom, DomainRebootFlags.AcpiPowerButton);
      progress.rebootRequestedAt = Date.now();
      progress.lastPressAt = progress.rebootRequestedAt;
      progress.restartHandled = action.value;
      progress.lastOperation = op("Reboot", "Running", `restart requested at ${action.value}`);
      ctx.log.info({ domain: domainName, value: action.value }, "ACPI reboot requested");
      ctx.event(Reason.Rebooting, `restart requested (${action.value})`);
      requeueAfterMs = POLL_MS;
      break;
    case "reset":
      await ctx.libvirt.resetDomain(dom);
      progress.rebootRequestedAt = undefined;
      if (action.why === "asked") {
        progress.restartHandled = action.value;
        progress.lastOperation = op(
          "Reboot",
          "Succeeded",
          `reset at once, as the restart request asked (${action.value})`,
        );
        ctx.log.info({ domain: domainName, value: action.value }, "guest reset (restart without grace)");
        ctx.event(Reason.Reset, `restart requested (${action.value}) without grace: the guest was reset`);
        break;
      }
      progress.lastOperation = finished(
        progress.lastOperation,
        "Succeeded",
        "reset after the grace period expired",
      );
      ctx.log.info({ domain: domainName }, "guest reset: it did not reboot in time");
      ctx.event(Reason.Reset, "the guest did not reboot in time and was reset");
      break;
    case "mark-restart-handled":
      progress.restartHandled = action.value;
      break;
    case "none":
      break;
  }
  return { dom, ...(requeueAfterMs === undefined ? {} : { requeueAfterMs }) };
}
