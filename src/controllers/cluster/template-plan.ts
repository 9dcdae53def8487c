// Pure: what a VM made from a VMTemplate takes (status.template), the VMDisks it gets, and the
// bases a template keeps: one read-only VMDisk per image disk, node and template generation.

import {
  MAX_PROVISIONED_SIZE,
  TEMPLATE_DISK_LABEL,
  TEMPLATE_GENERATION_LABEL,
  TEMPLATE_LABEL,
} from "../../api/names.ts";
import { parseQuantity } from "../../api/quantity.ts";
import type { VirtualMachine, VirtualMachineSpec, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import type { VMDisk, VMDiskSpec } from "../../api/vmdisk.ts";
import type { TemplateShape, VMTemplate } from "../../api/vmtemplate.ts";
import { derivedName } from "../object-names.ts";
import { cloneDiskName } from "../vm-clone.ts";
import { placedNode } from "../vm-placement.ts";

export type TemplateRecord = NonNullable<VirtualMachineStatus["template"]>;
export type RecordedDisk = TemplateRecord["disks"][number];
type DiskEntry = NonNullable<VirtualMachineSpec["disks"]>[number];

/** A recorded disk made from the template's base for the VM's node (not a VM's disk). */
export const FROM_IMAGE = "image";

/** The base VMDisk of template disk DISK at GENERATION on NODE. */
export function baseDiskName(template: string, generation: number, disk: string, node: string): string {
  return derivedName(template, `-g${generation}-${disk}-${node}`);
}

export type ChildPrep =
  | { record: TemplateRecord }
  | { wait: string }
  | { refuse: { reason: string; message: string } };

/**
 * What VM takes from TPL: the template's hardware at its current generation (a template made
 * from a VM: that VM's, once taken), its disks pointing to VMDisks of the VM's own.
 */
export function templateRecord(
  vm: VirtualMachine,
  tpl: VMTemplate | undefined,
  diskNamed: (name: string) => VMDisk | undefined,
): ChildPrep {
  const name = vm.spec.source?.template ?? "";
  if (!tpl) return { wait: `VMTemplate ${name} (spec.source.template) does not exist` };
  if (tpl.metadata.deletionTimestamp)
    return { refuse: { reason: "TemplateDeleting", message: `VMTemplate ${name} is being deleted` } };
  const refused = shapeRefusal(tpl);
  if (refused)
    return { refuse: { reason: "TemplateFailed", message: `VMTemplate ${name}: ${refused.message}` } };
  const base = { name, uid: tpl.metadata.uid ?? "", generation: tpl.metadata.generation ?? 1 };
  const vmName = vm.metadata.name;
  if (tpl.spec.template) {
    const { disks = [], ...hardware } = tpl.spec.template;
    return {
      record: {
        ...base,
        spec: { ...hardware, disks: disks.map((d) => diskEntry(vmName, d)) },
        disks: disks.map((d) => ({
          name: d.name,
          vmDisk: cloneDiskName(vmName, d.name),
          size: String(d.size),
          format: d.image && !d.fullCopy ? "qcow2" : (d.format ?? "qcow2"),
          ...(d.image ? { from: FROM_IMAGE } : {}),
          ...(d.image && d.fullCopy ? { fullCopy: true } : {}),
        })),
      },
    };
  }
  const taken = tpl.status?.vm;
  if (!taken) return { wait: `VMTemplate ${name} has not taken its VM ${tpl.spec.source?.vmName ?? ""} yet` };
  const entries = ((taken.spec as Partial<VirtualMachineSpec>).disks ?? []) as DiskEntry[];
  const disks: RecordedDisk[] = [];
  for (const t of taken.disks) {
    const from = diskNamed(t.vmDisk);
    if (!from)
      return {
        refuse: {
          reason: "TemplateBaseMissing",
          message: `VMDisk ${t.vmDisk}, a base of VMTemplate ${name}, is gone`,
        },
      };
    disks.push({
      name: t.name,
      vmDisk: cloneDiskName(vmName, t.name),
      size: String(from.spec.provisionedSize),
      format: "qcow2",
      from: t.vmDisk,
    });
  }
  const based = new Set(taken.disks.map((d) => d.name));
  return {
    record: {
      ...base,
      spec: {
        ...taken.spec,
        disks: entries
          .filter((e) => based.has(e.name))
          .map((e) => ({ ...e, diskRef: { name: cloneDiskName(vmName, e.name) } })),
      },
      disks,
    },
  };
}

function diskEntry(vmName: string, d: NonNullable<TemplateShape["disks"]>[number]): DiskEntry {
  return {
    name: d.name,
    diskRef: { name: cloneDiskName(vmName, d.name) },
    ...(d.bus ? { bus: d.bus } : {}),
    ...(d.bootOrder ? { bootOrder: d.bootOrder } : {}),
  };
}

/** The VMDisk a recorded disk is made from on NODE (undefined: a blank disk). */
export function sourceDiskOf(template: string, record: TemplateRecord, d: RecordedDisk, node: string) {
  if (!d.from) return undefined;
  return d.from === FROM_IMAGE ? baseDiskName(template, record.generation, d.name, node) : d.from;
}

/** The specs of the VM's own VMDisks on NODE (where the VM was placed, or its bases are). */
export function childDiskSpecs(
  record: TemplateRecord,
  node: string,
): Array<{ name: string; spec: VMDiskSpec }> {
  return record.disks.map((d) => {
    const from = sourceDiskOf(record.name, record, d, node);
    return {
      name: d.vmDisk,
      spec: {
        provisionedSize: d.size,
        format: d.format === "raw" ? "raw" : "qcow2",
        nodeName: node,
        source: from ? { disk: { name: from, ...(d.fullCopy ? {} : { linked: true }) } } : { blank: {} },
      },
    };
  });
}

/**
 * The node a VM made from a template made from a VM must run on: that of the base its disks
 * are cloned from (undefined: its disks are in a shared pool, or come from the VM's node).
 */
export function sourceBaseNode(
  record: TemplateRecord,
  diskNamed: (name: string) => VMDisk | undefined,
): string | undefined {
  const based = record.disks.find((d) => d.from && d.from !== FROM_IMAGE);
  const base = based?.from ? diskNamed(based.from) : undefined;
  return base && !base.status?.storagePoolShared ? base.status?.nodeName : undefined;
}

/** A disk RECORD would make that exists and is not VM's (another's name must not be taken over). */
export function takenDiskName(
  vm: VirtualMachine,
  record: TemplateRecord,
  diskNamed: (name: string) => VMDisk | undefined,
): string | undefined {
  return record.disks.find((d) => {
    const existing = diskNamed(d.vmDisk);
    return existing && !existing.metadata.ownerReferences?.some((r) => r.uid === vm.metadata.uid);
  })?.vmDisk;
}

export interface WantedBase {
  name: string;
  node: string;
  generation: number;
  disk: string;
  labels: Record<string, string>;
  spec: VMDiskSpec;
}

type ImageDisk = { name: string; size: string | number; format?: "qcow2" | "raw"; image?: string };

function wantedBase(tpl: VMTemplate, generation: number, d: ImageDisk, node: string): WantedBase {
  const name = tpl.metadata.name;
  return {
    name: baseDiskName(name, generation, d.name, node),
    node,
    generation,
    disk: d.name,
    labels: {
      [TEMPLATE_LABEL]: name,
      [TEMPLATE_GENERATION_LABEL]: String(generation),
      [TEMPLATE_DISK_LABEL]: d.name,
    },
    spec: {
      description: `Base of disk ${d.name} of VMTemplate ${name} (generation ${generation}): read-only`,
      provisionedSize: d.size,
      format: d.format ?? "qcow2",
      nodeName: node,
      readOnly: true,
      source: { image: { url: d.image ?? "" } },
    },
  };
}

/**
 * The bases a template made from a shape needs: its current generation's on the nodes it
 * prefetches to, and on each node a VM made from it runs on, the bases of the VM's generation
 * while the VM needs them (a linked clone always; a full copy until its disk is made). A base
 * of an earlier generation is made like the ones of that generation that exist; when none is
 * left, nothing can be made (the VM says so).
 */
export function wantedBases(
  tpl: VMTemplate,
  children: readonly VirtualMachine[],
  existing: readonly VMDisk[],
  diskNamed: (name: string) => VMDisk | undefined,
): WantedBase[] {
  const shape = tpl.spec.template;
  if (!shape || tpl.metadata.deletionTimestamp || shapeRefusal(tpl)) return [];
  const current = tpl.metadata.generation ?? 1;
  const wanted = new Map<string, WantedBase>();
  const add = (w: WantedBase) => wanted.set(w.name, w);
  const images = (shape.disks ?? []).filter((d) => d.image);
  for (const node of tpl.spec.prefetchNodes ?? [])
    for (const d of images) add(wantedBase(tpl, current, d, node));
  for (const vm of children) {
    const record = vm.status?.template;
    const node = placedNode(vm);
    if (!record || record.uid !== tpl.metadata.uid || !node) continue;
    for (const d of record.disks) {
      if (d.from !== FROM_IMAGE) continue;
      if (d.fullCopy && diskNamed(d.vmDisk)?.status?.phase === "Ready") continue;
      if (record.generation === current) {
        const t = images.find((i) => i.name === d.name);
        if (t) add(wantedBase(tpl, current, t, node));
        continue;
      }
      const like = existing.find(
        (b) =>
          b.metadata.labels?.[TEMPLATE_GENERATION_LABEL] === String(record.generation) &&
          b.metadata.labels?.[TEMPLATE_DISK_LABEL] === d.name,
      );
      if (like)
        add(
          wantedBase(
            tpl,
            record.generation,
            {
              name: d.name,
              size: like.spec.provisionedSize,
              format: like.spec.format ?? "qcow2",
              image: like.spec.source?.image?.url ?? "",
            },
            node,
          ),
        );
    }
  }
  return [...wanted.values()];
}

/**
 * Bases to delete: of a template being deleted, all; else those of an earlier generation (or
 * on a node no longer prefetched to) that nothing wants and no VMDisk is still made from.
 */
export function unwantedBases<T extends VMDisk>(
  tpl: VMTemplate,
  existing: readonly T[],
  wanted: readonly WantedBase[],
  allDisks: readonly VMDisk[],
  children: readonly VirtualMachine[] = [],
): T[] {
  const keep = new Set(wanted.map((w) => w.name));
  const current = String(tpl.metadata.generation ?? 1);
  // A VM not placed yet will want its generation's base made like these: they stay till then.
  const pending = new Set(
    children
      .filter((vm) => vm.status?.template?.uid === tpl.metadata.uid && !placedNode(vm))
      .map((vm) => String(vm.status?.template?.generation)),
  );
  return existing.filter((b) => {
    if (b.metadata.deletionTimestamp) return false;
    if (tpl.metadata.deletionTimestamp) return true;
    if (keep.has(b.metadata.name)) return false;
    // The current generation's stay where they are (the next VM there starts at once).
    const generation = b.metadata.labels?.[TEMPLATE_GENERATION_LABEL];
    if (generation === current || (generation !== undefined && pending.has(generation))) return false;
    return !allDisks.some(
      (d) =>
        d.spec.source?.disk?.name === b.metadata.name &&
        (d.spec.source.disk.linked === true || d.status?.phase !== "Ready"),
    );
  });
}

/** VMs of the template's namespace made from it. */
export function childrenOf<T extends VirtualMachine>(tpl: VMTemplate, vms: readonly T[]): T[] {
  return vms.filter(
    (vm) =>
      vm.metadata.namespace === tpl.metadata.namespace && vm.spec.source?.template === tpl.metadata.name,
  );
}

/** Why the template's shape cannot be made (a disk too large for a VMDisk), or undefined. */
export function shapeRefusal(tpl: VMTemplate): { reason: string; message: string } | undefined {
  const max = parseQuantity(MAX_PROVISIONED_SIZE);
  const big = (tpl.spec.template?.disks ?? []).find((d) => parseQuantity(d.size) > max);
  return big
    ? {
        reason: "DiskTooLarge",
        message: `disk ${big.name}: ${big.size} is more than a VMDisk may have, ${MAX_PROVISIONED_SIZE}`,
      }
    : undefined;
}

export type TemplatePhase = {
  phase: "Pending" | "Ready" | "Failed";
  progress?: number;
  reason: string;
  message: string;
};

/** Where a template stands from its current generation's bases (and, made from a VM, whether it took it). */
export function templatePhase(
  tpl: VMTemplate,
  bases: readonly VMDisk[],
  waiting?: { reason: string; message: string },
  notMadeYet: readonly string[] = [],
): TemplatePhase {
  const refused = shapeRefusal(tpl);
  if (refused) return { phase: "Failed", ...refused };
  if (waiting) return { phase: "Pending", ...waiting };
  if (notMadeYet.length)
    return {
      phase: "Pending",
      progress: 0,
      reason: "ImportingBases",
      message: `making ${notMadeYet.join(", ")}`,
    };
  const current = String(tpl.metadata.generation ?? 1);
  const now = tpl.spec.template
    ? bases.filter((b) => b.metadata.labels?.[TEMPLATE_GENERATION_LABEL] === current)
    : bases;
  const failed = now.find((b) => b.status?.phase === "Illegal");
  if (failed) {
    const why =
      failed.status?.conditions?.find((c) => c.type === "Stalled" && c.status === "True")?.message ??
      failed.status?.lastOperation?.message ??
      "its import failed";
    return {
      phase: "Failed",
      reason: "BaseFailed",
      message: `base ${failed.metadata.name} on node ${failed.spec.nodeName ?? failed.status?.nodeName ?? "?"}: ${why}`,
    };
  }
  const importing = now.filter((b) => b.status?.phase !== "Ready");
  if (importing.length) {
    const progress = Math.min(...importing.map((b) => b.status?.progress ?? 0));
    return {
      phase: "Pending",
      progress,
      reason: "ImportingBases",
      message: `importing ${importing.map((b) => b.metadata.name).join(", ")} (${progress}%)`,
    };
  }
  const message = now.length
    ? `bases ready: ${now.map((b) => b.metadata.name).join(", ")}`
    : tpl.spec.template
      ? "ready; its bases are fetched to a node when the first VM made from the template is placed there"
      : "ready";
  return { phase: "Ready", reason: "Ready", message };
}
