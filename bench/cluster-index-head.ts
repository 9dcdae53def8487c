// The cluster VM reconciler's walks over every VM as HEAD 461d8b0 had them (before the VM
// index), kept only as the baseline bench/cluster-index.ts measures the index against.
import { isIPv4, isIPv6 } from "node:net";
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { VirtualMachine, VirtualMachineStatus } from "../src/api/virtualmachine.ts";
import { type NodeView, nodeView } from "../src/controllers/cluster/placement.ts";
import { freshMac } from "../src/controllers/cluster/vm-interfaces.ts";
import { CAPACITY_ANNOTATION, parseCapacity } from "../src/controllers/node-facts.ts";
import { networkRefusal, type Refusal, type TenantPolicy } from "../src/controllers/tenant-policy.ts";
import {
  claimedIdentities,
  createdAt,
  describeHolder,
  heldIdentities,
  inUseRefusal,
} from "../src/controllers/vm-identities.ts";
import { desiredInterfaces, resourcesOf } from "../src/hypervisor/domain/from-spec.ts";
import {
  type AddressRange,
  bigIntToIp,
  inRange,
  ipToBigInt,
  type NetworkPools,
} from "../src/hypervisor/network.ts";

type Vm = VirtualMachine & KubernetesObject;
type InterfaceStatus = NonNullable<VirtualMachineStatus["interfaces"]>[number];
const keyOf = (vm: VirtualMachine) => `${vm.metadata.namespace ?? ""}/${vm.metadata.name ?? ""}`;

function precedes(other: VirtualMachine, otherAssigned: boolean, vm: VirtualMachine, vmAssigned: boolean) {
  if (otherAssigned !== vmAssigned) return otherAssigned;
  const ta = createdAt(other);
  const tb = createdAt(vm);
  if (ta !== tb) return ta < tb;
  return keyOf(other) < keyOf(vm);
}

export function identityRefusal(vm: VirtualMachine, others: Iterable<VirtualMachine>): Refusal | undefined {
  const claims = claimedIdentities(vm);
  if (!claims.length) return undefined;
  const self = keyOf(vm);
  for (const claim of claims) {
    for (const other of others) {
      if (keyOf(other) === self) continue;
      const held = heldIdentities(other).find((h) => h.kind === claim.kind && h.value === claim.value);
      if (held && precedes(other, held.assigned, vm, claim.assigned))
        return inUseRefusal(
          claim,
          describeHolder(vm, other.metadata.namespace ?? "", other.metadata.name ?? ""),
        );
    }
  }
  return undefined;
}

export function clusterRefusal(
  vm: VirtualMachine,
  ctx: { policy: TenantPolicy; vms: ReadonlyArray<VirtualMachine> },
): Refusal | undefined {
  return (
    networkRefusal(
      desiredInterfaces(vm).filter((i) => i.plugged),
      ctx.policy,
    ) ?? identityRefusal(vm, ctx.vms)
  );
}

/** nodeViews of HEAD: every placed VM's vCPUs and memory summed on each reconcile (no `assumed` here). */
export function nodeViews(vms: readonly Vm[], nodes: readonly V1Node[], exceptKey: string): NodeView[] {
  const allocated = new Map<string, { cpus: number; memoryBytes: number }>();
  for (const vm of vms) {
    const node = vm.status?.nodeName;
    if (!node || keyOf(vm) === exceptKey) continue;
    const r = resourcesOf(vm);
    const a = allocated.get(node) ?? { cpus: 0, memoryBytes: 0 };
    allocated.set(node, { cpus: a.cpus + r.cpus, memoryBytes: a.memoryBytes + r.memoryBytes });
  }
  return nodes.map((n) => nodeView(n, true, allocated.get(n.metadata?.name ?? "")));
}

function lowestFree(range: AddressRange, used: ReadonlySet<string>, family: "ipv4" | "ipv6") {
  const end = ipToBigInt(range.end);
  const usedNums = new Set([...used].flatMap((u) => (isIPv4(u) || isIPv6(u) ? [ipToBigInt(u)] : [])));
  for (let n = ipToBigInt(range.start); n <= end; n++) if (!usedNums.has(n)) return bigIntToIp(n, family);
  return undefined;
}

function assignAddresses(
  requests: ReadonlyArray<{ network: string; previous?: { ipv4?: string; ipv6?: string } }>,
  pools: Readonly<Record<string, NetworkPools>> | undefined,
  used: Map<string, Set<string>>,
) {
  return requests.map((r) => {
    const taken = used.get(r.network) ?? new Set<string>();
    used.set(r.network, taken);
    const out: { ipv4?: string; ipv6?: string } = {};
    for (const family of ["ipv4", "ipv6"] as const) {
      const range = pools?.[r.network]?.[family];
      if (!range) continue;
      const kept = r.previous?.[family];
      const ip = kept && inRange(kept, range) && !taken.has(kept) ? kept : lowestFree(range, taken, family);
      if (ip) {
        out[family] = ip;
        taken.add(ip);
      }
    }
    return out;
  });
}

export class InterfaceAssigner {
  private readonly reservedAddresses = new Map<string, Array<{ network: string; ip: string }>>();
  private readonly vms: { list(): readonly Vm[] };
  private readonly nodes: { get(name: string): V1Node | undefined };

  constructor(vms: { list(): readonly Vm[] }, nodes: { get(name: string): V1Node | undefined }) {
    this.vms = vms;
    this.nodes = nodes;
  }

  release(key: string): void {
    this.reservedAddresses.delete(key);
  }

  interfaces(vm: Vm, node: string): InterfaceStatus[] {
    const key = keyOf(vm);
    const previous = new Map((vm.status?.interfaces ?? []).map((i) => [i.name, i]));
    const macsInUse = new Set<string>();
    const addressesInUse = new Map<string, Set<string>>();
    const hold = (network: string | undefined, ip: string | undefined) => {
      if (!network || !ip) return;
      const set = addressesInUse.get(network) ?? new Set<string>();
      set.add(ip);
      addressesInUse.set(network, set);
    };
    for (const other of this.vms.list()) {
      if (keyOf(other) === key) continue;
      for (const i of other.status?.interfaces ?? []) {
        if (i.mac) macsInUse.add(i.mac.toLowerCase());
        hold(i.network, i.ipv4);
        hold(i.network, i.ipv6);
      }
      for (const i of other.spec.interfaces ?? [])
        if (i.macAddress) macsInUse.add(i.macAddress.toLowerCase());
    }
    for (const [otherKey, held] of this.reservedAddresses) {
      if (otherKey !== key) for (const h of held) hold(h.network, h.ip);
    }
    const wanted = desiredInterfaces(vm);
    const pools = parseCapacity(this.nodes.get(node)?.metadata?.annotations?.[CAPACITY_ANNOTATION])?.networks;
    const addresses = assignAddresses(
      wanted.map((i) => ({ network: i.network, previous: previous.get(i.name) })),
      pools,
      addressesInUse,
    );
    const result = wanted.map((i, idx) => {
      const mac = i.macAddress?.toLowerCase() ?? previous.get(i.name)?.mac ?? freshMac(macsInUse);
      macsInUse.add(mac);
      return { name: i.name, mac, network: i.network, ...addresses[idx] };
    });
    this.reservedAddresses.set(
      key,
      result.flatMap((i) => [i.ipv4, i.ipv6].flatMap((ip) => (ip ? [{ network: i.network, ip }] : []))),
    );
    return result;
  }
}
