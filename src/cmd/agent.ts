// The node agent: one per VM node. Converges the domains of VirtualMachines placed on this
// node through libvirt and publishes the node's capacity and heartbeat.
//   env: NODE_NAME, POD_NAMESPACE (its heartbeat Lease; the controller's AGENT_NAMESPACE),
//        LIBVIRT_URI, METRICS_PORT, CONSOLE_LOG_DIR,
//        STATISTICS_INTERVAL_SECONDS (default 60), LOG_LEVEL, STORAGE_POOL_NAME,
//        STORAGE_POOL_PATH (the default pool), IMAGE_IMPORT_DIRS (":"-separated; where
//        source.image may name node files), IMAGE_IMPORT_ALLOWED_NETWORKS (CIDRs source.image
//        URLs may reach besides global unicast addresses), IMAGE_MAX_BYTES (largest image;
//        default 64Gi), LIBVIRT_TEST_DRIVER ("true": tests and
//        benchmarks on libvirt's test driver, see offerTestDriverDomains; never in the chart),
//        CPU_OVERCOMMIT (vCPUs per host CPU the running guests may take; the controller's value, default 8),
//        STUCK_WORKER_SECONDS (liveness fails when a reconcile runs longer; default 8 h),
//        LIBVIRT_UNREACHABLE_SECONDS (liveness fails when libvirt is away longer; default 120),
//        TENANT_ALLOWED_NETWORKS, TENANT_ALLOWED_STORAGE_POOLS, TENANT_DISK_BYTES_LIMIT (what
//        namespaces may use unless their annotations say otherwise; the controller's values,
//        checked here again)
//        MEDIA_DIRS (":"-separated; the only directories spec.cdrom.image, spec.boot.kernel and
//        spec.boot.initrd may name files in; default none), SNAPSHOT_MEMORY_DIR (memory images of
//        snapshots of VMs with raw disks or UEFI; default /var/lib/libvirt/libvirt-operator-snapshots)
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import type { KubernetesObject, V1Namespace } from "@kubernetes/client-node";
import { NODE_LABEL, VirtualMachineKind, VMDiskKind, VMRestoreKind, VMSnapshotKind } from "../api/names.ts";
import type { VirtualMachine } from "../api/virtualmachine.ts";
import type { VMDisk } from "../api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../api/vmsnapshot.ts";
import { diskRefusal } from "../controllers/disk-limits.ts";
import { NodeDiskReconciler, watchNodeDisks } from "../controllers/node/disk-reconciler.ts";
import { DomainLocks } from "../controllers/node/domain-locks.ts";
import {
  ImportConfigError,
  type ImportLimits,
  importLimitsFromEnv,
} from "../controllers/node/image-limits.ts";
import { agentStateDirsOf, mediaDirsFromEnv, snapshotMemoryDirOf } from "../controllers/node/media-paths.ts";
import { networkHosts } from "../controllers/node/network-hosts.ts";
import { runNodePublisher } from "../controllers/node/node-publisher.ts";
import { cpuOvercommitOf, NodeRoom } from "../controllers/node/node-room.ts";
import { NodeVmIndex } from "../controllers/node/node-vm-index.ts";
import { OrphanReporter } from "../controllers/node/orphans.ts";
import { PoolMetrics } from "../controllers/node/pool-metrics.ts";
import { NodeRestoreReconciler, watchNodeRestores } from "../controllers/node/restore-reconciler.ts";
import { keepRoomCurrent, resyncRoom } from "../controllers/node/room-observer.ts";
import { NodeSnapshotReconciler, watchNodeSnapshots } from "../controllers/node/snapshot-reconciler.ts";
import { StatsCollector } from "../controllers/node/stats-collector.ts";
import { ensureDefaultPool } from "../controllers/node/storage-pools.ts";
import { libvirtDomainHolding } from "../controllers/node/vm-identity-check.ts";
import { poolTargets } from "../controllers/node/vm-media.ts";
import { NodeVmReconciler } from "../controllers/node/vm-reconciler.ts";
import { watchNodeVms } from "../controllers/node/vm-watches.ts";
import { tenancyDefaultsFromEnv, tenantPolicy } from "../controllers/tenant-policy.ts";
import { effectiveVms } from "../controllers/vm-clone.ts";
import { DISK_VIEW } from "../controllers/watch-views.ts";
import { offerTestDriverDomains, parseCapabilities } from "../hypervisor/capabilities.ts";
import { parseOwnership } from "../hypervisor/domain/xml.ts";
import { overdueBy } from "../hypervisor/libvirt/deadlines.ts";
import { DomainXmlFlags, LibvirtClient, unlessNotFound } from "../hypervisor/libvirt/index.ts";
import { fitTestDriver } from "../hypervisor/test-driver.ts";
import { connectKube, kindInformer, startInformerSynced } from "../runtime/kube.ts";
import { createLogger } from "../runtime/logging.ts";
import { sampledCounter } from "../runtime/sampled-metrics.ts";
import { newRegistry, startHttpServer, stuckWorkers } from "../runtime/server.ts";
import { makeSlimInformer } from "../runtime/slim-informer.ts";
import { logFailures, watchRelated } from "../runtime/watch.ts";
import { WorkQueue } from "../runtime/workqueue.ts";

