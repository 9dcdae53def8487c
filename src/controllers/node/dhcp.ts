// DHCP reservations for a VM's addresses in the node's libvirt networks: <host/> entries
// added for what the controller assigned, stale ones of the same VM removed.
// Names are exact: a readable part for people reading `virsh net-dumpxml`, then a hash of the
// exact (namespace, name, interface) triple, so no two VMs of any namespaces share a name and
// one VM's reconcile never takes another's entry for its own.
import { createHash } from "node:crypto";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import { type LibvirtClient, LibvirtError } from "../../hypervisor/libvirt/index.ts";
import { type DhcpHost, dhcpHostXml, sameDhcpHost } from "../../hypervisor/network.ts";
import { placementOf } from "../vm-placement.ts";
import { hostChanged, networkHosts, oneAtATime } from "./network-hosts.ts";

/** Base32 characters of the hash in a host name: 100 bits, beyond reach of a crafted collision. */
const HASH_CHARS = 20;
const DNS_LABEL_MAX = 63;
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

function readablePart(namespace: string, name: string, nic: string): string {
  const full = nic === "default" ? `${name}-${namespace}` : `${name}-${nic}-${namespace}`;
  return full.toLowerCase().replace(/[^a-z0-9-]/g, "-");
}

/**
 * A DNS label naming the VM's interface in dnsmasq (IPv6 reservations are keyed by name):
 * `<name>-[<nic>-]<namespace>` cut to fit, then a hash of the exact triple. Unique per
 * (namespace, name, interface): `b-c`/`a` and `c`/`a-b` read alike but hash apart.
 */
export function dhcpHostName(namespace: string, name: string, nic: string): string {
  const digest = createHash("sha256")
    .update(JSON.stringify([namespace, name, nic]))
    .digest();
  const hash = base32(digest).slice(0, HASH_CHARS);
  const readable = readablePart(namespace, name, nic)
    .slice(0, DNS_LABEL_MAX - HASH_CHARS - 1)
    .replace(/-+$/, "");
  return `${readable}-${hash}`;
}

/**
 * The name earlier versions gave (`<name>-[<nic>-]<namespace>`, hashed only when too long). It
 * is ambiguous across namespaces, so an entry under it counts as the VM's only when its MAC
 * or address is the VM's too; such entries are replaced by ones under the exact name.
 */
export function legacyDhcpHostName(namespace: string, name: string, nic: string): string {
  const full = nic === "default" ? `${name}-${namespace}` : `${name}-${nic}-${namespace}`;
  const clean = readablePart(namespace, name, nic);
  if (clean.length <= DNS_LABEL_MAX) return clean;
  const hash = createHash("sha256").update(full).digest("hex").slice(0, 8);
  return `${clean.slice(0, 54)}-${hash}`;
}

export interface Reservation {
  network: string;
  host: DhcpHost;
}

/**
 * Pure: the reservations a VM should have, from the addresses it was given (its placement), on
 * the networks its spec asks for (those its namespace was allowed; no other, whatever a placement
 * says).
 */
export function desiredReservations(vm: VirtualMachine): Reservation[] {
  const ns = vm.metadata.namespace ?? "default";
  const asked = new Map(desiredInterfaces(vm).map((i) => [i.name, i.network]));
  return placementOf(vm).interfaces.flatMap((i) => {
    const out: Reservation[] = [];
    if (!i.network || asked.get(i.name) !== i.network) return out;
    const name = dhcpHostName(ns, vm.metadata.name, i.name);
    if (i.ipv4 && i.mac)
      out.push({ network: i.network, host: { mac: i.mac.toLowerCase(), name, ip: i.ipv4 } });
    if (i.ipv6) out.push({ network: i.network, host: { name, ip: i.ipv6 } });
    return out;
  });
}

/** What identifies a VM's own entries on one network. */
export interface Ownership {
  /** Its exact names (one per interface). */
  names: ReadonlySet<string>;
  /** Names of the earlier scheme: its only when the MAC or address is its own too. */
  legacyNames: ReadonlySet<string>;
  macs: ReadonlySet<string>;
  /** Addresses its status holds on this network. */
  addresses: ReadonlySet<string>;
}

