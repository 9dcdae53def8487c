// Pure: which node a VirtualMachine runs on. Nodes must be labelled for VMs, have a live
// agent, offer the hypervisor, match nodeSelector and have room; least allocated wins.
// A pinned nodeName that cannot take the VM is an error naming the node and why.
import type { V1Node } from "@kubernetes/client-node";
import {
  CAPACITY_ANNOTATION,
  NODE_ENABLED_LABEL,
  type NodeCapacity,
  nodeCordoned,
  parseCapacity,
} from "../node-facts.ts";

export interface NodeView {
  name: string;
  labels: Record<string, string>;
  enabled: boolean;
  /** Cordoned (spec.unschedulable) or tainted out-of-service: nothing new goes there. */
  cordoned?: boolean;
  heartbeatFresh: boolean;
  capacity?: { cpus: number; memoryBytes: number; hypervisors: string[]; networks?: Record<string, unknown> };
  /** vCPUs and bytes the VMs placed there reserve (those that run or should: vm-reservation.ts). */
  allocated: { cpus: number; memoryBytes: number };
}

const capacities = new WeakMap<V1Node, NodeCapacity | undefined>();

/** What N's agent published (its capacity annotation), read once per version of the Node object. */
export function capacityOf(n: V1Node): NodeCapacity | undefined {
  if (!capacities.has(n)) capacities.set(n, parseCapacity(n.metadata?.annotations?.[CAPACITY_ANNOTATION]));
  return capacities.get(n);
}

/** NODE as placement sees it, with ALLOCATED already taken by the VMs placed there. */
export function nodeView(
  n: V1Node,
  heartbeatFresh: boolean,
  allocated: { cpus: number; memoryBytes: number } = { cpus: 0, memoryBytes: 0 },
): NodeView {
  const capacity = capacityOf(n);
  return {
    name: n.metadata?.name ?? "",
    labels: n.metadata?.labels ?? {},
    enabled: n.metadata?.labels?.[NODE_ENABLED_LABEL] === "true",
    cordoned: nodeCordoned(n),
    heartbeatFresh,
    ...(capacity ? { capacity } : {}),
    allocated,
  };
}

export interface PlacementRequest {
  hypervisor: string;
  cpus: number;
  memoryBytes: number;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  /** libvirt networks the VM's NICs attach to. */
  networks?: string[];
  /** The node holding the VM's node-local disks: the VM can only run there. */
  disksNode?: { node: string; disk: string };
}

export interface PlacementPolicy {
  /** vCPUs per host CPU (VM vCPUs are time-shared); memory is never overcommitted. */
  cpuOvercommit: number;
}

