// Pure: where a VM is placed and what it holds there (node, domain UUID, its interfaces' MACs and
// addresses). The controller records it in one annotation, in the same metadata write as the
// node label and the finalizer, so placing a VM is one API write; the node agent acts on it and
// copies it into status with its first report (status.nodeName, uuid, interfaces). VMs placed
// before the annotation existed carry their placement in status only: read from there until the
// controller records it. Only the operator may write the annotation (the chart's metadata policy).
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

const NOT_PLACED: VmPlacement = Object.freeze({
  interfaces: Object.freeze([]) as unknown as PlacedInterface[],
});
/** Parsed annotations, by the annotation string (the same VM is read many times per reconcile). */
const parsed = new Map<string, VmPlacement>();
const PARSED_KEPT = 4096;

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$/;
const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const IPV6 = /^[0-9a-fA-F:.]{2,45}$/;

/** Where VM is placed: the controller's record, else (placed before it kept one) its status. */
export function placementOf(vm: VmLike): VmPlacement {
  const recorded = vm.metadata.annotations?.[PLACEMENT_ANNOTATION];
  if (recorded !== undefined) return decodePlacement(recorded);
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

/** Whether the controller keeps VM's placement in the annotation (every VM it placed or moved since). */
export const placementRecorded = (vm: VmLike): boolean =>
  vm.metadata.annotations?.[PLACEMENT_ANNOTATION] !== undefined;

/** The annotation's value for P: fields in a fixed order, so an unchanged placement is the same string. */
export function encodePlacement(p: VmPlacement): string {
  return JSON.stringify({
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
}

/**
 * The annotation read back. Only the operator writes it, but what reaches libvirt and DHCP is
 * checked here anyway: a value that is not a well-formed placement counts as none.
 */
export function decodePlacement(text: string): VmPlacement {
  const hit = parsed.get(text);
  if (hit) return hit;
  const placement = checked(text) ?? NOT_PLACED;
  if (parsed.size >= PARSED_KEPT) parsed.clear();
  parsed.set(text, placement);
  return placement;
}

function checked(text: string): VmPlacement | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(raw) || !Array.isArray(raw.interfaces) || raw.interfaces.length > 16) return undefined;
  const { nodeName, uuid } = raw;
  if (nodeName !== undefined && !(typeof nodeName === "string" && NAME.test(nodeName))) return undefined;
  if (uuid !== undefined && !(typeof uuid === "string" && UUID.test(uuid))) return undefined;
  const interfaces: PlacedInterface[] = [];
  for (const item of raw.interfaces) {
    if (!isRecord(item) || typeof item.name !== "string" || !NAME.test(item.name)) return undefined;
    const nic: PlacedInterface = { name: item.name };
    for (const [field, shape] of [
      ["mac", MAC],
      ["network", NAME],
      ["ipv4", IPV4],
      ["ipv6", IPV6],
    ] as const) {
      const value = item[field];
      if (value === undefined) continue;
      if (typeof value !== "string" || !shape.test(value)) return undefined;
      nic[field] = value;
    }
    interfaces.push(nic);
  }
  return Object.freeze({
    ...(nodeName ? { nodeName: nodeName as string } : {}),
    ...(uuid ? { uuid: uuid as string } : {}),
    interfaces,
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** VM as if placed on NODE (keeping what it holds): for a placement made a moment ago that the cache does not show yet. */
export function asPlacedOn<T extends VmLike>(vm: T, node: string): T {
  const placement = encodePlacement({ ...placementOf(vm), nodeName: node });
  return {
    ...vm,
    metadata: {
      ...vm.metadata,
      annotations: { ...vm.metadata.annotations, [PLACEMENT_ANNOTATION]: placement },
    },
  };
}
