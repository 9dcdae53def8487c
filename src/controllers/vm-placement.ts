// Pure: where a VM is placed and what it holds there (node, domain UUID, its interfaces' MACs and
// addresses). The controller records it in one annotation, in the same metadata write as the
// node label and the finalizer, so placing a VM is one API write; the node agent acts on it and
// copies it into status with its first report (status.nodeName, uuid, interfaces). VMs placed
// before the annotation existed carry their placement in status only: read from there until the
// controller records it. Only the operator may write the annotation (the chart's metadata policy);
// it is trusted only for the object it was written for (its UID), while the node label agrees
// with it (a copy of the object, or a rollback to a release that placed by status and label, reads
// status instead), and when it is well formed: otherwise status is read, as for an old VM.
import { isIPv4, isIPv6 } from "node:net";
import { NODE_LABEL } from "../api/names.ts";
import type { VirtualMachine, VirtualMachineStatus } from "../api/virtualmachine.ts";

export const PLACEMENT_ANNOTATION = "vm.libvirt-operator.io/placement";

export type PlacedInterface = Omit<NonNullable<VirtualMachineStatus["interfaces"]>[number], "linked">;

export interface VmPlacement {
  /** The node it is placed on; absent while it is not placed (never, or its node was lost). */
  nodeName?: string;
  uuid?: string;
  interfaces: PlacedInterface[];
}

type VmLike = Pick<VirtualMachine, "metadata" | "status">;
/** The record as written: the placement and the UID of the object it was written for. */
type Recorded = VmPlacement & { uid?: string };

const NOT_PLACED: VmPlacement = Object.freeze({
  interfaces: Object.freeze([]) as unknown as PlacedInterface[],
});
/** Parsed annotations, by the annotation string (the same VM is read many times per reconcile). */
const parsed = new Map<string, Recorded | undefined>();
const PARSED_KEPT = 8192;

// As the API accepts them: node names (DNS subdomains), interface names, network names.
const NODE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const INTERFACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NETWORK = /^[a-zA-Z0-9_.-]{1,63}$/;
const UID = /^[A-Za-z0-9-]{1,64}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** The record on VM, when it is one to trust (see the top of this file). */
function trustedRecord(vm: VmLike): Recorded | undefined {
  const text = vm.metadata.annotations?.[PLACEMENT_ANNOTATION];
  const record = text === undefined ? undefined : decodePlacement(text);
  if (!record || record.uid !== vm.metadata.uid) return undefined;
  if (record.nodeName && vm.metadata.labels?.[NODE_LABEL] !== record.nodeName) return undefined;
  return record;
}

/** Where VM is placed: the controller's record, else (placed before it kept one) its status. */
export function placementOf(vm: VmLike): VmPlacement {
  const recorded = trustedRecord(vm);
  if (recorded) {
    const { uid: _uid, ...placement } = recorded;
    return placement;
  }
  const s = vm.status;
  if (!s?.nodeName && !s?.uuid && !s?.interfaces?.length) return NOT_PLACED;
  return {
    ...(s.nodeName ? { nodeName: s.nodeName } : {}),
    ...(s.uuid ? { uuid: s.uuid } : {}),
    interfaces: (s.interfaces ?? []).map(({ linked: _linked, ...placed }) => placed),
  };
}

/** The node VM is placed on, if any. */
export const placedNode = (vm: VmLike): string | undefined => placementOf(vm).nodeName;

/** Whether VM's placement is the controller's record (every VM it placed or moved since), not its status. */
export const placementRecorded = (vm: VmLike): boolean => trustedRecord(vm) !== undefined;

/**
 * The annotation's value for P on the object of UID: fields in a fixed order, so an unchanged
 * placement is the same string. Throws on what would not read back (it is never written).
 */
export function encodePlacement(p: VmPlacement, uid: string | undefined): string {
  const text = JSON.stringify({
    ...(uid ? { uid } : {}),
    ...(p.nodeName ? { nodeName: p.nodeName } : {}),
    ...(p.uuid ? { uuid: p.uuid } : {}),
    interfaces: p.interfaces.map((i) => ({
      name: i.name,
      ...(i.mac ? { mac: i.mac } : {}),
      ...(i.network ? { network: i.network } : {}),
      ...(i.ipv4 ? { ipv4: i.ipv4 } : {}),
      ...(i.ipv6 ? { ipv6: i.ipv6 } : {}),
    })),
  });
  if (!decodePlacement(text)) throw new Error(`a placement that would not read back: ${text}`);
  return text;
}

/**
 * The annotation read back; undefined when it is not a well-formed record. Only the operator
 * writes it, but what reaches libvirt and DHCP is checked here anyway.
 */
export function decodePlacement(text: string): Recorded | undefined {
  if (parsed.has(text)) return parsed.get(text);
  const record = checked(text);
  if (parsed.size >= PARSED_KEPT) parsed.clear();
  parsed.set(text, record);
  return record;
}

/** VM as if placed on NODE (keeping what it holds): for a placement made a moment ago that the cache does not show yet. */
export function asPlacedOn<T extends VmLike>(vm: T, node: string): T {
  return withPlacement(vm, { ...placementOf(vm), nodeName: node });
}

/** VM as if its record said PLACEMENT (and its node label agreed). */
export function withPlacement<T extends VmLike>(vm: T, placement: VmPlacement): T {
  const text = encodePlacement(placement, vm.metadata.uid);
  return {
    ...vm,
    metadata: {
      ...vm.metadata,
      annotations: { ...vm.metadata.annotations, [PLACEMENT_ANNOTATION]: text },
      ...(placement.nodeName ? { labels: { ...vm.metadata.labels, [NODE_LABEL]: placement.nodeName } } : {}),
    },
  };
}

function checked(text: string): Recorded | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(raw) || !Array.isArray(raw.interfaces) || raw.interfaces.length > 16) return undefined;
  const { uid, nodeName, uuid } = raw;
  if (!optional(uid, (v) => UID.test(v)) || !optional(nodeName, (v) => NODE.test(v))) return undefined;
  if (!optional(uuid, (v) => UUID.test(v))) return undefined;
  const interfaces: PlacedInterface[] = [];
  for (const item of raw.interfaces) {
    if (!isRecord(item) || typeof item.name !== "string" || !INTERFACE.test(item.name)) return undefined;
    const nic: PlacedInterface = { name: item.name };
    for (const [field, valid] of [
      ["mac", (v: string) => MAC.test(v)],
      ["network", (v: string) => NETWORK.test(v)],
      ["ipv4", isIPv4],
      // A reservation has no scope: fd00::5%eth0 is no address to give a VM.
      ["ipv6", (v: string) => isIPv6(v) && !v.includes("%")],
    ] as const) {
      const value = item[field];
      if (!optional(value, valid)) return undefined;
      if (value !== undefined) nic[field] = value as string;
    }
    interfaces.push(Object.freeze(nic));
  }
  return Object.freeze({
    ...(uid ? { uid: uid as string } : {}),
    ...(nodeName ? { nodeName: nodeName as string } : {}),
    ...(uuid ? { uuid: uuid as string } : {}),
    interfaces: Object.freeze(interfaces) as PlacedInterface[],
  });
}

/** Absent, or a string VALID accepts. */
function optional(value: unknown, valid: (v: string) => boolean): boolean {
  return value === undefined || (typeof value === "string" && valid(value));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
