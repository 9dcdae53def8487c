// The cluster-side controller: places VirtualMachines and VMDisks on nodes, assigns addresses,
// guards disks in use (and, as the kinds grow, templates, clones, restores, rotation).
// Leader-elected; one active replica.
//   env: POD_NAMESPACE (its leader election Lease), POD_NAME, LEADER_ELECTION, METRICS_PORT,
//        AGENT_NAMESPACE (where the node agents renew their heartbeat Leases; default
//        POD_NAMESPACE), CPU_OVERCOMMIT, LOG_LEVEL,
//        STUCK_WORKER_SECONDS (liveness fails when a reconcile runs longer; default 300),
//        TENANT_ALLOWED_NETWORKS, TENANT_ALLOWED_STORAGE_POOLS, TENANT_DISK_BYTES_LIMIT (what
//        namespaces may use unless their annotations say otherwise; see tenant-policy.ts),
//        VM_RECONCILE_WORKERS (VirtualMachines placed at once; default 16),
//        STORAGE_OVERCOMMIT (provisioned bytes a pool may be promised per byte of capacity; default 1),
//        NODE_LOST_AFTER_SECONDS (a node agent silent this long makes its VMs and disks Unknown; default 60)
import { hostname } from "node:os";
import type { KubernetesObject, V1Lease, V1Namespace, V1Node } from "@kubernetes/client-node";
import {
  VirtualMachineKind,
  VMDiskKind,
  VMRestoreKind,
  VMSnapshotKind,
  VMTemplateKind,
} from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMDisk } from "../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import type { VMTemplate } from "../api/vmtemplate.ts";
import { registerClusterMetrics } from "../controllers/cluster/cluster-metrics.ts";
import {
  ClusterDiskReconciler,
  type PlacementBook,
  watchClusterDisks,
} from "../controllers/cluster/disk-reconciler.ts";
import { HeartbeatClock } from "../controllers/cluster/heartbeat-clock.ts";
import { DEFAULT_NODE_LOST_AFTER_MS } from "../controllers/cluster/node-loss.ts";
import { NodeLossReconciler, watchNodeLoss } from "../controllers/cluster/node-loss-reconciler.ts";
import { type ClusterIndexes, indexDisks, indexSnapshots } from "../controllers/cluster/object-indexes.ts";
import { storageOvercommitFromEnv } from "../controllers/cluster/pool-capacity.ts";
import { ClusterRestoreReconciler, watchClusterRestores } from "../controllers/cluster/restore-reconciler.ts";
import { registerSnapshotMetrics } from "../controllers/cluster/snapshot-metrics.ts";
import { SnapshotMirrorWriter, watchSnapshotMirror } from "../controllers/cluster/snapshot-mirror.ts";
import {
  SnapshotPolicyReconciler,
  watchSnapshotPolicies,
} from "../controllers/cluster/snapshot-policy-reconciler.ts";
import {
  ClusterSnapshotReconciler,
  watchClusterSnapshots,
} from "../controllers/cluster/snapshot-reconciler.ts";
import { TemplateReconciler, watchTemplates } from "../controllers/cluster/template-reconciler.ts";
import { probeDisk } from "../controllers/cluster/template-targets.ts";
import { VmIndex } from "../controllers/cluster/vm-index.ts";
import { ClusterVmReconciler } from "../controllers/cluster/vm-reconciler.ts";
import { watchClusterVms } from "../controllers/cluster/vm-watches.ts";
import { tenancyDefaultsFromEnv, tenantPolicy } from "../controllers/tenant-policy.ts";
import { effectiveVms } from "../controllers/vm-clone.ts";
import { connectKube, kindInformer, startInformerSynced } from "../runtime/kube.ts";
import { type Leadership, runLeaderElection } from "../runtime/leader.ts";
import { createLogger } from "../runtime/logging.ts";
import { newRegistry, startHttpServer, stuckWorkers } from "../runtime/server.ts";
import { makeSlimInformer } from "../runtime/slim-informer.ts";
import { logFailures } from "../runtime/watch.ts";
import { WorkQueue } from "../runtime/workqueue.ts";

const log = createLogger("controller");
const namespace = process.env.POD_NAMESPACE ?? "libvirt-operator";
const agentNamespace = process.env.AGENT_NAMESPACE || namespace;
const identity = process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
const port = Number(process.env.METRICS_PORT ?? 9090);
const cpuOvercommit = Number(process.env.CPU_OVERCOMMIT ?? 8);
const nodeLostAfterMs = positiveSeconds(process.env.NODE_LOST_AFTER_SECONDS, DEFAULT_NODE_LOST_AFTER_MS);

