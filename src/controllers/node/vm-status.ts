// Pure: the part of a VirtualMachine's status the node agent owns, from what it observed.
// Written by server-side apply as field manager "libvirt-operator-agent"; the controller owns
// nodeName, uuid, interfaces and the Scheduled condition.
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import { DomainState } from "../../hypervisor/libvirt/constants.ts";
import { type Condition, ownConditions, setCondition } from "../conditions.ts";
import { type DomainObservation, shouldRun } from "./vm-decide.ts";

type HypervisorStatus = NonNullable<VirtualMachineStatus["hypervisorStatus"]>;
type PrintableStatus = NonNullable<VirtualMachineStatus["printableStatus"]>;
type LastOperation = NonNullable<VirtualMachineStatus["lastOperation"]>;

export const AGENT_FIELD_MANAGER = "libvirt-operator-agent";
export const AGENT_CONDITIONS = ["Ready", "Synchronized", "Paused", "Failure"] as const;
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
  "startCount",
  "conditions",
  "interfaces",
  "cdromBootedImage",
  "disks",
  "storedData",
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
  /** A problem the user must fix (conflicting domain, bad spec, libvirt refusal). */
  failure?: { reason: string; message: string };
  lastOperation?: LastOperation;
  restartRequestHandled?: string;
  startCount: number;
  cdromBootedImage?: string;
  /** Link state per interface name, read from the running domain. */
  links?: Record<string, boolean>;
  /** Disks the domain has, with their volumes' sizes. */
  disks?: NonNullable<VirtualMachineStatus["disks"]>;
  storedData?: number;
  /** What the VM waits for before it can start (its disks). */
  waiting?: string;
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
  | "startCount"
  | "conditions"
  | "interfaces"
  | "cdromBootedImage"
  | "disks"
  | "storedData"
>;

function printable(vm: VirtualMachine, o: AgentObservation): PrintableStatus {
  if (vm.metadata.deletionTimestamp) return "Terminating";
  if (o.failure && !o.domain) return "Failed";
  const d = o.domain;
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
      return shouldRun(vm, d) ? "Starting" : "Stopped";
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

  let conditions: Condition[] = (prev.conditions ?? []) as Condition[];
  const cond = (type: string, status: Condition["status"], reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      { type, status, reason, message, observedGeneration: generation },
      now,
    );
  };
  if (running && wantRun && inSync && !vm.spec.paused) {
    cond("Ready", "True", "Running", `domain ${o.domainName} is running as specified`);
  } else {
    cond("Ready", "False", printableStatus, readyMessage(vm, o, printableStatus));
  }
  cond(
    "Synchronized",
    inSync ? "True" : "False",
    inSync ? "InSync" : o.failure ? o.failure.reason : "Pending",
    inSync ? "the domain definition matches the spec" : (o.failure?.message ?? "the domain is being defined"),
  );
  cond(
    "Paused",
    paused ? "True" : "False",
    paused ? "Paused" : "NotPaused",
    paused ? "vCPUs are suspended" : "",
  );
  cond(
    "Failure",
    o.failure ? "True" : "False",
    o.failure ? o.failure.reason : "NoFailure",
    o.failure ? o.failure.message : "",
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
    startCount: o.startCount,
    ...(o.cdromBootedImage ? { cdromBootedImage: o.cdromBootedImage } : {}),
    conditions: ownConditions(conditions, AGENT_CONDITIONS),
    ...(o.links && Object.keys(o.links).length
      ? { interfaces: Object.entries(o.links).map(([name, linked]) => ({ name, linked })) }
      : {}),
    ...(o.disks ? { disks: o.disks, storedData: o.storedData ?? 0 } : {}),
  };
}

function readyMessage(vm: VirtualMachine, o: AgentObservation, p: PrintableStatus): string {
  if (o.failure) return o.failure.message;
  if (o.waiting && p === "Provisioning") return `waiting for disks: ${o.waiting}`;
  if (p === "Stopped") return `the VM is stopped (runStrategy ${vm.spec.runStrategy ?? "Always"})`;
  if (p === "Paused") return "the VM is paused";
  return `the VM is ${p.toLowerCase()}`;
}
