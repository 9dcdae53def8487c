// Pure: a VM's hypervisor identities — its domain UUID and its NICs' MAC addresses — are its
// alone in the cluster. When two VMs claim one, exactly one holds it: the one whose placement
// already carries it (the controller assigned it, a domain may use it), else the older one
// (then the namespace/name order, so every judge picks the same). The other is refused with a
// message that names the holder only within its own namespace: a tenant learns nothing about
// another namespace's VMs but that the value is taken.
// The controller judges with every VM in the cluster (its index of who holds what,
// cluster/vm-index.ts); the node agent again with the VMs placed on its node and the domains
// libvirt has there.
import type { VirtualMachine } from "../api/virtualmachine.ts";
import { desiredInterfaces } from "../hypervisor/domain/from-spec.ts";
import { type EventReason, Reason } from "./event-reasons.ts";
import type { Refusal } from "./tenant-policy.ts";
import { placementOf } from "./vm-placement.ts";

export type IdentityKind = "uuid" | "mac";

export interface Identity {
  kind: IdentityKind;
  /** Lower case, as libvirt compares them. */
  value: string;
  /** Already in the VM's placement (assigned by the controller): it holds this one first. */
  assigned: boolean;
  /** Where the VM asks for it, for messages. */
  field: string;
}

type VmLike = Pick<VirtualMachine, "metadata" | "spec" | "status">;

const lower = (s: string) => s.toLowerCase();

/** What VM wants to run with: its placed UUID (else spec.uuid), and per NIC spec.macAddress (else the placed MAC). */
export function claimedIdentities(vm: VmLike): Identity[] {
  const out: Identity[] = [];
  const placement = placementOf(vm);
  const placedUuid = placement.uuid ? lower(placement.uuid) : undefined;
  const specUuid = vm.spec.uuid ? lower(vm.spec.uuid) : undefined;
  const uuid = placedUuid ?? specUuid;
  if (uuid) out.push({ kind: "uuid", value: uuid, assigned: placedUuid !== undefined, field: "spec.uuid" });
  const placedMacs = new Map(placement.interfaces.map((i) => [i.name, i.mac ? lower(i.mac) : undefined]));
  const assignedMacs = new Set([...placedMacs.values()].filter((m): m is string => Boolean(m)));
  desiredInterfaces(vm as VirtualMachine).forEach((nic, index) => {
    const mac = nic.macAddress ? lower(nic.macAddress) : placedMacs.get(nic.name);
    if (!mac) return;
    out.push({
      kind: "mac",
      value: mac,
      assigned: assignedMacs.has(mac),
      field: `spec.interfaces[${index}].macAddress`,
    });
  });
  return out;
}

/** What VM holds against others: what it claims, plus what its placement still carries. */
export function heldIdentities(vm: VmLike): Identity[] {
  const held = claimedIdentities(vm);
  const has = (kind: IdentityKind, value: string) => held.some((h) => h.kind === kind && h.value === value);
  for (const nic of placementOf(vm).interfaces) {
    const mac = nic.mac ? lower(nic.mac) : undefined;
    if (mac && !has("mac", mac))
      held.push({ kind: "mac", value: mac, assigned: true, field: "status.interfaces" });
  }
  return held;
}

/** Creation time in ms (a string from JSON, or a Date from some clients); unknown counts as newest. */
export function createdAt(vm: VmLike): number {
  const t = vm.metadata.creationTimestamp as unknown;
  const ms = t instanceof Date ? t.getTime() : typeof t === "string" ? Date.parse(t) : Number.NaN;
  return Number.isNaN(ms) ? Number.POSITIVE_INFINITY : ms;
}

const keyOf = (vm: VmLike) => `${vm.metadata.namespace ?? ""}/${vm.metadata.name ?? ""}`;

/** One VM holding one value, as the holder rule weighs it. */
export interface IdentityHolder {
  namespace: string;
  name: string;
  /** creationTimestamp in ms (createdAt). */
  createdAt: number;
  /** The value is in the holder's placement. */
  assigned: boolean;
}

