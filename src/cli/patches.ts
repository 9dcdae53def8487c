// The JSON merge patches (RFC 7386) the verbs send to a VirtualMachine, as pure functions of the
// VM they read: only spec fields and annotations, what the built-in `edit` role may write, never
// status. A null removes a field. A patch that replaces a list carries the resourceVersion read,
// so a change made meanwhile gives 409 Conflict instead of being lost.

import {
  FROZEN_ANNOTATION,
  FSFREEZE_ANNOTATION,
  FSTHAW_ANNOTATION,
  REFRESH_ANNOTATION,
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
} from "../api/names.ts";
import type { VirtualMachine, VirtualMachineSpec } from "../api/virtualmachine.ts";
import { PluginError } from "./errors.ts";

type Spec = VirtualMachineSpec;
type DiskEntry = NonNullable<Spec["disks"]>[number];
type Nullable<T> = { [K in keyof T]?: T[K] | null };

export interface VmMergePatch {
  metadata?: { annotations?: Record<string, string | null>; resourceVersion?: string };
  spec?: {
    runStrategy?: Spec["runStrategy"];
    paused?: boolean;
    cdrom?: Nullable<NonNullable<Spec["cdrom"]>>;
    /** The whole list; null when the last disk goes (the VM as it was before any was attached). */
    disks?: DiskEntry[] | null;
    snapshotPolicy?: Nullable<NonNullable<Spec["snapshotPolicy"]>> | null;
  };
}

/** How a stop or restart treats the guest: --force, --grace-period N, or the VM's own grace period. */
export interface GraceOptions {
  force?: boolean;
  gracePeriodSeconds?: number;
}

/** The grace annotation's value: "0" forces, "N" waits N seconds, null (removed) uses the spec's. */
/**
 * A stop or restart request's annotation value: the time, and the grace period asked for this
 * request only (`;grace=N`, 0 with --force), so it can never outlive it.
 */
export function requestValue(now: Date, o: GraceOptions = {}): string {
  const grace = o.force ? 0 : o.gracePeriodSeconds;
  return grace === undefined ? now.toISOString() : `${now.toISOString()};grace=${grace}`;
}

export function runStrategyOf(vm: VirtualMachine): NonNullable<Spec["runStrategy"]> {
  return vm.spec.runStrategy ?? "Always";
}

export function isFrozen(vm: VirtualMachine): boolean {
  return vm.metadata.annotations?.[FROZEN_ANNOTATION] !== undefined;
}

/** A warning for a request a frozen VM's node agent will refuse (it is still written: the agent records the refusal). */
export function frozenWarning(vm: VirtualMachine, verb: "start" | "restart"): string | undefined {
  if (!isFrozen(vm)) return undefined;
  const name = vm.metadata.name;
  return `VM "${name}" is frozen: the node agent refuses to ${verb} it until "kubectl vm unfreeze ${name}"`;
}

/** The medium of a CD-ROM: a path starting with "/" is a host path (admins), anything else a VMDisk. */
export function cdromMedium(media: string): { image: string | null; diskRef: { name: string } | null } {
  return media.startsWith("/") ? { image: media, diskRef: null } : { image: null, diskRef: { name: media } };
}

export interface StartOptions {
  /** Boot with this medium in the CD-ROM drive (VMDisk name or host path). */
  cdrom?: string;
  /** Boot once from it, then from the disks. */
  once?: boolean;
}

/**
 * start, like KubeVirt's virtctl: a Manual VM gets a request (the start-requested-at annotation;
 * the agent acts once per new value), a Halted one becomes Always. A VM the operator keeps
 * running already (Always, RerunOnFailure, Once) is refused rather than guessed at. A frozen VM gets the request too
 * (its agent refuses it and says so in an Event; see frozenWarning).
 */
export function startPatch(vm: VirtualMachine, now: Date, o: StartOptions = {}): VmMergePatch {
  const strategy = runStrategyOf(vm);
  const name = vm.metadata.name;
  const patch: VmMergePatch = {};
  if (strategy === "Manual") patch.metadata = { annotations: { [START_ANNOTATION]: now.toISOString() } };
  else if (strategy === "Halted") patch.spec = { runStrategy: "Always" };
  else
    throw new PluginError(
      `VM "${name}" has runStrategy ${strategy}: the operator starts it already ` +
        `(use "kubectl vm restart ${name}" to reboot it, or set runStrategy Manual to start it by hand)`,
    );
  if (o.cdrom !== undefined)
    patch.spec = { ...patch.spec, cdrom: { ...cdromMedium(o.cdrom), bootOnce: o.once === true } };
  return patch;
}

/**
 * stop: the stop-requested-at annotation for every run strategy (the agent records the stop done
 * in status.powerRequestHandled), and runStrategy Halted for a VM the operator would start again
 * (not Manual, not Halted: stopping a Halted VM again may force a stop under way).
 */
export function stopPatch(vm: VirtualMachine, now: Date, grace: GraceOptions = {}): VmMergePatch {
  const strategy = runStrategyOf(vm);
  const patch: VmMergePatch = {
    metadata: {
      annotations: { [STOP_ANNOTATION]: requestValue(now, grace) },
    },
  };
  if (strategy !== "Manual" && strategy !== "Halted") patch.spec = { runStrategy: "Halted" };
  return patch;
}

/** restart: a new restart-requested-at reboots the VM once; --force resets it at once. */
export function restartPatch(now: Date, grace: GraceOptions = {}): VmMergePatch {
  return {
    metadata: {
      annotations: { [RESTART_ANNOTATION]: requestValue(now, grace) },
    },
  };
}

