// Pure: a VM's spec.disks + the VMDisks they name → the disk devices its domain gets, what it
// still waits for, and what stops it (a disk on another node, or held by another VM).
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { DiskDevice } from "./xml.ts";

type DiskEntry = NonNullable<VirtualMachine["spec"]["disks"]>[number];
type Bus = DiskDevice["bus"];

/** Buses whose disks plug and unplug while the guest runs. */
export function isHotpluggable(bus: Bus): boolean {
  return bus === "virtio" || bus === "scsi";
}

export interface DiskResolution {
  devices: DiskDevice[];
  /** Disks not ready yet (being created, not yet recorded as attached): the VM waits. */
  waiting: string[];
  /** Disks this VM must not use: the user has to act. */
  blocked: string[];
}

/** Phases in which a volume exists and may be used by a guest. */
const USABLE_PHASES = new Set(["Ready", "Resizing"]);

/** "a".."z", "aa".. as in vda, vdb … vdz, vdaa. */
function letters(i: number): string {
  let s = "";
  for (let n = i + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
}

/**
 * Target device per disk name, stable whatever is active: by position among disks of the same
 * device prefix. sdz and hdc stay free for the CD-ROM.
 */
export function diskTargets(entries: ReadonlyArray<Pick<DiskEntry, "name" | "bus">>): Record<string, string> {
  const prefixOf = (bus: Bus) => (bus === "virtio" ? "vd" : bus === "ide" ? "hd" : "sd");
  const reserved = new Set(["sdz", "hdc"]);
  const next: Record<string, number> = {};
  const out: Record<string, string> = {};
  for (const e of entries) {
    const prefix = prefixOf(e.bus ?? "virtio");
    let target: string;
    do {
      const i = next[prefix] ?? 0;
      next[prefix] = i + 1;
      target = prefix + letters(i);
    } while (reserved.has(target));
    out[e.name] = target;
  }
  return out;
}

export function resolveDisks(
  vm: VirtualMachine,
  diskNamed: (name: string) => VMDisk | undefined,
  nodeName: string,
): DiskResolution {
  const entries = vm.spec.disks ?? [];
  const targets = diskTargets(entries);
  const result: DiskResolution = { devices: [], waiting: [], blocked: [] };
  for (const e of entries) {
    if (e.active === false) continue;
    const ref = e.diskRef.name;
    const disk = diskNamed(ref);
    const s = disk?.status;
    if (!disk) {
      result.waiting.push(`VMDisk ${ref} does not exist`);
      continue;
    }
    if (disk.metadata.deletionTimestamp && !s?.attachedTo?.includes(vm.metadata.name)) {
      result.blocked.push(`VMDisk ${ref} is being deleted`);
      continue;
    }
    if (s?.nodeName && s.nodeName !== nodeName && !s.storagePoolShared) {
      result.blocked.push(`VMDisk ${ref} lives on node ${s.nodeName}, the VM runs on ${nodeName}`);
      continue;
    }
    if (!s?.phase || !USABLE_PHASES.has(s.phase) || !s.path) {
      result.waiting.push(`VMDisk ${ref} is ${s?.phase ?? "Pending"}`);
      continue;
    }
    const holders = s.attachedTo ?? [];
    if (!holders.includes(vm.metadata.name)) {
      result.waiting.push(`VMDisk ${ref} has not recorded the attachment yet`);
      continue;
    }
    if (!disk.spec.shareable && holders[0] !== vm.metadata.name) {
      result.blocked.push(
        `VMDisk ${ref} is attached to VirtualMachine ${holders[0]} and is not shareable (spec.shareable)`,
      );
      continue;
    }
    result.devices.push({
      name: e.name,
      path: s.path,
      format: s.format === "raw" ? "raw" : "qcow2",
      bus: e.bus ?? "virtio",
      target: targets[e.name]!,
      ...(e.bootOrder !== undefined ? { bootOrder: e.bootOrder } : {}),
      ...(e.readOnly || disk.spec.readOnly ? { readOnly: true } : {}),
      ...(disk.spec.shareable ? { shareable: true } : {}),
      ...(disk.spec.propagateErrors ? { propagateErrors: true } : {}),
    });
  }
  return result;
}

/** A disk of ours as a domain's XML shows it (alias ua-disk-<name>). */
export interface ObservedDisk {
  name: string;
  path: string;
  target: string;
  bus: string;
  readOnly: boolean;
}

/**
 * Hot-pluggable disks to attach and detach so that a domain (live or persistent definition)
 * carries the wanted ones. A disk whose file, target or read-only flag changed is replaced.
 */
export function diskChanges(
  wanted: readonly DiskDevice[],
  current: Readonly<Record<string, ObservedDisk>>,
): { attach: DiskDevice[]; detach: ObservedDisk[] } {
  const attach: DiskDevice[] = [];
  const detach: ObservedDisk[] = [];
  const wantedByName = new Map(wanted.filter((d) => isHotpluggable(d.bus)).map((d) => [d.name, d]));
  for (const have of Object.values(current)) {
    if (!isHotpluggable(have.bus as Bus)) continue;
    const want = wantedByName.get(have.name);
    if (
      !want ||
      want.path !== have.path ||
      want.target !== have.target ||
      Boolean(want.readOnly) !== have.readOnly
    )
      detach.push(have);
  }
  for (const want of wantedByName.values()) {
    const have = current[want.name];
    if (!have || detach.includes(have)) attach.push(want);
  }
  return { attach, detach };
}
