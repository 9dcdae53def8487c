// Pure: whether a placed VM that its node's agent would not start for lack of room
// (InsufficientCapacity, node-room.ts) may be placed on another node. It may when nothing ties
// it to the node: no spec.nodeName and no disks, and it still wants to run. A VM with disks
// waits where it is, shared pool or not: the old node could start it in the moment the move is
// decided, and two guests must never write one volume (moving those needs a handshake with the
// old node's agent first).
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { findCondition } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { diskNamesOf } from "./disk-placement.ts";
import { reservesCapacity } from "./vm-reservation.ts";

/**
 * The agent of NODE refuses to start the VM there for lack of room (its message names the node:
 * a refusal still shown from the node the VM just left does not count).
 */
export function waitsForRoom(vm: Pick<VirtualMachine, "status">, node: string): boolean {
  const stalled = findCondition(vm.status?.conditions, "Stalled");
  return (
    stalled?.status === "True" &&
    stalled.reason === Reason.InsufficientCapacity &&
    stalled.message.startsWith(`node ${node} has `)
  );
}

export function movableForRoom(vm: VirtualMachine, node: string): boolean {
  if (vm.spec.nodeName || !waitsForRoom(vm, node) || !reservesCapacity(vm)) return false;
  return diskNamesOf(vm).length === 0;
}
