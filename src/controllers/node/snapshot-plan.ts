// Pure: what a snapshot of a VM holds and how it is stored, decided from the domain's disks and
// the VMDisks behind them; the names of what it stores on the node.
import { XMLBuilder } from "fast-xml-parser";
import { DURATION_PATTERN } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import type { ObservedDisk } from "../../hypervisor/domain/disks.ts";
import {
  fileNameFitting,
  snapshotVolumeNameOf,
  type VolumeFormat,
  volumeNameOf,
} from "../../hypervisor/storage/volume.ts";

export type SnapshotMethod = "Internal" | "VolumeCopy";

/** A disk of the VM whose state the snapshot keeps. */
export interface PlannedDisk {
  /** Name in the VM (spec.disks[].name). */
  name: string;
  /** The VMDisk behind it, and its UID. */
  vmDisk: string;
  vmDiskUID?: string;
  /** Target device in the domain (vda …). */
  target: string;
  format: VolumeFormat;
  pool: string;
  /** The disk's own volume. */
  volume: string;
  /** The volume holding the snapshot's copy (VolumeCopy). */
  copyVolume: string;
}

export interface SnapshotPlan {
  method: SnapshotMethod;
  /** Why this method, in words (status and logs). */
  why: string;
  disks: PlannedDisk[];
  /** Disks left out, with the reason ("data: shareable, other VMs write it"). */
  skipped: string[];
}

/** Name of the libvirt snapshot (Internal) of snapshot TIMESTAMP. */
export function libvirtSnapshotName(timestamp: number): string {
  return `lvo-${Math.trunc(timestamp)}`;
}

/** File holding the memory state of snapshot TIMESTAMP of NAMESPACE/VM (VolumeCopy). */
export function memoryImagePath(dir: string, namespace: string, vm: string, timestamp: number): string {
  // Both names are Kubernetes names (no "/", no "_", no ".." segment): "_" keeps them apart.
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(namespace) || !/^[a-z0-9][a-z0-9.-]*$/.test(vm) || vm.includes(".."))
    throw new Error(`"${namespace}/${vm}" cannot name a file`);
  return `${dir.replace(/\/+$/, "")}/${fileNameFitting(`${namespace}_${vm}`, `_snap-${Math.trunc(timestamp)}.mem`)}`;
}

/**
 * The disks a snapshot of VM keeps: the writable disks its domain has. Read-only disks,
 * VMTemplates' bases and CD-ROMs never change; a shareable disk is written by other VMs too,
 * so no one VM's snapshot can hold it.
 */
export function planSnapshot(
  vm: VirtualMachine,
  domainDisks: Readonly<Record<string, ObservedDisk>>,
  diskNamed: (name: string) => VMDisk | undefined,
  defaultPool: string,
  timestamp: number,
): SnapshotPlan | { refused: string } {
  const ns = vm.metadata.namespace ?? "";
  const disks: PlannedDisk[] = [];
  const skipped: string[] = [];
  // QEMU saves a running guest only if every writable disk can hold an internal snapshot.
  const rawWritable: string[] = [];
  for (const entry of vm.spec.disks ?? []) {
    const have = domainDisks[entry.name];
    if (!have) {
      if (entry.active !== false) return { refused: `disk ${entry.name} is not attached to the domain yet` };
      skipped.push(`${entry.name}: not attached (active: false)`);
      continue;
    }
    const disk = diskNamed(entry.diskRef.name);
    if (!disk) return { refused: `VMDisk ${entry.diskRef.name} (disk ${entry.name}) does not exist` };
    if (have.readOnly || disk.spec.readOnly) {
      skipped.push(`${entry.name}: read-only`);
      continue;
    }
    // Linked clones read it: nothing, not even a snapshot, is written into a base.
    if (disk.status?.baseOf) {
      skipped.push(`${entry.name}: a base of VMTemplate ${disk.status.baseOf.template} (never written)`);
      continue;
    }
    if (disk.spec.format === "raw") rawWritable.push(entry.name);
    if (disk.spec.shareable) {
      skipped.push(`${entry.name}: shareable (other VMs write it too)`);
      continue;
    }
    const format: VolumeFormat = disk.spec.format === "raw" ? "raw" : "qcow2";
    disks.push({
      name: entry.name,
      vmDisk: disk.metadata.name,
      ...(disk.metadata.uid ? { vmDiskUID: disk.metadata.uid } : {}),
      target: have.target,
      format,
      pool: disk.spec.storagePool ?? defaultPool,
      volume: volumeNameOf(ns, disk.metadata.name, format),
      copyVolume: snapshotVolumeNameOf(ns, disk.metadata.name, format, timestamp),
    });
  }
  const raw = rawWritable;
  const uefi = vm.spec.boot?.firmware === "uefi";
  if (raw.length === 0 && !uefi)
    return { method: "Internal", why: "every disk is qcow2: libvirt's internal snapshot", disks, skipped };
  const why = uefi
    ? "UEFI firmware (pflash) rules out libvirt's internal snapshot: each volume is copied"
    : `raw disk${raw.length > 1 ? "s" : ""} ${raw.join(", ")} rule out libvirt's internal snapshot: each volume is copied`;
  return { method: "VolumeCopy", why, disks, skipped };
}

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: "@_", format: true });

/**
 * libvirt's snapshot XML for an internal snapshot of PLAN. A running domain's internal snapshot
 * always holds its memory (libvirt cannot take a disk-only internal snapshot of a running
 * guest); whether a restore uses it is ours to decide. Disks left out get snapshot="no".
 */
export function internalSnapshotXml(
  name: string,
  description: string,
  plan: SnapshotPlan,
  domainDisks: Readonly<Record<string, ObservedDisk>>,
  running: boolean,
): string {
  const kept = new Set(plan.disks.map((d) => d.target));
  return builder.build({
    domainsnapshot: {
      name,
      description,
      memory: { "@_snapshot": running ? "internal" : "no" },
      disks: {
        disk: Object.values(domainDisks).map((d) => ({
          "@_name": d.target,
          "@_snapshot": kept.has(d.target) ? "internal" : "no",
        })),
      },
    },
  }) as string;
}

/** Milliseconds of a deadline such as "90s", "5m", "1h30m"; undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!new RegExp(DURATION_PATTERN).test(text) || text === "") return undefined;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m) return undefined;
  const [h, min, s] = [m[1], m[2], m[3]].map((x) => Number(x ?? 0)) as [number, number, number];
  return ((h * 60 + min) * 60 + s) * 1000;
}