/** Whether A comes first for a value both claim: it holds it in status while B does not, else older, else by key. */
export function precedes(a: IdentityHolder, b: IdentityHolder): boolean {
  if (a.assigned !== b.assigned) return a.assigned;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt;
  return `${a.namespace}/${a.name}` < `${b.namespace}/${b.name}`;
}

const WHAT: Record<IdentityKind, string> = { uuid: "UUID", mac: "MAC address" };
const REASON: Record<IdentityKind, EventReason> = { uuid: Reason.UuidInUse, mac: Reason.MacAddressInUse };

/** The refusal for a claimed identity already taken; WHERE says by whom (describeHolder). */
export function inUseRefusal(claim: Identity, where: string): Refusal {
  return {
    field: claim.field,
    reason: REASON[claim.kind],
    message: `${claim.field}: ${WHAT[claim.kind]} ${claim.value} is already ${where}; each VM needs its own`,
  };
}

/** How a holder is named to VM's owner: by name in its own namespace, not at all elsewhere. */
export function describeHolder(vm: VmLike, holderNamespace: string, holderName: string): string {
  return holderNamespace === (vm.metadata.namespace ?? "")
    ? `used by VirtualMachine ${holderName}`
    : "in use in another namespace";
}

/** Who holds a claimed value (VM itself may be among them): a scan of VMs, or an index. */
export type HoldersOf = (claim: Identity) => Iterable<IdentityHolder>;

function nameAndAge(vm: VmLike): Omit<IdentityHolder, "assigned"> {
  return { namespace: vm.metadata.namespace ?? "", name: vm.metadata.name ?? "", createdAt: createdAt(vm) };
}

/**
 * The first identity VM claims that another VM holds before it (precedes), naming the one that
 * comes first of those: the same verdict whatever order HOLDERS_OF gives them in.
 */
export function identityRefusalFrom(vm: VmLike, holdersOf: HoldersOf): Refusal | undefined {
  const self = keyOf(vm);
  const me = nameAndAge(vm);
  for (const claim of claimedIdentities(vm)) {
    const mine = { ...me, assigned: claim.assigned };
    let first: IdentityHolder | undefined;
    for (const other of holdersOf(claim)) {
      if (`${other.namespace}/${other.name}` === self || !precedes(other, mine)) continue;
      if (!first || precedes(other, first)) first = other;
    }
    if (first) return inUseRefusal(claim, describeHolder(vm, first.namespace, first.name));
  }
  return undefined;
}

/** identityRefusalFrom with the holders found among OTHERS (which may include VM itself). */
export function identityRefusal(vm: VmLike, others: Iterable<VmLike>): Refusal | undefined {
  // What each holds, worked out once for all of VM's claims.
  const all = [...others].map((other) => ({ other, held: heldIdentities(other) }));
  return identityRefusalFrom(vm, (claim) =>
    all.flatMap(({ other, held }) => {
      const hold = held.find((h) => h.kind === claim.kind && h.value === claim.value);
      return hold ? [{ ...nameAndAge(other), assigned: hold.assigned }] : [];
    }),
  );
}

// An address another VM on its node holds (node/address-claims.ts) is waited for the same way.
const IDENTITY_REASONS: ReadonlySet<string> = new Set([...Object.values(REASON), Reason.AddressInUse]);

/**
 * VM waits for a MAC, UUID or address another VM holds (refused with CONDITION: the controller's
 * Admitted, the agent's Failure): any VM's change or deletion may free it.
 */
export function waitsForIdentity(vm: VmLike, condition: "Admitted" | "Failure"): boolean {
  const c = vm.status?.conditions?.find((x) => x.type === condition);
  const refused = condition === "Admitted" ? c?.status === "False" : c?.status === "True";
  return Boolean(c && refused && IDENTITY_REASONS.has(c.reason));
}
