// Pure: whether a placed VM that its node's agent would not start for lack of room
// (InsufficientCapacity, node-room.ts) may be placed on another node. It may when nothing ties
// it to the node: no spec.nodeName, and every disk in a shared pool (a disk on node-local
// storage, or one not made yet, keeps it where it is, waiting for room).
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { findCondition } from "../conditions.ts";
import { Reason } from "../event-reasons.ts";
import { diskNamesOf } from "./disk-placement.ts";

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

export function movableForRoom(
  vm: VirtualMachine,
  node: string,
  diskNamed: (name: string) => VMDisk | undefined,
): boolean {
  if (vm.spec.nodeName || !waitsForRoom(vm, node)) return false;
  return diskNamesOf(vm).every((name) => diskNamed(name)?.status?.storagePoolShared === true);
}
