// Pure: the status the controller writes for a VM, by where its placement stands — not placed
// (waiting or refused), unschedulable, placed (and, the first time, on its way to its agent) —
// and what placing it asks of a node. The reconciler (vm-reconciler.ts) decides which applies.
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import {
  type Condition,
  findCondition,
  scheduledCondition,
  standingConditions,
  writerConditions,
} from "../conditions.ts";
import type { Refusal } from "../tenant-policy.ts";
import type { PlacementRequest } from "./placement.ts";
import { ADMITTED_CONDITION } from "./vm-admission.ts";
import { capacityNeed } from "./vm-reservation.ts";

type Vm = VirtualMachine;
type Wanted = Array<Omit<Condition, "lastTransitionTime">>;

/** What a placed VM holds: its UUID and its interfaces' MACs and addresses. */
export interface HeldIdentity {
  uuid?: string;
  interfaces: NonNullable<VirtualMachineStatus["interfaces"]>;
}

export const waitingForAgent = (node: string) => `placed on node ${node}; waiting for its node agent`;

/** WANTED conditions merged into VM's, judged at its generation (transition times kept). */
export function vmConditions(vm: Vm, wanted: Wanted, now = new Date()): Condition[] {
  return writerConditions(
    vm.status?.conditions as Condition[] | undefined,
    wanted,
    vm.metadata.generation ?? 0,
    now,
  );
}

/** Not placed: waiting for something (reconciling) or refused until the user changes it (stalled). */
export function notPlacedStatus(
  vm: Vm,
  reason: string,
  message: string,
  state: "reconciling" | "stalled",
): Record<string, unknown> {
  return {
    observedGeneration: vm.metadata.generation ?? 0,
    printableStatus: state === "stalled" ? "Failed" : "Provisioning",
    conditions: vmConditions(vm, [
      { type: "Scheduled", status: "False", reason, message },
      ...standingConditions({ state, reason, message }),
    ]),
  };
}

/** Placed on NODE with HELD; REFUSAL while the cluster refuses it (it keeps what it holds). */
export function placedStatus(
  vm: Vm,
  node: string,
  held: HeldIdentity,
  refusal?: Refusal,
  standing: Wanted = [],
): Record<string, unknown> {
  return {
    nodeName: node,
    ...(held.uuid ? { uuid: held.uuid } : {}),
    interfaces: held.interfaces,
    conditions: vmConditions(vm, [
      scheduledCondition(node),
      ...admissionConditions(vm, refusal),
      ...standing,
    ]),
  };
}

/**
 * The placement and, in the same write, the word that the VM is on its way (as the standing
 * writer says it until the agent reports): the agent of NODE has not reported yet, and what was
 * said before (not placed, no room on the node it leaves) is no longer so. That agent's first
 * report takes these conditions and the printable status over.
 */
export function firstPlacementStatus(vm: Vm, node: string, held: HeldIdentity): Record<string, unknown> {
  const standing = standingConditions({
    state: "reconciling",
    reason: "Scheduled",
    message: waitingForAgent(node),
  });
  return {
    ...placedStatus(vm, node, held, undefined, standing),
    printableStatus: "Provisioning",
    observedGeneration: vm.metadata.generation ?? 0,
  };
}

/** Until its agent reports, a placed VM is said to be on its way (Reconciling). */
export function awaitingAgentStatus(vm: Vm, node: string): Record<string, unknown> {
  return {
    observedGeneration: vm.metadata.generation ?? 0,
    conditions: vmConditions(
      vm,
      standingConditions({ state: "reconciling", reason: "Scheduled", message: waitingForAgent(node) }),
    ),
  };
}

export function unschedulableStatus(vm: Vm, message: string): Record<string, unknown> {
  return {
    observedGeneration: vm.metadata.generation ?? 0,
    printableStatus: "ErrorUnschedulable",
    conditions: vmConditions(vm, [
      { type: "Scheduled", status: "False", reason: "Unschedulable", message },
      ...standingConditions({ state: "stalled", reason: "ErrorUnschedulable", message }),
      ...admissionConditions(vm, undefined),
    ]),
  };
}

/** Refused by the cluster before it was ever placed. */
export function refusedStatus(vm: Vm, refusal: Refusal): Record<string, unknown> {
  return {
    observedGeneration: vm.metadata.generation ?? 0,
    printableStatus: "Failed",
    conditions: vmConditions(vm, [
      { type: "Scheduled", status: "False", reason: refusal.reason, message: refusal.message },
      ...admissionConditions(vm, refusal),
      ...standingConditions({ state: "stalled", reason: refusal.reason, message: refusal.message }),
    ]),
  };
}

/** What placing VM asks of a node; DISKS_ON is the node its node-local disks pin it to. */
export function placementRequest(vm: Vm, disksOn: { node?: string; disk?: string }): PlacementRequest {
  const need = capacityNeed(vm);
  return {
    hypervisor: vm.spec.hypervisor ?? "kvm",
    cpus: need.cpus,
    memoryBytes: need.memoryBytes,
    ...(vm.spec.nodeName ? { nodeName: vm.spec.nodeName } : {}),
    ...(vm.spec.nodeSelector ? { nodeSelector: vm.spec.nodeSelector } : {}),
    ...(disksOn.node ? { disksNode: { node: disksOn.node, disk: disksOn.disk ?? "" } } : {}),
    networks: [
      ...new Set(
        desiredInterfaces(vm)
          .filter((i) => i.plugged)
          .map((i) => i.network),
      ),
    ],
  };
}

/** Admitted=False while refused; True once a refused VM was fixed; absent when never refused. */
function admissionConditions(vm: Vm, refusal: Refusal | undefined): Wanted {
  if (refusal)
    return [{ type: ADMITTED_CONDITION, status: "False", reason: refusal.reason, message: refusal.message }];
  return findCondition(vm.status?.conditions, ADMITTED_CONDITION)
    ? [{ type: ADMITTED_CONDITION, status: "True", reason: "Admitted", message: "" }]
    : [];
}
