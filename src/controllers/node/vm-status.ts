// Pure: the part of a VirtualMachine's status the node agent owns, from what it observed.
// Written by server-side apply as field manager "libvirt-operator-agent". The placement (node,
// UUID, interfaces' MACs and addresses, condition Scheduled) is the controller's record
// (vm-placement.ts), copied here: the agent's report is the only status write of a new VM.
import { FROZEN_ANNOTATION } from "../../api/names.ts";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import { DomainDiskError, DomainState } from "../../hypervisor/libvirt/constants.ts";
import {
  type Condition,
  type Standing,
  scheduledCondition,
  standingConditions,
  writerConditions,
} from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { placementOf, type VmPlacement } from "../vm-placement.ts";
import { type DomainObservation, isFrozen, ShutoffReason, shouldRun } from "./vm-decide.ts";

/** Crash loops in a row after which a VM is Stalled (it is still started again). */
export const CRASH_LOOPS_STALLED = 3;

type HypervisorStatus = NonNullable<VirtualMachineStatus["hypervisorStatus"]>;
type PrintableStatus = NonNullable<VirtualMachineStatus["printableStatus"]>;
type LastOperation = NonNullable<VirtualMachineStatus["lastOperation"]>;

export const AGENT_FIELD_MANAGER = "libvirt-operator-agent";
export const AGENT_CONDITIONS = [
  "Scheduled",
  "Ready",
  "Reconciling",
  "Stalled",
  "RestartRequired",
  "Synchronized",
  "Paused",
  "Failure",
] as const;
/** Every status field the agent owns (absent from its apply = removed). */
export const AGENT_STATUS_FIELDS = [
  "observedGeneration",
  "printableStatus",
  "hypervisorId",
  "syncStatus",
  "hypervisorStatus",
  "domainName",
  "statusChangedAt",
  "lastOperation",
  "restartRequestHandled",
  "powerRequestHandled",
  "refreshHandled",
  "guestFilesystems",
  "startCount",
  "conditions",
  "interfaces",
  "cdromBootedImage",
  "disks",
  "storedData",
  "nodeName",
  "uuid",
] as const;

export function hypervisorStatusOf(state: number): HypervisorStatus {
  switch (state) {
    case DomainState.Running:
      return "RUNNING";
    case DomainState.Blocked:
      return "BLOCKED";
    case DomainState.Paused:
      return "PAUSED";
    case DomainState.Shutdown:
      return "SHUTDOWN";
    case DomainState.Shutoff:
      return "HALTED";
    case DomainState.Crashed:
      return "CRASHED";
    case DomainState.PmSuspended:
      return "PMSUSPENDED";
    default:
      return "UNKNOWN";
  }
}

export interface AgentObservation {
  domainName: string;
  domain?: DomainObservation;
  /** The domain's definition carries the spec hash we want. */
  definitionInSync: boolean;
  stopping: boolean;
  /** A problem the user must fix (conflicting domain, bad spec, libvirt refusal), or, when
   * transient, one a retry may fix (a deadline, a dropped connection). */
  failure?: { reason: string; message: string; transient?: boolean };
  lastOperation?: LastOperation;
  restartRequestHandled?: string;
  powerRequestHandled?: string;
  /** The refresh request answered by this look. */
  refreshHandled?: string;
  guestFilesystems?: NonNullable<VirtualMachineStatus["guestFilesystems"]>;
  startCount: number;
  cdromBootedImage?: string;
  /** Link state per interface name, read from the running domain. */
  links?: Record<string, boolean>;
  /** Disks the domain has, with their volumes' sizes. */
  disks?: NonNullable<VirtualMachineStatus["disks"]>;
  storedData?: number;
  /** What the VM waits for before it can start (its disks). */
  waiting?: string;
  /** Why the VM may not start at all as it is (a disk is a VMTemplate's base): it stays off. */
  startRefused?: { reason: string; message: string };
  /** The guest keeps stopping soon after each start: how many times in a row. */
  crashLoops?: number;
  /** Set when QEMU paused the domain for an I/O error: the disks libvirt reports (maybe none yet). */
  diskErrors?: DiskErrorSeen[];
}

