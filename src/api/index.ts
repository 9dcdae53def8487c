// Every kind the operator serves, in the order the CRDs are generated.
import type { KindDefinition } from "./kind.ts";
import { VirtualMachineDefinition } from "./virtualmachine.ts";
import { VMDiskDefinition } from "./vmdisk.ts";
import { VMRestoreDefinition, VMSnapshotDefinition } from "./vmsnapshot.ts";
import { VMTemplateDefinition } from "./vmtemplate.ts";

export const KINDS: readonly KindDefinition[] = [
  VirtualMachineDefinition,
  VMDiskDefinition,
  VMSnapshotDefinition,
  VMRestoreDefinition,
  VMTemplateDefinition,
];

export * from "./common.ts";
export type { CustomObject, KindDefinition, KindName, ObjectMeta } from "./kind.ts";
export * from "./names.ts";
