// Pure: libvirt network XML → its DHCP address pools and host reservations, address
// arithmetic for IPv4 and IPv6, and the <host/> entries the operator reserves.
import { isIPv4, isIPv6 } from "node:net";
import { XMLBuilder, XMLParser } from "fast-xml-parser";

export interface AddressRange {
  start: string;
  end: string;
}

export interface NetworkPools {
  ipv4?: AddressRange;
  ipv6?: AddressRange;
}

export interface DhcpHost {
  mac?: string;
  name?: string;
  ip: string;
}

/** Pure: the same entry, field by field. */
export const sameDhcpHost = (a: DhcpHost, b: DhcpHost): boolean =>
  a.ip === b.ip && a.mac === b.mac && a.name === b.name;

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@_", parseTagValue: false });
const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  suppressEmptyNode: true,
});

type X = Record<string, unknown>;
const list = (v: unknown): X[] => (Array.isArray(v) ? v : v === undefined || v === "" ? [] : [v]) as X[];
const attr = (x: X | undefined, name: string) => (x?.[`@_${name}`] as string | undefined) ?? undefined;

function ipElements(xml: string): X[] {
  const doc = parser.parse(xml) as { network?: { ip?: unknown } };
  return list(doc.network?.ip);
}

/** The first DHCP range of each family. */
export function parseNetworkPools(xml: string): NetworkPools {
  const pools: NetworkPools = {};
  for (const ip of ipElements(xml)) {
    const family = attr(ip, "family") ?? "ipv4";
    const range = list((ip.dhcp as X | undefined)?.range)[0];
    const start = attr(range, "start");
    const end = attr(range, "end");
    if (!start || !end) continue;
    if (family === "ipv4" && !pools.ipv4) pools.ipv4 = { start, end };
    if (family === "ipv6" && !pools.ipv6) pools.ipv6 = { start, end };
  }
  return pools;
}

/** Index of the network's first <ip> element of FAMILY (virNetworkUpdate's parentIndex). */
export function ipElementIndex(xml: string, family: "ipv4" | "ipv6"): number {
  return indexOfFamily(ipElements(xml), family);
}

const indexOfFamily = (ips: X[], family: "ipv4" | "ipv6") =>
  ips.findIndex((ip) => (attr(ip, "family") ?? "ipv4") === family);

function hostsOf(ips: X[]): DhcpHost[] {
  const hosts: DhcpHost[] = [];
  for (const ip of ips) {
    for (const h of list((ip.dhcp as X | undefined)?.host)) {
      const addr = attr(h, "ip");
      if (!addr) continue;
      const mac = attr(h, "mac");
      const name = attr(h, "name");
      hosts.push({ ip: addr, ...(mac ? { mac: mac.toLowerCase() } : {}), ...(name ? { name } : {}) });
    }
  }
  return hosts;
}

/** Every <host/> reservation of the network, both families. */
export function parseDhcpHosts(xml: string): DhcpHost[] {
  return hostsOf(ipElements(xml));
}

/**
 * The reservations and the index of each family's <ip> element, from one parse: the XML holds
 * every VM's entries, so a VM's reconcile parsing it once per change would cost O(VMs) each time.
 */
export function parseDhcpLayout(xml: string): {
  hosts: DhcpHost[];
  ipIndex: Record<"ipv4" | "ipv6", number>;
} {
  const ips = ipElements(xml);
  return {
    hosts: hostsOf(ips),
    ipIndex: { ipv4: indexOfFamily(ips, "ipv4"), ipv6: indexOfFamily(ips, "ipv6") },
  };
}

export function dhcpHostXml(h: DhcpHost): string {
  return builder.build({
    host: { ...(h.mac ? { "@_mac": h.mac } : {}), ...(h.name ? { "@_name": h.name } : {}), "@_ip": h.ip },
  }) as string;
}

export function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return ip.split(".").reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
  // A scoped address (fd00::5%eth0) is no address a pool hands out.
  if (!isIPv6(ip) || ip.includes("%")) throw new Error(`not an IP address: ${ip}`);
  const [head = "", tail = ""] = ip.split("::");
  // A last part in dotted form (::ffff:10.0.0.5) is two groups, not one hex group.
  const group = (g: string) => {
    if (!g.includes(".")) return [BigInt(Number.parseInt(g, 16))];
    const v4 = ipToBigInt(g);
    return [v4 >> 16n, v4 & 0xffffn];
  };
  const parse = (s: string) => (s ? s.split(":").flatMap(group) : []);
  const h = parse(head);
  const t = parse(tail);
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill(0n), ...t] : h;
  return groups.reduce((n, g) => (n << 16n) | g, 0n);
}

export function bigIntToIp(n: bigint, family: "ipv4" | "ipv6"): string {
  if (family === "ipv4") {
    return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join(".");
  }
  const groups = Array.from({ length: 8 }, (_, i) => ((n >> BigInt((7 - i) * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  if (best.at < 0) return groups.join(":");
  return `${groups.slice(0, best.at).join(":")}::${groups.slice(best.at + best.len).join(":")}`;
}

export function inRange(ip: string, range: AddressRange): boolean {
  try {
    const n = ipToBigInt(ip);
    return n >= ipToBigInt(range.start) && n <= ipToBigInt(range.end);
  } catch {
    return false;
  }
}

/** IP as bigIntToIp spells it (one spelling per address), or as it is when it is no address. */
export function canonicalIp(ip: string): string {
  try {
    return bigIntToIp(ipToBigInt(ip), isIPv4(ip) ? "ipv4" : "ipv6");
  } catch {
    return ip;
  }
}

/**
 * The lowest address of RANGE that TAKEN (asked with canonical spellings) leaves free, looking
 * from FROM on when every address below it is known taken.
 */
export function firstFree(
  range: AddressRange,
  family: "ipv4" | "ipv6",
  taken: (ip: string) => boolean,
  from?: bigint,
): string | undefined {
  const end = ipToBigInt(range.end);
  const start = ipToBigInt(range.start);
  for (let n = from !== undefined && from > start ? from : start; n <= end; n++) {
    const ip = bigIntToIp(n, family);
    if (!taken(ip)) return ip;
  }
  return undefined;
}

/** The lowest address of RANGE not in USED (any spelling), or undefined when full. */
export function lowestFree(
  range: AddressRange,
  used: ReadonlySet<string>,
  family: "ipv4" | "ipv6",
): string | undefined {
  const canonical = new Set([...used].map(canonicalIp));
  return firstFree(range, family, (ip) => canonical.has(ip));
}
