// Templates (seed 000 vTemplates): set-as-template, create-from-template (N VMs, or their YAML
// for Git with -o yaml), children, targets. Only new objects are written.
import yaml from "js-yaml";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { buildTemplateFromVm, buildVmsFromTemplate, splitList } from "./builders.ts";
import { PluginError } from "./errors.ts";
import { judgeTemplate, judgeVmReady } from "./judges.ts";
import { resourceName, TEMPLATE, VM } from "./kinds.ts";
import { runStrategyOf } from "./patches.ts";
import { STATUS_HEADERS, STATUS_WIDE_HEADERS, statusRow, templateChildren, templateTargets } from "./rows.ts";
import { renderTable } from "./table.ts";
import { printObjects, type VerbContext } from "./verbs-base.ts";

/** Run strategies that keep a VM stopped, as a template's source VM must be. */
const STAYS_STOPPED = ["Halted", "Manual", "Once"];

export async function setAsTemplate(ctx: VerbContext): Promise<void> {
  const vmName = ctx.cmd.args[0] as string;
  const name = ctx.flags.name as string;
  const vm = await ctx.get<VirtualMachine>(VM, vmName);
  const strategy = runStrategyOf(vm);
  if (!STAYS_STOPPED.includes(strategy))
    throw new PluginError(
      `VM "${vmName}" has runStrategy ${strategy}: a template's VM must stay stopped ` +
        `(run "kubectl vm stop ${vmName}" first, which sets Halted)`,
    );
  const description = ctx.flags.description as string | undefined;
  const created = await ctx.create(TEMPLATE, buildTemplateFromVm(name, vmName, ctx.ns, description));
  ctx.reportWrite(TEMPLATE, created, "created");
  const generation = created.metadata.generation ?? 1;
  await ctx.maybeWait([
    { kind: TEMPLATE, name, goal: "to be Ready", judge: (t: VMTemplate) => judgeTemplate(t, generation) },
  ]);
  ctx.conditionMet(TEMPLATE, name);
}

/** VMs as -o json (a List) or -o yaml (a document each, as Git keeps them) print them. */
function printVms(ctx: VerbContext, format: "json" | "yaml", vms: VirtualMachine[]): void {
  if (format === "json") printObjects(ctx.io.out, "json", VM, vms, true);
  else ctx.io.out(vms.map((vm) => yaml.dump(vm, { noRefs: true, lineWidth: -1 })).join("---\n"));
}

export async function createFromTemplate(ctx: VerbContext): Promise<void> {
  const template = ctx.cmd.args[0] as string;
  const f = ctx.flags;
  const runStrategy = f["run-strategy"] as VirtualMachine["spec"]["runStrategy"] | undefined;
  const vms = buildVmsFromTemplate({
    template,
    name: f.name as string,
    namespace: ctx.ns,
    amount: (f.amount as number | undefined) ?? 1,
    start: (f.start as number | undefined) ?? 1,
    nodes: splitList(f.nodes as string | undefined),
    ...(typeof f.description === "string" ? { description: f.description } : {}),
    ...(runStrategy ? { runStrategy } : {}),
  });
  const output = ctx.output;
  const printed = output === "yaml" || output === "json" ? output : undefined;
  // -o yaml|json without --dry-run prints the VMs for Git and writes nothing.
  if (printed && !ctx.cmd.global.dryRun) return printVms(ctx, printed, vms);
  await ctx.get<VMTemplate>(TEMPLATE, template);
  const created: VirtualMachine[] = [];
  for (const vm of vms) {
    const made = await ctx.create(VM, vm);
    created.push(made);
    if (!printed) ctx.reportWrite(VM, made, "created");
  }
  if (printed) printVms(ctx, printed, created); // the server's answer to the dry run
  await ctx.maybeWait(
    created.map((vm) => {
      const request = { generation: vm.metadata.generation ?? 1 };
      return {
        kind: VM,
        name: vm.metadata.name,
        goal: "to be Ready",
        judge: (v: VirtualMachine) => judgeVmReady(v, request),
      };
    }),
  );
  for (const vm of created) ctx.conditionMet(VM, vm.metadata.name);
}

export async function children(ctx: VerbContext): Promise<void> {
  const template = ctx.cmd.args[0] as string;
  const names = templateChildren(await ctx.get<VMTemplate>(TEMPLATE, template));
  const output = ctx.output;
  if (output === "name") return ctx.io.out(names.map((n) => `${resourceName(VM, n)}\n`).join(""));
  const byName = new Map((await ctx.list<VirtualMachine>(VM)).map((vm) => [vm.metadata.name, vm]));
  const vms = names.map((n) => byName.get(n)).filter((vm): vm is VirtualMachine => !!vm);
  if (output && output !== "wide") return printObjects(ctx.io.out, output, VM, vms, true);
  if (vms.length === 0) return ctx.io.out(`No VMs made from template ${template}.\n`);
  const now = ctx.now();
  ctx.io.out(
    renderTable(
      output === "wide" ? STATUS_WIDE_HEADERS : STATUS_HEADERS,
      vms.map((vm) => statusRow(vm, now, output === "wide")),
    ),
  );
}

export async function targets(ctx: VerbContext): Promise<void> {
  const template = ctx.cmd.args[0] as string;
  const nodes = templateTargets(await ctx.get<VMTemplate>(TEMPLATE, template));
  const output = ctx.output;
  if (output === "name") return ctx.io.out(nodes.map((n) => `node/${n}\n`).join(""));
  if (output === "json") return ctx.io.out(`${JSON.stringify(nodes, null, 4)}\n`);
  if (output === "yaml") return ctx.io.out(yaml.dump(nodes));
  if (nodes.length === 0) return ctx.io.out(`No node can run a VM of template ${template} now.\n`);
  ctx.io.out(
    renderTable(
      ["NODE"],
      nodes.map((n) => [n]),
    ),
  );
}
