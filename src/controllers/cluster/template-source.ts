// Pure: turning a VM into a template (VMTemplate spec.source.vmName, "set as template"). The
// VM must be stopped and stay so, hold no snapshots, and have all its disks Ready; its disks
// then become the template's bases, owned by the template, and the VM never starts again while
// they are. Deleting the template gives them back to the VM (or removes them with the VM gone).
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION, VMTemplateKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { VMTemplate, VMTemplateStatus } from "../../api/vmtemplate.ts";

export type TakenVm = NonNullable<VMTemplateStatus["vm"]>;

/** Run strategies under which the operator never starts a stopped VM on its own. */
const STAYS_STOPPED = ["Halted", "Manual", "Once"];
/**
 * Fields of the VM a template never takes: identity, origin, schedules, placement, pause, media,
 * and its run strategy (it had to be one that keeps it stopped; its VMs run as they say).
 */
const NOT_TAKEN = [
  "uuid",
  "source",
  "snapshotPolicy",
  "nodeName",
  "paused",
  "cdrom",
  "description",
  "runStrategy",
] as const;

export type SourceVerdict = { take: TakenVm } | { wait: { reason: string; message: string } };

/** Whether VM can become TPL now, and what the template takes from it. */
export function sourceVerdict(
  tpl: VMTemplate,
  vm: VirtualMachine | undefined,
  snapshots: readonly VMSnapshot[],
  diskNamed: (name: string) => VMDisk | undefined,
  templates: readonly VMTemplate[] = [],
): SourceVerdict {
  const name = tpl.spec.source?.vmName ?? "";
  const wait = (reason: string, message: string): SourceVerdict => ({ wait: { reason, message } });
  if (!vm || vm.metadata.deletionTimestamp)
    return wait("VMNotFound", `VirtualMachine ${name} does not exist`);
  const strategy = vm.spec.runStrategy ?? "Always";
  if (!STAYS_STOPPED.includes(strategy))
    return wait(
      "VMMayRun",
      `VirtualMachine ${name} has runStrategy ${strategy}: set it to Halted (the VM must be stopped and stay so)`,
    );
  const printable = vm.status?.printableStatus;
  if (printable !== "Stopped")
    return wait("VMNotStopped", `VirtualMachine ${name} is ${printable ?? "not reported yet"}, not Stopped`);
  // One template per VM: the oldest (then the first by name) takes it.
  const rival = templates.find(
    (t) =>
      t.metadata.uid !== tpl.metadata.uid &&
      !t.metadata.deletionTimestamp &&
      (t.status?.vm?.uid === vm.metadata.uid ||
        (t.spec.source?.vmName === name && !t.status?.vm && earlier(t, tpl))),
  );
  if (rival)
    return wait(
      "VMTakenByOther",
      `VirtualMachine ${name} is made into VMTemplate ${rival.metadata.name} already`,
    );
  const diskNames = new Set((vm.spec.disks ?? []).map((d) => d.diskRef.name));
  // A snapshot holding one of its disks (of this VM or one it was attached to) could be restored onto a base.
  const held = snapshots
    .filter((s) => s.spec.vmName === name || (s.status?.disks ?? []).some((d) => diskNames.has(d.vmDisk)))
    .map((s) => s.metadata.name);
  if (held.length)
    return wait(
      "VMHasSnapshots",
      `VMSnapshots ${held.join(", ")} hold disks of VirtualMachine ${name}: a template's disks are never restored; delete them first`,
    );
  const entries = vm.spec.disks ?? [];
  if (!entries.length) return wait("VMHasNoDisks", `VirtualMachine ${name} has no disks to make bases of`);
  const disks: TakenVm["disks"] = [];
  for (const e of entries) {
    const disk = diskNamed(e.diskRef.name);
    if (disk?.status?.phase !== "Ready")
      return wait("DiskNotReady", `VMDisk ${e.diskRef.name} of VirtualMachine ${name} is not Ready`);
    const otherBase = disk.status.baseOf;
    if (otherBase && otherBase.templateUID !== tpl.metadata.uid)
      return wait(
        "DiskIsBase",
        `VMDisk ${e.diskRef.name} is already a base of VMTemplate ${otherBase.template}`,
      );
    const users = (disk.status.attachedTo ?? []).filter((u) => u !== name);
    if (users.length)
      return wait("DiskInUse", `VMDisk ${e.diskRef.name} is also used by VirtualMachine ${users.join(", ")}`);
    const ownedByVm = (disk.metadata.ownerReferences ?? []).some((r) => r.uid === vm.metadata.uid);
    disks.push({ name: e.name, vmDisk: e.diskRef.name, ownedByVm });
  }
  const spec: Record<string, unknown> = { ...vm.spec };
  for (const field of NOT_TAKEN) delete spec[field];
  const interfaces = vm.spec.interfaces;
  if (interfaces) spec.interfaces = interfaces.map(({ macAddress: _mac, ...rest }) => rest);
  return { take: { name, uid: vm.metadata.uid ?? "", spec, disks } };
}

function earlier(a: VMTemplate, b: VMTemplate): boolean {
  const time = (t: VMTemplate) => new Date(t.metadata.creationTimestamp ?? 0).getTime();
  return time(a) !== time(b) ? time(a) < time(b) : a.metadata.name < b.metadata.name;
}

/** TPL as the controlling owner of what it keeps. */
export function templateOwner(tpl: VMTemplate): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: VMTemplateKind.kind,
    name: tpl.metadata.name,
    uid: tpl.metadata.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** A disk's owners once its template holds it: the VM's reference gone, the template's in. */
export function ownersWhenTaken(disk: VMDisk, tpl: VMTemplate, vmUid: string): V1OwnerReference[] {
  const others = (disk.metadata.ownerReferences ?? []).filter(
    (r) => r.uid !== vmUid && r.uid !== tpl.metadata.uid,
  ) as V1OwnerReference[];
  const owner = templateOwner(tpl);
  // Only one owner may be the controller.
  if (others.some((r) => r.controller)) owner.controller = false;
  return [...others, owner];
}

/** A disk's owners when given back: the template's reference gone, the VM's back when it had one. */
export function ownersWhenGivenBack(
  disk: VMDisk,
  tpl: VMTemplate,
  vm: VirtualMachine | undefined,
  ownedByVm: boolean,
): V1OwnerReference[] {
  const others = (disk.metadata.ownerReferences ?? []).filter(
    (r) => r.uid !== tpl.metadata.uid && r.uid !== vm?.metadata.uid,
  ) as V1OwnerReference[];
  if (!vm || !ownedByVm) return others;
  return [
    ...others,
    {
      apiVersion: API_VERSION,
      kind: "VirtualMachine",
      name: vm.metadata.name,
      uid: vm.metadata.uid ?? "",
      controller: !others.some((r) => r.controller),
      blockOwnerDeletion: true,
    },
  ];
}

/** The owner lists differ (by UID and controller flag). */
export function ownersDiffer(a: readonly V1OwnerReference[] | undefined, b: readonly V1OwnerReference[]) {
  const key = (refs: readonly V1OwnerReference[]) =>
    refs
      .map((r) => `${r.uid}:${r.controller ? 1 : 0}`)
      .sort()
      .join(",");
  return key(a ?? []) !== key(b);
}