const log = createLogger("agent");
const nodeName = process.env.NODE_NAME ?? hostname();
const namespace = process.env.POD_NAMESPACE ?? "libvirt-operator";
const libvirtUri = process.env.LIBVIRT_URI ?? "qemu:///system";
const consoleLogDir = process.env.CONSOLE_LOG_DIR ?? "/var/log/libvirt/qemu";
const port = Number(process.env.METRICS_PORT ?? 9091);
// Liveness: a reconcile running longer than this is stuck. Every call in it has a deadline
// (the longest class, a volume copy, allows 6 h; an import must keep a minimum throughput),
// so the default is beyond any legitimate one; calls past their own deadline are caught sooner.
const stuckWorkerMs = Number(process.env.STUCK_WORKER_SECONDS ?? 8 * 3600) * 1000;
const OVERDUE_SLACK_MS = 30_000;
const libvirtUnreachableMs = Number(process.env.LIBVIRT_UNREACHABLE_SECONDS ?? 120) * 1000;
const statisticsIntervalMs = Number(process.env.STATISTICS_INTERVAL_SECONDS ?? 60) * 1000;
const defaultPool = {
  name: process.env.STORAGE_POOL_NAME ?? "libvirt-operator",
  path: process.env.STORAGE_POOL_PATH ?? "/var/lib/libvirt/libvirt-operator",
};
const mediaDirs = mediaDirsFromEnv(process.env.MEDIA_DIRS);
const importDirs = (process.env.IMAGE_IMPORT_DIRS ?? "/var/lib/libvirt-operator/images")
  .split(":")
  .filter((d) => d.startsWith("/"));
const imports = importLimitsOrExit();

/** A bad IMAGE_* setting stops the agent with one line naming it, not a stack trace. */
function importLimitsOrExit(): ImportLimits {
  if (process.env.IMAGE_IMPORT_BLOCKED_NETWORKS !== undefined)
    log.warn("IMAGE_IMPORT_BLOCKED_NETWORKS is no longer read: see IMAGE_IMPORT_ALLOWED_NETWORKS");
  try {
    return importLimitsFromEnv(process.env);
  } catch (err) {
    if (!(err instanceof ImportConfigError)) throw err;
    log.fatal({ variable: err.variable, entry: err.entry }, err.message);
    process.exit(1);
  }
}

/**
 * Requests to the API server in flight at once, at least one per VM worker (watches and the
 * heartbeat have their own connections). Each kept TLS connection holds ~0.5 MiB of the agent's
 * memory: with 100 VMs on its node the agent kept 25 open at 32 (95 MiB RSS), 13 at 8 (90 MiB),
 * and made its VMs Running as fast.
 */
const AGENT_API_CONNECTIONS = 8;