/** A disk libvirt reports an I/O error for: its target, the VMDisk behind it, and whether it is out of space. */
export interface DiskErrorSeen {
  target: string;
  vmDisk?: string;
  noSpace: boolean;
}

/** libvirt's disk errors (virDomainGetDiskErrors) with the VMDisk behind each target. */
export function diskErrorsSeen(
  vm: VirtualMachine,
  attached: ReadonlyArray<{ name: string; target?: string }>,
  errors: ReadonlyArray<{ disk: string; error: number }>,
): DiskErrorSeen[] {
  const refs = new Map((vm.spec.disks ?? []).map((d) => [d.name, d.diskRef.name]));
  return errors
    .filter((e) => e.error !== DomainDiskError.None)
    .map((e) => {
      const name = attached.find((a) => a.target === e.disk)?.name;
      const vmDisk = name ? refs.get(name) : undefined;
      return { target: e.disk, ...(vmDisk ? { vmDisk } : {}), noSpace: e.error === DomainDiskError.NoSpace };
    });
}

/**
 * Why a domain paused for an I/O error: out of space when any disk says so (the pool is full),
 * else another I/O error (also while libvirt names no disk yet).
 */
export function diskErrorStanding(errors: readonly DiskErrorSeen[]): Standing {
  const name = (e: DiskErrorSeen) =>
    e.vmDisk ? `disk ${e.target} (VMDisk ${e.vmDisk})` : `disk ${e.target}`;
  const full = errors.filter((e) => e.noSpace);
  if (full.length)
    return {
      state: "stalled",
      reason: "DiskFull",
      message:
        `the VM is paused: ${full.map(name).join(", ")} ran out of space in its storage pool (the pool is ` +
        "full; its disks promise more than it holds). Free space in the pool, then stop and start the VM",
    };
  const which = errors.length ? errors.map(name).join(", ") : "a disk";
  return {
    state: "stalled",
    reason: "DiskError",
    message: `the VM is paused: an I/O error on ${which}; stop and start the VM once the storage is fixed`,
  };
}

export type AgentStatus = Pick<
  VirtualMachineStatus,
  | "observedGeneration"
  | "printableStatus"
  | "hypervisorId"
  | "syncStatus"
  | "hypervisorStatus"
  | "domainName"
  | "statusChangedAt"
  | "lastOperation"
  | "restartRequestHandled"
  | "powerRequestHandled"
  | "refreshHandled"
  | "guestFilesystems"
  | "startCount"
  | "conditions"
  | "interfaces"
  | "cdromBootedImage"
  | "disks"
  | "storedData"
  | "nodeName"
  | "uuid"
>;

function printable(vm: VirtualMachine, o: AgentObservation): PrintableStatus {
  if (vm.metadata.deletionTimestamp) return "Terminating";
  if (o.failure && !o.domain) return "Failed";
  const d = o.domain;
  if (d?.state === DomainState.Shutoff && o.startRefused)
    return isFrozen(vm)
      ? "Frozen"
      : o.startRefused.reason === Reason.InsufficientCapacity
        ? "ErrorUnschedulable"
        : "Stopped";
  if (!d || (o.waiting && d.state === DomainState.Shutoff && shouldRun(vm, d))) return "Provisioning";
  switch (d.state) {
    case DomainState.Running:
    case DomainState.Blocked:
      return o.stopping ? "Stopping" : "Running";
    case DomainState.Paused:
      return o.stopping ? "Stopping" : "Paused";
    case DomainState.Shutdown:
      return "Stopping";
    case DomainState.Crashed:
      return "Failed";
    case DomainState.Shutoff:
      return shouldRun(vm, d) ? "Starting" : isFrozen(vm) ? "Frozen" : "Stopped";
    default:
      return "Unknown";
  }
}

