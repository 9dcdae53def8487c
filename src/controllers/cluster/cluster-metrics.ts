// The controller's fleet series, computed at scrape time from its caches: whether this replica
// leads, which nodes can run VMs and how long their agents have been silent, each VM's printable
// status, and where snapshot policies stand. Only the leader's caches are filled (a standby
// starts its informers when it takes over), so only the leader exports the fleet series: a
// standby would report no nodes and no VMs.
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { type Row, sampledGauge } from "../../runtime/sampled-metrics.ts";
import { NODE_ENABLED_LABEL } from "../node-facts.ts";
import { placedNode } from "../vm-placement.ts";
import type { HeartbeatView } from "./heartbeat-clock.ts";
import { nodeView } from "./placement.ts";

type Vm = VirtualMachine & KubernetesObject;

/**
 * Nodes meant for VMs: labelled enabled. Not every node with a published capacity: that
 * annotation outlives the label, and a node taken out of VM service (its agent gone with the
 * DaemonSet's nodeSelector) would otherwise age without end and alert forever.
 */
function vmNodes(nodes: readonly V1Node[]): V1Node[] {
  return nodes.filter((n) => n.metadata?.labels?.[NODE_ENABLED_LABEL] === "true");
}

/**
 * Pure: nodes that can be given a VM now — labelled enabled, not cordoned, an agent heard from
 * recently that published a capacity with a hypervisor (what placement asks of every node).
 */
export function readyNodes(nodes: readonly V1Node[], fresh: (node: string) => boolean): number {
  return nodes.filter((n) => {
    const v = nodeView(n, fresh(n.metadata?.name ?? ""));
    return v.enabled && !v.cordoned && v.heartbeatFresh && (v.capacity?.hypervisors.length ?? 0) > 0;
  }).length;
}

/** Pure: seconds each VM node's agent has been silent (SILENT_MS: the heartbeat clock's). */
export function heartbeatAges(nodes: readonly V1Node[], silentMs: (node: string) => number): Row[] {
  return vmNodes(nodes).map((n) => {
    const node = n.metadata?.name ?? "";
    return { labels: { node }, value: Math.round(silentMs(node)) / 1000 };
  });
}

/** Pure: one series per VM, status = printableStatus ("" before the operator first wrote it). */
export function vmStatuses(vms: readonly Vm[]): Row[] {
  return vms.map((vm) => ({
    labels: {
      namespace: vm.metadata.namespace ?? "",
      name: vm.metadata.name,
      node: placedNode(vm) ?? "",
      status: vm.status?.printableStatus ?? "",
    },
    value: 1,
  }));
}

/** Pure: per VM with spec.snapshotPolicy, its failures in a row and whether it stopped for them. */
export function snapshotPolicyRows(vms: readonly Vm[]): { failures: Row[]; halted: Row[] } {
  const withPolicy = vms.filter((vm) => vm.spec.snapshotPolicy);
  const labels = (vm: Vm) => ({ namespace: vm.metadata.namespace ?? "", name: vm.metadata.name });
  return {
    failures: withPolicy.map((vm) => ({
      labels: labels(vm),
      value: vm.status?.snapshotPolicy?.consecutiveFailures ?? 0,
    })),
    halted: withPolicy.map((vm) => {
      const c = vm.status?.conditions?.find((x) => x.type === "SnapshotPolicy");
      return { labels: labels(vm), value: c?.status === "False" && c.reason === "TooManyFailures" ? 1 : 0 };
    }),
  };
}

export interface ClusterMetricsSources {
  leading: () => boolean;
  /** The caches below are filled (the leader's informers have synced). */
  synced: () => boolean;
  nodes: { list(): ReadonlyArray<V1Node> };
  vms: { list(): ReadonlyArray<Vm> };
  heartbeats: HeartbeatView;
}

/** Registers the controller's fleet gauges on REGISTRY; each scrape reads the caches anew. */
export function registerClusterMetrics(registry: Registry, s: ClusterMetricsSources): void {
  const led = (rows: () => Row[]) => () => (s.leading() && s.synced() ? rows() : []);
  const gauge = (name: string, help: string, labelNames: string[], rows: () => Row[]) =>
    sampledGauge(registry, { name: `libvirt_operator_${name}`, help, labelNames }, rows);
  gauge("controller_leader", "1 when this controller replica leads (reconciles), else 0", [], () => [
    { labels: {}, value: s.leading() ? 1 : 0 },
  ]);
  gauge(
    "nodes_ready",
    "Nodes that can be given a VM: enabled, not cordoned, their agent heard from recently (leader only)",
    [],
    led(() => [{ labels: {}, value: readyNodes(s.nodes.list(), (n) => s.heartbeats.fresh(n)) }]),
  );
  gauge(
    "agent_heartbeat_age_seconds",
    "Seconds since this controller saw the node's agent renew its heartbeat Lease (leader only)",
    ["node"],
    led(() => heartbeatAges(s.nodes.list(), (n) => s.heartbeats.silentMs(n))),
  );
  gauge(
    "vm_status",
    '1 for each VM, labelled with its printableStatus and node ("" when not placed) (leader only)',
    ["namespace", "name", "node", "status"],
    led(() => vmStatuses(s.vms.list())),
  );
  gauge(
    "vm_snapshot_policy_consecutive_failures",
    "Automatic snapshots of the VM's spec.snapshotPolicy that failed in a row (leader only)",
    ["namespace", "name"],
    led(() => snapshotPolicyRows(s.vms.list()).failures),
  );
  gauge(
    "vm_snapshot_policy_halted",
    "1 when the VM's snapshot policy stopped after maxFailures failures in a row (SnapshotPolicy=False, " +
      "TooManyFailures) until spec.snapshotPolicy.resume changes, else 0 (leader only)",
    ["namespace", "name"],
    led(() => snapshotPolicyRows(s.vms.list()).halted),
  );
}
