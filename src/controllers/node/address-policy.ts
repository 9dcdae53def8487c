// Which addresses an http(s) image import may connect to. The agent runs privileged on the
// host network, so a URL must not reach the node's own services, the cluster's private
// networks or a cloud metadata service: by default only global unicast addresses are allowed;
// the admin may allow more ranges (IMAGE_IMPORT_ALLOWED_NETWORKS). Every spelling of an
// address is judged as what it really is: IPv4 written as IPv6 (::ffff:a.b.c.d, ::a.b.c.d)
// is judged as that IPv4 address. Pure.
import { isIP } from "node:net";
import { ipToBigInt } from "../../hypervisor/network.ts";

export interface Network {
  family: 4 | 6;
  /** The first address of the range. */
  base: bigint;
  bits: number;
  /** As written (for messages). */
  text: string;
}

export interface ParsedAddress {
  family: 4 | 6;
  value: bigint;
}

/** An entry of a network list that is not a CIDR. */
export class NetworkListError extends Error {
  readonly entry: string;
  constructor(entry: string, why: string) {
    super(`"${entry}" is not a CIDR (${why}); write e.g. 10.0.0.0/8 or fd00::/8`);
    this.entry = entry;
  }
}

export type Verdict = { allowed: true } | { allowed: false; reason: string };

/** Ranges that are not global unicast, with what they are (IANA special-purpose registries). */
const REFUSED: ReadonlyArray<readonly [string, string]> = [
  ["0.0.0.0/8", "a 'this network' address"],
  ["10.0.0.0/8", "a private address"],
  ["100.64.0.0/10", "a shared (carrier-grade NAT) address"],
  ["127.0.0.0/8", "a loopback address"],
  ["169.254.0.0/16", "a link-local address (where cloud metadata services live)"],
  ["172.16.0.0/12", "a private address"],
  ["192.0.0.0/24", "an IETF protocol assignment"],
  ["192.0.2.0/24", "a documentation address"],
  ["192.88.99.0/24", "a 6to4 relay anycast address"],
  ["192.168.0.0/16", "a private address"],
  ["198.18.0.0/15", "a benchmarking address"],
  ["198.51.100.0/24", "a documentation address"],
  ["203.0.113.0/24", "a documentation address"],
  ["224.0.0.0/4", "a multicast address"],
  ["240.0.0.0/4", "a reserved or broadcast address"],
  ["::/128", "the unspecified address"],
  ["::1/128", "a loopback address"],
  ["64:ff9b::/96", "a NAT64 address"],
  ["64:ff9b:1::/48", "a local NAT64 address"],
  ["100::/64", "a discard-only address"],
  ["2001::/23", "an IETF protocol assignment (Teredo and others)"],
  ["2001:db8::/32", "a documentation address"],
  ["2002::/16", "a 6to4 address"],
  ["3fff::/20", "a documentation address"],
  ["fc00::/7", "a unique local address"],
  ["fe80::/10", "a link-local address"],
  ["fec0::/10", "a site-local address"],
  ["ff00::/8", "a multicast address"],
];

const refusedRanges = REFUSED.map(([cidr, what]) => ({ network: parseNetwork(cidr), what }));
const GLOBAL_UNICAST_V6 = parseNetwork("2000::/3");
const IPV4_MAPPED = parseNetwork("::ffff:0:0/96");
const IPV4_COMPATIBLE = parseNetwork("::/96");

/** An IP address in any form node:net accepts (a zone, %eth0, is ignored); undefined if none. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const address = text.replace(/%.*$/, "");
  const family = isIP(address);
  return family === 4 || family === 6 ? { family, value: ipToBigInt(address) } : undefined;
}

function width(family: 4 | 6): bigint {
  return family === 4 ? 32n : 128n;
}

export function contains(network: Network, a: ParsedAddress): boolean {
  if (network.family !== a.family) return false;
  const shift = width(a.family) - BigInt(network.bits);
  return a.value >> shift === network.base >> shift;
}

/** "address/bits" → a Network; throws NetworkListError. Host bits are ignored (10.1.2.3/8 is 10/8). */
export function parseNetwork(cidr: string): Network {
  const text = cidr.trim();
  const [addressText = "", bitsText, ...more] = text.split("/");
  const address = addressText.includes("%") ? undefined : parseAddress(addressText);
  if (!address) throw new NetworkListError(text, `${addressText || "nothing"} is not an IP address`);
  if (bitsText === undefined) throw new NetworkListError(text, "the prefix length /N is missing");
  const bits = Number(bitsText);
  if (more.length > 0 || !/^\d{1,3}$/.test(bitsText) || bits > Number(width(address.family)))
    throw new NetworkListError(text, `the prefix length must be 0 to ${width(address.family)}`);
  const shift = width(address.family) - BigInt(bits);
  return { family: address.family, base: (address.value >> shift) << shift, bits, text };
}

/** "cidr,cidr,…" (spaces allowed, empty entries skipped) → Networks; throws NetworkListError. */
export function parseNetworks(list: string): Network[] {
  return list
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map(parseNetwork);
}

/** The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or -compatible (::a.b.c.d) address carries. */
function embeddedV4(a: ParsedAddress): ParsedAddress | undefined {
  if (a.family !== 6) return undefined;
  const inCompatible = contains(IPV4_COMPATIBLE, a) && a.value > 1n; // :: and ::1 are IPv6's own
  return contains(IPV4_MAPPED, a) || inCompatible ? { family: 4, value: a.value & 0xffffffffn } : undefined;
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
}

/**
 * Whether an import may connect to ADDRESS: inside an ALLOWED network, or global unicast.
 * The reason, when refused, names the address (and the IPv4 address it carries) and its range.
 */
export function judgeAddress(address: string, allowed: readonly Network[]): Verdict {
  const parsed = parseAddress(address);
  if (!parsed) return { allowed: false, reason: `${address} is not an IP address` };
  const v4 = embeddedV4(parsed);
  const judged = v4 ?? parsed;
  const shown = v4 ? `${address} (IPv4 ${formatV4(v4.value)})` : address;
  if (allowed.some((n) => contains(n, judged) || contains(n, parsed))) return { allowed: true };
  const refused = refusedRanges.find((r) => contains(r.network, judged));
  if (refused) return { allowed: false, reason: `${shown} is ${refused.what} (${refused.network.text})` };
  if (judged.family === 6 && !contains(GLOBAL_UNICAST_V6, judged))
    return { allowed: false, reason: `${shown} is not a global unicast address (outside 2000::/3)` };
  return { allowed: true };
}

/** The IP address a URL's hostname is written as (brackets removed), or undefined for a name. */
export function ipLiteralOf(hostname: string): string | undefined {
  const bare = hostname.replace(/^\[(.*)\]$/, "$1");
  return isIP(bare) ? bare : undefined;
}