export function ownershipOf(vm: VirtualMachine, network: string): Ownership {
  const ns = vm.metadata.namespace ?? "default";
  const nics = placementOf(vm).interfaces;
  const here = nics.filter((i) => i.network === network);
  return {
    names: new Set(nics.map((i) => dhcpHostName(ns, vm.metadata.name, i.name))),
    legacyNames: new Set(nics.map((i) => legacyDhcpHostName(ns, vm.metadata.name, i.name))),
    macs: new Set(nics.flatMap((i) => (i.mac ? [i.mac.toLowerCase()] : []))),
    addresses: new Set(here.flatMap((i) => [i.ipv4, i.ipv6].flatMap((ip) => (ip ? [ip] : [])))),
  };
}

/** Pure: whether an existing entry is the VM's: its exact name, or an old-scheme one that is provably its. */
export function ownsEntry(h: DhcpHost, own: Ownership): boolean {
  if (h.name === undefined) return h.mac !== undefined && own.macs.has(h.mac);
  if (own.names.has(h.name)) return true;
  return (
    own.legacyNames.has(h.name) && ((h.mac !== undefined && own.macs.has(h.mac)) || own.addresses.has(h.ip))
  );
}

/**
 * Pure: the changes that make one network hold exactly WANT for this VM. Its own entries that
 * are not wanted go; so does any entry that would block a wanted one in dnsmasq (same MAC,
 * same address, or same exact name in the same family: left by a VM whose agent died, as the
 * controller hands out each MAC and address once). Entries of other VMs stay untouched.
 */
export function planReservations(
  existing: readonly DhcpHost[],
  want: readonly DhcpHost[],
  own: Ownership,
): { remove: DhcpHost[]; add: DhcpHost[] } {
  const remove = existing.filter((h) => {
    const stale = ownsEntry(h, own) && !want.some((w) => sameDhcpHost(w, h));
    const blocks = want.some(
      (w) =>
        !sameDhcpHost(w, h) &&
        (w.ip === h.ip ||
          (w.mac !== undefined && w.mac === h.mac) ||
          (w.name !== undefined && w.name === h.name && w.ip.includes(":") === h.ip.includes(":"))),
    );
    return stale || blocks;
  });
  const add = want.filter((w) => !existing.some((h) => sameDhcpHost(w, h)));
  return { remove, add };
}

/** Makes the networks hold exactly WANTED for this VM (planReservations). Returns what changed. */
export async function syncReservations(
  libvirt: LibvirtClient,
  vm: VirtualMachine,
  wanted: Reservation[],
): Promise<string[]> {
  const networks = new Set([
    ...wanted.map((w) => w.network),
    ...placementOf(vm).interfaces.flatMap((i) => (i.network ? [i.network] : [])),
  ]);
  const changes: string[] = [];
  for (const network of networks) {
    const want = wanted.filter((w) => w.network === network).map((w) => w.host);
    const own = ownershipOf(vm, network);
    const done = await oneAtATime(libvirt, network, async () => {
      try {
        return await syncNetwork(libvirt, network, want, own, false);
      } catch (err) {
        // The entries held in memory may be behind a change made by hand: read them and try again.
        if (!(err instanceof LibvirtError)) throw err;
        return syncNetwork(libvirt, network, want, own, true);
      }
    });
    changes.push(...done);
  }
  return changes;
}

async function syncNetwork(
  libvirt: LibvirtClient,
  network: string,
  want: DhcpHost[],
  own: Ownership,
  reread: boolean,
): Promise<string[]> {
  const held = await networkHosts(libvirt, network, reread);
  if (!held) return [];
  const parentOf = (h: DhcpHost) => held.ipIndex[h.ip.includes(":") ? "ipv6" : "ipv4"];
  const plan = planReservations(held.hosts, want, own);
  // A pool of that family may have been added since the entries were read.
  if (!reread && plan.add.some((w) => parentOf(w) < 0)) return syncNetwork(libvirt, network, want, own, true);
  const changes: string[] = [];
  for (const h of plan.remove) {
    await libvirt.removeDhcpHost(held.net, dhcpHostXml(h), parentOf(h));
    hostChanged(libvirt, network, h, false);
    changes.push(`removed ${h.ip} from ${network}`);
  }
  for (const w of plan.add) {
    if (parentOf(w) < 0) continue; // the network has no pool of that family
    await libvirt.addDhcpHost(held.net, dhcpHostXml(w), parentOf(w));
    hostChanged(libvirt, network, w, true);
    changes.push(`reserved ${w.ip} in ${network}`);
  }
  return changes;
}
