// Pure: where VMDisks live and who holds them. A disk follows the VM that uses it (or the disk
// it is cloned from); a floating disk goes to the node with most room in its pool; a VM goes
// to the node that holds its node-local disks.
import { parseQuantity } from "../../api/quantity.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { StoragePoolFacts } from "../node-facts.ts";

const created = (o: { metadata: { creationTimestamp?: string | Date } }) =>
  o.metadata.creationTimestamp ? new Date(o.metadata.creationTimestamp).getTime() : 0;

/** spec.disks names the VMDisk DISK_NAME (of the VM's namespace). */
export function namesDisk(vm: VirtualMachine, diskName: string | undefined): boolean {
  return (vm.spec.disks ?? []).some((d) => d.diskRef.name === diskName);
}

/** The VM uses the disk: named in spec.disks, or still attached to its domain (status.disks). */
export function usesDisk(vm: VirtualMachine, disk: VMDisk): boolean {
  if (vm.metadata.namespace !== disk.metadata.namespace) return false;
  if (namesDisk(vm, disk.metadata.name)) return true;
  const path = disk.status?.path;
  return Boolean(path) && (vm.status?.disks ?? []).some((d) => d.path === path);
}

/**
 * Names of the VMs using DISK, the one that holds it first: VMs whose domain has it attached
 * come before those that only ask for it, older before newer (a non-shareable disk goes to
 * the first only). While the disk is being deleted, only VMs that have it attached hold it.
 */
export function diskHolders(disk: VMDisk, vms: readonly VirtualMachine[]): string[] {
  const path = disk.status?.path;
  const attached = (vm: VirtualMachine) =>
    path && (vm.status?.disks ?? []).some((d) => d.path === path) ? 0 : 1;
  // A disk being deleted is held only by VMs whose domain still has it: no new attachments.
  const deleting = Boolean(disk.metadata.deletionTimestamp);
  return vms
    .filter((vm) => usesDisk(vm, disk) && (!deleting || attached(vm) === 0))
    .sort(
      (a, b) =>
        attached(a) - attached(b) ||
        created(a) - created(b) ||
        a.metadata.name.localeCompare(b.metadata.name),
    )
    .map((vm) => vm.metadata.name);
}

export type DiskNodeDecision = { node: string; why: string } | { wait: string } | { floating: true };

/** Where an unplaced disk goes, from the VMs that use it and the disk it copies. */
export function diskNodeDecision(
  disk: VMDisk,
  users: readonly VirtualMachine[],
  source: VMDisk | undefined,
): DiskNodeDecision {
  if (disk.spec.nodeName) return { node: disk.spec.nodeName, why: "spec.nodeName" };
  const sourceName = disk.spec.source?.disk?.name;
  if (sourceName) {
    const node = source?.status?.nodeName;
    return node
      ? { node, why: `the node of VMDisk ${sourceName} it is cloned from` }
      : {
          wait: `VMDisk ${sourceName} (spec.source.disk) ${source ? "is not placed yet" : "does not exist"}`,
        };
  }
  const placed = users.find((vm) => vm.status?.nodeName);
  if (placed)
    return { node: placed.status!.nodeName!, why: `the node of VirtualMachine ${placed.metadata.name}` };
  if (users.length) return { wait: `VirtualMachine ${users[0]!.metadata.name} is not placed yet` };
  return { floating: true };
}

export interface DiskNodeView {
  name: string;
  /** Labelled for VMs with a live agent. */
  usable: boolean;
  storagePools?: Record<string, StoragePoolFacts>;
  defaultStoragePool?: string;
}

/** Bytes a disk takes from its pool when created: nothing for sparse volumes. */
export function bytesNeeded(disk: VMDisk): number {
  return disk.spec.sparse === false ? parseQuantity(disk.spec.provisionedSize) : 0;
}

/** The node whose pool has the most room for a disk no VM uses yet. */
export function placeFloatingDisk(
  disk: VMDisk,
  nodes: readonly DiskNodeView[],
): { node: string } | { error: string } {
  const need = bytesNeeded(disk);
  let best: { node: string; free: number } | undefined;
  const reasons: string[] = [];
  for (const n of nodes) {
    const poolName = disk.spec.storagePool ?? n.defaultStoragePool ?? "";
    const pool = n.storagePools?.[poolName];
    if (!n.usable) reasons.push(`${n.name}: no node agent or not enabled for VMs`);
    else if (!pool) reasons.push(`${n.name}: no active storage pool ${poolName || "(default)"}`);
    else if (pool.availableBytes < need)
      reasons.push(`${n.name}: pool ${poolName} has too little free space`);
    else if (
      !best ||
      pool.availableBytes > best.free ||
      (pool.availableBytes === best.free && n.name < best.node)
    )
      best = { node: n.name, free: pool.availableBytes };
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
  for (const entry of vm.spec.disks ?? []) {
    const name = entry.diskRef.name;
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
