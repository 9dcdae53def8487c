// A VM made from a snapshot (spec.source.snapshot), before it can be placed: once the snapshot
// is ready, the controller makes the clone's own VMDisks (owned by the VM, filled from the
// snapshot on its node) and records the hardware the clone takes (status.clonedFrom), so the
// clone keeps it whatever happens to the snapshot later.
import type { KubernetesObject } from "@kubernetes/client-node";
import { API_VERSION, VirtualMachineKind, VMDiskKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import { createObject, type Kube } from "../../runtime/kube.ts";
import { cloneBaseSpec, cloneDiskName } from "../vm-clone.ts";

export type ClonePrep =
  | { record: Record<string, unknown> }
  | { wait: string }
  | { refuse: { reason: string; message: string } };

/** Pure: what a clone still needs from SNAP, or the clonedFrom it records. */
export function clonePlan(
  vm: VirtualMachine,
  snap: VMSnapshot | undefined,
  diskNamed: (name: string) => VMDisk | undefined,
): ClonePrep & { disks?: Array<{ name: string; spec: Record<string, unknown> }> } {
  const name = vm.spec.source?.snapshot ?? "";
  if (!snap) return { wait: `VMSnapshot ${name} (spec.source.snapshot) does not exist` };
  const st = snap.status;
  if (st?.phase === "Failed")
    return { refuse: { reason: "SnapshotFailed", message: `VMSnapshot ${name} failed: ${st.error ?? ""}` } };
  if (st?.phase !== "Succeeded") return { wait: `VMSnapshot ${name} is still being taken` };
  if (!st.readyToUse || !st.vmSpec)
    return {
      refuse: {
        reason: "SnapshotNotReady",
        message: `VMSnapshot ${name} cannot be cloned: it is not ready to use`,
      },
    };
  const disks: Array<{ name: string; spec: Record<string, unknown> }> = [];
  for (const d of st.disks ?? []) {
    const diskName = cloneDiskName(vm.metadata.name, d.name);
    const existing = diskNamed(diskName);
    const ours = existing?.metadata.ownerReferences?.some((r) => r.uid === vm.metadata.uid);
    if (existing && !ours)
      return {
        refuse: {
          reason: "DiskNameTaken",
          message: `the clone's disk ${d.name} would be VMDisk ${diskName}, which exists and is not this VM's: rename or delete it`,
        },
      };
    disks.push({
      name: diskName,
      spec: {
        provisionedSize: d.provisionedSize ?? diskNamed(d.vmDisk)?.spec.provisionedSize ?? "1Gi",
        format: d.format === "raw" ? "raw" : "qcow2",
        ...(d.pool ? { storagePool: d.pool } : {}),
        source: { snapshot: { name, disk: d.name } },
      },
    });
  }
  return {
    record: {
      snapshot: name,
      snapshotUID: snap.metadata.uid ?? "",
      vmName: snap.spec.vmName,
      spec: cloneBaseSpec(vm.metadata.name, st.vmSpec as Record<string, unknown>, st.disks ?? []),
    },
    disks,
  };
}

/** Creates the clone's VMDisks that do not exist yet, owned by VM (they go with it). */
export async function createCloneDisks(
  kube: Kube,
  vm: VirtualMachine & KubernetesObject,
  disks: ReadonlyArray<{ name: string; spec: Record<string, unknown> }>,
): Promise<void> {
  for (const d of disks) {
    await createObject(kube, VMDiskKind, {
      metadata: {
        name: d.name,
        namespace: vm.metadata.namespace,
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: VirtualMachineKind.kind,
            name: vm.metadata.name,
            uid: vm.metadata.uid ?? "",
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: d.spec,
    }); // false: made by an earlier reconcile
  }
}