/** The agent's status for VM, keeping transition times of what did not change. */
export function agentStatus(vm: VirtualMachine, o: AgentObservation, now: Date): AgentStatus {
  const prev = vm.status ?? {};
  const generation = vm.metadata.generation ?? 0;
  const hvStatus = o.domain ? hypervisorStatusOf(o.domain.state) : undefined;
  const running = o.domain?.state === DomainState.Running || o.domain?.state === DomainState.Blocked;
  const paused = o.domain?.state === DomainState.Paused;
  const wantRun = o.domain ? shouldRun(vm, o.domain) : shouldRun(vm, undefined);
  const inSync = Boolean(o.domain) && o.definitionInSync && !o.failure;
  const printableStatus = printable(vm, o);

  // Changes waiting for the next boot leave a running VM Ready (it runs as asked) and say so.
  const restartRequired = running && !o.definitionInSync && !o.failure;
  const placement = placementOf(vm);
  const conditions = writerConditions(
    prev.conditions as Condition[] | undefined,
    [
      ...(placement.nodeName ? [scheduledCondition(placement.nodeName)] : []),
      ...standingConditions(standing(vm, o, printableStatus, wantRun)),
      restartRequired
        ? {
            type: "RestartRequired",
            status: "True",
            reason: "PendingChanges",
            message:
              "the spec changed in a way that applies at the next start; restart the VM (annotation vm.libvirt-operator.io/restart-requested-at) to apply it now",
          }
        : { type: "RestartRequired", status: "False", reason: "NoPendingChanges", message: "" },
      {
        type: "Synchronized",
        status: inSync ? "True" : "False",
        reason: inSync ? "InSync" : o.failure ? o.failure.reason : o.domain ? "PendingChanges" : "Pending",
        message: inSync
          ? "the domain definition matches the spec"
          : (o.failure?.message ??
            (o.domain ? "the running domain predates the definition" : "the domain is being defined")),
      },
      paused && o.diskErrors
        ? {
            type: "Paused",
            status: "True",
            reason: "IOError",
            message: "QEMU paused the VM on a disk I/O error",
          }
        : paused
          ? { type: "Paused", status: "True", reason: "Paused", message: "vCPUs are suspended" }
          : { type: "Paused", status: "False", reason: "NotPaused", message: "" },
      o.failure
        ? { type: "Failure", status: "True", reason: o.failure.reason, message: o.failure.message }
        : { type: "Failure", status: "False", reason: "NoFailure", message: "" },
    ],
    generation,
    now,
  );

  return {
    observedGeneration: generation,
    printableStatus,
    ...(running || paused ? { hypervisorId: o.domain!.id } : {}),
    syncStatus: o.failure ? "SYNC_NOK" : !o.domain ? "CREATED" : inSync ? "SYNC" : "SYNC_NOK",
    ...(hvStatus ? { hypervisorStatus: hvStatus } : {}),
    domainName: o.domainName,
    ...(hvStatus
      ? {
          statusChangedAt:
            prev.hypervisorStatus === hvStatus && prev.statusChangedAt
              ? prev.statusChangedAt
              : now.toISOString(),
        }
      : {}),
    ...(o.lastOperation ? { lastOperation: o.lastOperation } : {}),
    ...(o.restartRequestHandled ? { restartRequestHandled: o.restartRequestHandled } : {}),
    ...(o.powerRequestHandled ? { powerRequestHandled: o.powerRequestHandled } : {}),
    ...(o.refreshHandled ? { refreshHandled: o.refreshHandled } : {}),
    ...(o.guestFilesystems ? { guestFilesystems: o.guestFilesystems } : {}),
    startCount: o.startCount,
    ...(o.cdromBootedImage ? { cdromBootedImage: o.cdromBootedImage } : {}),
    conditions,
    ...reportedPlacement(placement, o.links ?? {}),
    ...(o.disks ? { disks: o.disks, storedData: o.storedData ?? 0 } : {}),
  };
}

