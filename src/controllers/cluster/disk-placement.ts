// Pure: where VMDisks live and who holds them. A disk follows the VM that uses it (or the disk
// it is cloned from); a floating disk goes to the node with most room in its pool; a VM goes
// to the node that holds its node-local disks.
import { parseQuantity } from "../../api/quantity.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { VMSnapshot } from "../../api/vmsnapshot.ts";
import type { StoragePoolFacts } from "../node-facts.ts";
import { placedNode } from "../vm-placement.ts";
import { poolRoom } from "./pool-capacity.ts";

const created = (o: { metadata: { creationTimestamp?: string | Date } }) =>
  o.metadata.creationTimestamp ? new Date(o.metadata.creationTimestamp).getTime() : 0;

/** Names of the VMDisks (of the VM's namespace) the VM asks for: spec.disks and the CD-ROM medium. */
export function diskNamesOf(vm: VirtualMachine): string[] {
  const names = (vm.spec.disks ?? []).map((d) => d.diskRef.name);
  const medium = vm.spec.cdrom?.diskRef?.name;
  return medium ? [...names, medium] : names;
}

/** The VM names the VMDisk DISK_NAME (of its namespace): in spec.disks or as spec.cdrom.diskRef. */
export function namesDisk(vm: VirtualMachine, diskName: string | undefined): boolean {
  return diskName !== undefined && diskNamesOf(vm).includes(diskName);
}

/**
 * The VM's domain has the disk: attached (status.disks), or as the CD-ROM medium of a placed VM
 * (counted while named, so the medium is never deleted under a running guest).
 */
function hasAttached(vm: VirtualMachine, disk: VMDisk): boolean {
  const path = disk.status?.path;
  if (path && (vm.status?.disks ?? []).some((d) => d.path === path)) return true;
  return Boolean(placedNode(vm)) && vm.spec.cdrom?.diskRef?.name === disk.metadata.name;
}

/** The VM uses the disk: named in spec, or still attached to its domain. */
export function usesDisk(vm: VirtualMachine, disk: VMDisk): boolean {
  if (vm.metadata.namespace !== disk.metadata.namespace) return false;
  return namesDisk(vm, disk.metadata.name) || hasAttached(vm, disk);
}

/**
 * Names of the VMs using DISK, the one that holds it first: VMs whose domain has it attached
 * come before those that only ask for it, older before newer (a non-shareable disk goes to
 * the first only). While the disk is being deleted, only VMs that have it attached hold it.
 */
export function diskHolders(disk: VMDisk, vms: readonly VirtualMachine[]): string[] {
  const attached = (vm: VirtualMachine) => (hasAttached(vm, disk) ? 0 : 1);
  // A disk being deleted is held only by VMs whose domain still has it: no new attachments.
  const deleting = Boolean(disk.metadata.deletionTimestamp);
  return vms
    .filter((vm) => usesDisk(vm, disk) && (!deleting || attached(vm) === 0))
    .sort((a, b) => attached(a) - attached(b) || olderFirst(a, b))
    .map((vm) => vm.metadata.name);
}

/** Older first, then by name: one order whatever order a cache or an index gives. */
export function olderFirst(a: VirtualMachine, b: VirtualMachine): number {
  return created(a) - created(b) || a.metadata.name.localeCompare(b.metadata.name);
}

/** Names of the VMDisks in DISKS that are linked clones of DISK (they read from its volume). */
export function linkedClonesOf(disk: VMDisk, disks: readonly VMDisk[]): string[] {
  return disks
    .filter(
      (d) =>
        d.metadata.namespace === disk.metadata.namespace &&
        d.spec.source?.disk?.linked === true &&
        d.spec.source.disk.name === disk.metadata.name,
    )
    .map((d) => d.metadata.name)
    .sort();
}

export type DiskNodeDecision = { node: string; why: string } | { wait: string } | { floating: true };

