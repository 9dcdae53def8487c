// The node agent's own check that the addresses a VM was given are its alone among the VMs
// placed on its node, before any DHCP reservation is made: dnsmasq keeps one entry per address,
// so reserving one another VM holds would take it from that VM. The controller hands out each
// address once; this stands against a placement record forged where the metadata policy is not
// installed, or a controller that erred. Of two VMs given one address, the one whose reservation
// libvirt already has holds it (an older record cannot displace a guest that has it), else the
// older VM, else the one first in namespace/name order: every judge picks the same.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { canonicalIp } from "../../hypervisor/network.ts";
import { addressKey } from "../cluster/vm-index.ts";
import { Reason } from "../event-reasons.ts";
import type { Refusal } from "../tenant-policy.ts";
import { createdAt, describeHolder, type IdentityHolder, precedes } from "../vm-identities.ts";
import { placementOf } from "../vm-placement.ts";
import { desiredReservations, type Reservation } from "./dhcp.ts";

type VmLike = Pick<VirtualMachine, "metadata" | "spec" | "status">;

/** One of VM's reservations that another VM on the node would make for the same address. */
export interface AddressConflict {
  mine: Reservation;
  holder: VmLike;
  theirs: Reservation;
}

const keyOf = (vm: VmLike) => `${vm.metadata.namespace ?? ""}/${vm.metadata.name ?? ""}`;
/** canonicalIp of the addresses seen, kept: every VM on the node is compared on each admission. */
const canonical = new Map<string, string>();
/** One address on one network, however it is spelt (as the controller's index keys it). */
export function addressOf(network: string, ip: string): string {
  let c = canonical.get(ip);
  if (c === undefined) {
    if (canonical.size >= 16_384) canonical.clear();
    c = canonicalIp(ip);
    canonical.set(ip, c);
  }
  return addressKey(network, c);
}

/** Pure: VM's reservations that some other VM in OTHERS would make too (same network, same address in any spelling). */
export function addressConflicts(vm: VmLike, others: Iterable<VmLike>): AddressConflict[] {
  const mine = desiredReservations(vm as VirtualMachine);
  if (!mine.length) return [];
  const wanted = new Map(mine.map((r) => [addressOf(r.network, r.host.ip), r]));
  const self = keyOf(vm);
  const out: AddressConflict[] = [];
  for (const other of others) {
    if (keyOf(other) === self) continue;
    // The placement first (cheap); the reservations, which only the spec's networks get, on a match.
    const placed = placementOf(other).interfaces.some((i) =>
      [i.ipv4, i.ipv6].some((ip) => ip && i.network && wanted.has(addressOf(i.network, ip))),
    );
    if (!placed) continue;
    for (const theirs of desiredReservations(other as VirtualMachine)) {
      const m = wanted.get(addressOf(theirs.network, theirs.host.ip));
      if (m) out.push({ mine: m, holder: other, theirs });
    }
  }
  return out;
}

/**
 * Pure: the refusal when one of CONFLICTS's holders holds the address first; RESERVED says
 * whether libvirt has a reservation exactly as given now.
 */
export function addressRefusal(
  vm: VmLike,
  conflicts: readonly AddressConflict[],
  reserved: (r: Reservation) => boolean,
): Refusal | undefined {
  // The identities' rule, with libvirt's reservation in place of the placement's hold.
  const holder = (who: VmLike, r: Reservation): IdentityHolder => ({
    namespace: who.metadata.namespace ?? "",
    name: who.metadata.name ?? "",
    createdAt: createdAt(who),
    assigned: reserved(r),
  });
  for (const c of conflicts) {
    if (!precedes(holder(c.holder, c.theirs), holder(vm, c.mine))) continue;
    const where = describeHolder(vm, c.holder.metadata.namespace ?? "", c.holder.metadata.name ?? "");
    return {
      field: "status.interfaces",
      reason: Reason.AddressInUse,
      message: `address ${c.mine.host.ip} on network ${c.mine.network} is already ${where} on this node; each VM needs its own`,
    };
  }
  return undefined;
}
