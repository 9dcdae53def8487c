// Every Event reason the operator emits: its type, the kinds it is recorded on, and when. The
// README's Events table lists exactly these (test/unit/event-reasons.test.ts compares them), and
// recordEvent's callers (events.ts) accept only these names, so a new reason is one entry here.
import type { EventType } from "../runtime/kube.ts";

export type EventKind = "VirtualMachine" | "VMDisk" | "VMSnapshot" | "VMRestore" | "VMTemplate";

export interface EventReasonInfo {
  type: EventType;
  kinds: readonly EventKind[];
  when: string;
}

const VM = "VirtualMachine";
const DISK = "VMDisk";
const SNAP = "VMSnapshot";
const RESTORE = "VMRestore";
const TPL = "VMTemplate";

const warn = (kinds: readonly EventKind[], when: string) => ({ type: "Warning", kinds, when }) as const;
const normal = (kinds: readonly EventKind[], when: string) => ({ type: "Normal", kinds, when }) as const;

export const EVENT_REASONS = {
  // Placement and admission (controller).
  Scheduled: normal([VM, DISK], "placed on a node"),
  Unschedulable: warn([VM, DISK], "no node can take it now (retried)"),
  InsufficientCapacity: warn(
    [VM, RESTORE],
    "a stopped VM asked to start, or a restore that brings its guest up, finds its node without room beside the guests running there (retried; a VM is moved where its disks allow)",
  ),
  MovedForRoom: normal(
    [VM],
    "a VM that could not start on its node for lack of room was placed on another one",
  ),
  NetworkNotAllowed: warn([VM], "an interface uses a network its namespace may not use"),
  StoragePoolNotAllowed: warn([DISK], "its storage pool is not allowed in its namespace"),
  DiskBytesLimitExceeded: warn([DISK, SNAP], "it would take its namespace over its disk byte limit"),
  UuidInUse: warn([VM], "its UUID is already another VM's"),
  MacAddressInUse: warn([VM], "a MAC address is already another VM's"),
  AddressInUse: warn(
    [VM],
    "the node agent finds an IP address the VM was given reserved for another VM on its node",
  ),
  NotAdmitted: warn([VM], "the agent refuses a VM the controller refused (with a reason unknown to it)"),
  HostPathRefused: warn([VM], "a host path (CD-ROM, kernel, initrd) is outside the allowed directories"),
  Cloning: normal([VM], "made from a VMSnapshot: its disks are being created"),
  FromTemplate: normal([VM], "made from a VMTemplate: its disks are being created"),
  DeletionBlocked: warn([DISK, TPL], "deletion waits for the VMs or clones that still use it"),
  // Node loss (controller).
  NodeLost: warn([VM, DISK], "its node's agent stopped renewing its heartbeat"),
  NodeGone: warn([VM, DISK, SNAP], "its node is gone (deleted or out-of-service): released or placed again"),
  NodeReachable: normal([VM, DISK], "its node's agent is heard from again"),
  // Snapshot policy (controller).
  SnapshotRotated: normal([VM], "an automatic snapshot past the policy's retention was deleted"),
  InvalidSchedule: warn([VM], "the snapshot policy's schedule cannot be parsed"),
  Suspended: warn([VM], "the snapshot policy is suspended"),
  TooManyFailures: warn([VM], "the snapshot policy stopped after maxFailures failed snapshots"),
  // Templates (controller).
  VMTaken: normal([TPL], "a VM was made into this template: its disks are the bases"),
  BaseCreated: normal([TPL], "a base disk is being fetched to a node"),
  VMGivenBack: normal([TPL], "the disks of the VM made into the template are its own again"),
  // Restores refused (controller).
  VMNotFound: warn([RESTORE], "the VM to restore does not exist"),
  VMDeleted: warn([RESTORE], "the VM to restore is being deleted"),
  SnapshotNotFound: warn([RESTORE], "the snapshot to restore does not exist"),
  WrongVM: warn([RESTORE], "the snapshot is of another VM"),
  EarlierVM: warn([RESTORE], "the snapshot is of an earlier VM of the same name"),
  SnapshotNotReady: warn([RESTORE], "the snapshot succeeded but cannot be restored"),
  RestoreInProgress: warn([RESTORE], "another restore of the same VM is running"),
  DiskDetached: warn([RESTORE], "a disk the internal snapshot holds has left the VM since"),
  DiskReplaced: warn([RESTORE], "a disk in the snapshot was deleted and made anew since"),
  DiskIsTemplateBase: warn([RESTORE], "a disk to restore is a template's base (never restored)"),
  InternalSnapshotsInside: warn(
    [RESTORE],
    "a volume copy would overwrite disks that internal snapshots are kept in",
  ),
  OtherNode: warn([RESTORE], "the snapshot is stored on another node than the VM's"),
  // Snapshots and restores (agent).
  SnapshotTaken: normal([SNAP, VM], "a snapshot was taken"),
  SnapshotFailed: warn([SNAP, RESTORE], "a snapshot failed (or the one to restore had)"),
  Restored: normal([RESTORE, VM], "the VM was restored from a snapshot"),
  RestoreFailed: warn([RESTORE], "a restore failed on the node"),
  // Domains (agent).
  Adopted: normal([VM, DISK], "an existing domain or volume left by an earlier object was taken over"),
  DomainNotAdopted: warn([VM], "a domain of this name from an earlier VM is not taken over"),
  Defined: normal([VM], "the libvirt domain was defined (and not started at once: that says Started)"),
  Redefined: normal([VM], "the libvirt domain was redefined from a changed spec"),
  DefineFailed: warn([VM], "libvirt refused the domain definition"),
  TemplateBase: warn([VM], "the VM was made into a template and its disks are bases: it does not start"),
  DiskUnavailable: warn([VM], "a disk it needs is missing or failed"),
  HotplugFailed: warn([VM], "a disk could not be attached or detached while running"),
  DeviceUpdateFailed: warn([VM], "a running device (e.g. CD-ROM medium) could not be changed"),
  DhcpReservationFailed: warn([VM], "the DHCP reservation for an interface could not be written"),
  Fenced: warn(
    [VM],
    "the VM was placed on another node (its node came back after being lost, or it moved to start where there is room): its domain on the old node was removed",
  ),
  // Power (agent).
  Started: normal([VM], "the domain was started (a new one: defined and started, in one Event)"),
  Stopping: normal([VM], "ACPI shutdown requested"),
  Stopped: normal([VM], "the guest powered off"),
  StopCancelled: normal([VM], "the VM should run again before it stopped"),
  ForcedOff: normal([VM], "the domain was forced off (stop without grace, or shutdown timed out)"),
  Paused: normal([VM], "the VM was paused"),
  Resumed: normal([VM], "the VM was resumed"),
  Restarting: normal([VM], "a restart to apply changes: the VM stops and starts again"),
  Rebooting: normal([VM], "a guest reboot was requested"),
  Reset: normal([VM], "the guest was reset (restart without grace, or reboot timed out)"),
  StartRefused: warn([VM], "a start request is refused: the VM is frozen"),
  CrashLoopBackOff: warn([VM], "the guest keeps crashing: the next start waits (10 s doubling to 5 min)"),
  GuestNeedsReset: warn([VM], "QEMU needs a reset (e.g. guest panic): the domain was forced off"),
  StartFailed: warn([VM], "libvirt failed to start the domain"),
  ShutdownFailed: warn([VM], "libvirt failed to request an ACPI shutdown"),
  PressAgainFailed: warn([VM], "libvirt failed to press the ACPI power button again"),
  DestroyFailed: warn([VM], "libvirt failed to force the domain off"),
  SuspendFailed: warn([VM], "libvirt failed to pause the domain"),
  ResumeFailed: warn([VM], "libvirt failed to resume the domain"),
  PowerCycleFailed: warn([VM], "libvirt failed to begin a stop-and-start"),
  RebootFailed: warn([VM], "libvirt failed to request a guest reboot"),
  ResetFailed: warn([VM], "libvirt failed to reset the domain"),
  RecoverFailed: warn([VM], "libvirt failed to force off a guest that needs a reset"),
  PowerActionFailed: warn([VM], "another power step (bookkeeping, no libvirt call) failed"),
  // Guest file systems (agent).
  FilesystemsFrozen: normal([VM], "the guest agent froze the file systems"),
  FilesystemsThawed: normal([VM], "the guest agent thawed the file systems"),
  FilesystemRequestFailed: warn([VM], "a freeze or thaw request failed"),
  // Volumes (agent).
  VolumeNotOwned: warn([DISK], "a volume of this name exists and is not this VMDisk's"),
  Created: normal([DISK], "a blank volume was created"),
  Cloned: normal([DISK], "the volume was copied or cloned from another disk or snapshot"),
  Imported: normal([DISK], "an image was imported into the volume"),
  ImportFailed: warn([DISK], "the image could not be fetched or checked"),
  VolumeFailed: warn([DISK], "libvirt failed to create or change the volume"),
  Resized: normal([DISK], "the volume was grown"),
  ResizeRefused: warn([DISK], "the volume is a template's base and never grows"),
  ResizeFailed: warn([DISK], "growing the volume failed"),
  Wiped: normal([DISK], "the volume was zeroed before deletion (wipeAfterDelete)"),
} as const satisfies Record<string, EventReasonInfo>;

export type EventReason = keyof typeof EVENT_REASONS;

/** The reasons by name (`Reason.Started`), so call sites never spell one as free text. */
export const Reason = Object.freeze(
  Object.fromEntries(Object.keys(EVENT_REASONS).map((r) => [r, r])) as { readonly [R in EventReason]: R },
);

export function isEventReason(s: string): s is EventReason {
  return Object.hasOwn(EVENT_REASONS, s);
}
