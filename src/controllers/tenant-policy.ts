// Pure: what a namespace (a tenant) may use — which libvirt networks, which storage pools, how
// many provisioned disk bytes. Cluster-wide defaults come from the chart (controller and agent
// env); an admin narrows or widens them per namespace with annotations on the Namespace, which
// tenants cannot edit (the built-in edit and admin roles hold no write on namespaces).
// Both the controller and the node agent judge with this, so a forged object is refused twice.
import type { V1Namespace } from "@kubernetes/client-node";
import { PREFIX } from "../api/names.ts";
import { isPositiveQuantity, parseQuantity } from "../api/quantity.ts";
import { type EventReason, Reason } from "./event-reasons.ts";

/** Comma-separated libvirt network names the namespace's VMs may connect to ("*": any). */
export const ALLOWED_NETWORKS_ANNOTATION = `${PREFIX}allowed-networks`;
/** Comma-separated storage pool names the namespace's VMDisks may name ("*": any). */
export const ALLOWED_POOLS_ANNOTATION = `${PREFIX}allowed-storage-pools`;
/** Most provisioned disk bytes the namespace may hold (a quantity, e.g. 500Gi). */
export const DISK_BYTES_LIMIT_ANNOTATION = `${PREFIX}disk-bytes-limit`;

/** Names allowed, or every name. */
export type Allowed = { any: true } | { any: false; names: ReadonlySet<string> };

export interface TenantPolicy {
  networks: Allowed;
  storagePools: Allowed;
  /** Undefined: no limit. */
  diskBytesLimit?: number;
  /** Where each rule came from, for messages: the namespace's annotation or the cluster default. */
  source: { networks: string; storagePools: string; diskBytesLimit: string };
}

export interface TenancyDefaults {
  networks: Allowed;
  storagePools: Allowed;
  diskBytesLimit?: number;
}

/** A refusal the user must fix: the field it concerns, a reason for conditions and Events. */
export interface Refusal {
  field: string;
  reason: EventReason;
  message: string;
}

/** "a, b" → allowed names; "*" → any. Empty → none. */
export function parseAllowed(spec: string): Allowed {
  const names = spec
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  return names.includes("*") ? { any: true } : { any: false, names: new Set(names) };
}

export function isAllowed(allowed: Allowed, name: string): boolean {
  return allowed.any || allowed.names.has(name);
}

function describeAllowed(allowed: Allowed): string {
  if (allowed.any) return "any";
  return allowed.names.size ? [...allowed.names].sort().join(", ") : "none";
}

/**
 * Cluster defaults from the environment (chart values tenancy.*): TENANT_ALLOWED_NETWORKS
 * (default "default"), TENANT_ALLOWED_STORAGE_POOLS (default "libvirt-operator", the chart's pool),
 * TENANT_DISK_BYTES_LIMIT (default none). A bad quantity throws a message naming the variable.
 */
export function tenancyDefaultsFromEnv(env: NodeJS.ProcessEnv): TenancyDefaults {
  const limit = env.TENANT_DISK_BYTES_LIMIT?.trim();
  if (limit && !isPositiveQuantity(limit))
    throw new Error(`TENANT_DISK_BYTES_LIMIT: "${limit}" is not a positive quantity such as 500Gi`);
  return {
    networks: parseAllowed(env.TENANT_ALLOWED_NETWORKS ?? "default"),
    storagePools: parseAllowed(env.TENANT_ALLOWED_STORAGE_POOLS ?? "libvirt-operator"),
    ...(limit ? { diskBytesLimit: parseQuantity(limit) } : {}),
  };
}

/** The policy of NAMESPACE: its annotations over the defaults. A bad limit annotation is ignored (the default holds). */
export function tenantPolicy(namespace: V1Namespace | undefined, defaults: TenancyDefaults): TenantPolicy {
  const annotations = namespace?.metadata?.annotations ?? {};
  const name = namespace?.metadata?.name ?? "";
  const networks = annotations[ALLOWED_NETWORKS_ANNOTATION];
  const pools = annotations[ALLOWED_POOLS_ANNOTATION];
  const limit = annotations[DISK_BYTES_LIMIT_ANNOTATION]?.trim();
  const limitValid = limit !== undefined && isPositiveQuantity(limit);
  const fromNamespace = (key: string) => `the annotation ${key} of namespace ${name}`;
  const diskBytesLimit = limitValid ? parseQuantity(limit) : defaults.diskBytesLimit;
  return {
    networks: networks === undefined ? defaults.networks : parseAllowed(networks),
    storagePools: pools === undefined ? defaults.storagePools : parseAllowed(pools),
    ...(diskBytesLimit !== undefined ? { diskBytesLimit } : {}),
    source: {
      networks: networks === undefined ? "the cluster default" : fromNamespace(ALLOWED_NETWORKS_ANNOTATION),
      storagePools: pools === undefined ? "the cluster default" : fromNamespace(ALLOWED_POOLS_ANNOTATION),
      diskBytesLimit: limitValid ? fromNamespace(DISK_BYTES_LIMIT_ANNOTATION) : "the cluster default",
    },
  };
}

/** The first network a VM's interfaces name that its namespace may not use. */
export function networkRefusal(
  interfaces: ReadonlyArray<{ name: string; network: string }>,
  policy: TenantPolicy,
): Refusal | undefined {
  const index = interfaces.findIndex((i) => !isAllowed(policy.networks, i.network));
  if (index < 0) return undefined;
  const i = interfaces[index]!;
  return {
    field: `spec.interfaces[${index}].network`,
    reason: Reason.NetworkNotAllowed,
    message:
      `spec.interfaces[${index}].network: network ${i.network} is not allowed in this namespace ` +
      `(allowed: ${describeAllowed(policy.networks)}, set by ${policy.source.networks})`,
  };
}

/** Refusal when a VMDisk names a storage pool its namespace may not use (absent: the node's default pool). */
export function poolRefusal(storagePool: string | undefined, policy: TenantPolicy): Refusal | undefined {
  if (storagePool === undefined || isAllowed(policy.storagePools, storagePool)) return undefined;
  return {
    field: "spec.storagePool",
    reason: Reason.StoragePoolNotAllowed,
    message:
      `spec.storagePool: storage pool ${storagePool} is not allowed in this namespace ` +
      `(allowed: ${describeAllowed(policy.storagePools)}, set by ${policy.source.storagePools})`,
  };
}
