// VMSnapshot and VMRestore: point-in-time copies of a VM and rolling back to them.
import { type Static, Type } from "@sinclair/typebox";
import {
  Conditions,
  immutable,
  nameFitsHost,
  ObjectName,
  ObservedGeneration,
  SAFE_NAME_PATTERN,
  StringEnum,
  Timestamp,
  withRules,
} from "./common.ts";
import type { KindDefinition } from "./kind.ts";

export const SNAPSHOT_PHASES = ["InProgress", "Succeeded", "Failed"] as const;
export const SNAPSHOT_INDICATIONS = ["Online", "GuestAgent", "NoGuestAgent", "Memory"] as const;

const snapshotNameRule = {
  rule: `self.metadata.name.matches('${SAFE_NAME_PATTERN}')`,
  message: "snapshot names may use only letters, digits, '_', '.' and '-'",
};

export const VMSnapshotSpec = withRules(
  Type.Object(
    {
      vmName: ObjectName("The VirtualMachine to snapshot, in the same namespace."),
      description: Type.Optional(Type.String({ description: "Label of the snapshot.", maxLength: 4096 })),
      memory: Type.Optional(
        Type.Boolean({
          description: "Also save the memory of a running VM, so a restore resumes it.",
        }),
      ),
      consistent: Type.Optional(
        Type.Boolean({
          description:
            "Quiesce guest file systems through the guest agent when one answers; status.isConsistent says " +
            "whether it happened.",
        }),
      ),
      sticky: Type.Optional(Type.Boolean({ description: "Never remove this snapshot in rotation." })),
    },
    { description: "What to snapshot. Immutable after creation." },
  ),
  immutable("spec"),
);

export const VMSnapshotStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(StringEnum(SNAPSHOT_PHASES, { description: "InProgress, Succeeded or Failed." })),
    readyToUse: Type.Optional(Type.Boolean({ description: "The snapshot can be restored or cloned from." })),
    creationTime: Type.Optional(Timestamp("When the snapshot was taken.")),
    timestamp: Type.Optional(Type.Integer({ description: "Creation time in unix seconds." })),
    isAutomatic: Type.Optional(Type.Boolean({ description: "Taken by the VM's snapshotPolicy." })),
    isConsistent: Type.Optional(Type.Boolean({ description: "Guest file systems were quiesced." })),
    storedBytes: Type.Optional(Type.Integer({ description: "Bytes the snapshot holds." })),
    nodeName: Type.Optional(Type.String({ description: "Node holding the snapshot." })),
    indications: Type.Optional(
      Type.Array(StringEnum(SNAPSHOT_INDICATIONS, { description: "An indication." }), {
        description: "Online (VM was running), GuestAgent / NoGuestAgent, Memory (memory was saved).",
        maxItems: 4,
      }),
    ),
    error: Type.Optional(Type.String({ description: "Why the snapshot failed." })),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the snapshot." },
);

export const VMSnapshotKind: KindDefinition = {
  kind: "VMSnapshot",
  plural: "vmsnapshots",
  singular: "vmsnapshot",
  shortNames: ["vmsnap", "vmsnaps"],
  description:
    "A snapshot of a VirtualMachine's disks, and of its memory when asked, that works on any storage. " +
    "Restore it with a VMRestore or clone it with a VirtualMachine whose spec.source.snapshot names it.",
  spec: VMSnapshotSpec,
  status: VMSnapshotStatus,
  rootRules: [nameFitsHost("VMSnapshot"), snapshotNameRule],
  printerColumns: [
    { name: "VM", type: "string", jsonPath: ".spec.vmName" },
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "ReadyToUse", type: "boolean", jsonPath: ".status.readyToUse" },
    { name: "Memory", type: "boolean", jsonPath: ".spec.memory", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export const VMRestoreSpec = withRules(
  Type.Object(
    {
      vmName: ObjectName("The VirtualMachine to roll back."),
      snapshotName: Type.String({
        description: "The VMSnapshot of that VM to roll back to.",
        pattern: SAFE_NAME_PATTERN,
        minLength: 1,
        maxLength: 253,
      }),
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
    error: Type.Optional(Type.String({ description: "Why the restore failed." })),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the restore." },
);

export const VMRestoreKind: KindDefinition = {
  kind: "VMRestore",
  plural: "vmrestores",
  singular: "vmrestore",
  shortNames: ["vmrestore", "vmrestores"],
  description: "Rolls a VirtualMachine back to one of its VMSnapshots.",
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
