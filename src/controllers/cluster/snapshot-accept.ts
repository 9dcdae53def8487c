// Pure: what the controller does with a VMSnapshot it has not handed to a node yet, and the
// timestamp that makes it unique among its VM's snapshots.

import { DEFAULT_SNAPSHOT_DEADLINE } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import { parseDuration } from "../node/snapshot-plan.ts";
import { placedNode } from "../vm-placement.ts";

export type Acceptance =
  | { hand: { node: string; vmUID: string } }
  | { wait: string; retryAfterMs: number }
  | { fail: { reason: string; message: string } };

const WAIT_POLL_MS = 5000;

/** Hand SNAP to its VM's node, wait for the VM (until the deadline), or fail it. */
export function acceptSnapshot(snap: VMSnapshot, vm: VirtualMachine | undefined, now: number): Acceptance {
  const deadlineMs = parseDuration(snap.spec.failureDeadline ?? DEFAULT_SNAPSHOT_DEADLINE) ?? 300_000;
  const leftMs = Date.parse(snap.metadata.creationTimestamp ?? "") + deadlineMs - now;
  const waitOrFail = (reason: string, message: string): Acceptance =>
    leftMs > 0
      ? { wait: message, retryAfterMs: Math.min(WAIT_POLL_MS, leftMs) }
      : { fail: { reason, message: `${message}; its failureDeadline passed` } };
  if (!vm) return waitOrFail("VMNotFound", `VirtualMachine ${snap.spec.vmName} does not exist`);
  if (vm.metadata.deletionTimestamp)
    return { fail: { reason: "VMDeleted", message: `VirtualMachine ${snap.spec.vmName} is being deleted` } };
  const node = placedNode(vm);
  if (!node || !vm.status?.domainName)
    return waitOrFail("VMNotPlaced", `VirtualMachine ${snap.spec.vmName} has no domain on a node yet`);
  return { hand: { node, vmUID: vm.metadata.uid ?? "" } };
}

/**
 * The snapshot's timestamp: now in unix seconds, or one past the latest its VM's snapshots
 * hold (seed 000 addresses snapshots by timestamp, so two in one second get two).
 */
export function uniqueTimestamp(nowMs: number, taken: Iterable<number>): number {
  let ts = Math.floor(nowMs / 1000);
  const used = new Set(taken);
  while (used.has(ts)) ts++;
  return ts;
}
