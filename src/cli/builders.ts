// The objects the verbs create, as pure functions: snapshots, restores, clones, templates and
// VMs from a template. Creating a new object never touches an existing one's spec.

import { API_VERSION } from "../api/names.ts";
import type { VirtualMachine, VirtualMachineSpec } from "../api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { UsageError } from "./args.ts";

/** Labels of the VMs the plugin creates. Not app.kubernetes.io/instance: Argo CD tracks (and prunes) by it. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
/** The --name the VMs were created under, for `kubectl get vm -l vm.libvirt-operator.io/batch=web`. */
export const BATCH_LABEL = "vm.libvirt-operator.io/batch";

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

/** clone (seed 000 clone_from_snapshot): a new VM NAME made from SNAPSHOT, nothing else set. */
export function buildClone(name: string, snapshot: string, namespace: string): VirtualMachine {
  return {
    apiVersion: API_VERSION,
    kind: "VirtualMachine",
    metadata: { name, namespace, labels: { [MANAGED_BY_LABEL]: "kubectl-vm" } },
    spec: { source: { snapshot } },
  };
}

/** set-as-template (seed 000): VMTemplate NAME made from the stopped VM VM_NAME. */
export function buildTemplateFromVm(
  name: string,
  vmName: string,
  namespace: string,
  description?: string,
): VMTemplate {
  return {
    apiVersion: API_VERSION,
    kind: "VMTemplate",
    metadata: { name, namespace },
    spec: { ...(description ? { description } : {}), source: { vmName } },
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
        labels: { [BATCH_LABEL]: o.name, [MANAGED_BY_LABEL]: "kubectl-vm" },
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