export function pausePatch(paused: boolean): VmMergePatch {
  return { spec: { paused } };
}

/**
 * freeze (seed 004): stop the VM and keep it stopped, whatever asks it to start, until unfreeze.
 * Annotations only, so GitOps tools see no drift; the stop request is the one stop would send.
 */
export function freezePatch(now: Date, grace: GraceOptions = {}): VmMergePatch {
  const stamp = now.toISOString();
  return {
    metadata: {
      annotations: {
        [FROZEN_ANNOTATION]: stamp,
        [STOP_ANNOTATION]: requestValue(now, grace),
      },
    },
  };
}

/** unfreeze: the VM does what its run strategy says again (Always starts it). */
export function unfreezePatch(): VmMergePatch {
  return { metadata: { annotations: { [FROZEN_ANNOTATION]: null } } };
}

/** fsfreeze / fsthaw: a request the agent carries out through the guest agent; the VM runs on. */
export function fsPatch(verb: "fsfreeze" | "fsthaw", now: Date): VmMergePatch {
  const annotation = verb === "fsfreeze" ? FSFREEZE_ANNOTATION : FSTHAW_ANNOTATION;
  return { metadata: { annotations: { [annotation]: now.toISOString() } } };
}

/** status --refresh / stats: ask the node to read the domain and its statistics now. */
export function refreshPatch(now: Date): VmMergePatch {
  return { metadata: { annotations: { [REFRESH_ANNOTATION]: now.toISOString() } } };
}

export interface RotationOptions {
  schedule: string;
  keep: number;
  memory?: boolean;
  consistent?: boolean;
}

/**
 * rotation (seed 003 update_restore_settings): automatic snapshots on SCHEDULE keeping KEEP.
 * memory and consistent say what the command line says (absent: removed); the policy's other
 * fields (exclude, suspend, …) are left as they are. OFF removes the policy.
 */
export function rotationPatch(o: RotationOptions | "off"): VmMergePatch {
  if (o === "off") return { spec: { snapshotPolicy: null } };
  return {
    spec: {
      snapshotPolicy: {
        schedule: o.schedule,
        keep: o.keep,
        memory: o.memory === true ? true : null,
        consistent: o.consistent === true ? true : null,
      },
    },
  };
}

/** cdrom insert: change the medium only (bus and bootOnce stay). */
export function cdromInsertPatch(media: string): VmMergePatch {
  return { spec: { cdrom: cdromMedium(media) } };
}

/** cdrom eject: an empty drive (image ""), the drive itself and its bus stay. */
export function cdromEjectPatch(): VmMergePatch {
  return { spec: { cdrom: { image: "", diskRef: null } } };
}

export interface AttachOptions {
  /** Name of the disk inside the VM; default the VMDisk's name. */
  name?: string;
  bus?: DiskEntry["bus"];
  bootOrder?: number;
}

/** A patch of spec.disks: the whole list, guarded by the resourceVersion it was built from. */
function disksPatch(vm: VirtualMachine, disks: DiskEntry[]): VmMergePatch {
  const resourceVersion = vm.metadata.resourceVersion;
  return {
    ...(resourceVersion ? { metadata: { resourceVersion } } : {}),
    spec: { disks: disks.length ? disks : null },
  };
}

/** disk attach: VMDisk DISK appended to spec.disks; a name or a VMDisk already there is refused. */
export function diskAttachPatch(vm: VirtualMachine, disk: string, o: AttachOptions = {}): VmMergePatch {
  const disks = vm.spec.disks ?? [];
  const name = o.name ?? disk;
  const vmName = vm.metadata.name;
  if (disks.some((d) => d.name === name))
    throw new PluginError(`VM "${vmName}" has a disk named "${name}" already (use --name to give another)`);
  const holder = disks.find((d) => d.diskRef.name === disk);
  if (holder)
    throw new PluginError(`VMDisk "${disk}" is attached to VM "${vmName}" already, as "${holder.name}"`);
  const entry: DiskEntry = { name, diskRef: { name: disk } };
  if (o.bus) entry.bus = o.bus;
  if (o.bootOrder !== undefined) entry.bootOrder = o.bootOrder;
  return disksPatch(vm, [...disks, entry]);
}

/** The index of disk DISK in the VM: by its name in the VM, else by the VMDisk it names. */
export function findDisk(vm: VirtualMachine, disk: string): number {
  const disks = vm.spec.disks ?? [];
  const byName = disks.findIndex((d) => d.name === disk);
  if (byName >= 0) return byName;
  const byRef = disks.flatMap((d, i) => (d.diskRef.name === disk ? [i] : []));
  if (byRef.length === 1) return byRef[0] as number;
  const names = disks.map((d) => d.name).join(", ") || "none";
  throw new PluginError(`VM "${vm.metadata.name}" has no disk "${disk}" (its disks: ${names})`);
}

/** disk activate / deactivate: that entry's active (false hot-unplugs it from a running VM). */
export function diskActivePatch(vm: VirtualMachine, disk: string, active: boolean): VmMergePatch {
  const index = findDisk(vm, disk);
  return disksPatch(
    vm,
    (vm.spec.disks ?? []).map((d, i) => (i === index ? { ...d, active } : d)),
  );
}

/** disk detach: the entry removed from spec.disks (the VMDisk itself stays). */
export function diskDetachPatch(vm: VirtualMachine, disk: string): VmMergePatch {
  const index = findDisk(vm, disk);
  return disksPatch(
    vm,
    (vm.spec.disks ?? []).filter((_, i) => i !== index),
  );
}
