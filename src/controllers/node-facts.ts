// What agents publish about their node and how the controller reads it back: capacity and
// hypervisors in a Node annotation, liveness in a heartbeat Lease. Shared by both sides.
import type { V1Lease, V1Node } from "@kubernetes/client-node";
import { PREFIX } from "../api/names.ts";
import type { NetworkPools } from "../hypervisor/network.ts";

export const CAPACITY_ANNOTATION = `${PREFIX}capacity`;
export const NODE_ENABLED_LABEL = `${PREFIX}enabled`;
export const HEARTBEAT_LEASE_PREFIX = "libvirt-operator-agent-";
/** A node whose agent has not renewed its lease for this long is not used for new VMs. */
export const HEARTBEAT_FRESH_MS = 40_000;
export const HEARTBEAT_INTERVAL_MS = 10_000;

export interface NodeCapacity {
  cpus: number;
  memoryBytes: number;
  hypervisors: Array<"kvm" | "qemu">;
  /** Active libvirt networks and their DHCP pools, for address allocation. */
  networks?: Record<string, NetworkPools>;
  /** Active storage pools (free space rounded down to GiB so small writes cause no Node updates). */
  storagePools?: Record<string, StoragePoolFacts>;
  /** The pool a VMDisk without spec.storagePool goes to. */
  defaultStoragePool?: string;
  /** libvirt and hypervisor versions, for humans. */
  libvirtVersion?: string;
  hypervisorVersion?: string;
}

export interface StoragePoolFacts {
  type: string;
  shared: boolean;
  capacityBytes: number;
  availableBytes: number;
}

/** Kubernetes' non-graceful node shutdown: an admin says the node is shut down for good. */
export const OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service";

export function nodeOutOfService(node: V1Node): boolean {
  return (node.spec?.taints ?? []).some((t) => t.key === OUT_OF_SERVICE_TAINT);
}

/** No new VMs or disks go to a cordoned (kubectl cordon) or out-of-service node. */
export function nodeCordoned(node: V1Node): boolean {
  return node.spec?.unschedulable === true || nodeOutOfService(node);
}

export function heartbeatLeaseName(node: string): string {
  return `${HEARTBEAT_LEASE_PREFIX}${node}`.slice(0, 253);
}

export function hypervisorLabel(h: string): string {
  return `${PREFIX}hypervisor.${h}`;
}

export function parseCapacity(annotation: string | undefined): NodeCapacity | undefined {
  if (!annotation) return undefined;
  try {
    const v = JSON.parse(annotation) as Partial<NodeCapacity>;
    if (typeof v.cpus !== "number" || typeof v.memoryBytes !== "number" || !Array.isArray(v.hypervisors))
      return undefined;
    return {
      cpus: v.cpus,
      memoryBytes: v.memoryBytes,
      hypervisors: v.hypervisors,
      ...(v.networks && typeof v.networks === "object" ? { networks: v.networks } : {}),
      ...(v.storagePools && typeof v.storagePools === "object" ? { storagePools: v.storagePools } : {}),
      ...(typeof v.defaultStoragePool === "string" ? { defaultStoragePool: v.defaultStoragePool } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * A filter for Lease events that change which nodes can take work: a heartbeat that appears,
 * goes, or renews after it had gone stale. A fresh heartbeat's renewals (every few seconds
 * per node) and other Leases (the controller's own) are no news.
 */
export function heartbeatRevivals(): (lease: V1Lease, verb: "add" | "update" | "delete") => boolean {
  const lastRenew = new Map<string, number>();
  return (lease, verb) => {
    const name = lease.metadata?.name ?? "";
    if (!name.startsWith(HEARTBEAT_LEASE_PREFIX)) return false;
    if (verb === "delete") {
      lastRenew.delete(name);
      return true;
    }
    const renew = new Date(lease.spec?.renewTime ?? 0).getTime();
    const before = lastRenew.get(name);
    lastRenew.set(name, renew);
    return before === undefined || renew - before > HEARTBEAT_FRESH_MS;
  };
}
