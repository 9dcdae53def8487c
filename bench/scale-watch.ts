// The VMs of one namespace as make bench-scale sees them: one list + watch (listed again and
// watched anew when the API server ends the watch), and when each VM was first seen Running
// and when it was gone. Nothing is polled per VM.
import { type CustomObjectsApi, type KubeConfig, Watch } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { placedNode } from "../src/controllers/vm-placement.ts";

export class VmTracker {
  /** printableStatus (or "-" before the first status) of every VM that exists. */
  readonly status = new Map<string, string>();
  readonly nodeOf = new Map<string, string>();
  /** When each VM was first seen Running (performance.now()). */
  readonly runningAt = new Map<string, number>();
  /** When each VM was seen deleted. */
  readonly goneAt = new Map<string, number>();
  /** The status of the last VM seen Running. */
  lastRunningStatus: Record<string, unknown> | undefined;
  private abort: { abort(): void } | undefined;
  private stopped = false;
  private readonly path: string;
  private readonly kc: KubeConfig;
  private readonly api: CustomObjectsApi;
  private readonly namespace: string;

  constructor(kc: KubeConfig, api: CustomObjectsApi, namespace: string) {
    this.kc = kc;
    this.api = api;
    this.namespace = namespace;
    this.path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/virtualmachines`;
  }

  async start(): Promise<void> {
    const list = (await this.api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: this.namespace,
      plural: "virtualmachines",
    })) as { items: VirtualMachine[]; metadata: { resourceVersion: string } };
    const now = performance.now();
    const listed = new Set(list.items.map((vm) => vm.metadata.name));
    // Gone while no watch was open.
    for (const name of this.status.keys()) if (!listed.has(name)) this.seen("DELETED", name, undefined, now);
    for (const vm of list.items) this.seen("MODIFIED", vm.metadata.name, vm, now);
    this.abort = await new Watch(this.kc).watch(
      this.path,
      { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true },
      (type: string, vm: VirtualMachine) => {
        if (type !== "BOOKMARK" && type !== "ERROR") this.seen(type, vm.metadata.name, vm, performance.now());
      },
      () => {
        if (!this.stopped) void this.start().catch(() => setTimeout(() => void this.start(), 1000));
      },
    );
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  /** Forgets when VMs were Running or gone (a new round with names used before). */
  reset(): void {
    this.runningAt.clear();
    this.goneAt.clear();
  }

  private seen(type: string, name: string, vm: VirtualMachine | undefined, at: number) {
    if (type === "DELETED") {
      this.status.delete(name);
      this.nodeOf.delete(name);
      if (!this.goneAt.has(name)) this.goneAt.set(name, at);
      return;
    }
    const printable = vm?.status?.printableStatus ?? "-";
    this.status.set(name, printable);
    const node = vm ? placedNode(vm) : undefined;
    if (node) this.nodeOf.set(name, node);
    if (printable === "Running" && !this.runningAt.has(name)) {
      this.runningAt.set(name, at);
      this.lastRunningStatus = vm?.status as Record<string, unknown>;
    }
  }

  /** How many of NAMES are in each printableStatus (gone ones as "gone"). */
  statusCounts(names: readonly string[]): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of names) {
      const s = this.status.get(name) ?? "gone";
      out[s] = (out[s] ?? 0) + 1;
    }
    return out;
  }
}
