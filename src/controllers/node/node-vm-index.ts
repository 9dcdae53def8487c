// The VMs placed on this node by what they hold — domain UUID, MACs, addresses — kept from the
// VM informer's events, so that the agent's checks of a VM (vm-identity-check.ts,
// address-claims.ts) look at the few VMs sharing something with it instead of walking every VM
// on the node for each start (a cost that grew with the square of the node's VMs). The checks
// themselves still decide; the index only finds who to show them.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { splitKey } from "../../runtime/kube.ts";
import type { Watchable } from "../../runtime/watch.ts";
import { indexBy, type KeyIndex } from "../cluster/key-index.ts";
import { claimedIdentities, heldIdentities } from "../vm-identities.ts";
import { placementOf } from "../vm-placement.ts";
import { addressOf } from "./address-claims.ts";
import { desiredReservations } from "./dhcp.ts";

type Vm = VirtualMachine & KubernetesObject;

const identityValue = (kind: string, value: string) => `${kind} ${value}`;
const addressValue = (network: string, ip: string) => `ip ${addressOf(network, ip)}`;

/** Pure: what VM holds against others here: its identities, and the addresses of its placement. */
function heldValues(vm: VirtualMachine): string[] {
  return [
    ...heldIdentities(vm).map((h) => identityValue(h.kind, h.value)),
    ...placementOf(vm).interfaces.flatMap(({ network, ipv4, ipv6 }) =>
      network ? [ipv4, ipv6].flatMap((ip) => (ip ? [addressValue(network, ip)] : [])) : [],
    ),
  ];
}

/** Pure: what VM would take here: the identities it claims, the addresses it would reserve. */
function wantedValues(vm: VirtualMachine): string[] {
  return [
    ...claimedIdentities(vm).map((c) => identityValue(c.kind, c.value)),
    ...desiredReservations(vm).map((r) => addressValue(r.network, r.host.ip)),
  ];
}

export class NodeVmIndex {
  private readonly index: KeyIndex;
  private readonly get: (name: string, namespace: string) => Vm | undefined;

  /**
   * INFORMER's VMs (this node's), each indexed as GET gives it (the view the agent judges: a
   * clone with the hardware it took). Subscribe before anything that reads it on its events.
   */
  constructor(informer: Watchable<Vm>, get: (name: string, namespace: string) => Vm | undefined) {
    this.get = get;
    this.index = indexBy(informer, (raw) =>
      heldValues(get(raw.metadata?.name ?? "", raw.metadata?.namespace ?? "") ?? raw),
    );
  }

  /** The VMs here (VM itself among them, when it is here) holding something VM wants. */
  sharing(vm: VirtualMachine): Vm[] {
    const keys = new Set<string>();
    for (const value of wantedValues(vm)) for (const key of this.index.keys(value)) keys.add(key);
    // In one order whatever the events' order: a refusal names the same holder each time.
    return [...keys].sort().flatMap((key) => {
      const { namespace, name } = splitKey(key);
      const found = this.get(name, namespace);
      return found ? [found] : [];
    });
  }
}
