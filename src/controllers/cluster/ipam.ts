// Pure: stable addresses for a VM's interfaces from the DHCP pools of the node's networks.
// An address once given stays with its interface; none is given twice while in use.
import {
  type AddressRange,
  canonicalIp,
  firstFree,
  inRange,
  type NetworkPools,
} from "../../hypervisor/network.ts";

export interface InterfaceAddresses {
  ipv4?: string;
  ipv6?: string;
}

export interface AddressRequest {
  name: string;
  network: string;
  previous?: InterfaceAddresses;
}

/** Whether another VM holds IP (spelled as canonicalIp spells it) on NETWORK. */
export type AddressTaken = (network: string, ip: string) => boolean;

/** The lowest address of RANGE on NETWORK that TAKEN leaves free (firstFree, or a faster way to it). */
export type LowestFree = (
  network: string,
  range: AddressRange,
  family: "ipv4" | "ipv6",
  taken: (ip: string) => boolean,
) => string | undefined;

/** AddressTaken for the addresses USED lists per network (any spelling). */
export function takenAmong(used: ReadonlyMap<string, ReadonlySet<string>>): AddressTaken {
  const canonical = new Map([...used].map(([network, ips]) => [network, new Set([...ips].map(canonicalIp))]));
  return (network, ip) => canonical.get(network)?.has(ip) ?? false;
}

/** Addresses for each interface: kept while in the pool and free (or the pool is unknown), else the lowest free one. */
export function assignAddresses(
  requests: readonly AddressRequest[],
  pools: Readonly<Record<string, NetworkPools>> | undefined,
  taken: AddressTaken,
  lowestFree: LowestFree = (_network, range, family, isTaken) => firstFree(range, family, isTaken),
): InterfaceAddresses[] {
  // Two interfaces on one network never get one address.
  const handed = new Set<string>();
  const isTaken = (network: string, ip: string) => handed.has(`${network} ${ip}`) || taken(network, ip);
  return requests.map((r) => {
    const pool = pools?.[r.network];
    // The node's pools unknown for a moment (its Node re-registered, its capacity republished):
    // the addresses it has stay its own, not given up.
    if (!pool)
      return {
        ...(r.previous?.ipv4 ? { ipv4: r.previous.ipv4 } : {}),
        ...(r.previous?.ipv6 ? { ipv6: r.previous.ipv6 } : {}),
      };
    const out: InterfaceAddresses = {};
    for (const family of ["ipv4", "ipv6"] as const) {
      const range = pool?.[family];
      if (!range) continue;
      const kept = r.previous?.[family];
      const ip =
        kept && inRange(kept, range) && !isTaken(r.network, canonicalIp(kept))
          ? kept
          : lowestFree(r.network, range, family, (candidate) => isTaken(r.network, candidate));
      if (ip) {
        out[family] = ip;
        handed.add(`${r.network} ${canonicalIp(ip)}`);
      }
    }
    return out;
  });
}
