// Snapshots (seeds 000, 003): snapshot, snapshots, delete-snapshot, restore, rotation (automatic
// snapshots), clone (a new VM from a snapshot). New objects, except rotation, which sets
// spec.snapshotPolicy.
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import { buildClone, buildRestore, buildSnapshot } from "./builders.ts";
import { PluginError } from "./errors.ts";
import { judgePhase, judgeVmReady } from "./judges.ts";
import { RESTORE, SNAPSHOT, VM } from "./kinds.ts";
import { rotationPatch } from "./patches.ts";
import { SNAPSHOT_HEADERS, snapshotRow } from "./rows.ts";
import { renderTable } from "./table.ts";
import { printObjects, type VerbContext } from "./verbs-base.ts";

/** Snapshot NAME, refused unless it is of VM (a name alone could be another VM's). */
async function snapshotOfVm(ctx: VerbContext, vmName: string, name: string): Promise<VMSnapshot> {
  const snap = await ctx.get<VMSnapshot>(SNAPSHOT, name);
  if (snap.spec.vmName !== vmName)
    throw new PluginError(`snapshot "${name}" is of VM "${snap.spec.vmName}", not of "${vmName}"`);
  return snap;
}

/** A snapshot to restore or clone from: one that failed holds nothing. */
function refuseFailed(snap: VMSnapshot): void {
  if (snap.status?.phase === "Failed")
    throw new PluginError(
      `snapshot "${snap.metadata.name}" failed, it holds nothing to use: ${snap.status.error ?? "no reason given"}`,
    );
}

export async function snapshot(ctx: VerbContext): Promise<void> {
  const vmName = ctx.cmd.args[0] as string;
  const f = ctx.flags;
  // A snapshot of a missing VM would sit InProgress forever; say NotFound now, like kubectl.
  await ctx.get<VirtualMachine>(VM, vmName);
  const body = buildSnapshot(
    vmName,
    ctx.ns,
    {
      ...(typeof f.name === "string" ? { name: f.name } : {}),
      memory: f.memory === true,
      consistent: f.consistent === true,
      sticky: f.sticky === true,
      ...(typeof f.description === "string" ? { description: f.description } : {}),
    },
    ctx.now(),
  );
  const created = await ctx.create(SNAPSHOT, body);
  ctx.reportWrite(SNAPSHOT, created, "created");
  const name = created.metadata.name;
  await ctx.maybeWait([{ kind: SNAPSHOT, name, goal: "to be taken", judge: judgePhase }]);
  ctx.conditionMet(SNAPSHOT, name);
}

export async function snapshots(ctx: VerbContext): Promise<void> {
  const vmName = ctx.cmd.args[0] as string;
  await ctx.get<VirtualMachine>(VM, vmName);
  const snaps = (await ctx.list<VMSnapshot>(SNAPSHOT)).filter((s) => s.spec.vmName === vmName);
  const output = ctx.output;
  if (output && output !== "wide") return printObjects(ctx.io.out, output, SNAPSHOT, snaps, true);
  if (snaps.length === 0) return ctx.io.out(`No snapshots of ${vmName} in ${ctx.ns} namespace.\n`);
  const now = ctx.now();
  ctx.io.out(
    renderTable(
      SNAPSHOT_HEADERS,
      snaps.map((s) => snapshotRow(s, now)),
    ),
  );
}

export async function deleteSnapshot(ctx: VerbContext): Promise<void> {
  const [vmName, name] = ctx.cmd.args as [string, string];
  const snap = await snapshotOfVm(ctx, vmName, name);
  await ctx.delete(SNAPSHOT, name);
  ctx.reportWrite(SNAPSHOT, snap, "deleted");
}

export async function restore(ctx: VerbContext): Promise<void> {
  const [vmName, snapshotName] = ctx.cmd.args as [string, string];
  refuseFailed(await snapshotOfVm(ctx, vmName, snapshotName));
  const created = await ctx.create(RESTORE, buildRestore(vmName, snapshotName, ctx.ns, ctx.now()));
  ctx.reportWrite(RESTORE, created, "created");
  const name = created.metadata.name;
  await ctx.maybeWait([
    { kind: RESTORE, name, goal: "to be restored", judge: (r: VMRestore) => judgePhase(r) },
  ]);
  ctx.conditionMet(RESTORE, name);
}

export async function rotation(ctx: VerbContext): Promise<void> {
  const f = ctx.flags;
  const patch =
    f.off === true
      ? rotationPatch("off")
      : rotationPatch({
          schedule: f.schedule as string,
          keep: f.keep as number,
          memory: f.memory === true,
          consistent: f.consistent === true,
        });
  const after = await ctx.patchVm(ctx.cmd.args[0] as string, patch);
  ctx.reportWrite(VM, after, f.off === true ? "automatic snapshots off" : "automatic snapshots set");
}

export async function clone(ctx: VerbContext): Promise<void> {
  const vmName = ctx.cmd.args[0] as string;
  const snapshotName = ctx.flags["from-snapshot"] as string;
  const newName = ctx.flags.to as string;
  refuseFailed(await snapshotOfVm(ctx, vmName, snapshotName));
  const created = await ctx.create(VM, buildClone(newName, snapshotName, ctx.ns));
  ctx.reportWrite(VM, created, "created");
  const request = { generation: created.metadata.generation ?? 1 };
  await ctx.maybeWait([
    {
      kind: VM,
      name: newName,
      goal: "to be Ready",
      judge: (vm: VirtualMachine) => judgeVmReady(vm, request),
    },
  ]);
  ctx.conditionMet(VM, newName);
}
