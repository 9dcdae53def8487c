// The verbs: read through the API server, build with builders.ts, write, print. Every write is
// a create or a merge patch of spec/annotations (what the `edit` role allows), dry-run capable.
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import yaml from "js-yaml";
import { GROUP, VERSION } from "../api/common.ts";
import { RUN_STRATEGIES, type VirtualMachine } from "../api/virtualmachine.ts";
import type { VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { type OutputFormat, type ParsedCommand, UsageError } from "./args.ts";
import {
  buildRestore,
  buildSnapshot,
  buildVmsFromTemplate,
  type PowerVerb,
  powerPatch,
  SNAPSHOT_HEADERS,
  STATUS_HEADERS,
  STATUS_WIDE_HEADERS,
  snapshotRow,
  splitList,
  statusRow,
  templateChildren,
  templateTargets,
} from "./builders.ts";
import type { PluginClient } from "./client.ts";
import { renderTable } from "./table.ts";

type Kind = { kind: string; plural: string };
const VM: Kind = { kind: "VirtualMachine", plural: "virtualmachines" };
const SNAPSHOT: Kind = { kind: "VMSnapshot", plural: "vmsnapshots" };
const RESTORE: Kind = { kind: "VMRestore", plural: "vmrestores" };
const TEMPLATE: Kind = { kind: "VMTemplate", plural: "vmtemplates" };

interface Obj {
  kind?: string;
  metadata: { name: string };
}

/** kubectl's resource/name: "virtualmachine.vm.libvirt-operator.io/web". */
function resourceName(kind: Kind, name: string): string {
  return `${kind.kind.toLowerCase()}.${GROUP}/${name}`;
}

/** Prints objects as -o json|yaml|name want them; a list when LIST, one object otherwise. */
function printObjects(
  out: (s: string) => void,
  format: OutputFormat,
  kind: Kind,
  objs: Obj[],
  list: boolean,
) {
  if (format === "name") {
    for (const o of objs) out(`${resourceName(kind, o.metadata.name)}\n`);
    return;
  }
  const doc =
    list || objs.length !== 1
      ? { apiVersion: "v1", kind: "List", items: objs, metadata: { resourceVersion: "" } }
      : objs[0];
  out(
    format === "json" ? `${JSON.stringify(doc, null, 4)}\n` : yaml.dump(doc, { noRefs: true, lineWidth: -1 }),
  );
}

export class Verbs {
  private readonly client: PluginClient;
  private readonly cmd: ParsedCommand;
  private readonly out: (s: string) => void;
  private readonly now: () => Date;
  constructor(
    client: PluginClient,
    cmd: ParsedCommand,
    out: (s: string) => void,
    now: () => Date = () => new Date(),
  ) {
    this.client = client;
    this.cmd = cmd;
    this.out = out;
    this.now = now;
  }

  private get ns(): string {
    return this.client.namespace;
  }
  private get dryRun(): { dryRun?: string } {
    return this.cmd.global.dryRun ? { dryRun: "All" } : {};
  }
  private get dryRunNote(): string {
    return this.cmd.global.dryRun ? " (server dry run)" : "";
  }

  private async get<T>(kind: Kind, name: string): Promise<T> {
    return (await this.client.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: this.ns,
      plural: kind.plural,
      name,
    })) as T;
  }

  private async list<T>(kind: Kind, allNamespaces = false): Promise<T[]> {
    const c = this.client.custom;
    const res = (
      allNamespaces
        ? await c.listClusterCustomObject({ group: GROUP, version: VERSION, plural: kind.plural })
        : await c.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: this.ns,
            plural: kind.plural,
          })
    ) as { items: T[] };
    return res.items;
  }

  private async create(kind: Kind, body: Obj): Promise<Obj> {
    return (await this.client.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: this.ns,
      plural: kind.plural,
      body,
      ...this.dryRun,
    })) as Obj;
  }

  private reportWrite(kind: Kind, obj: Obj, what: string): void {
    const format = this.cmd.global.output;
    if (format && format !== "wide") printObjects(this.out, format, kind, [obj], false);
    else this.out(`${resourceName(kind, obj.metadata.name)} ${what}${this.dryRunNote}\n`);
  }

  async run(): Promise<void> {
    const { verb, args } = this.cmd;
    // Refused rather than ignored: a script that asked to wait must not go on before the VM is ready.
    if (this.cmd.global.waitMs !== undefined) throw new UsageError("--wait is not implemented yet");
    switch (verb.name) {
      case "status":
        return this.status(args[0]);
      case "start":
      case "stop":
      case "restart":
      case "pause":
      case "unpause":
        return this.power(verb.name, args[0] as string);
      case "snapshot":
        return this.snapshot(args[0] as string);
      case "snapshots":
        return this.snapshots(args[0] as string);
      case "restore":
        return this.restore(args[0] as string, args[1] as string);
      case "create-from-template":
        return this.createFromTemplate(args[0] as string);
      case "children":
        return this.children(args[0] as string);
      case "targets":
        return this.targets(args[0] as string);
      default:
        throw new UsageError(`"kubectl vm ${verb.name}" is not implemented yet`);
    }
  }

  private async status(name: string | undefined): Promise<void> {
    const { output, allNamespaces } = this.cmd.global;
    const vms = name
      ? [await this.get<VirtualMachine>(VM, name)]
      : await this.list<VirtualMachine>(VM, allNamespaces);
    if (output && output !== "wide") return printObjects(this.out, output, VM, vms, !name);
    if (vms.length === 0) {
      this.out(allNamespaces ? "No resources found\n" : `No resources found in ${this.ns} namespace.\n`);
      return;
    }
    const wide = output === "wide";
    const now = this.now();
    const headers = wide ? STATUS_WIDE_HEADERS : STATUS_HEADERS;
    const rows = vms.map((vm) => statusRow(vm, now, wide));
    this.out(
      allNamespaces
        ? renderTable(
            ["NAMESPACE", ...headers],
            rows.map((r, i) => [vms[i]?.metadata.namespace ?? "", ...r]),
          )
        : renderTable(headers, rows),
    );
  }

  private async power(verb: PowerVerb, name: string): Promise<void> {
    const vm = await this.get<VirtualMachine>(VM, name);
    const body = powerPatch(verb, vm, this.now());
    const patched = (await this.client.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: this.ns, plural: VM.plural, name, body, ...this.dryRun },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as Obj;
    // TODO(--wait): watch status.printableStatus / powerRequestHandled until the request is done.
    this.reportWrite(VM, patched, "patched");
  }

  private async snapshot(vmName: string): Promise<void> {
    const f = this.cmd.flags;
    // A snapshot of a missing VM would sit InProgress forever; say NotFound now, like kubectl.
    await this.get<VirtualMachine>(VM, vmName);
    const body = buildSnapshot(
      vmName,
      this.ns,
      {
        name: f.name as string | undefined,
        memory: f.memory === true,
        consistent: f.consistent === true,
        sticky: f.sticky === true,
        description: f.description as string | undefined,
      },
      this.now(),
    );
    this.reportWrite(SNAPSHOT, await this.create(SNAPSHOT, body), "created");
  }

  private async snapshots(vmName: string): Promise<void> {
    await this.get<VirtualMachine>(VM, vmName);
    const snaps = (await this.list<VMSnapshot>(SNAPSHOT)).filter((s) => s.spec.vmName === vmName);
    const output = this.cmd.global.output;
    if (output && output !== "wide") return printObjects(this.out, output, SNAPSHOT, snaps, true);
    if (snaps.length === 0) return this.out(`No snapshots of ${vmName} in ${this.ns} namespace.\n`);
    const now = this.now();
    this.out(
      renderTable(
        SNAPSHOT_HEADERS,
        snaps.map((s) => snapshotRow(s, now)),
      ),
    );
  }

  private async restore(vmName: string, snapshotName: string): Promise<void> {
    const snap = await this.get<VMSnapshot>(SNAPSHOT, snapshotName);
    if (snap.spec.vmName !== vmName)
      throw new UsageError(`snapshot "${snapshotName}" is of VM "${snap.spec.vmName}", not "${vmName}"`);
    this.reportWrite(
      RESTORE,
      await this.create(RESTORE, buildRestore(vmName, snapshotName, this.ns, this.now())),
      "created",
    );
  }

  private async createFromTemplate(template: string): Promise<void> {
    const f = this.cmd.flags;
    if (typeof f.name !== "string") throw new UsageError(`"kubectl vm create-from-template" needs --name`);
    const runStrategy = f["run-strategy"] as string | undefined;
    if (runStrategy !== undefined && !(RUN_STRATEGIES as readonly string[]).includes(runStrategy))
      throw new UsageError(`--run-strategy must be one of ${RUN_STRATEGIES.join(", ")}`);
    const vms = buildVmsFromTemplate({
      template,
      name: f.name,
      namespace: this.ns,
      amount: (f.amount as number | undefined) ?? 1,
      start: (f.start as number | undefined) ?? 1,
      nodes: splitList(f.nodes as string | undefined),
      description: f.description as string | undefined,
      runStrategy: runStrategy as VirtualMachine["spec"]["runStrategy"],
    });
    const output = this.cmd.global.output;
    // -o yaml|json without --dry-run prints the VMs for Git and writes nothing.
    if ((output === "yaml" || output === "json") && !this.cmd.global.dryRun) {
      if (output === "json") return printObjects(this.out, output, VM, vms, true);
      this.out(vms.map((vm) => yaml.dump(vm, { noRefs: true, lineWidth: -1 })).join("---\n"));
      return;
    }
    await this.get<VMTemplate>(TEMPLATE, template);
    for (const vm of vms) this.reportWrite(VM, await this.create(VM, vm), "created");
  }

  private async children(template: string): Promise<void> {
    const names = templateChildren(await this.get<VMTemplate>(TEMPLATE, template));
    const output = this.cmd.global.output;
    if (output === "name") return this.out(names.map((n) => `${resourceName(VM, n)}\n`).join(""));
    const byName = new Map((await this.list<VirtualMachine>(VM)).map((vm) => [vm.metadata.name, vm]));
    const vms = names.map((n) => byName.get(n)).filter((vm): vm is VirtualMachine => !!vm);
    if (output && output !== "wide") return printObjects(this.out, output, VM, vms, true);
    if (vms.length === 0) return this.out(`No VMs made from template ${template}.\n`);
    const now = this.now();
    this.out(
      renderTable(
        output === "wide" ? STATUS_WIDE_HEADERS : STATUS_HEADERS,
        vms.map((vm) => statusRow(vm, now, output === "wide")),
      ),
    );
  }

  private async targets(template: string): Promise<void> {
    const nodes = templateTargets(await this.get<VMTemplate>(TEMPLATE, template));
    const output = this.cmd.global.output;
    if (output === "name") return this.out(nodes.map((n) => `node/${n}\n`).join(""));
    if (output === "json") return this.out(`${JSON.stringify(nodes, null, 4)}\n`);
    if (output === "yaml") return this.out(yaml.dump(nodes));
    if (nodes.length === 0) return this.out(`No node can run a VM of template ${template} now.\n`);
    this.out(
      renderTable(
        ["NODE"],
        nodes.map((n) => [n]),
      ),
    );
  }
}
