// VMSnapshot and VMRestore: point-in-time copies of a VM and rolling back to them.
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import {
  Conditions,
  immutable,
  nameFitsHost,
  ObjectName,
  ObservedGeneration,
  presenceImmutable,
  SAFE_NAME_PATTERN,
  StringEnum,
  Timestamp,
  withRules,
} from "./common.ts";
import type { CustomObject, KindDefinition } from "./kind.ts";
import { DEFAULT_SNAPSHOT_DEADLINE, DURATION_PATTERN, VMRestoreKind, VMSnapshotKind } from "./names.ts";

export const SNAPSHOT_PHASES = ["InProgress", "Succeeded", "Failed"] as const;
export const SNAPSHOT_INDICATIONS = ["Online", "GuestAgent", "NoGuestAgent", "Memory"] as const;
export const SNAPSHOT_METHODS = ["Internal", "VolumeCopy"] as const;

/** An optional field of spec that may be given at creation only. */
function setOnce<T extends TSchema>(schema: T, what: string): T {
  return withRules(schema, immutable(what));
}

export const VMSnapshotSpec = withRules(
  Type.Object(
    {
      vmName: setOnce(ObjectName("The VirtualMachine to snapshot, in the same namespace."), "spec.vmName"),
      displayName: Type.Optional(
        setOnce(
          Type.String({
            description:
              "The snapshot's name as other platforms let you write it: letters (capitals too), digits, " +
              "'_', '.' and '-'. Kubernetes object names allow only lower case, digits, '.' and '-', so " +
              "keep such a name here; kubectl get and the VM's status.snapshots show it.",
            pattern: SAFE_NAME_PATTERN,
            minLength: 1,
            maxLength: 128,
          }),
          "spec.displayName",
        ),
      ),
      description: Type.Optional(
        setOnce(Type.String({ description: "Label of the snapshot.", maxLength: 4096 }), "spec.description"),
      ),
      memory: Type.Optional(
        setOnce(
          Type.Boolean({
            description:
              "Also save the memory and device state of a running VM, so a restore resumes the guest at " +
              "the moment of the snapshot instead of booting it. Ignored for a stopped VM.",
          }),
          "spec.memory",
        ),
      ),
      consistent: Type.Optional(
        setOnce(
          Type.Boolean({
            description:
              "Freeze the guest's file systems through the QEMU guest agent while the snapshot is taken, " +
              "when an agent answers; status.isConsistent and the GuestAgent / NoGuestAgent indication " +
              "say whether it happened.",
          }),
          "spec.consistent",
        ),
      ),
      sticky: Type.Optional(
        Type.Boolean({
          description:
            "Never remove this snapshot in rotation (spec.snapshotPolicy of the VM). The one field that " +
            "may change after creation, so an automatic snapshot can be kept.",
        }),
      ),
      failureDeadline: Type.Optional(
        setOnce(
          Type.String({
            description:
              "How long the snapshot may take, e.g. 90s, 5m, 1h. Past it the snapshot is Failed, a paused " +
              "guest is resumed, frozen file systems are thawed and what was stored is removed. Default 5m.",
            pattern: DURATION_PATTERN,
            minLength: 2,
            maxLength: 16,
            default: DEFAULT_SNAPSHOT_DEADLINE,
          }),
          "spec.failureDeadline",
        ),
      ),
    },
    { description: "What to snapshot. Only sticky changes after creation." },
  ),
  presenceImmutable("displayName", "spec.displayName"),
  presenceImmutable("description", "spec.description"),
  presenceImmutable("memory", "spec.memory"),
  presenceImmutable("consistent", "spec.consistent"),
);

const SnapshotDisk = Type.Object(
  {
    name: Type.String({ description: "The disk's name in the VM (spec.disks[].name)." }),
    vmDisk: Type.String({ description: "The VMDisk whose content the snapshot holds." }),
    vmDiskUID: Type.Optional(
      Type.String({ description: "UID of that VMDisk: a disk made anew under its name is another disk." }),
    ),
    format: Type.Optional(Type.String({ description: "Volume format: qcow2 or raw." })),
    pool: Type.Optional(Type.String({ description: "Storage pool holding the state." })),
    volume: Type.Optional(
      Type.String({
        description:
          "Volume holding this disk's state: the disk's own volume (Internal: a snapshot inside the qcow2 " +
          "file) or a copy next to it (VolumeCopy).",
      }),
    ),
    provisionedSize: Type.Optional(Type.Integer({ description: "Size of the disk at the snapshot, bytes." })),
  },
  { description: "What the snapshot holds of one disk, and where." },
);

