// Pure: where an object applied again without status goes when what its earlier incarnation
// left is still on a node (the orphans agents publish, orphan-facts.ts): a VM to the node with
// its domain (or its node-local disks' volumes), with the domain's UUID, MACs and addresses, so
// the agent there takes the running guest over instead of a second one starting elsewhere; a
// disk to the node with its volume, so its data is taken over, not made afresh elsewhere.
import type { V1Node } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { CAPACITY_ANNOTATION, parseCapacity } from "../node-facts.ts";
import { ORPHANS_ANNOTATION, type OrphanDomain, parseOrphanAnnotation } from "../orphan-facts.ts";
import { placementOf, withPlacement } from "../vm-placement.ts";
import { diskNamesOf } from "./disk-placement.ts";

export type OrphanPlacement = { node: string; why: string; domain?: OrphanDomain } | { error: string };

const reportOf = (n: V1Node) => parseOrphanAnnotation(n.metadata?.annotations?.[ORPHANS_ANNOTATION]);
const nameOf = (n: V1Node) => n.metadata?.name ?? "";

/** A node-local volume of VMDisk NAMESPACE/NAME on each node that reports one, in the pool it would use there. */
function volumeNodes(nodes: readonly V1Node[], namespace: string, name: string, pool?: string): string[] {
  return nodes
    .filter((n) => {
      const wanted =
        pool ?? parseCapacity(n.metadata?.annotations?.[CAPACITY_ANNOTATION])?.defaultStoragePool;
      return reportOf(n).volumes.some(
        (v) => v.namespace === namespace && v.name === name && !v.shared && v.pool === wanted,
      );
    })
    .map(nameOf);
}

function oneNode(
  found: ReadonlyArray<{ node: string; what: string }>,
  pinned: { node: string; why: string } | undefined,
): { node: string; why: string } | { error: string } | undefined {
  const nodes = [...new Set(found.map((f) => f.node))].sort();
  if (!nodes.length) return undefined;
  const what = found.map((f) => `${f.what} on node ${f.node}`).join(", ");
  if (nodes.length > 1)
    return {
      error: `what an earlier object of this name left is on more than one node (${what}): it cannot be taken over; remove all but one`,
    };
  const node = nodes[0]!;
  if (pinned && pinned.node !== node)
    return { error: `${pinned.why} is node ${pinned.node}, but ${what}: it can only be taken over there` };
  return { node, why: `${what}, left by an earlier object of this name, is taken over there` };
}

/**
 * Where an unplaced VM must go because its domain, or a node-local volume of a disk it names
 * that no node holds yet, is an orphan on a node; undefined when nothing of it is left anywhere.
 * A domain whose UUID is not spec.uuid is not this VM's. DISKS_NODE: where its placed disks are.
 */
export function orphanPlacementOfVm(
  vm: VirtualMachine,
  nodes: readonly V1Node[],
  diskNamed: (name: string) => VMDisk | undefined,
  disksNode?: { node?: string; disk?: string } | { error: string },
): OrphanPlacement | undefined {
  const ns = vm.metadata.namespace ?? "";
  const specUuid = vm.spec.uuid?.toLowerCase();
  const found: Array<{ node: string; what: string; domain?: OrphanDomain }> = [];
  for (const n of nodes) {
    const domain = reportOf(n).domains.find(
      (d) =>
        d.namespace === ns && d.name === vm.metadata.name && (!specUuid || d.uuid.toLowerCase() === specUuid),
    );
    if (domain) found.push({ node: nameOf(n), what: `its domain (UUID ${domain.uuid})`, domain });
  }
  for (const name of diskNamesOf(vm)) {
    const disk = diskNamed(name);
    if (disk?.status?.nodeName) continue; // placed: where it is says it (disksNode)
    for (const node of volumeNodes(nodes, ns, name, disk?.spec.storagePool))
      found.push({ node, what: `the volume of VMDisk ${name}` });
  }
  const pinned = vm.spec.nodeName
    ? { node: vm.spec.nodeName, why: "spec.nodeName" }
    : disksNode && "node" in disksNode && disksNode.node
      ? { node: disksNode.node, why: `the node of VMDisk ${disksNode.disk ?? ""}` }
      : undefined;
  const one = oneNode(found, pinned);
  if (!one || "error" in one) return one;
  const domain = found.find((f) => f.node === one.node && f.domain)?.domain;
  return { ...one, ...(domain ? { domain } : {}) };
}

/** Where an unplaced disk must go because its node-local volume is an orphan on a node. */
export function orphanPlacementOfDisk(
  disk: VMDisk,
  nodes: readonly V1Node[],
): { node: string; why: string } | { error: string } | undefined {
  const ns = disk.metadata.namespace ?? "";
  const found = volumeNodes(nodes, ns, disk.metadata.name, disk.spec.storagePool).map((node) => ({
    node,
    what: "its volume",
  }));
  const pinned = disk.spec.nodeName ? { node: disk.spec.nodeName, why: "spec.nodeName" } : undefined;
  return oneNode(found, pinned);
}

/**
 * VM as if its placement already had the orphan domain's UUID and interfaces: placement then
 * gives it those (the UUID is kept once given, MACs and free addresses are kept as previous).
 */
export function withOrphanIdentity<T extends VirtualMachine>(
  vm: T,
  placement: OrphanPlacement | undefined,
): T {
  const domain = placement && "domain" in placement ? placement.domain : undefined;
  if (!domain || placementOf(vm).uuid) return vm;
  const identity = {
    uuid: domain.uuid,
    interfaces: (domain.interfaces ?? []).map((i) => ({
      name: i.name,
      mac: i.mac,
      ...(i.network ? { network: i.network } : {}),
      ...(i.ipv4 ? { ipv4: i.ipv4 } : {}),
      ...(i.ipv6 ? { ipv6: i.ipv6 } : {}),
    })),
  };
  try {
    return withPlacement(vm, identity);
  } catch {
    return vm; // what the node says it left is no placement we would write: placed afresh
  }
}
