// The plugin's kinds and how kubectl names their objects in messages.
import type { KindName } from "../api/kind.ts";
import {
  GROUP,
  VirtualMachineKind,
  VMDiskKind,
  VMRestoreKind,
  VMSnapshotKind,
  VMTemplateKind,
} from "../api/names.ts";

/** What the plugin needs of a kind: its name and the plural in its URLs. */
export type Kind = Pick<KindName, "kind" | "plural">;

export const VM: Kind = VirtualMachineKind;
export const SNAPSHOT: Kind = VMSnapshotKind;
export const RESTORE: Kind = VMRestoreKind;
export const TEMPLATE: Kind = VMTemplateKind;
export const DISK: Kind = VMDiskKind;

/** kubectl's resource/name after a write: "virtualmachine.vm.libvirt-operator.io/web". */
export function resourceName(kind: Kind, name: string): string {
  return `${kind.kind.toLowerCase()}.${GROUP}/${name}`;
}

/** The short form for error lines: "virtualmachine/web". */
export function shortName(kind: Kind, name: string): string {
  return `${kind.kind.toLowerCase()}/${name}`;
}
