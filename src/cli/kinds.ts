// The plugin's kinds and how kubectl names their objects in messages.
import { GROUP } from "./contract.ts";

export interface Kind {
  kind: string;
  plural: string;
}

export const VM: Kind = { kind: "VirtualMachine", plural: "virtualmachines" };
export const SNAPSHOT: Kind = { kind: "VMSnapshot", plural: "vmsnapshots" };
export const RESTORE: Kind = { kind: "VMRestore", plural: "vmrestores" };
export const TEMPLATE: Kind = { kind: "VMTemplate", plural: "vmtemplates" };
export const DISK: Kind = { kind: "VMDisk", plural: "vmdisks" };

/** kubectl's resource/name after a write: "virtualmachine.vm.libvirt-operator.io/web". */
export function resourceName(kind: Kind, name: string): string {
  return `${kind.kind.toLowerCase()}.${GROUP}/${name}`;
}

/** The short form for error lines: "virtualmachine/web". */
export function shortName(kind: Kind, name: string): string {
  return `${kind.kind.toLowerCase()}/${name}`;
}
