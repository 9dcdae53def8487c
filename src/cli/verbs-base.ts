// What every verb needs: reads and writes through the API server (creates and JSON merge patches
// only, --dry-run=server honoured), printing objects as kubectl does, and waiting (--wait).
import yaml from "js-yaml";
import { GROUP, VERSION } from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { OutputFormat, ParsedCommand } from "./args.ts";
import type { PluginClient } from "./client.ts";
import { formatError, httpStatusOf } from "./errors.ts";
import type { Condition } from "./judges.ts";
import { type Kind, resourceName, VM } from "./kinds.ts";
import type { VmMergePatch } from "./patches.ts";
import { type WaitTarget, waitFor } from "./wait.ts";

export interface Obj {
  kind?: string;
  metadata: { name: string; namespace?: string; generation?: number; resourceVersion?: string };
}

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** Times a list patch is tried again after 409 Conflict (someone changed the VM meanwhile). */
const CONFLICT_RETRIES = 3;

/** Prints objects as -o json|yaml|name want them; a List when LIST, one object otherwise. */
export function printObjects(
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

export class VerbContext {
  readonly client: PluginClient;
  readonly cmd: ParsedCommand;
  readonly io: Output;
  readonly now: () => Date;

  constructor(client: PluginClient, cmd: ParsedCommand, io: Output, now: () => Date = () => new Date()) {
    this.client = client;
    this.cmd = cmd;
    this.io = io;
    this.now = now;
  }

  get ns(): string {
    return this.client.namespace;
  }
  get flags(): ParsedCommand["flags"] {
    return this.cmd.flags;
  }
  get output(): OutputFormat | undefined {
    return this.cmd.global.output;
  }
  private get dryRun(): { dryRun?: string } {
    return this.cmd.global.dryRun ? { dryRun: "All" } : {};
  }

  private ref(kind: Kind) {
    return { group: GROUP, version: VERSION, namespace: this.ns, plural: kind.plural };
  }

  async get<T>(kind: Kind, name: string): Promise<T> {
    return (await this.client.custom.getNamespacedCustomObject({ ...this.ref(kind), name })) as T;
  }

  async list<T>(kind: Kind, allNamespaces = false): Promise<T[]> {
    const c = this.client.custom;
    const res = (
      allNamespaces
        ? await c.listClusterCustomObject({ group: GROUP, version: VERSION, plural: kind.plural })
        : await c.listNamespacedCustomObject(this.ref(kind))
    ) as { items: T[] };
    return res.items;
  }

  async create<T extends Obj>(kind: Kind, body: T): Promise<T> {
    return (await this.client.custom.createNamespacedCustomObject({
      ...this.ref(kind),
      body,
      ...this.dryRun,
    })) as T;
  }

  async delete(kind: Kind, name: string): Promise<void> {
    await this.client.custom.deleteNamespacedCustomObject({ ...this.ref(kind), name, ...this.dryRun });
  }

  /** A JSON merge patch of VM NAME (spec and annotations only). */
  async patchVm(name: string, body: VmMergePatch): Promise<VirtualMachine> {
    return (await this.client.custom.patchNamespacedCustomObject({
      ...this.ref(VM),
      name,
      body,
      ...this.dryRun,
    })) as VirtualMachine;
  }

  /**
   * Reads VM NAME, builds the patch from it and sends it. A patch carrying the resourceVersion
   * read (a list replaced) meets 409 Conflict when the VM changed meanwhile: read and build again.
   * Returns the VM as read (conditions before the write) and as patched.
   */
  async readAndPatchVm(
    name: string,
    build: (vm: VirtualMachine) => VmMergePatch,
  ): Promise<{ before: VirtualMachine; after: VirtualMachine; patch: VmMergePatch }> {
    for (let attempt = 0; ; attempt++) {
      const before = await this.get<VirtualMachine>(VM, name);
      const patch = build(before);
      try {
        return { before, after: await this.patchVm(name, patch), patch };
      } catch (err) {
        if (httpStatusOf(err) !== 409 || attempt >= CONFLICT_RETRIES) throw err;
      }
    }
  }

  /** "virtualmachine.vm.libvirt-operator.io/web patched", or the object when -o asks for it. */
  reportWrite(kind: Kind, obj: Obj, what: string): void {
    const format = this.output;
    if (format && format !== "wide") printObjects(this.io.out, format, kind, [obj], false);
    else
      this.io.out(
        `${resourceName(kind, obj.metadata.name)} ${what}${this.cmd.global.dryRun ? " (server dry run)" : ""}\n`,
      );
  }

  /** How long to wait: --wait's value, else the verb's own default, else not at all. */
  waitMs(): number | undefined {
    if (this.cmd.global.dryRun) return undefined; // nothing was written to wait for
    return this.cmd.global.waitMs ?? this.cmd.verb.waitsByDefaultMs;
  }

  async waitFor(targets: WaitTarget[], timeoutMs: number): Promise<void> {
    const notes = await waitFor(targets, timeoutMs, {
      get: (kind, name) => this.get(kind, name),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      clock: () => performance.now(),
      progress: (line) => this.io.err(`${line}\n`),
      describeError: formatError,
    });
    for (const note of notes) this.io.err(`note: ${note}\n`);
  }

  /** After a wait, "… condition met" as kubectl wait says it (not with -o: its output is objects). */
  conditionMet(kind: Kind, name: string): void {
    if (this.waitMs() !== undefined && !this.output)
      this.io.out(`${resourceName(kind, name)} condition met\n`);
  }

  /** Waits for the targets when --wait (or the verb's default) asks for it. */
  async maybeWait(targets: WaitTarget[]): Promise<void> {
    const ms = this.waitMs();
    if (ms !== undefined) await this.waitFor(targets, ms);
  }
}

/** The conditions of an object as read before a write, for judging what the write caused. */
export function conditionsOf(obj: { status?: { conditions?: unknown } }): Condition[] | undefined {
  return obj.status?.conditions as Condition[] | undefined;
}