export const VMSnapshotStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(StringEnum(SNAPSHOT_PHASES, { description: "InProgress, Succeeded or Failed." })),
    readyToUse: Type.Optional(
      Type.Boolean({
        description:
          "The snapshot can be restored or cloned from. False while it is taken, when it failed, and when " +
          "what it needs is gone (its VM or a disk deleted; a condition says which).",
      }),
    ),
    creationTime: Type.Optional(Timestamp("When the snapshot was taken.")),
    timestamp: Type.Optional(
      Type.Integer({
        description: "When the snapshot was taken, in unix seconds; unique among the VM's snapshots.",
      }),
    ),
    isAutomatic: Type.Optional(Type.Boolean({ description: "Taken by the VM's snapshotPolicy." })),
    isConsistent: Type.Optional(
      Type.Boolean({
        description: "The disks are consistent: the guest's file systems were frozen, or the VM was stopped.",
      }),
    ),
    storedBytes: Type.Optional(
      Type.Integer({ description: "Bytes the snapshot added to the node's storage when it was taken." }),
    ),
    nodeName: Type.Optional(Type.String({ description: "Node holding the snapshot." })),
    vmUID: Type.Optional(
      Type.String({ description: "UID of the VM snapshotted: a later VM of the same name cannot use it." }),
    ),
    method: Type.Optional(
      StringEnum(SNAPSHOT_METHODS, {
        description:
          "How it is stored: Internal (libvirt's qcow2 internal snapshot, when every disk is qcow2 and the " +
          "VM has no UEFI firmware) or VolumeCopy (a copy of each volume, and a memory image file).",
      }),
    ),
    libvirtName: Type.Optional(Type.String({ description: "Name of the libvirt snapshot (Internal)." })),
    memoryImage: Type.Optional(
      Type.String({ description: "File on the node holding the memory state (VolumeCopy with memory)." }),
    ),
    disks: Type.Optional(Type.Array(SnapshotDisk, { description: "Per disk: what it holds, where." })),
    vmSpec: Type.Optional(
      Type.Object(
        {},
        {
          description:
            "The VM's spec when the snapshot was taken; clones start from it, restores compare with it.",
          "x-kubernetes-preserve-unknown-fields": true,
        },
      ),
    ),
    indications: Type.Optional(
      Type.Array(StringEnum(SNAPSHOT_INDICATIONS, { description: "An indication." }), {
        description:
          "Online (the VM was running), GuestAgent / NoGuestAgent (whether a guest agent froze the file " +
          "systems), Memory (the memory state was saved).",
        maxItems: 4,
      }),
    ),
    error: Type.Optional(Type.String({ description: "Why the snapshot failed." })),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the snapshot." },
);

export const VMSnapshotDefinition: KindDefinition = {
  ...VMSnapshotKind,
  description:
    "A snapshot of a VirtualMachine's disks, and of its memory when asked, that works on any storage. " +
    "Restore it with a VMRestore or clone it with a VirtualMachine whose spec.source.snapshot names it.",
  spec: VMSnapshotSpec,
  status: VMSnapshotStatus,
  rootRules: [nameFitsHost("VMSnapshot")],
  printerColumns: [
    { name: "VM", type: "string", jsonPath: ".spec.vmName" },
    { name: "Display", type: "string", jsonPath: ".spec.displayName" },
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "ReadyToUse", type: "boolean", jsonPath: ".status.readyToUse" },
    { name: "Timestamp", type: "integer", jsonPath: ".status.timestamp", priority: 1 },
    { name: "Memory", type: "boolean", jsonPath: ".spec.memory", priority: 1 },
    { name: "Method", type: "string", jsonPath: ".status.method", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export const VMRestoreSpec = withRules(
  Type.Object(
    {
      vmName: ObjectName("The VirtualMachine to roll back."),
      snapshotName: ObjectName("The VMSnapshot of that VM to roll back to."),
    },
    { description: "Which VM to roll back to which snapshot. Immutable." },
  ),
  immutable("spec"),
);

export const VMRestoreStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(StringEnum(SNAPSHOT_PHASES, { description: "InProgress, Succeeded or Failed." })),
    complete: Type.Optional(Type.Boolean({ description: "The VM is back at the snapshot." })),
    restoreTime: Type.Optional(Timestamp("When the restore completed.")),
    nodeName: Type.Optional(Type.String({ description: "Node the restore runs on (the VM's)." })),
    restoredDisks: Type.Optional(
      Type.Array(Type.String(), { description: "The VM's disks rolled back (spec.disks[].name)." }),
    ),
    memoryRestored: Type.Optional(
      Type.Boolean({
        description:
          "The guest resumed from the snapshot's memory state. False when the snapshot has none, or the " +
          "VM should not run (Halted, or Manual and stopped): then only the disks were restored.",
      }),
    ),
    error: Type.Optional(Type.String({ description: "Why the restore failed." })),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the restore. A condition says what of the VM could not be restored." },
);

export const VMRestoreDefinition: KindDefinition = {
  ...VMRestoreKind,
  description:
    "Rolls a VirtualMachine back to one of its VMSnapshots: its disks, and its memory when the snapshot " +
    "has it and the VM should run. A running VM is stopped first (gracefully). The VM's spec is never " +
    "changed; create a new VMRestore to restore again.",
  spec: VMRestoreSpec,
  status: VMRestoreStatus,
  printerColumns: [
    { name: "VM", type: "string", jsonPath: ".spec.vmName" },
    { name: "Snapshot", type: "string", jsonPath: ".spec.snapshotName" },
    { name: "Complete", type: "boolean", jsonPath: ".status.complete" },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export type VMSnapshotSpec = Static<typeof VMSnapshotSpec>;
export type VMSnapshotStatus = Static<typeof VMSnapshotStatus>;
export type VMRestoreSpec = Static<typeof VMRestoreSpec>;
export type VMRestoreStatus = Static<typeof VMRestoreStatus>;

export type VMSnapshot = CustomObject<VMSnapshotSpec, VMSnapshotStatus>;
export type VMRestore = CustomObject<VMRestoreSpec, VMRestoreStatus>;