async function main() {
  const tenancy = tenancyDefaultsFromEnv(process.env);
  const storageOvercommit = storageOvercommitFromEnv(process.env.STORAGE_OVERCOMMIT);
  const kube = await connectKube();
  const registry = newRegistry("controller");
  let ready = false;
  let leading = false;
  // A standby waiting for the lease is Ready too: a rolling upgrade waits for new pods to be
  // Ready, and only one of them can lead.
  let standingBy = false;
  // Queues are made below; liveness looks at them once they exist.
  const queues: Record<string, WorkQueue> = {};
  const stuckWorkerMs = Number(process.env.STUCK_WORKER_SECONDS ?? 300) * 1000;
  const server = await startHttpServer(
    port,
    registry,
    () => ready || standingBy,
    stuckWorkers(queues, stuckWorkerMs),
  );

  const vmInformer = kindInformer<VirtualMachine & KubernetesObject>(kube, VirtualMachineKind);
  // Reconcilers see each VM as it runs: a clone with the hardware it took from its snapshot.
  const vms = effectiveVms(vmInformer);

  const nodes = makeSlimInformer<V1Node>(kube.http, "/api/v1/nodes");
  const leases = makeSlimInformer<V1Lease>(
    kube.http,
    `/apis/coordination.k8s.io/v1/namespaces/${agentNamespace}/leases`,
  );
  // The leader's own renewals (every few seconds) show the heartbeat clock that this process
  // still sees Lease events at all (heartbeat-clock.ts WATCH_GRACE_MS); without them a lone
  // agent's silence would never count past that grace, and its node never be judged lost.
  const leaderLeases =
    agentNamespace === namespace
      ? undefined
      : makeSlimInformer<V1Lease>(kube.http, `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`);
  const disks = kindInformer<VMDisk & KubernetesObject>(kube, VMDiskKind);
  const snapshots = kindInformer<VMSnapshot & KubernetesObject>(kube, VMSnapshotKind);
  const restores = kindInformer<VMRestore & KubernetesObject>(kube, VMRestoreKind);
  const templates = kindInformer<VMTemplate & KubernetesObject>(kube, VMTemplateKind);
  // Subscribed before any watch: every other handler of an event sees the indexes with it in.
  const indexes: ClusterIndexes = {
    vms: new VmIndex().watch(vmInformer),
    disks: indexDisks(disks),
    snapshots: indexSnapshots(snapshots),
  };
  const namespaces = makeSlimInformer<V1Namespace>(kube.http, "/api/v1/namespaces");
  const book: PlacementBook = { vmNodes: new Map(), diskNodes: new Map() };
  // Agents' heartbeats as this process sees them change (fed by watchNodeLoss below).
  const heartbeats = new HeartbeatClock();
  const reconciler = new ClusterVmReconciler({
    kube,
    vms,
    index: indexes.vms,
    nodes,
    heartbeats,
    policy: { cpuOvercommit },
    disks,
    snapshots,
    templates,
    book,
    namespaces,
    tenancy,
    log,
  });
  const diskReconciler = new ClusterDiskReconciler({
    kube,
    disks,
    vms,
    indexes,
    nodes,
    heartbeats,
    book,
    namespaces,
    tenancy,
    storageOvercommit,
    snapshots,
    log,
  });
  // A placement reconcile mostly waits on the API server: more at once keep a burst moving
  // (make bench-scale: 1000 VMs queued ~900 deep for a minute with 4). Placement stays exact:
  // each decision and its reservation are made before the first await.
  const queue = new WorkQueue("virtualmachine-cluster", (key) => reconciler.reconcile(key), {
    concurrency: Number(process.env.VM_RECONCILE_WORKERS ?? 16),
    registry,
    onError: logFailures(log, "VirtualMachine"),
  });
  const diskQueue = new WorkQueue("vmdisk-cluster", (key) => diskReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VMDisk"),
  });

  // One at a time: timestamps and "one restore per VM" are decided against what was handed out.
  const snapshotReconciler = new ClusterSnapshotReconciler({
    kube,
    snapshots,
    vms,
    disks,
    pending: indexes.snapshots.pendingOfVm,
    policyOf: (ns) => tenantPolicy(namespaces.get(ns), tenancy),
    log,
  });
  const snapshotQueue = new WorkQueue("vmsnapshot-cluster", (key) => snapshotReconciler.reconcile(key), {
    concurrency: 1,
    registry,
    onError: logFailures(log, "VMSnapshot"),
  });
  const restoreReconciler = new ClusterRestoreReconciler({ kube, restores, snapshots, vms, disks, log });
  const restoreQueue = new WorkQueue("vmrestore-cluster", (key) => restoreReconciler.reconcile(key), {
    concurrency: 1,
    registry,
    onError: logFailures(log, "VMRestore"),
  });
  const policyReconciler = new SnapshotPolicyReconciler({ kube, vms, snapshots, restores, indexes, log });
  const policyQueue = new WorkQueue("vm-snapshot-policy-cluster", (key) => policyReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VirtualMachine"),
  });
  const mirror = new SnapshotMirrorWriter(kube, vms, snapshots);
  registerSnapshotMetrics(registry, snapshots);
  registerClusterMetrics(registry, {
    leading: () => leading,
    synced: () => ready,
    nodes,
    vms: vmInformer,
    heartbeats,
  });
  const mirrorQueue = new WorkQueue("vm-snapshots-cluster", (key) => mirror.reconcile(key), {
    registry,
    onError: logFailures(log, "VirtualMachine"),
  });

  const templateReconciler = new TemplateReconciler({
    kube,
    templates,
    vms,
    disks,
    snapshots,
    nodes,
    heartbeats,
    poolRefusal: (ns, node, bytes) => diskReconciler.poolRefusalOn(probeDisk(ns, bytes), node),
    log,
  });
  const templateQueue = new WorkQueue("vmtemplate-cluster", (key) => templateReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VMTemplate"),
  });

  const nodeLoss = new NodeLossReconciler({
    kube,
    vms,
    disks,
    snapshots,
    nodes,
    heartbeats,
    lostAfterMs: nodeLostAfterMs,
    log,
  });
  const nodeLossQueue = new WorkQueue("node-loss", (node) => nodeLoss.reconcile(node), {
    registry,
    onError: logFailures(log, "Node"),
  });

  Object.assign(queues, {
    nodes: nodeLossQueue,
    virtualmachines: queue,
    vmdisks: diskQueue,
    vmsnapshots: snapshotQueue,
    vmrestores: restoreQueue,
    "virtualmachines-snapshots": mirrorQueue,
    "virtualmachines-snapshot-policy": policyQueue,
    vmtemplates: templateQueue,
  });

  const start = async () => {
    leading = true;
    // First: the heartbeat clock must see every Lease event, and other reconcilers ask it.
    watchNodeLoss(nodeLossQueue, nodeLoss, { vms: vmInformer, disks, snapshots, nodes, leases });
    for (const verb of ["add", "update"] as const) leaderLeases?.on(verb, (l) => heartbeats.observe(l));
    watchClusterVms(queue, reconciler, {
      vms: vmInformer,
      disks,
      nodes,
      leases,
      namespaces,
      snapshots,
      templates,
    });
    watchTemplates(templateQueue, { templates, vms: vmInformer, disks, snapshots, nodes, leases });
    watchClusterDisks(diskQueue, diskReconciler, {
      disks,
      vms: vmInformer,
      nodes,
      leases,
      namespaces,
      snapshots,
    });
    watchClusterSnapshots(snapshotQueue, { snapshots, vms: vmInformer }, snapshotReconciler);
    watchClusterRestores(restoreQueue, { restores, snapshots, vms: vmInformer }, restoreReconciler);
    watchSnapshotMirror(mirrorQueue, { vms: vmInformer, snapshots });
    watchSnapshotPolicies(policyQueue, { vms: vmInformer, snapshots, restores });
    await Promise.all([
      startInformerSynced(nodes, "nodes", log),
      startInformerSynced(leases, "leases", log),
      ...(leaderLeases ? [startInformerSynced(leaderLeases, "leader leases", log)] : []),
      startInformerSynced(namespaces, "namespaces", log),
    ]);
    await startInformerSynced(disks, "vmdisks", log);
    await startInformerSynced(vmInformer, "virtualmachines", log);
    await startInformerSynced(snapshots, "vmsnapshots", log);
    await startInformerSynced(restores, "vmrestores", log);
    await startInformerSynced(templates, "vmtemplates", log);
    ready = true;
    log.info({ namespace, agentNamespace, identity, port }, "controller started");
  };

  let leadership: Leadership | undefined;
  const stop = async (why: string) => {
    log.info({ why }, "controller stopping");
    ready = false;
    standingBy = false;
    leading = false;
    if (why !== "lost leadership") await leadership?.release().catch(() => undefined);
    await Promise.all(
      [vmInformer, disks, nodes, leases, namespaces, snapshots, restores, templates, leaderLeases].map((i) =>
        i?.stop(),
      ),
    );
    await Promise.all([
      queue.shutdown(),
      diskQueue.shutdown(),
      snapshotQueue.shutdown(),
      restoreQueue.shutdown(),
      mirrorQueue.shutdown(),
      policyQueue.shutdown(),
      templateQueue.shutdown(),
      nodeLossQueue.shutdown(),
    ]);
    server.close();
    process.exit(why === "lost leadership" ? 1 : 0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));

  if (process.env.LEADER_ELECTION === "false") {
    await start();
  } else {
    standingBy = true;
    leadership = await runLeaderElection(
      { namespace, name: "libvirt-operator-controller", identity, log },
      start,
      () => void stop("lost leadership"),
    );
  }
}

main().catch((err) => {
  log.fatal({ err: (err as Error).message, stack: (err as Error).stack }, "controller failed to start");
  process.exit(1);
});

/** SECONDS (an environment value) in ms; FALLBACK when unset; refuses nonsense at start. */
function positiveSeconds(seconds: string | undefined, fallbackMs: number): number {
  if (seconds === undefined || seconds === "") return fallbackMs;
  const n = Number(seconds);
  if (!Number.isFinite(n) || n < 15)
    throw new Error(`NODE_LOST_AFTER_SECONDS must be 15 or more, not "${seconds}"`);
  return n * 1000;
}
