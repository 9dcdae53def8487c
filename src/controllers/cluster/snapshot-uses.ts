// Pure: which snapshots something still needs — a restore that runs, a disk being made from one, a
// VM to be cloned from one — so that rotation and deletion leave them. Apart from the schedule
// (snapshot-schedule.ts) because the node agent needs it too and must not load the cron parser.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMRestore } from "../../api/vmsnapshot.ts";

/** The snapshot DISK is being made from (it needs it until made). */
export function snapshotOfDiskBeingMade(d: VMDisk): string | undefined {
  const from = d.spec.source?.snapshot?.name;
  return from && d.status?.phase !== "Ready" && d.status?.phase !== "Illegal" ? from : undefined;
}

/** The snapshot VM is to be cloned from, until it is. */
export function snapshotOfCloneToBe(vm: VirtualMachine): string | undefined {
  return vm.status?.clonedFrom ? undefined : vm.spec.source?.snapshot;
}

/** The restore still runs (it needs its snapshot). */
export function restoreRunning(r: VMRestore): boolean {
  return r.status?.phase !== "Succeeded" && r.status?.phase !== "Failed";
}
