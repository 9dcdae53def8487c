// The controller's assignment of each VM interface's identity on the network: a MAC address
// (the user's, else kept once given, else a fresh one no VM uses) and stable IPv4/IPv6
// addresses from the DHCP pools the node's agent published for the interface's network.
import { randomBytes } from "node:crypto";
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import { canonicalIp, firstFree, ipToBigInt } from "../../hypervisor/network.ts";
import { keyOf } from "../../runtime/kube.ts";
import { placementOf } from "../vm-placement.ts";
import { assignAddresses, type LowestFree } from "./ipam.ts";
import { KeyIndex } from "./key-index.ts";
import { capacityOf } from "./placement.ts";
import { addressKey, type VmIndex } from "./vm-index.ts";

type Vm = VirtualMachine & KubernetesObject;
export type InterfaceStatus = NonNullable<VirtualMachineStatus["interfaces"]>[number];

/** Who else holds a MAC or an address (vm-index.ts): looked up, not gathered from every VM. */
export type NetworkIdentities = Pick<VmIndex, "macTaken" | "addressTaken" | "onAddressReleased">;

export class InterfaceAssigner {
  /** Addresses handed out by this process, held until the VM is gone (the cache may lag). */
  private readonly reservedAddresses = new KeyIndex((key) => this.released(key));
  /**
   * Per network and pool, where the search for a free address starts: every address below it
   * is taken (it moves down when one is let go). Handing out addresses costs the same at the
   * thousandth VM as at the first.
   */
  private readonly cursors = new Map<string, bigint>();

  private readonly held: NetworkIdentities;
  private readonly nodes: { get(name: string): V1Node | undefined };

  constructor(held: NetworkIdentities, nodes: { get(name: string): V1Node | undefined }) {
    this.held = held;
    this.nodes = nodes;
    held.onAddressReleased((key) => this.released(key));
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
    const previous = new Map(placementOf(vm).interfaces.map((i) => [i.name, i]));
    const wanted = desiredInterfaces(vm);
    const n = this.nodes.get(node);
    const pools = n ? capacityOf(n)?.networks : undefined;
    const addresses = assignAddresses(
      wanted.map((i) => ({ name: i.name, network: i.network, previous: previous.get(i.name) })),
      pools,
      (network, ip) =>
        this.held.addressTaken(network, ip, key) ||
        this.reservedAddresses.heldByOther(addressKey(network, ip), key),
      this.lowestFree,
    );
    const mine = new Set<string>();
    const macTaken = { has: (mac: string) => mine.has(mac) || this.held.macTaken(mac, key) };
    const result = wanted.map((i, idx) => {
      const mac = i.macAddress?.toLowerCase() ?? previous.get(i.name)?.mac ?? freshMac(macTaken);
      mine.add(mac);
      return { name: i.name, mac, network: i.network, ...addresses[idx] };
    });
    this.reservedAddresses.set(
      key,
      result.flatMap((i) =>
        [i.ipv4, i.ipv6].flatMap((ip) => (ip ? [addressKey(i.network, canonicalIp(ip))] : [])),
      ),
    );
    return result;
  }

  private readonly lowestFree: LowestFree = (network, range, family, taken) => {
    const at = `${network} ${range.start}-${range.end}`;
    const ip = firstFree(range, family, taken, this.cursors.get(at));
    if (ip) this.cursors.set(at, ipToBigInt(ip));
    return ip;
  };

  /** The address of KEY (addressKey) was let go: searches on its network start no higher. */
  private released(key: string) {
    const space = key.lastIndexOf(" ");
    const network = key.slice(0, space);
    let n: bigint;
    try {
      n = ipToBigInt(key.slice(space + 1));
    } catch {
      return;
    }
    for (const [at, from] of this.cursors)
      if (n < from && at.slice(0, at.lastIndexOf(" ")) === network) this.cursors.set(at, n);
  }
}

/** A locally administered MAC in QEMU's 52:54:00 range that no VM uses. */
export function freshMac(inUse: { has(mac: string): boolean }): string {
  for (;;) {
    const b = randomBytes(3);
    const mac = `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
    if (!inUse.has(mac)) return mac;
  }
}
