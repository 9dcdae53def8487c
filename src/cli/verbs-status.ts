// status (seed 004 /vm/status and /vm/<name>/status/current) and stats (seed 003 load_stats):
// what the API server holds, or with --refresh / stats what the node reads right now.
import yaml from "js-yaml";
import { REFRESH_ANNOTATION } from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import { NODE_ANSWER_WAIT_MS } from "./commands.ts";
import { PluginError } from "./errors.ts";
import { judgeRefresh } from "./judges.ts";
import { VM } from "./kinds.ts";
import { refreshPatch } from "./patches.ts";
import { STATS_HEADERS, STATUS_HEADERS, STATUS_WIDE_HEADERS, statisticsRows, statusRow } from "./rows.ts";
import { renderTable } from "./table.ts";
import { printObjects, type VerbContext } from "./verbs-base.ts";

/**
 * Asks the VM's node to read the domain and its statistics now and waits for the answer; a user
 * who may only view gets the API server's Forbidden for the patch. Returns the VM as answered.
 */
async function refreshed(ctx: VerbContext, name: string): Promise<VirtualMachine> {
  const patch = refreshPatch(ctx.now());
  await ctx.patchVm(name, patch);
  const value = patch.metadata?.annotations?.[REFRESH_ANNOTATION] as string;
  await ctx.waitFor(
    [
      {
        kind: VM,
        name,
        goal: "to be read by its node",
        judge: (vm: VirtualMachine) => judgeRefresh(vm, value),
      },
    ],
    ctx.cmd.global.waitMs ?? NODE_ANSWER_WAIT_MS,
  );
  return ctx.get<VirtualMachine>(VM, name);
}

/** VMS as a status table (with a NAMESPACE column across namespaces), or as -o asks. */
export function printStatus(ctx: VerbContext, vms: VirtualMachine[], single: boolean): void {
  const { output, allNamespaces } = ctx.cmd.global;
  if (output && output !== "wide") {
    printObjects(ctx.io.out, output, VM, vms, !single);
    return;
  }
  if (vms.length === 0) {
    ctx.io.out(allNamespaces ? "No resources found\n" : `No resources found in ${ctx.ns} namespace.\n`);
    return;
  }
  const wide = output === "wide";
  const now = ctx.now();
  const headers = wide ? STATUS_WIDE_HEADERS : STATUS_HEADERS;
  const rows = vms.map((vm) => statusRow(vm, now, wide));
  ctx.io.out(
    allNamespaces
      ? renderTable(
          ["NAMESPACE", ...headers],
          rows.map((r, i) => [vms[i]?.metadata.namespace ?? "", ...r]),
        )
      : renderTable(headers, rows),
  );
}

export async function status(ctx: VerbContext): Promise<void> {
  const name = ctx.cmd.args[0];
  if (!name) return printStatus(ctx, await ctx.list<VirtualMachine>(VM, ctx.cmd.global.allNamespaces), false);
  const vm =
    ctx.flags.refresh === true ? await refreshed(ctx, name) : await ctx.get<VirtualMachine>(VM, name);
  printStatus(ctx, [vm], true);
}

export async function stats(ctx: VerbContext): Promise<void> {
  const name = ctx.cmd.args[0] as string;
  const vm = await refreshed(ctx, name);
  const statistics = vm.status?.statistics;
  if (!statistics || Object.keys(statistics).length === 0)
    throw new PluginError(
      `VM "${name}" has no statistics: it is ${vm.status?.printableStatus ?? "not placed yet"} (figures come from a running domain)`,
    );
  const output = ctx.output;
  if (output === "json") return ctx.io.out(`${JSON.stringify(statistics, null, 4)}\n`);
  if (output === "yaml") return ctx.io.out(yaml.dump(statistics, { noRefs: true, lineWidth: -1 }));
  if (output === "name") return printObjects(ctx.io.out, "name", VM, [vm], false);
  ctx.io.out(renderTable(STATS_HEADERS, statisticsRows(statistics, ctx.now())));
}