export type Placement = { node: string } | { error: string };

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)}GiB`;

type UnfitCode =
  | "NotEnabled"
  | "Cordoned"
  | "NoAgent"
  | "NoHypervisor"
  | "Network"
  | "Selector"
  | "Cpu"
  | "Memory";

/** How the summary counts nodes unfit for one reason, as the scheduler does. */
const GROUP_PHRASE: Record<UnfitCode, string> = {
  NotEnabled: "are not labelled vm.libvirt-operator.io/enabled=true",
  Cordoned: "are cordoned or out of service",
  NoAgent: "have no node agent reporting",
  NoHypervisor: "do not offer the hypervisor",
  Network: "lack an active libvirt network the VM uses",
  Selector: "do not match nodeSelector",
  Cpu: "have too few free vCPUs",
  Memory: "have too little free memory",
};

/** Why NODE cannot take the request, or undefined when it can. */
export function unfitReason(
  node: NodeView,
  req: PlacementRequest,
  policy: PlacementPolicy,
): { code: UnfitCode; message: string } | undefined {
  if (!node.enabled)
    return { code: "NotEnabled", message: "is not labelled vm.libvirt-operator.io/enabled=true" };
  if (node.cordoned) return { code: "Cordoned", message: "is cordoned or tainted out-of-service" };
  if (!node.heartbeatFresh || !node.capacity)
    return { code: "NoAgent", message: "has no node agent reporting" };
  const cap = node.capacity;
  if (!cap.hypervisors.includes(req.hypervisor)) {
    return {
      code: "NoHypervisor",
      message: `offers no ${req.hypervisor} (has ${cap.hypervisors.join(", ") || "none"})`,
    };
  }
  const missing = cap.networks ? (req.networks ?? []).find((n) => !(n in cap.networks!)) : undefined;
  if (missing) return { code: "Network", message: `has no active libvirt network ${missing}` };
  for (const [k, v] of Object.entries(req.nodeSelector ?? {})) {
    if (node.labels[k] !== v) return { code: "Selector", message: `does not match nodeSelector ${k}=${v}` };
  }
  // A VM that reserves nothing (vm-reservation.ts: it is not to run) fits a full node.
  if (req.cpus === 0 && req.memoryBytes === 0) return undefined;
  const cpuRoom = cap.cpus * policy.cpuOvercommit - node.allocated.cpus;
  if (req.cpus > cpuRoom) {
    return { code: "Cpu", message: `has ${Math.max(cpuRoom, 0)} free vCPUs, the VM needs ${req.cpus}` };
  }
  const memRoom = cap.memoryBytes - node.allocated.memoryBytes;
  if (req.memoryBytes > memRoom) {
    return {
      code: "Memory",
      message: `has ${gib(Math.max(memRoom, 0))} free memory, the VM needs ${gib(req.memoryBytes)}`,
    };
  }
  return undefined;
}

/** Share of the node left free after placing REQ (0..1, higher is emptier). */
function freeScore(node: NodeView, req: PlacementRequest, policy: PlacementPolicy): number {
  const cap = node.capacity!;
  const cpuFree = 1 - (node.allocated.cpus + req.cpus) / (cap.cpus * policy.cpuOvercommit);
  const memFree = 1 - (node.allocated.memoryBytes + req.memoryBytes) / cap.memoryBytes;
  return (cpuFree + memFree) / 2;
}

export function place(req: PlacementRequest, nodes: readonly NodeView[], policy: PlacementPolicy): Placement {
  if (req.disksNode) {
    const { node: name, disk } = req.disksNode;
    if (req.nodeName && req.nodeName !== name)
      return {
        error: `spec.nodeName ${req.nodeName} conflicts with VMDisk ${disk}, which lives on node ${name}`,
      };
    const node = nodes.find((n) => n.name === name);
    if (!node) return { error: `node ${name}, which holds VMDisk ${disk}, does not exist` };
    const why = unfitReason(node, req, policy);
    return why
      ? { error: `node ${name} holds VMDisk ${disk} but cannot run the VM: it ${why.message}` }
      : { node: name };
  }
  if (req.nodeName) {
    const node = nodes.find((n) => n.name === req.nodeName);
    if (!node) return { error: `node ${req.nodeName} (spec.nodeName) does not exist` };
    const why = unfitReason(node, req, policy);
    return why
      ? { error: `node ${req.nodeName} (spec.nodeName) cannot run the VM: it ${why.message}` }
      : { node: node.name };
  }
  if (nodes.length === 0) return { error: "no nodes exist" };
  const counts = new Map<UnfitCode, number>();
  let best: { node: NodeView; score: number } | undefined;
  for (const node of nodes) {
    const why = unfitReason(node, req, policy);
    if (why) {
      counts.set(why.code, (counts.get(why.code) ?? 0) + 1);
      continue;
    }
    const score = freeScore(node, req, policy);
    if (!best || score > best.score || (score === best.score && node.name < best.node.name))
      best = { node, score };
  }
  if (best) return { node: best.node.name };
  const detail = [...counts].map(([code, n]) => `${n} ${GROUP_PHRASE[code]}`).join("; ");
  return {
    error: `0/${nodes.length} nodes can run the VM (${req.hypervisor}, ${req.cpus} vCPU, ${gib(req.memoryBytes)}): ${detail}`,
  };
}
