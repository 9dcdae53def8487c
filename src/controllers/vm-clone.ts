// Pure: a VM made from a snapshot (spec.source.snapshot) or a template (spec.source.template).
// It gets disks of its own with the snapshot's content (or clones of the template's bases), and
// the recorded hardware wherever its own spec says nothing — never another VM's identity: it has
// its own UUID, MAC and IP addresses, and DHCP names.
import type { VirtualMachine, VirtualMachineSpec } from "../api/virtualmachine.ts";
import type { VMSnapshotStatus } from "../api/vmsnapshot.ts";
import { derivedName } from "./object-names.ts";

type SnapshotDisk = NonNullable<VMSnapshotStatus["disks"]>[number];
type DiskEntry = NonNullable<VirtualMachineSpec["disks"]>[number];

/** The clone's own VMDisk for DISK (a name in the VM): "<vm>-<disk>", shortened by a hash when too long. */
export function cloneDiskName(vmName: string, disk: string): string {
  return derivedName(vmName, `-${disk}`);
}

/** Fields of the snapshotted VM a clone never takes: identity, origin, schedules, placement, pause. */
const NOT_INHERITED = ["uuid", "source", "snapshotPolicy", "nodeName", "paused"] as const;

/**
 * What a clone records as its hardware: the snapshot's VM spec without what identifies that
 * VM, interfaces without their MAC addresses (the clone gets new ones, and new IPs), and the
 * disks the snapshot holds pointing to the clone's own VMDisks.
 */
export function cloneBaseSpec(
  vmName: string,
  recorded: Record<string, unknown>,
  held: readonly SnapshotDisk[],
): Record<string, unknown> {
  const base: Record<string, unknown> = { ...recorded };
  for (const field of NOT_INHERITED) delete base[field];
  const interfaces = recorded.interfaces as Array<Record<string, unknown>> | undefined;
  if (interfaces) base.interfaces = interfaces.map(({ macAddress: _mac, ...rest }) => rest);
  const copied = new Set(held.map((d) => d.name));
  const disks = (recorded.disks as DiskEntry[] | undefined) ?? [];
  base.disks = disks.map((d) =>
    copied.has(d.name) ? { ...d, diskRef: { name: cloneDiskName(vmName, d.name) } } : d,
  );
  return base;
}

/** The hardware a VM made from spec.source took: its clone's or its template's record. */
function recordedSpec(vm: VirtualMachine): Partial<VirtualMachineSpec> | undefined {
  if (vm.spec.source?.snapshot) return vm.status?.clonedFrom?.spec as Partial<VirtualMachineSpec> | undefined;
  if (vm.spec.source?.template) return vm.status?.template?.spec as Partial<VirtualMachineSpec> | undefined;
  return undefined;
}

/**
 * The spec a VM made from a snapshot or a template runs with: its own fields over the recorded
 * hardware; its disks are the recorded ones plus any it names itself (its own win by name).
 * Any other VM: its spec.
 */
export function effectiveSpec(vm: VirtualMachine): VirtualMachineSpec {
  const base = recordedSpec(vm);
  if (!base) return vm.spec;
  const own = Object.fromEntries(Object.entries(vm.spec).filter(([, v]) => v !== undefined));
  const mine = new Set((vm.spec.disks ?? []).map((d) => d.name));
  const disks = [...(base.disks ?? []).filter((d) => !mine.has(d.name)), ...(vm.spec.disks ?? [])];
  return { ...base, ...own, disks } as VirtualMachineSpec;
}

/** VM as it runs: a clone or a template's VM with its effective spec (status and metadata as they are). */
export function effectiveVm<T extends VirtualMachine>(vm: T): T {
  const spec = effectiveSpec(vm);
  return spec === vm.spec ? vm : { ...vm, spec };
}

/**
 * A cache of VMs that hands out each one as it runs (effectiveVm), worked out once per version
 * of it (the cache holds a new object for each).
 */
export function effectiveVms<T extends VirtualMachine>(cache: {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}): { get(name: string, namespace?: string): T | undefined; list(namespace?: string): T[] } {
  const seen = new WeakMap<T, T>();
  const effective = (vm: T): T => {
    let e = seen.get(vm);
    if (!e) {
      e = effectiveVm(vm);
      seen.set(vm, e);
    }
    return e;
  };
  return {
    get: (name, namespace) => {
      const vm = cache.get(name, namespace);
      return vm ? effective(vm) : undefined;
    },
    list: (namespace) => cache.list(namespace).map(effective),
  };
}