async function main() {
  const tenancy = tenancyDefaultsFromEnv(process.env);
  const controller = new AbortController();
  // Eight at a time: a burst of 20 TCG guests (make bench) came within 0.92–1.22× of raw libvirt
  // starting them all at once (four: 1.34×; sixteen did worse, QEMU start-up being CPU-bound).
  const vmWorkers = Number(process.env.RECONCILE_WORKERS ?? 8);
  const kube = await connectKube(undefined, undefined, Math.max(AGENT_API_CONNECTIONS, vmWorkers));
  const libvirt = await LibvirtClient.connect({ uri: libvirtUri });
  const testDriver = process.env.LIBVIRT_TEST_DRIVER === "true";
  offerTestDriverDomains(testDriver);
  if (testDriver) fitTestDriver(libvirt);
  const host = parseCapabilities(await libvirt.capabilities());
  const room = await runningRoom(libvirt, nodeName);
  const registry = newRegistry("agent");
  // What the agent's loops cost libvirtd: a statistics sweep of the whole node is one call.
  sampledCounter(
    registry,
    {
      name: "libvirt_operator_libvirt_calls_total",
      help: "Calls the agent made to libvirtd, by RPC procedure",
      labelNames: ["procedure"],
    },
    () => [...libvirt.callCounts()].map(([procedure, value]) => ({ labels: { procedure }, value })),
  );
  const informer = kindInformer<VirtualMachine & KubernetesObject>(
    kube,
    VirtualMachineKind,
    `${NODE_LABEL}=${nodeName}`,
  );
  // Reconcilers see each VM as it runs: a clone with the hardware it took from its snapshot.
  const vms = effectiveVms(informer);
  // Who holds each UUID, MAC and address here: a start is checked against those, not every VM.
  const vmIndex = new NodeVmIndex(informer, (name, ns) => vms.get(name, ns));
  // Every VMDisk, not only this node's: VMs here may use disks of shared pools placed elsewhere.
  // The disk reconciler acts only on disks labelled for this node.
  const diskInformer = kindInformer<VMDisk & KubernetesObject>(kube, VMDiskKind);
  const placedHere = `${NODE_LABEL}=${nodeName}`;
  const snapshotInformer = kindInformer<VMSnapshot & KubernetesObject>(kube, VMSnapshotKind, placedHere);
  const restoreInformer = kindInformer<VMRestore & KubernetesObject>(kube, VMRestoreKind, placedHere);
  const locks = new DomainLocks();
  const namespaces = makeSlimInformer<V1Namespace>(kube.http, "/api/v1/namespaces");
  const clusterId = (await kube.core.readNamespace({ name: "kube-system" })).metadata?.uid ?? "";
  await ensureDefaultPool(libvirt, defaultPool, log);
  // The import directories exist from the start, so users know where images go.
  for (const dir of importDirs) await mkdir(dir, { recursive: true }).catch(() => undefined);
  let statistics: StatsCollector | undefined;
  const orphans = new OrphanReporter({
    kube,
    libvirt,
    clusterId,
    nodeName,
    vmUid: (ns, name) => vms.get(name, ns)?.metadata.uid,
    diskExists: (ns, name) => diskInformer.get(name, ns) !== undefined,
    registry,
    log,
  });
  const reconciler = new NodeVmReconciler({
    kube,
    libvirt,
    refreshStatistics: () => statistics?.sampleNow() ?? Promise.resolve(),
    cache: vms,
    disks: diskInformer,
    nodeName,
    clusterId,
    host,
    consoleLogDir,
    defaultPool: defaultPool.name,
    admission: {
      policyOf: (ns) => tenantPolicy(namespaces.get(ns), tenancy),
      identities: {
        clusterId,
        nodeName,
        vmsSharing: (vm) => vmIndex.sharing(vm),
        placedHere: (ns, name) => vms.get(name, ns) !== undefined,
        ...libvirtDomainHolding(libvirt),
      },
      dhcpHosts: async (network) => (await networkHosts(libvirt, network))?.hosts,
      media: {
        nodeName,
        mediaDirs,
        importDirs,
        agentStateDirs: agentStateDirsOf(process.env, consoleLogDir),
        poolDirs: () => poolTargets(libvirt),
        libvirt,
        diskNamed: (ns, name) => diskInformer.get(name, ns),
        defaultPool: defaultPool.name,
      },
    },
    locks,
    snapshotInProgress: (vm) =>
      snapshotInformer
        .list(vm.metadata.namespace)
        .some(
          (s) =>
            s.spec.vmName === vm.metadata.name &&
            s.status?.phase === "InProgress" &&
            s.status.vmUID === vm.metadata.uid,
        ),
    snapshotBytes: (vm) =>
      snapshotInformer
        .list(vm.metadata.namespace)
        .filter((s) => s.spec.vmName === vm.metadata.name && s.status?.vmUID === vm.metadata.uid)
        .reduce((sum, s) => sum + (s.status?.storedBytes ?? 0), 0),
    orphansChanged: () => orphans.changed(),
    room,
    log,
  });
  const queue = new WorkQueue("virtualmachine-node", (key) => reconciler.reconcile(key), {
    concurrency: vmWorkers,
    registry,
    onError: logFailures(log, "VirtualMachine"),
  });

  const diskReconciler = new NodeDiskReconciler({
    kube,
    libvirt,
    cache: diskInformer,
    nodeName,
    clusterId,
    defaultPool: defaultPool.name,
    importDirs,
    imports,
    refreshMs: statisticsIntervalMs,
    tenancy: {
      refusal: (disk) => {
        const ns = disk.metadata.namespace ?? "";
        return diskRefusal(disk, diskInformer.list(ns), tenantPolicy(namespaces.get(ns), tenancy));
      },
    },
    locks,
    stateDirs: agentStateDirsOf(process.env, consoleLogDir),
    snapshots: snapshotInformer,
    orphansChanged: () => orphans.changed(),
    log,
  });
  const diskQueue = new WorkQueue("vmdisk-node", (key) => diskReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VMDisk"),
  });

  const snapshotReconciler = new NodeSnapshotReconciler({
    kube,
    libvirt,
    room,
    snapshots: snapshotInformer,
    restores: restoreInformer,
    vms,
    disks: diskInformer,
    nodeName,
    clusterId,
    defaultPool: defaultPool.name,
    memoryDir: snapshotMemoryDirOf(process.env),
    locks,
    log,
  });
  const snapshotQueue = new WorkQueue("vmsnapshot-node", (key) => snapshotReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VMSnapshot"),
  });
  const restoreReconciler = new NodeRestoreReconciler({
    kube,
    libvirt,
    restores: restoreInformer,
    snapshots: snapshotInformer,
    vms,
    disks: diskInformer,
    nodeName,
    clusterId,
    memoryDir: snapshotMemoryDirOf(process.env),
    locks,
    room,
    restored: (vmKey, message, running) => {
      reconciler.restored(vmKey, message, running);
      queue.add(vmKey);
    },
    log,
  });
  const restoreQueue = new WorkQueue("vmrestore-node", (key) => restoreReconciler.reconcile(key), {
    registry,
    onError: logFailures(log, "VMRestore"),
  });

  let ready = false;
  const stuck = stuckWorkers(
    { virtualmachines: queue, vmdisks: diskQueue, vmsnapshots: snapshotQueue, vmrestores: restoreQueue },
    stuckWorkerMs,
  );
  const live = () => {
    const lost = libvirt.disconnectedSince();
    if (lost !== undefined && Date.now() - lost > libvirtUnreachableMs)
      return `libvirt (${libvirtUri}) unreachable for ${Math.round((Date.now() - lost) / 1000)}s`;
    // A call is rejected at its deadline; one still waiting well past it means a stuck loop.
    const overdue = libvirt.inFlight().find((c) => overdueBy(c) > OVERDUE_SLACK_MS);
    if (overdue) return `libvirt call ${overdue.procedure} is past its deadline of ${overdue.deadlineMs} ms`;
    return stuck();
  };
  const server = await startHttpServer(port, registry, () => ready && libvirt.connected, live);
  watchNodeVms(queue, reconciler, informer, diskInformer, namespaces, libvirt, room);
  watchNodeDisks(diskQueue, diskInformer, nodeName);
  watchNodeSnapshots(snapshotQueue, snapshotInformer, restoreInformer, nodeName);
  watchNodeRestores(restoreQueue, restoreInformer, nodeName, {
    room,
    keys: () => restoreReconciler.waitingForRoom(),
  });
  // A disk gone takes what snapshots kept inside it along: they say so.
  watchRelated(diskInformer, snapshotQueue, (d, verb) =>
    verb !== "delete"
      ? []
      : snapshotInformer
          .list(d.metadata?.namespace)
          .filter((s) => s.status?.disks?.some((x) => x.vmDisk === d.metadata?.name))
          .map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`),
  );
  // A disk made from another waits for it (Ready; a VMTemplate's base for a linked clone); a
  // disk being deleted waits for its linked clones to go.
  watchRelated(
    diskInformer,
    diskQueue,
    (d) =>
      diskInformer
        .list(d.metadata?.namespace)
        .filter((other) =>
          other.spec.source?.disk?.name === d.metadata?.name
            ? other.status?.phase !== "Ready"
            : other.metadata?.deletionTimestamp !== undefined &&
              d.spec.source?.disk?.linked === true &&
              d.spec.source.disk.name === other.metadata?.name,
        )
        .map((other) => `${other.metadata?.namespace}/${other.metadata?.name}`),
    DISK_VIEW,
  );
  // A disk made from a snapshot waits for it to be taken.
  watchRelated(snapshotInformer, diskQueue, (s) =>
    diskInformer
      .list(s.metadata?.namespace)
      .filter((d) => d.spec.source?.snapshot?.name === s.metadata?.name)
      .map((d) => `${d.metadata?.namespace}/${d.metadata?.name}`),
  );
  // A snapshot taken or removed changes its VM's storedData.
  watchRelated(snapshotInformer, queue, (s) =>
    s.metadata?.namespace ? [`${s.metadata.namespace}/${s.spec.vmName}`] : [],
  );
  libvirt.on("disconnected", (err: Error) =>
    log.warn({ err: err.message }, "libvirt connection lost; reconnecting"),
  );
  libvirt.on("reconnected", () => log.info("libvirt reconnected; resyncing every VM"));
  await libvirt.enableDomainEvents();
  // What changed before events came is counted now.
  await resyncRoom(room, libvirt);
  await startInformerSynced(namespaces, "namespaces", log);
  await startInformerSynced(diskInformer, "vmdisks", log);
  await startInformerSynced(informer, "virtualmachines", log);
  await startInformerSynced(snapshotInformer, "vmsnapshots", log);
  await startInformerSynced(restoreInformer, "vmrestores", log);

  // Domains of ours whose VM is gone (deleted while the agent was down) get reconciled too.
  for (const dom of await libvirt.listAllDomains()) {
    // A domain undefined since the list was taken is simply gone.
    const xml = await unlessNotFound(libvirt.domainXml(dom, DomainXmlFlags.Inactive));
    const owner = xml ? parseOwnership(xml) : undefined;
    if (owner?.cluster === clusterId) queue.add(`${owner.namespace}/${owner.name}`);
  }
  // Domains and volumes whose object went while the agent could not act: kept and reported.
  void orphans.start(controller.signal);
  // The heartbeat has connections of its own: reconciles queued on a slow API server never hold
  // up the Lease that says this node is alive (two: a hung request leaves the next beat one).
  await runNodePublisher(await connectKube(undefined, undefined, 2), libvirt, {
    nodeName,
    namespace,
    defaultStoragePool: defaultPool.name,
    pools: new PoolMetrics(registry, nodeName),
    log,
    signal: controller.signal,
  });
  statistics = new StatsCollector({
    kube,
    libvirt,
    vms,
    disks: diskInformer,
    nodeName,
    registry,
    intervalMs: statisticsIntervalMs,
    log,
  });
  statistics.start(controller.signal);
  ready = true;
  log.info({ nodeName, clusterId, libvirtUri, hypervisors: host.hypervisors, port }, "agent started");

  const shutdown = async (signal: string) => {
    log.info({ signal }, "agent stopping; guests keep running");
    ready = false;
    controller.abort();
    await Promise.all(
      [informer, diskInformer, namespaces, snapshotInformer, restoreInformer].map((i) => i.stop()),
    );
    await Promise.all([queue, diskQueue, snapshotQueue, restoreQueue].map((q) => q.shutdown()));
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

/** What the guests running on this node take, kept to libvirt's word, for starts to fit beside. */
async function runningRoom(libvirt: LibvirtClient, nodeName: string): Promise<NodeRoom> {
  const info = await libvirt.nodeInfo();
  const room = new NodeRoom(
    nodeName,
    () => ({ cpus: info.cpus, memoryBytes: info.memoryKiB * 1024 }),
    cpuOvercommitOf(process.env.CPU_OVERCOMMIT),
  );
  await resyncRoom(room, libvirt);
  keepRoomCurrent(room, libvirt, log);
  return room;
}
