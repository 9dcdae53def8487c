// What each verb writes and prints, as pure functions of what it read: the patches the power
// verbs send, the objects snapshot/restore/create-from-template create, and the table rows.
import { API_VERSION } from "../api/common.ts";
import {
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
  type VirtualMachine,
  type VirtualMachineSpec,
} from "../api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { UsageError } from "./args.ts";
import { age } from "./table.ts";

/** A JSON merge patch (RFC 7386) of a VM: only spec fields and annotations, what `edit` may write. */
export interface VmMergePatch {
  metadata?: { annotations: Record<string, string> };
  spec?: Partial<Pick<VirtualMachineSpec, "runStrategy" | "paused">>;
}

export type PowerVerb = "start" | "stop" | "restart" | "pause" | "unpause";

/**
 * The patch a power verb sends to VM at NOW. Like KubeVirt's virtctl: a Manual VM gets a request
 * (the start/stop-requested-at annotation; the operator acts once per new value), any other run
 * strategy is changed — stop sets Halted, start turns Halted into Always. start on a VM the
 * operator already keeps running (Always, RerunOnFailure, Once) is refused rather than guessed.
 */
export function powerPatch(verb: PowerVerb, vm: VirtualMachine, now: Date): VmMergePatch {
  const strategy = vm.spec.runStrategy ?? "Always";
  const stamp = now.toISOString();
  const name = vm.metadata.name;
  switch (verb) {
    case "start":
      if (strategy === "Manual") return { metadata: { annotations: { [START_ANNOTATION]: stamp } } };
      if (strategy === "Halted") return { spec: { runStrategy: "Always" } };
      throw new UsageError(
        `VM "${name}" has runStrategy ${strategy}: the operator starts it already ` +
          `(use "kubectl vm restart ${name}" to reboot it, or set runStrategy Manual to start it by hand)`,
      );
    case "stop":
      if (strategy === "Manual") return { metadata: { annotations: { [STOP_ANNOTATION]: stamp } } };
      if (strategy === "Halted")
        throw new UsageError(`VM "${name}" is already asked to stop (runStrategy Halted)`);
      return { spec: { runStrategy: "Halted" } };
    case "restart":
      return { metadata: { annotations: { [RESTART_ANNOTATION]: stamp } } };
    case "pause":
      return { spec: { paused: true } };
    case "unpause":
      return { spec: { paused: false } };
  }
}

/** Object names from a time: sortable, lower case, what a DNS label allows. */
export function timeSuffix(now: Date): string {
  return now
    .toISOString()
    .replace(/\.\d+Z$/, "")
    .replace(/[-:]/g, "")
    .replace("T", "-");
}

export interface SnapshotOptions {
  name?: string;
  memory?: boolean;
  consistent?: boolean;
  sticky?: boolean;
  description?: string;
}

export function buildSnapshot(
  vmName: string,
  namespace: string,
  opts: SnapshotOptions,
  now: Date,
): VMSnapshot {
  const spec: VMSnapshot["spec"] = { vmName };
  if (opts.description) spec.description = opts.description;
  if (opts.memory) spec.memory = true;
  if (opts.consistent) spec.consistent = true;
  if (opts.sticky) spec.sticky = true;
  return {
    apiVersion: API_VERSION,
    kind: "VMSnapshot",
    metadata: { name: opts.name ?? `${vmName}-${timeSuffix(now)}`, namespace },
    spec,
  };
}

export function buildRestore(vmName: string, snapshotName: string, namespace: string, now: Date): VMRestore {
  return {
    apiVersion: API_VERSION,
    kind: "VMRestore",
    // A VMRestore is done once; a new one restores again, so the name carries the time.
    metadata: { name: `${vmName}-restore-${timeSuffix(now)}`, namespace },
    spec: { vmName, snapshotName },
  };
}

export interface FromTemplateOptions {
  template: string;
  name: string;
  namespace: string;
  amount: number;
  start: number;
  nodes: string[];
  description?: string;
  runStrategy?: VirtualMachineSpec["runStrategy"];
}

/**
 * The VMs create-from-template writes: NAME-START … NAME-(START+AMOUNT-1), pinned round-robin to
 * NODES, labelled like the examples/vms-from-template chart so `kubectl get vm -l` finds them.
 */
export function buildVmsFromTemplate(o: FromTemplateOptions): VirtualMachine[] {
  if (!Number.isInteger(o.amount) || o.amount < 1) throw new UsageError("--amount must be at least 1");
  if (!Number.isInteger(o.start) || o.start < 0) throw new UsageError("--start must be 0 or more");
  return Array.from({ length: o.amount }, (_, i) => {
    const spec: VirtualMachineSpec = { source: { template: o.template } };
    if (o.description) spec.description = o.description;
    if (o.runStrategy) spec.runStrategy = o.runStrategy;
    const node = o.nodes.length > 0 ? o.nodes[i % o.nodes.length] : undefined;
    if (node) spec.nodeName = node;
    return {
      apiVersion: API_VERSION,
      kind: "VirtualMachine",
      metadata: {
        name: `${o.name}-${o.start + i}`,
        namespace: o.namespace,
        labels: { "app.kubernetes.io/instance": o.name, "app.kubernetes.io/managed-by": "kubectl-vm" },
      },
      spec,
    };
  });
}

/** "a,b,,c" → ["a","b","c"]. */
export function splitList(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export const STATUS_HEADERS = ["NAME", "STATUS", "NODE", "IPV4", "STATUS-CHANGE", "AGE"];
export const STATUS_WIDE_HEADERS = [...STATUS_HEADERS, "RUN-STRATEGY", "READY", "MESSAGE"];

/** One `status` row; WIDE adds the run strategy and the Ready condition. */
export function statusRow(vm: VirtualMachine, now: Date, wide = false): string[] {
  const s = vm.status;
  const ipv4 = (s?.interfaces ?? [])
    .map((i) => i.ipv4)
    .filter((ip): ip is string => !!ip)
    .join(",");
  const row = [
    vm.metadata.name,
    s?.printableStatus ?? "",
    s?.nodeName ?? "",
    ipv4,
    s?.statusChangedAt ? age(s.statusChangedAt, now) : "",
    age(vm.metadata.creationTimestamp, now),
  ];
  if (!wide) return row;
  const ready = s?.conditions?.find((c) => c.type === "Ready");
  return [...row, vm.spec.runStrategy ?? "Always", ready?.status ?? "", ready?.message ?? ""];
}

export const SNAPSHOT_HEADERS = ["NAME", "DISPLAY", "PHASE", "READY", "MEMORY", "AGE"];

export function snapshotRow(snap: VMSnapshot, now: Date): string[] {
  return [
    snap.metadata.name,
    snap.spec.displayName ?? "",
    snap.status?.phase ?? "",
    String(snap.status?.readyToUse ?? false),
    String(snap.spec.memory ?? false),
    age(snap.metadata.creationTimestamp, now),
  ];
}

/** The template's children as the controller lists them (status.children). */
export function templateChildren(t: VMTemplate): string[] {
  return [...(t.status?.children ?? [])].sort();
}

/** Nodes a VM from the template could run on now (status.targetNodes). */
export function templateTargets(t: VMTemplate): string[] {
  return [...(t.status?.targetNodes ?? [])].sort();
}