/** Where an unplaced disk goes, from the VMs that use it and the disk it copies. */
export function diskNodeDecision(
  disk: VMDisk,
  users: readonly VirtualMachine[],
  source: VMDisk | undefined,
  snapshot?: VMSnapshot,
): DiskNodeDecision {
  if (disk.spec.nodeName) return { node: disk.spec.nodeName, why: "spec.nodeName" };
  const fromSnapshot = disk.spec.source?.snapshot?.name;
  if (fromSnapshot) {
    const node = snapshot?.status?.nodeName;
    return node && snapshot?.status?.phase === "Succeeded"
      ? { node, why: `the node of VMSnapshot ${fromSnapshot} it is made from` }
      : {
          wait: `VMSnapshot ${fromSnapshot} (spec.source.snapshot) ${snapshot ? "is not taken yet" : "does not exist"}`,
        };
  }
  const sourceName = disk.spec.source?.disk?.name;
  if (sourceName) {
    const node = source?.status?.nodeName;
    return node
      ? { node, why: `the node of VMDisk ${sourceName} it is cloned from` }
      : {
          wait: `VMDisk ${sourceName} (spec.source.disk) ${source ? "is not placed yet" : "does not exist"}`,
        };
  }
  const placed = users.find((vm) => placedNode(vm));
  if (placed) return { node: placedNode(placed)!, why: `the node of VirtualMachine ${placed.metadata.name}` };
  if (users.length) return { wait: `VirtualMachine ${users[0]!.metadata.name} is not placed yet` };
  return { floating: true };
}

export interface DiskNodeView {
  name: string;
  /** Labelled for VMs with a live agent. */
  usable: boolean;
  storagePools?: Record<string, StoragePoolFacts>;
  defaultStoragePool?: string;
  /** Bytes already promised per pool of the node (pool-capacity.ts), the disk placed left out. */
  provisioned?: Record<string, number>;
}

/** The pool a disk goes to on node N, its facts, and whether it has room for the disk. */
export function poolFit(
  disk: VMDisk,
  n: DiskNodeView,
  overcommit: number,
): { pool: string; room: number; free: number } | { pool: string; refusal: string } {
  const pool = disk.spec.storagePool ?? n.defaultStoragePool ?? "";
  const facts = n.storagePools?.[pool];
  if (!facts) return { pool, refusal: `no active storage pool ${pool || "(default)"} on node ${n.name}` };
  const need = { bytes: parseQuantity(disk.spec.provisionedSize), preallocated: disk.spec.sparse === false };
  const fit = poolRoom({ name: pool, node: n.name, facts }, n.provisioned?.[pool] ?? 0, need, overcommit);
  return fit.refusal ? { pool, refusal: fit.refusal } : { pool, room: fit.room, free: facts.availableBytes };
}

type Room = { node: string; room: number; free: number };
const roomier = (a: Room, b: Room) =>
  a.room !== b.room ? a.room > b.room : a.free !== b.free ? a.free > b.free : a.node < b.node;

/**
 * The node whose pool has the most room (capacity × overcommit − provisioned) for a disk no VM
 * uses yet; on a tie, the most free space, then the first name.
 */
export function placeFloatingDisk(
  disk: VMDisk,
  nodes: readonly DiskNodeView[],
  overcommit = 1,
): { node: string } | { error: string } {
  let best: Room | undefined;
  const reasons: string[] = [];
  for (const n of nodes) {
    if (!n.usable) {
      reasons.push(`${n.name}: no node agent or not enabled for VMs`);
      continue;
    }
    const fit = poolFit(disk, n, overcommit);
    if ("refusal" in fit) {
      reasons.push(`${n.name}: ${fit.refusal}`);
      continue;
    }
    const candidate = { node: n.name, room: fit.room, free: fit.free };
    if (!best || roomier(candidate, best)) best = candidate;
  }
  if (best) return { node: best.node };
  return {
    error: `no node can hold the disk${reasons.length ? `: ${reasons.join("; ")}` : ": no nodes exist"}`,
  };
}

/**
 * The node a VM must run on because its node-local disks are there (disks in shared pools and
 * disks not placed yet do not constrain it), or an error when they are spread over nodes.
 */
export function nodeOfVmDisks(
  vm: VirtualMachine,
  diskNamed: (name: string) => VMDisk | undefined,
  assumedNode: (name: string) => string | undefined,
): { node?: string; disk?: string } | { error: string } {
  let found: { node: string; disk: string } | undefined;
  for (const name of diskNamesOf(vm)) {
    const disk = diskNamed(name);
    if (!disk || disk.status?.storagePoolShared) continue;
    const node = disk.status?.nodeName ?? disk.spec.nodeName ?? assumedNode(name);
    if (!node) continue;
    if (found && found.node !== node)
      return {
        error: `VMDisks ${found.disk} (node ${found.node}) and ${name} (node ${node}) are on different nodes; a VM can only use disks of its own node`,
      };
    found ??= { node, disk: name };
  }
  return found ?? {};
}
