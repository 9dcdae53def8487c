// The DHCP host entries of the node's libvirt networks, kept in memory per libvirt connection.
// A network's XML holds every VM's entries: reading and parsing it for each VM's reconcile
// made the agent's cost grow with the square of its VMs. Only the agent changes these entries
// (dhcp.ts, one sync of a network at a time), so after one read it keeps them itself; it reads
// again after HOSTS_FRESH_MS (an entry changed by hand), when libvirt comes back, and when
// libvirt refuses a change the copy said was right or the copy lacks a family's pool.
import type { LibvirtClient, NetworkRef } from "../../hypervisor/libvirt/index.ts";
import { type DhcpHost, parseDhcpLayout, sameDhcpHost } from "../../hypervisor/network.ts";

const HOSTS_FRESH_MS = 10 * 60_000;

export interface NetworkHosts {
  net: NetworkRef;
  hosts: DhcpHost[];
  /** Index of each family's <ip> element (-1: the network has no pool of that family). */
  ipIndex: Record<"ipv4" | "ipv6", number>;
}

interface Held extends NetworkHosts {
  readAt: number;
}

const mirrors = new WeakMap<LibvirtClient, Map<string, Held>>();
/** Per connection and network, the sync under way: one at a time, so no read overtakes a change. */
const queues = new WeakMap<LibvirtClient, Map<string, Promise<unknown>>>();

/** Runs WORK on NETWORK's entries after any other under way there (a read and a change never cross). */
export function oneAtATime<T>(libvirt: LibvirtClient, network: string, work: () => Promise<T>): Promise<T> {
  let byNetwork = queues.get(libvirt);
  if (!byNetwork) {
    byNetwork = new Map();
    queues.set(libvirt, byNetwork);
  }
  const before = byNetwork.get(network) ?? Promise.resolve();
  const run = before.then(work, work);
  const settled = run.catch(() => undefined);
  byNetwork.set(network, settled);
  void settled.then(() => {
    if (byNetwork.get(network) === settled) byNetwork.delete(network);
  });
  return run;
}

function mirrorOf(libvirt: LibvirtClient): Map<string, Held> {
  let mirror = mirrors.get(libvirt);
  if (!mirror) {
    const created = new Map<string, Held>();
    libvirt.on("reconnected", () => created.clear());
    mirrors.set(libvirt, created);
    mirror = created;
  }
  return mirror;
}

/** The network's entries (read from libvirt unless held and fresh); undefined: no such network. */
export async function networkHosts(
  libvirt: LibvirtClient,
  network: string,
  reread = false,
): Promise<NetworkHosts | undefined> {
  const mirror = mirrorOf(libvirt);
  const held = mirror.get(network);
  if (held && !reread && Date.now() - held.readAt < HOSTS_FRESH_MS) return held;
  mirror.delete(network);
  const net = await libvirt.lookupNetwork(network).catch(() => undefined);
  if (!net) return undefined;
  const { hosts, ipIndex } = parseDhcpLayout(await libvirt.networkXml(net));
  const read = { net, hosts, ipIndex, readAt: Date.now() };
  mirror.set(network, read);
  return read;
}

/** An entry libvirt now holds (added) or no longer holds (removed), as the agent changed it. */
export function hostChanged(libvirt: LibvirtClient, network: string, host: DhcpHost, added: boolean) {
  const held = mirrorOf(libvirt).get(network);
  if (!held) return;
  held.hosts = held.hosts.filter((h) => !sameDhcpHost(h, host));
  if (added) held.hosts.push(host);
}
