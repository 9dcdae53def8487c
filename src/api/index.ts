// Every kind the operator serves, in the order the CRDs are generated.
import type { KindDefinition } from "./kind.ts";
import { VirtualMachineKind } from "./virtualmachine.ts";
import { VMDiskKind } from "./vmdisk.ts";
import { VMRestoreKind, VMSnapshotKind } from "./vmsnapshot.ts";
import { VMTemplateKind } from "./vmtemplate.ts";

export const KINDS: readonly KindDefinition[] = [
  VirtualMachineKind,
  VMDiskKind,
  VMSnapshotKind,
  VMRestoreKind,
  VMTemplateKind,
];

export * from "./common.ts";
export type { CustomObject, KindDefinition, ObjectMeta } from "./kind.ts";