/** The placement as status shows it: each placed interface with its link state, then links of others. */
function reportedPlacement(
  placement: VmPlacement,
  links: Record<string, boolean>,
): Pick<AgentStatus, "nodeName" | "uuid" | "interfaces"> {
  const placed = new Set(placement.interfaces.map((i) => i.name));
  const interfaces = [
    ...placement.interfaces.map((i) => (i.name in links ? { ...i, linked: links[i.name] } : { ...i })),
    ...Object.entries(links)
      .filter(([name]) => !placed.has(name))
      .map(([name, linked]) => ({ name, linked })),
  ];
  return {
    ...(placement.nodeName ? { nodeName: placement.nodeName } : {}),
    ...(placement.uuid ? { uuid: placement.uuid } : {}),
    ...(interfaces.length ? { interfaces } : {}),
  };
}

/**
 * Ready: the VM is as its spec asks (running, paused, or stopped when it should be stopped);
 * Stalled: it cannot get there without the user; otherwise it is on its way.
 */
function standing(vm: VirtualMachine, o: AgentObservation, p: PrintableStatus, wantRun: boolean): Standing {
  if (o.failure)
    return {
      state: o.failure.transient ? "reconciling" : "stalled",
      reason: o.failure.reason,
      message: o.failure.message,
    };
  if (p === "Failed") return { state: "stalled", reason: "Crashed", message: "the guest crashed" };
  // Off and refused a start it should have: only the user can change that.
  const refused = o.domain?.state === DomainState.Shutoff ? o.startRefused : undefined;
  if (refused && wantRun) return { state: "stalled", reason: refused.reason, message: refused.message };
  if (o.domain?.state === DomainState.Paused && o.diskErrors) return diskErrorStanding(o.diskErrors);
  if ((o.crashLoops ?? 0) >= CRASH_LOOPS_STALLED)
    return {
      state: "stalled",
      reason: "CrashLoopBackOff",
      message: `the guest stopped ${o.crashLoops} times in a row soon after starting; it is started again, waiting longer each time`,
    };
  // Off by a crash, and not to be started again (Manual, Once): not what was asked.
  const crashed =
    o.domain?.state === DomainState.Shutoff &&
    (o.domain.reason === ShutoffReason.Crashed || o.domain.reason === ShutoffReason.Failed);
  if (crashed && !wantRun)
    return {
      state: "stalled",
      reason: "Crashed",
      message: `the guest crashed and runStrategy ${vm.spec.runStrategy ?? "Always"} does not start it again`,
    };
  const asked = wantRun
    ? (p === "Running" && !vm.spec.paused) || (p === "Paused" && Boolean(vm.spec.paused))
    : p === "Stopped" || p === "Frozen";
  if (asked && !o.stopping) {
    const message =
      p === "Frozen"
        ? `the VM is frozen: it stays stopped until the annotation ${FROZEN_ANNOTATION} is removed (kubectl vm unfreeze)`
        : p === "Stopped"
          ? `the VM is stopped as asked (runStrategy ${vm.spec.runStrategy ?? "Always"})${refused ? `; it does not start: ${refused.message}` : ""}`
          : p === "Paused"
            ? "the VM is paused as asked"
            : `domain ${o.domainName} is running as specified`;
    return { state: "ready", reason: p, message };
  }
  return { state: "reconciling", reason: p, message: readyMessage(vm, o, p) };
}

function readyMessage(vm: VirtualMachine, o: AgentObservation, p: PrintableStatus): string {
  if (o.failure) return o.failure.message;
  if (o.waiting && p === "Provisioning") return `waiting for disks: ${o.waiting}`;
  if (p === "Stopped") return `the VM is stopped (runStrategy ${vm.spec.runStrategy ?? "Always"})`;
  if (p === "Paused") return "the VM is paused";
  return `the VM is ${p.toLowerCase()}`;
}
