// Devices (seed 002): the CD-ROM's medium (cdrom insert / eject) and the VM's disks (disk attach,
// activate, deactivate, detach). Spec changes: Argo CD / Flux see them as drift. spec.disks is
// replaced whole, guarded by the resourceVersion read (409 Conflict → read again).
import type { VirtualMachine } from "../api/virtualmachine.ts";
import { judgeVmReady } from "./judges.ts";
import { DISK, VM } from "./kinds.ts";
import {
  type AttachOptions,
  cdromEjectPatch,
  cdromInsertPatch,
  diskActivePatch,
  diskAttachPatch,
  diskDetachPatch,
  type VmMergePatch,
} from "./patches.ts";
import { conditionsOf, type VerbContext } from "./verbs-base.ts";

/** Reports a spec change and, with --wait, waits until the VM is Ready at the new generation. */
async function reportAndWait(ctx: VerbContext, before: VirtualMachine, after: VirtualMachine, what: string) {
  ctx.reportWrite(VM, after, what);
  const name = after.metadata.name;
  const request = { generation: after.metadata.generation ?? 0, before: conditionsOf(before) };
  await ctx.maybeWait([
    { kind: VM, name, goal: "to apply the change", judge: (vm: VirtualMachine) => judgeVmReady(vm, request) },
  ]);
  ctx.conditionMet(VM, name);
}

/** A single patch, no list involved: no read before it but the one the wait needs. */
async function patchOnce(ctx: VerbContext, patch: VmMergePatch, what: string) {
  const after = await ctx.patchVm(ctx.cmd.args[0] as string, patch);
  await reportAndWait(ctx, after, after, what);
}

export async function cdromInsert(ctx: VerbContext): Promise<void> {
  const media = ctx.cmd.args[1] as string;
  // A VMDisk named wrong would leave the drive waiting for it: say NotFound now.
  if (!media.startsWith("/")) await ctx.get(DISK, media);
  await patchOnce(ctx, cdromInsertPatch(media), `cdrom: ${media} inserted`);
}

export async function cdromEject(ctx: VerbContext): Promise<void> {
  await patchOnce(ctx, cdromEjectPatch(), "cdrom: ejected");
}

export async function diskAttach(ctx: VerbContext): Promise<void> {
  const [vmName, disk] = ctx.cmd.args as [string, string];
  await ctx.get(DISK, disk);
  const f = ctx.flags;
  const options: AttachOptions = {
    ...(typeof f.name === "string" ? { name: f.name } : {}),
    ...(typeof f.bus === "string" ? { bus: f.bus as AttachOptions["bus"] } : {}),
    ...(typeof f["boot-order"] === "number" ? { bootOrder: f["boot-order"] } : {}),
  };
  const { before, after } = await ctx.readAndPatchVm(vmName, (vm) => diskAttachPatch(vm, disk, options));
  await reportAndWait(ctx, before, after, `disk ${options.name ?? disk} attached`);
}

export async function diskActive(ctx: VerbContext, active: boolean): Promise<void> {
  const [vmName, disk] = ctx.cmd.args as [string, string];
  const { before, after } = await ctx.readAndPatchVm(vmName, (vm) => diskActivePatch(vm, disk, active));
  await reportAndWait(ctx, before, after, `disk ${disk} ${active ? "activated" : "deactivated"}`);
}

export async function diskDetach(ctx: VerbContext): Promise<void> {
  const [vmName, disk] = ctx.cmd.args as [string, string];
  const { before, after } = await ctx.readAndPatchVm(vmName, (vm) => diskDetachPatch(vm, disk));
  await reportAndWait(ctx, before, after, `disk ${disk} detached`);
}
