// The node agent: one per VM node. Converges the domains of VirtualMachines placed on this
// node through libvirt and publishes the node's capacity and heartbeat.
//   env: NODE_NAME, POD_NAMESPACE, LIBVIRT_URI, METRICS_PORT, CONSOLE_LOG_DIR,
//        STATISTICS_INTERVAL_SECONDS (default 60), LOG_LEVEL, STORAGE_POOL_NAME,
//        STORAGE_POOL_PATH (the default pool), IMAGE_IMPORT_DIRS (":"-separated; where
//        source.image may name node files), IMAGE_IMPORT_BLOCKED_NETWORKS (CIDRs source.image
//        URLs may not reach; default link-local)
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL, type VirtualMachine, VirtualMachineKind } from "../api/virtualmachine.ts";
import { type VMDisk, VMDiskKind } from "../api/vmdisk.ts";
import { namesDisk } from "../controllers/cluster/disk-placement.ts";
import { NodeDiskReconciler } from "../controllers/node/disk-reconciler.ts";
import { blockedNetworksOf, DEFAULT_BLOCKED_NETWORKS } from "../controllers/node/image-source.ts";
import { runNodePublisher } from "../controllers/node/node-publisher.ts";
import { StatsCollector } from "../controllers/node/stats-collector.ts";
import { ensureDefaultPool } from "../controllers/node/storage-pools.ts";
import { NodeVmReconciler } from "../controllers/node/vm-reconciler.ts";
import { parseCapabilities } from "../hypervisor/capabilities.ts";
import { keyOfDomain } from "../hypervisor/domain/from-spec.ts";
import { parseOwnership } from "../hypervisor/domain/xml.ts";
import { DomainXmlFlags, LibvirtClient, type LifecycleEvent } from "../hypervisor/libvirt/index.ts";
import { connectKube, describeError, keyOf, kindInformer, startInformerSynced } from "../runtime/kube.ts";
import { createLogger } from "../runtime/logging.ts";
import { newRegistry, startHttpServer } from "../runtime/server.ts";
import { WorkQueue } from "../runtime/workqueue.ts";

const log = createLogger("agent");
const nodeName = process.env.NODE_NAME ?? hostname();
const namespace = process.env.POD_NAMESPACE ?? "libvirt-operator";
const libvirtUri = process.env.LIBVIRT_URI ?? "qemu:///system";
const consoleLogDir = process.env.CONSOLE_LOG_DIR ?? "/var/log/libvirt/qemu";
const port = Number(process.env.METRICS_PORT ?? 9091);
const statisticsIntervalMs = Number(process.env.STATISTICS_INTERVAL_SECONDS ?? 60) * 1000;
const defaultPool = {
  name: process.env.STORAGE_POOL_NAME ?? "libvirt-operator",
  path: process.env.STORAGE_POOL_PATH ?? "/var/lib/libvirt/libvirt-operator",
};
const importDirs = (process.env.IMAGE_IMPORT_DIRS ?? "/var/lib/libvirt-operator/images")
  .split(":")
  .filter((d) => d.startsWith("/"));

