// Pure: a VM's spec.disks + the VMDisks they name → the disk devices its domain gets, what it
// still waits for, and what stops it (a disk on another node, or held by another VM, or a
// VMTemplate's base it may not start with).
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
  /** Disks that are a VMTemplate's base (attached read-only, whatever the spec says). */
  bases: BaseUse[];
}

/** A disk of the VM whose VMDisk is a VMTemplate's base (status.baseOf). */
export interface BaseUse {
  /** Name in the VM. */
  name: string;
  vmDisk: string;
  template: string;
  /** The VM's spec asks for it read-only: a VM that only reads a base may start. */
  askedReadOnly: boolean;
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
 * Target device per disk name. A disk the domain already has keeps its target (removing or
 * inserting entries never moves the others); new disks take the first free one of their bus's
 * prefix. sdz and hdc stay free for the CD-ROM.
 */
export function diskTargets(
  entries: ReadonlyArray<Pick<DiskEntry, "name" | "bus">>,
  current: Readonly<Record<string, { target: string }>> = {},
): Record<string, string> {
  const prefixOf = (bus: Bus) => (bus === "virtio" ? "vd" : bus === "ide" ? "hd" : "sd");
  const used = new Set(["sdz", "hdc"]);
  const out: Record<string, string> = {};
  for (const e of entries) {
    const kept = current[e.name]?.target;
    if (kept?.startsWith(prefixOf(e.bus ?? "virtio")) && !used.has(kept)) {
      out[e.name] = kept;
      used.add(kept);
    }
  }
  for (const e of entries) {
    if (out[e.name]) continue;
    const prefix = prefixOf(e.bus ?? "virtio");
    let i = 0;
    while (used.has(prefix + letters(i))) i++;
    out[e.name] = prefix + letters(i);
    used.add(out[e.name]!);
  }
  return out;
}

/**
 * CURRENT: our disks in the domain's definition. A disk the domain already has stays while its
 * VMDisk passes through other phases (a failed grow, a pool being repaired): a guest never
 * loses a disk it uses because of the disk's status. VOLUME_PATH: where the disk's volume is
 * on this node, as libvirt says (never status.path: a path written by anyone else would reach
 * the guest).
 */
export function resolveDisks(
  vm: VirtualMachine,
  diskNamed: (name: string) => VMDisk | undefined,
  nodeName: string,
  current: Readonly<Record<string, ObservedDisk>>,
  volumePath: (name: string) => string | undefined,
): DiskResolution {
  const entries = vm.spec.disks ?? [];
  const targets = diskTargets(entries, current);
  const result: DiskResolution = { devices: [], waiting: [], blocked: [], bases: [] };
  for (const e of entries) {
    if (e.active === false) continue;
    const ref = e.diskRef.name;
    const disk = diskNamed(ref);
    const s = disk?.status;
    if (!disk) {
      result.waiting.push(`VMDisk ${ref} does not exist`);
      continue;
    }
    // Linked clones read a base: no VM ever writes it.
    const baseOf = s?.baseOf?.template;
    if (baseOf)
      result.bases.push({ name: e.name, vmDisk: ref, template: baseOf, askedReadOnly: e.readOnly === true });
    const have = current[e.name];
    const found = volumePath(ref);
    // Attached with the volume libvirt has for this disk; or attached while the volume cannot be
    // looked up right now (a pool being repaired): it stays.
    const attachedNow = Boolean(have) && (!found || have!.path === found);
    const path = found ?? (attachedNow ? have!.path : undefined);
    if (disk.metadata.deletionTimestamp && !attachedNow) {
      result.blocked.push(`VMDisk ${ref} is being deleted`);
      continue;
    }
    if (s?.nodeName && s.nodeName !== nodeName && !s.storagePoolShared) {
      result.blocked.push(`VMDisk ${ref} lives on node ${s.nodeName}, the VM runs on ${nodeName}`);
      continue;
    }
    if (!attachedNow && (!s?.phase || !USABLE_PHASES.has(s.phase) || !path)) {
      result.waiting.push(`VMDisk ${ref} is ${s?.phase ?? "Pending"}`);
      continue;
    }
    const holders = s?.attachedTo ?? [];
    if (!holders.includes(vm.metadata.name) && !attachedNow) {
      result.waiting.push(`VMDisk ${ref} has not recorded the attachment yet`);
      continue;
    }
    if (!disk.spec.shareable && holders[0] !== vm.metadata.name && !attachedNow) {
      result.blocked.push(
        `VMDisk ${ref} is attached to VirtualMachine ${holders[0]} and is not shareable (spec.shareable)`,
      );
      continue;
    }
    result.devices.push({
      name: e.name,
      path: path!,
      // The spec's format (immutable), never status: a format another writer claims would make
      // QEMU read guest-written bytes as a qcow2 header (and follow its backing file).
      format: disk.spec.format === "raw" ? "raw" : "qcow2",
      bus: e.bus ?? "virtio",
      target: targets[e.name]!,
      ...(e.bootOrder !== undefined ? { bootOrder: e.bootOrder } : {}),
      ...(e.readOnly || disk.spec.readOnly || baseOf ? { readOnly: true } : {}),
      ...(disk.spec.shareable ? { shareable: true } : {}),
      ...(disk.spec.propagateErrors ? { propagateErrors: true } : {}),
    });
  }
  return result;
}

/**
 * Why the VM must not start: a disk of it is a VMTemplate's base that its spec does not attach
 * read-only (explicitly, readOnly: true). That is the VM made into the template; it stays
 * stopped so that its disks stay as the template's VMs were made from.
 */
export function templateBaseRefusal(
  bases: readonly BaseUse[],
): { reason: "TemplateBase"; message: string } | undefined {
  const refused = bases.filter((b) => !b.askedReadOnly);
  if (!refused.length) return undefined;
  const which = refused
    .map((b) => `disk ${b.name} (VMDisk ${b.vmDisk}) is a base of VMTemplate ${b.template}`)
    .join("; ");
  return {
    reason: "TemplateBase",
    message: `${which}; a VM made into a template does not run: make a VM from the template instead`,
  };
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
 * carries the wanted ones. A disk whose file, target or read-only flag changed is replaced,
 * except a writable disk in KEEP_WRITABLE wanted read-only: a running guest keeps a disk it
 * writes (pulling it out from under the guest is worse); the next start has it read-only.
 */
export function diskChanges(
  wanted: readonly DiskDevice[],
  current: Readonly<Record<string, ObservedDisk>>,
  keepWritable: ReadonlySet<string> = new Set(),
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
      (Boolean(want.readOnly) !== have.readOnly && !(keepWritable.has(have.name) && !have.readOnly))
    )
      detach.push(have);
  }
  for (const want of wantedByName.values()) {
    const have = current[want.name];
    if (!have || detach.includes(have)) attach.push(want);
  }
  return { attach, detach };
}
