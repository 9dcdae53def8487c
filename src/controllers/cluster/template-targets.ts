// Pure: the nodes a VM made from a template can run on now (status.targetNodes, seed 000's
// get_target_pmachines): labelled for VMs, with a live agent, offering the template's
// hypervisor and networks, and with room in the pool for the bases it lacks plus a VM's disks.
import type { KubernetesObject } from "@kubernetes/client-node";
import { parseQuantity } from "../../api/quantity.ts";
import type { VirtualMachineSpec } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { NodeView } from "./placement.ts";
import { unfitReason } from "./placement.ts";

export interface TargetInputs {
  /** The hardware a VM made from the template gets. */
  hardware: Partial<VirtualMachineSpec>;
  /** Sizes of a VM's own disks. */
  childDiskBytes: number;
  /** Per image disk: its size, and the nodes that hold its current base already. */
  bases: ReadonlyArray<{ bytes: number; onNodes: ReadonlySet<string> }>;
  /** A template made from a VM: the node its disks are on (undefined: a shared pool). */
  pinnedTo?: string;
}

/** Names of the nodes a VM made from the template can go to, and why each other cannot. */
export function targetNodes(
  inputs: TargetInputs,
  nodes: readonly NodeView[],
  poolRefusal: (node: string, bytes: number) => string | undefined,
): { targets: string[]; unfit: Record<string, string> } {
  const networks = [
    ...new Set((inputs.hardware.interfaces ?? [{ name: "default" }]).map((i) => i.network ?? "default")),
  ];
  const request = { hypervisor: inputs.hardware.hypervisor ?? "kvm", cpus: 0, memoryBytes: 0, networks };
  const targets: string[] = [];
  const unfit: Record<string, string> = {};
  for (const node of nodes) {
    if (inputs.pinnedTo && node.name !== inputs.pinnedTo) {
      unfit[node.name] = `the template's disks are on node ${inputs.pinnedTo}`;
      continue;
    }
    // What is free now does not matter: a node full today takes the VM once others stop.
    const why = unfitReason({ ...node, allocated: { cpus: 0, memoryBytes: 0 } }, request, {
      cpuOvercommit: Number.POSITIVE_INFINITY,
    });
    if (why) {
      unfit[node.name] = why.message;
      continue;
    }
    const bytes =
      inputs.childDiskBytes +
      inputs.bases.filter((b) => !b.onNodes.has(node.name)).reduce((sum, b) => sum + b.bytes, 0);
    const refusal = bytes > 0 ? poolRefusal(node.name, bytes) : undefined;
    if (refusal) {
      unfit[node.name] = refusal;
      continue;
    }
    targets.push(node.name);
  }
  return { targets: targets.sort(), unfit };
}

/** Bytes of DISKS' provisioned sizes. */
export function bytesOf(sizes: ReadonlyArray<string | number>): number {
  return sizes.reduce<number>((sum, s) => sum + parseQuantity(s), 0);
}

/** A disk of BYTES no node holds yet: what a pool is asked to take for a template. */
export function probeDisk(namespace: string, bytes: number): VMDisk & KubernetesObject {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name: "(template)", namespace },
    spec: { provisionedSize: String(bytes) },
  } as unknown as VMDisk & KubernetesObject;
}
