// The agent's view of its node for the cluster: capacity and hypervisors on the Node
// object, and a heartbeat Lease renewed every few seconds.
import type { V1Lease } from "@kubernetes/client-node";
import { parseCapabilities } from "../../hypervisor/capabilities.ts";
import { type LibvirtClient, ListNetworks } from "../../hypervisor/libvirt/index.ts";
import { type NetworkPools, parseNetworkPools } from "../../hypervisor/network.ts";
import { PatchType } from "../../kube/http.ts";
import { describeError, httpStatus, type Kube, MicroTime } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import {
  CAPACITY_ANNOTATION,
  HEARTBEAT_FRESH_MS,
  HEARTBEAT_INTERVAL_MS,
  heartbeatLeaseName,
  hypervisorLabel,
  type NodeCapacity,
  type StoragePoolFacts,
} from "../node-facts.ts";
import { readStoragePools, roundedForNode } from "./storage-pools.ts";

/** The node's capacity, its pools' sizes exact (the Node annotation rounds them: publishNode). */
export async function readCapacity(
  libvirt: LibvirtClient,
  defaultStoragePool?: string,
): Promise<NodeCapacity> {
  const [info, caps, libvirtVersion, hypervisorVersion, nets, storagePools] = await Promise.all([
    libvirt.nodeInfo(),
    libvirt.capabilities(),
    libvirt.libVersion(),
    libvirt.version(),
    libvirt.listNetworks(ListNetworks.Active),
    readStoragePools(libvirt),
  ]);
  const networks: Record<string, NetworkPools> = {};
  for (const net of nets) networks[net.name] = parseNetworkPools(await libvirt.networkXml(net));
  return {
    cpus: info.cpus,
    memoryBytes: info.memoryKiB * 1024,
    hypervisors: parseCapabilities(caps).hypervisors,
    networks,
    storagePools,
    ...(defaultStoragePool ? { defaultStoragePool } : {}),
    libvirtVersion,
    hypervisorVersion,
  };
}

/** What the Node annotation says: free space rounded down, steady near what was PUBLISHED (roundedForNode). */
export function publishable(capacity: NodeCapacity, published?: NodeCapacity): NodeCapacity {
  return capacity.storagePools
    ? { ...capacity, storagePools: roundedForNode(capacity.storagePools, published?.storagePools) }
    : capacity;
}

export async function publishNode(kube: Kube, nodeName: string, capacity: NodeCapacity): Promise<void> {
  const labels: Record<string, string | null> = {};
  for (const h of ["kvm", "qemu"])
    labels[hypervisorLabel(h)] = capacity.hypervisors.includes(h as "kvm") ? "true" : null;
  await kube.core.patchNode(
    {
      name: nodeName,
      body: { metadata: { labels, annotations: { [CAPACITY_ANNOTATION]: JSON.stringify(capacity) } } },
    },
    PatchType.Merge,
  );
}

/** Renews the node's heartbeat Lease; creates it when missing. */
export async function renewHeartbeat(kube: Kube, namespace: string, nodeName: string): Promise<void> {
  const name = heartbeatLeaseName(nodeName);
  const now = new MicroTime();
  const spec = {
    holderIdentity: nodeName,
    leaseDurationSeconds: Math.round(HEARTBEAT_FRESH_MS / 1000),
    renewTime: now,
  };
  try {
    const lease = await kube.coordination.readNamespacedLease({ name, namespace });
    await kube.coordination.replaceNamespacedLease({
      name,
      namespace,
      body: { ...lease, spec: { ...lease.spec, ...spec } } as V1Lease,
    });
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
    await kube.coordination.createNamespacedLease({
      namespace,
      body: { metadata: { name, namespace }, spec: { ...spec, acquireTime: now } },
    });
  }
}

/** Publishes the node once, then keeps the heartbeat going until the signal aborts. */
export async function runNodePublisher(
  kube: Kube,
  libvirt: LibvirtClient,
  opts: {
    nodeName: string;
    namespace: string;
    defaultStoragePool?: string;
    /** Told the pools' exact sizes at every heartbeat (the agent's pool metrics). */
    pools?: { update(pools: Record<string, StoragePoolFacts>): void };
    log: Logger;
    signal: AbortSignal;
  },
): Promise<void> {
  const { nodeName, namespace, log, signal } = opts;
  let published: { capacity: NodeCapacity; text: string } | undefined;
  const beat = async () => {
    try {
      const read = await readCapacity(libvirt, opts.defaultStoragePool);
      opts.pools?.update(read.storagePools ?? {});
      const capacity = publishable(read, published?.capacity);
      const text = JSON.stringify(capacity);
      if (text !== published?.text) {
        await publishNode(kube, nodeName, capacity);
        published = { capacity, text };
        log.info({ capacity }, "published node capacity");
      }
      await renewHeartbeat(kube, namespace, nodeName);
    } catch (err) {
      log.warn({ err: describeError(err) }, "node heartbeat failed");
    }
  };
  await beat();
  const timer = setInterval(beat, HEARTBEAT_INTERVAL_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
