// The controller's assignment of each VM interface's identity on the network: a MAC address
// (the user's, else kept once given, else a fresh one no VM uses) and stable IPv4/IPv6
// addresses from the DHCP pools the node's agent published for the interface's network.
import { randomBytes } from "node:crypto";
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import { keyOf } from "../../runtime/kube.ts";
import { CAPACITY_ANNOTATION, parseCapacity } from "../node-facts.ts";
import { assignAddresses } from "./ipam.ts";

type Vm = VirtualMachine & KubernetesObject;
export type InterfaceStatus = NonNullable<VirtualMachineStatus["interfaces"]>[number];

interface Lister<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
}

export class InterfaceAssigner {
  /** Addresses handed out by this process, held until the VM is gone (the cache may lag). */
  private readonly reservedAddresses = new Map<string, Array<{ network: string; ip: string }>>();

  private readonly vms: Lister<Vm>;
  private readonly nodes: Lister<V1Node>;

  constructor(vms: Lister<Vm>, nodes: Lister<V1Node>) {
    this.vms = vms;
    this.nodes = nodes;
  }

  /** The VM is gone: its addresses may go to others. */
  release(key: string): void {
    this.reservedAddresses.delete(key);
  }

  /**
   * One entry per interface: a stable MAC (kept once assigned, unique across VMs) and stable
   * IPv4/IPv6 addresses from the pools NODE's agent published for the interface's network.
   */
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
      wanted.map((i) => ({ name: i.name, network: i.network, previous: previous.get(i.name) })),
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

/** A locally administered MAC in QEMU's 52:54:00 range that no VM uses. */
export function freshMac(inUse: ReadonlySet<string>): string {
  for (;;) {
    const b = randomBytes(3);
    const mac = `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
    if (!inUse.has(mac)) return mac;
  }
}
