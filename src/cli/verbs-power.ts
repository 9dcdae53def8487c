// Power verbs (seed 004): start, stop, restart, pause, unpause, freeze, unfreeze, and the
// guest's file systems (seed 002): fsfreeze, fsthaw. Each is one merge patch of the VM; with
// --wait it follows the VM until the node agent has done it.

import {
  FSFREEZE_ANNOTATION,
  FSTHAW_ANNOTATION,
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
} from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import { judgeGuestFilesystems, judgePower, type PowerGoal } from "./judges.ts";
import { DISK, resourceName, VM } from "./kinds.ts";
import {
  freezePatch,
  frozenWarning,
  fsPatch,
  type GraceOptions,
  pausePatch,
  restartPatch,
  startPatch,
  stopPatch,
  unfreezePatch,
  type VmMergePatch,
} from "./patches.ts";
import { conditionsOf, type VerbContext } from "./verbs-base.ts";

const GOALS: Record<PowerGoal, string> = {
  start: "to be Running",
  stop: "to be off",
  restart: "to reboot and be Running",
  pause: "to be Paused",
  unpause: "to be Running",
  freeze: "to be Frozen",
};

function graceOf(ctx: VerbContext): GraceOptions {
  const grace = ctx.flags["grace-period"];
  return {
    force: ctx.flags.force === true,
    ...(typeof grace === "number" ? { gracePeriodSeconds: grace } : {}),
  };
}

/** Says the write, then waits for GOAL when asked, judging the VM against what was written. */
async function reportAndWait(
  ctx: VerbContext,
  goal: PowerGoal,
  before: VirtualMachine,
  after: VirtualMachine,
  value: string | undefined,
  what: string,
): Promise<void> {
  ctx.reportWrite(VM, after, what);
  const name = after.metadata.name;
  const request = {
    generation: after.metadata.generation ?? 0,
    before: conditionsOf(before),
    ...(value ? { value } : {}),
  };
  await ctx.maybeWait([
    { kind: VM, name, goal: GOALS[goal], judge: (vm: VirtualMachine) => judgePower(goal, vm, request) },
  ]);
  ctx.conditionMet(VM, name);
}

function warnFrozen(ctx: VerbContext, vm: VirtualMachine, verb: "start" | "restart"): void {
  const warning = frozenWarning(vm, verb);
  if (warning) ctx.io.err(`warning: ${warning}\n`);
}

const annotation = (patch: VmMergePatch, key: string) => patch.metadata?.annotations?.[key] ?? undefined;

export async function start(ctx: VerbContext): Promise<void> {
  const name = ctx.cmd.args[0] as string;
  const cdrom = ctx.flags.cdrom as string | undefined;
  // A VMDisk named wrong would leave the VM waiting for it: say NotFound now.
  if (cdrom !== undefined && !cdrom.startsWith("/")) await ctx.get(DISK, cdrom);
  const options = { ...(cdrom !== undefined ? { cdrom } : {}), once: ctx.flags.once === true };
  const { before, after, patch } = await ctx.readAndPatchVm(name, (vm) => startPatch(vm, ctx.now(), options));
  warnFrozen(ctx, before, "start");
  await reportAndWait(ctx, "start", before, after, annotation(patch, START_ANNOTATION), "start requested");
}

export async function stop(ctx: VerbContext): Promise<void> {
  const name = ctx.cmd.args[0] as string;
  const grace = graceOf(ctx);
  const { before, after, patch } = await ctx.readAndPatchVm(name, (vm) => stopPatch(vm, ctx.now(), grace));
  await reportAndWait(ctx, "stop", before, after, annotation(patch, STOP_ANNOTATION), "stop requested");
}

export async function restart(ctx: VerbContext): Promise<void> {
  const name = ctx.cmd.args[0] as string;
  const grace = graceOf(ctx);
  const { before, after, patch } = await ctx.readAndPatchVm(name, () => restartPatch(ctx.now(), grace));
  warnFrozen(ctx, before, "restart");
  await reportAndWait(
    ctx,
    "restart",
    before,
    after,
    annotation(patch, RESTART_ANNOTATION),
    "restart requested",
  );
}

/** pause / unpause: one PATCH and no read (the fastest verbs; the patch answers NotFound itself). */
export async function pause(ctx: VerbContext, paused: boolean): Promise<void> {
  const after = await ctx.patchVm(ctx.cmd.args[0] as string, pausePatch(paused));
  await reportAndWait(
    ctx,
    paused ? "pause" : "unpause",
    after,
    after,
    undefined,
    paused ? "paused" : "unpaused",
  );
}

export async function freeze(ctx: VerbContext): Promise<void> {
  const after = await ctx.patchVm(ctx.cmd.args[0] as string, freezePatch(ctx.now(), graceOf(ctx)));
  await reportAndWait(ctx, "freeze", after, after, undefined, "frozen (stop requested)");
}

export async function unfreeze(ctx: VerbContext): Promise<void> {
  ctx.reportWrite(VM, await ctx.patchVm(ctx.cmd.args[0] as string, unfreezePatch()), "unfrozen");
}

/** fsfreeze / fsthaw: waits for the guest agent's answer (30 s unless --wait says otherwise). */
export async function guestFilesystems(ctx: VerbContext, verb: "fsfreeze" | "fsthaw"): Promise<void> {
  const name = ctx.cmd.args[0] as string;
  const patch = fsPatch(verb, ctx.now());
  const after = await ctx.patchVm(name, patch);
  const value = annotation(patch, verb === "fsfreeze" ? FSFREEZE_ANNOTATION : FSTHAW_ANNOTATION) as string;
  ctx.reportWrite(VM, after, `${verb} requested`);
  const answer = verb === "fsfreeze" ? "freeze" : "thaw";
  await ctx.maybeWait([
    {
      kind: VM,
      name,
      goal: `to answer the file-system ${answer} (guest agent)`,
      judge: (vm: VirtualMachine) => judgeGuestFilesystems(answer, vm, value),
    },
  ]);
  if (ctx.waitMs() !== undefined && !ctx.output)
    ctx.io.out(`${resourceName(VM, name)} file systems ${verb === "fsfreeze" ? "frozen" : "thawed"}\n`);
}
