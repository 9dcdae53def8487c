// Fault-injection helpers: what a namespace holds on the node (domains, volumes) to check that a
// fault left nothing twice, and timing a fault to when an operation is under way.
import { setTimeout as sleep } from "node:timers/promises";
import { virsh } from "./operator.ts";
import { kubectl } from "./stack.ts";

/** The node agent's default storage pool (src/cmd/agent.ts STORAGE_POOL_NAME). */
export const DEFAULT_POOL = "libvirt-operator";

/** Domains of NAMESPACE on the system libvirtd ("<namespace>_<name>"), running or not. */
export async function domainsOf(namespace: string): Promise<string[]> {
  const names = (await virsh("list", "--all", "--name")).split("\n").map((l) => l.trim());
  return names.filter((n) => n.startsWith(`${namespace}_`)).sort();
}

/** Volumes of NAMESPACE in the default pool ("<namespace>_<name>.qcow2|img" and anything else). */
export async function volumesOf(namespace: string): Promise<string[]> {
  await virsh("pool-refresh", DEFAULT_POOL).catch(() => undefined);
  const lines = (await virsh("vol-list", DEFAULT_POOL)).split("\n").slice(2);
  return lines
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${namespace}_`))
    .sort();
}

/** Names of every object of RESOURCE in NAMESPACE. */
export async function namesOf(resource: string, namespace: string): Promise<string[]> {
  const { stdout } = await kubectl(["get", resource, "-n", namespace, "-o", "name"]);
  return stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => l.slice(l.indexOf("/") + 1))
    .sort();
}

/** Polls CHECK every 100 ms until it holds; returns the time taken, or undefined after TIMEOUT_MS. */
export async function within(check: () => Promise<boolean> | boolean, timeoutMs: number) {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (
      await Promise.resolve()
        .then(check)
        .catch(() => false)
    )
      return Date.now() - started;
    await sleep(100);
  }
  return undefined;
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
