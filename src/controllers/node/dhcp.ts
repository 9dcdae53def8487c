// DHCP reservations for a VM's addresses in the node's libvirt networks: <host/> entries
// added for what the controller assigned, stale ones of the same VM removed.
import { createHash } from "node:crypto";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { type DhcpHost, dhcpHostXml, ipElementIndex, parseDhcpHosts } from "../../hypervisor/network.ts";

/** A DNS label naming the VM's interface in dnsmasq (IPv6 reservations are keyed by name). */
export function dhcpHostName(namespace: string, name: string, nic: string): string {
  const full = nic === "default" ? `${name}-${namespace}` : `${name}-${nic}-${namespace}`;
  const clean = full.toLowerCase().replace(/[^a-z0-9-]/g, "-");
  if (clean.length <= 63) return clean;
  const hash = createHash("sha256").update(full).digest("hex").slice(0, 8);
  return `${clean.slice(0, 54)}-${hash}`;
}

export interface Reservation {
  network: string;
  host: DhcpHost;
}

/** Pure: the reservations a VM should have, from the addresses in its status. */
export function desiredReservations(vm: VirtualMachine): Reservation[] {
  const ns = vm.metadata.namespace ?? "default";
  return (vm.status?.interfaces ?? []).flatMap((i) => {
    const out: Reservation[] = [];
    if (!i.network) return out;
    const name = dhcpHostName(ns, vm.metadata.name, i.name);
    if (i.ipv4 && i.mac)
      out.push({ network: i.network, host: { mac: i.mac.toLowerCase(), name, ip: i.ipv4 } });
    if (i.ipv6) out.push({ network: i.network, host: { name, ip: i.ipv6 } });
    return out;
  });
}

/** Pure: whether an existing entry belongs to the VM (its MACs or its names). */
function belongsTo(h: DhcpHost, macs: Set<string>, names: Set<string>): boolean {
  return (h.mac !== undefined && macs.has(h.mac)) || (h.name !== undefined && names.has(h.name));
}

/**
 * Makes the networks hold exactly WANTED for this VM. Entries that collide with a wanted one
 * (same MAC, name or address, left by a VM whose agent died) are replaced. Returns what changed.
 */
export async function syncReservations(
  libvirt: LibvirtClient,
  vm: VirtualMachine,
  wanted: Reservation[],
): Promise<string[]> {
  const ns = vm.metadata.namespace ?? "default";
  const macs = new Set((vm.status?.interfaces ?? []).flatMap((i) => (i.mac ? [i.mac.toLowerCase()] : [])));
  const names = new Set((vm.status?.interfaces ?? []).map((i) => dhcpHostName(ns, vm.metadata.name, i.name)));
  const networks = new Set([
    ...wanted.map((w) => w.network),
    ...(vm.status?.interfaces ?? []).flatMap((i) => (i.network ? [i.network] : [])),
  ]);
  const changes: string[] = [];
  for (const network of networks) {
    const net = await libvirt.lookupNetwork(network).catch(() => undefined);
    if (!net) continue;
    const xml = await libvirt.networkXml(net);
    const existing = parseDhcpHosts(xml);
    const parentOf = (h: DhcpHost) => ipElementIndex(xml, h.ip.includes(":") ? "ipv6" : "ipv4");
    const want = wanted.filter((w) => w.network === network).map((w) => w.host);
    const same = (a: DhcpHost, b: DhcpHost) => a.ip === b.ip && a.mac === b.mac && a.name === b.name;
    for (const h of existing) {
      const stale = belongsTo(h, macs, names) && !want.some((w) => same(w, h));
      const collides = want.some(
        (w) =>
          !same(w, h) &&
          (w.ip === h.ip ||
            (w.mac && w.mac === h.mac) ||
            (w.name && w.name === h.name && w.ip.includes(":") === h.ip.includes(":"))),
      );
      if (stale || collides) {
        await libvirt.removeDhcpHost(net, dhcpHostXml(h), parentOf(h));
        changes.push(`removed ${h.ip} from ${network}`);
      }
    }
    for (const w of want) {
      if (existing.some((h) => same(w, h))) continue;
      if (parentOf(w) < 0) continue; // the network has no pool of that family
      await libvirt.addDhcpHost(net, dhcpHostXml(w), parentOf(w));
      changes.push(`reserved ${w.ip} in ${network}`);
    }
  }
  return changes;
}
