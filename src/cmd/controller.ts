// The cluster-side controller: places VirtualMachines and VMDisks on nodes, assigns addresses,
// guards disks in use (and, as the kinds grow, templates, clones, restores, rotation).
// Leader-elected; one active replica.
//   env: POD_NAMESPACE, POD_NAME, LEADER_ELECTION, METRICS_PORT, CPU_OVERCOMMIT, LOG_LEVEL
import { hostname } from "node:os";
import { type KubernetesObject, makeInformer, type V1Lease, type V1Node } from "@kubernetes/client-node";
import { type VirtualMachine, VirtualMachineKind } from "../api/virtualmachine.ts";
import { type VMDisk, VMDiskKind } from "../api/vmdisk.ts";
import { namesDisk } from "../controllers/cluster/disk-placement.ts";
import { ClusterDiskReconciler, type PlacementBook } from "../controllers/cluster/disk-reconciler.ts";
import { ClusterVmReconciler } from "../controllers/cluster/vm-reconciler.ts";
import { connectKube, describeError, keyOf, kindInformer, startInformerSynced } from "../runtime/kube.ts";
import { type Leadership, runLeaderElection } from "../runtime/leader.ts";
import { createLogger } from "../runtime/logging.ts";
import { newRegistry, startHttpServer } from "../runtime/server.ts";
import { WorkQueue } from "../runtime/workqueue.ts";

const log = createLogger("controller");
const namespace = process.env.POD_NAMESPACE ?? "libvirt-operator";
const identity = process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
const port = Number(process.env.METRICS_PORT ?? 9090);
const cpuOvercommit = Number(process.env.CPU_OVERCOMMIT ?? 8);

async function main() {
  const kube = connectKube();
  const registry = newRegistry("controller");
  let ready = false;
  const server = await startHttpServer(port, registry, () => ready);

  const vms = kindInformer<VirtualMachine & KubernetesObject>(kube, VirtualMachineKind);
  const nodes = makeInformer<V1Node>(kube.kc, "/api/v1/nodes", () => kube.core.listNode());
  const leases = makeInformer<V1Lease>(
    kube.kc,
    `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
    () => kube.coordination.listNamespacedLease({ namespace }),
  );
  const disks = kindInformer<VMDisk & KubernetesObject>(kube, VMDiskKind);
  const book: PlacementBook = { vmNodes: new Map(), diskNodes: new Map() };
  const reconciler = new ClusterVmReconciler({
    kube,
    vms,
    nodes,
    leases,
    leaseNamespace: namespace,
    policy: { cpuOvercommit },
    disks,
    book,
    log,
  });
  const diskReconciler = new ClusterDiskReconciler({
    kube,
    disks,
    vms,
    nodes,
    leases,
    leaseNamespace: namespace,
    book,
    log,
  });
  const onError = (kind: string) => (key: string, err: unknown, attempt: number) =>
    log.warn({ kind, key, attempt, err: describeError(err) }, "reconcile failed");
  const queue = new WorkQueue("virtualmachine-cluster", (key) => reconciler.reconcile(key), {
    registry,
    onError: onError("VirtualMachine"),
  });
  const diskQueue = new WorkQueue("vmdisk-cluster", (key) => diskReconciler.reconcile(key), {
    registry,
    onError: onError("VMDisk"),
  });

  const start = async () => {
    for (const verb of ["add", "update", "delete"] as const) {
      vms.on(verb, (vm) => {
        queue.add(keyOf(vm));
        for (const key of diskReconciler.keysForVm(vm)) diskQueue.add(key);
      });
      disks.on(verb, (disk) => {
        diskQueue.add(keyOf(disk));
        // VMs not placed yet may now know the node their disks are on.
        for (const vm of vms.list(disk.metadata?.namespace)) {
          if (!vm.status?.nodeName && namesDisk(vm, disk.metadata?.name)) queue.add(keyOf(vm));
        }
      });
    }
    const retryUnplaced = () => {
      for (const key of reconciler.unplacedKeys()) queue.add(key);
      for (const key of diskReconciler.unplacedKeys()) diskQueue.add(key);
    };
    for (const verb of ["add", "update", "delete"] as const) {
      nodes.on(verb, retryUnplaced);
      leases.on(verb, retryUnplaced);
    }
    await Promise.all([startInformerSynced(nodes, "nodes", log), startInformerSynced(leases, "leases", log)]);
    await startInformerSynced(disks, "vmdisks", log);
    await startInformerSynced(vms, "virtualmachines", log);
    ready = true;
    log.info({ namespace, identity, port }, "controller started");
  };

  let leadership: Leadership | undefined;
  const stop = async (why: string) => {
    log.info({ why }, "controller stopping");
    ready = false;
    if (why !== "lost leadership") await leadership?.release().catch(() => undefined);
    await Promise.all([vms.stop(), disks.stop(), nodes.stop(), leases.stop()]);
    await Promise.all([queue.shutdown(), diskQueue.shutdown()]);
    server.close();
    process.exit(why === "lost leadership" ? 1 : 0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));

  if (process.env.LEADER_ELECTION === "false") {
    await start();
  } else {
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
