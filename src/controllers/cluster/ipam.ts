// Pure: stable addresses for a VM's interfaces from the DHCP pools of the node's networks.
// An address once given stays with its interface; none is given twice while in use.
import { inRange, lowestFree, type NetworkPools } from "../../hypervisor/network.ts";

export interface InterfaceAddresses {
  ipv4?: string;
  ipv6?: string;
}

export interface AddressRequest {
  name: string;
  network: string;
  previous?: InterfaceAddresses;
}

/**
 * Addresses for each interface. USED maps a network to the addresses other VMs hold on it;
 * what this call hands out is added to USED, so callers can reserve across calls.
 */
export function assignAddresses(
  requests: readonly AddressRequest[],
  pools: Readonly<Record<string, NetworkPools>> | undefined,
  used: Map<string, Set<string>>,
): InterfaceAddresses[] {
  return requests.map((r) => {
    const pool = pools?.[r.network];
    const taken = used.get(r.network) ?? new Set<string>();
    used.set(r.network, taken);
    const out: InterfaceAddresses = {};
    for (const family of ["ipv4", "ipv6"] as const) {
      const range = pool?.[family];
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
