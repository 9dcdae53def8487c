// Pure: whether a VMRestore may go ahead, must wait, or is refused, and why in words.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../../api/vmsnapshot.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { placedNode } from "../vm-placement.ts";

export type RestoreJudgement =
  | { hand: { node: string } }
  | { wait: string }
  | { refuse: { reason: EventReason; message: string } };

/** A restore handed to a node that has not finished: the VM is taken. */
function inFlight(r: VMRestore): boolean {
  return Boolean(r.status?.nodeName) && r.status?.phase !== "Succeeded" && r.status?.phase !== "Failed";
}

export function judgeRestore(
  restore: VMRestore,
  vm: VirtualMachine | undefined,
  snap: VMSnapshot | undefined,
  restoresOfNamespace: readonly VMRestore[],
  disksOfNamespace: readonly VMDisk[] = [],
  snapshotsOfNamespace: readonly VMSnapshot[] = [],
): RestoreJudgement {
  const refuse = (reason: EventReason, message: string): RestoreJudgement => ({
    refuse: { reason, message },
  });
  const { vmName, snapshotName } = restore.spec;
  if (!vm) return refuse(Reason.VMNotFound, `VirtualMachine ${vmName} does not exist`);
  if (vm.metadata.deletionTimestamp)
    return refuse(Reason.VMDeleted, `VirtualMachine ${vmName} is being deleted`);
  if (!snap) return refuse(Reason.SnapshotNotFound, `VMSnapshot ${snapshotName} does not exist`);
  if (snap.spec.vmName !== vmName)
    return refuse(
      Reason.WrongVM,
      `VMSnapshot ${snapshotName} is a snapshot of VirtualMachine ${snap.spec.vmName}, not of ${vmName}: ` +
        "to make a VM from it, create a VirtualMachine with spec.source.snapshot",
    );
  const st = snap.status;
  if (st?.vmUID && st.vmUID !== vm.metadata.uid)
    return refuse(
      Reason.EarlierVM,
      `VMSnapshot ${snapshotName} was taken of an earlier VirtualMachine named ${vmName} (uid ${st.vmUID}), ` +
        `not of this one (uid ${vm.metadata.uid}): it cannot be restored to it`,
    );
  if (st?.phase === "Failed")
    return refuse(Reason.SnapshotFailed, `VMSnapshot ${snapshotName} failed: ${st.error ?? ""}`);
  if (st?.phase === "Succeeded" && !st.readyToUse) {
    const why = st.conditions?.find((c) => c.type === "Ready")?.message;
    return refuse(
      Reason.SnapshotNotReady,
      `VMSnapshot ${snapshotName} cannot be restored${why ? `: ${why}` : ""}`,
    );
  }
  if (st?.phase !== "Succeeded") return { wait: `VMSnapshot ${snapshotName} is still being taken` };
  const other = restoresOfNamespace.find(
    (r) => r.metadata.name !== restore.metadata.name && r.spec.vmName === vmName && inFlight(r),
  );
  if (other)
    return refuse(
      Reason.RestoreInProgress,
      `VMRestore ${other.metadata.name} is restoring VirtualMachine ${vmName} now; create this one again once it has finished`,
    );
  if (st.method === "Internal") {
    const attached = new Set((vm.spec.disks ?? []).map((d) => d.diskRef.name));
    const detached = (st.disks ?? []).filter((d) => !attached.has(d.vmDisk));
    if (detached.length)
      return refuse(
        Reason.DiskDetached,
        `disk${detached.length > 1 ? "s" : ""} ${detached.map((d) => `${d.name} (VMDisk ${d.vmDisk})`).join(", ")} ` +
          "left the VM since the snapshot, and libvirt's internal snapshot restores every disk it holds: attach " +
          "them again, or clone the snapshot into a new VM",
      );
  }
  // A disk made anew under its name since the snapshot is another disk: nothing of it to restore.
  const byName = new Map(disksOfNamespace.map((d) => [d.metadata.name, d]));
  const replaced = (st.disks ?? []).filter((d) => {
    const now = byName.get(d.vmDisk);
    return now && d.vmDiskUID !== undefined && now.metadata.uid !== d.vmDiskUID;
  });
  if (replaced.length)
    return refuse(
      Reason.DiskReplaced,
      `VMDisk ${replaced.map((d) => d.vmDisk).join(", ")} was deleted and made anew since the snapshot: ` +
        "it is another disk now, and the snapshot cannot be restored onto it",
    );
  // A template's base is read by linked clones: restoring it would change what they read.
  const bases = (st.disks ?? []).filter((d) => byName.get(d.vmDisk)?.status?.baseOf);
  if (bases.length)
    return refuse(
      Reason.DiskIsTemplateBase,
      `VMDisk ${bases.map((d) => d.vmDisk).join(", ")} is a base of VMTemplate ` +
        `${byName.get(bases[0]!.vmDisk)?.status?.baseOf?.template}: VMs made from it read it, so it is never restored`,
    );
  if (st.method === "VolumeCopy") {
    // Putting a copy back replaces the disk's file, and with it the internal snapshots inside it.
    const copied = new Set((st.disks ?? []).map((d) => d.vmDisk));
    const inside = snapshotsOfNamespace.filter(
      (s) =>
        s.metadata.name !== snap.metadata.name &&
        !s.metadata.deletionTimestamp &&
        s.status?.method === "Internal" &&
        s.status.readyToUse &&
        (s.status.disks ?? []).some((d) => copied.has(d.vmDisk)),
    );
    if (inside.length)
      return refuse(
        Reason.InternalSnapshotsInside,
        `restoring it would replace the files of disks that the internal snapshots ${inside.map((s) => s.metadata.name).join(", ")} ` +
          "are kept in, and lose them: delete those snapshots first",
      );
  }
  const node = placedNode(vm);
  if (!node) return { wait: `VirtualMachine ${vmName} is not placed on a node` };
  if (st.nodeName && st.nodeName !== node)
    return refuse(
      Reason.OtherNode,
      `VMSnapshot ${snapshotName} is stored on node ${st.nodeName}, the VM is on ${node}`,
    );
  return { hand: { node } };
}