async function main() {
  const controller = new AbortController();
  const kube = connectKube();
  const libvirt = await LibvirtClient.connect({ uri: libvirtUri });
  const host = parseCapabilities(await libvirt.capabilities());
  const registry = newRegistry("agent");
  const informer = kindInformer<VirtualMachine & KubernetesObject>(
    kube,
    VirtualMachineKind,
    `${NODE_LABEL}=${nodeName}`,
  );
  // Every VMDisk, not only this node's: VMs here may use disks of shared pools placed elsewhere.
  // The disk reconciler acts only on disks labelled for this node.
  const diskInformer = kindInformer<VMDisk & KubernetesObject>(kube, VMDiskKind);
  const clusterId = (await kube.core.readNamespace({ name: "kube-system" })).metadata?.uid ?? "";
  await ensureDefaultPool(libvirt, defaultPool, log);
  // The import directories exist from the start, so users know where images go.
  for (const dir of importDirs) await mkdir(dir, { recursive: true }).catch(() => undefined);
  const reconciler = new NodeVmReconciler({
    kube,
    libvirt,
    cache: informer,
    disks: diskInformer,
    nodeName,
    clusterId,
    host,
    consoleLogDir,
    log,
  });
  // Four at a time measured better than sixteen for a burst of 20 (make bench): QEMU start-up
  // is CPU-bound here, and libvirtd serves only a few requests per connection at once.
  const queue = new WorkQueue("virtualmachine-node", (key) => reconciler.reconcile(key), {
    concurrency: Number(process.env.RECONCILE_WORKERS ?? 4),
    registry,
    onError: (key, err, attempt) => log.warn({ key, attempt, err: describeError(err) }, "reconcile failed"),
  });

  const diskReconciler = new NodeDiskReconciler({
    kube,
    libvirt,
    cache: diskInformer,
    nodeName,
    defaultPool: defaultPool.name,
    importDirs,
    blockedNetworks: blockedNetworksOf(process.env.IMAGE_IMPORT_BLOCKED_NETWORKS ?? DEFAULT_BLOCKED_NETWORKS),
    refreshMs: statisticsIntervalMs,
    log,
  });
  const diskQueue = new WorkQueue("vmdisk-node", (key) => diskReconciler.reconcile(key), {
    registry,
    onError: (key, err, attempt) =>
      log.warn({ kind: "VMDisk", key, attempt, err: describeError(err) }, "reconcile failed"),
  });

  let ready = false;
  const server = await startHttpServer(port, registry, () => ready && libvirt.connected);
  for (const verb of ["add", "update", "delete"] as const) {
    informer.on(verb, (vm) => queue.add(keyOf(vm)));
    diskInformer.on(verb, (disk) => {
      if (disk.metadata?.labels?.[NODE_LABEL] === nodeName || verb === "delete") diskQueue.add(keyOf(disk));
      // VMs using the disk: it may have become ready, grown, or changed hands.
      for (const vm of informer.list(disk.metadata?.namespace))
        if (namesDisk(vm, disk.metadata?.name)) queue.add(keyOf(vm));
    });
  }

  libvirt.on("lifecycle", (e: LifecycleEvent) => {
    const key = keyOfDomain(e.domain.name);
    if (key) queue.add(key);
  });
  libvirt.on("reboot", (dom: { name: string }) => {
    const key = keyOfDomain(dom.name);
    if (!key) return;
    reconciler.rebooted(key);
    queue.add(key);
  });
  libvirt.on("disconnected", (err: Error) =>
    log.warn({ err: err.message }, "libvirt connection lost; reconnecting"),
  );
  libvirt.on("reconnected", async () => {
    log.info("libvirt reconnected; resyncing every VM");
    for (const vm of informer.list()) queue.add(keyOf(vm));
  });
  await libvirt.enableDomainEvents();
  await startInformerSynced(diskInformer, "vmdisks", log);
  await startInformerSynced(informer, "virtualmachines", log);

  // Domains of ours whose VM is gone (deleted while the agent was down) get reconciled too.
  for (const dom of await libvirt.listAllDomains()) {
    const owner = parseOwnership(await libvirt.domainXml(dom, DomainXmlFlags.Inactive));
    if (owner?.cluster === clusterId) queue.add(`${owner.namespace}/${owner.name}`);
  }
  await runNodePublisher(kube, libvirt, {
    nodeName,
    namespace,
    defaultStoragePool: defaultPool.name,
    log,
    signal: controller.signal,
  });
  new StatsCollector({
    kube,
    libvirt,
    vms: informer,
    disks: diskInformer,
    nodeName,
    registry,
    intervalMs: statisticsIntervalMs,
    log,
  }).start(controller.signal);
  ready = true;
  log.info({ nodeName, clusterId, libvirtUri, hypervisors: host.hypervisors, port }, "agent started");

  const shutdown = async (signal: string) => {
    log.info({ signal }, "agent stopping; guests keep running");
    ready = false;
    controller.abort();
    await Promise.all([informer.stop(), diskInformer.stop()]);
    await Promise.all([queue.shutdown(), diskQueue.shutdown()]);
    await libvirt.close();
    server.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err) => {
  log.fatal({ err: (err as Error).message, stack: (err as Error).stack }, "agent failed to start");
  process.exit(1);
});
