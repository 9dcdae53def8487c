// The facts the operator needs from libvirt's host capabilities XML. Pure, apart from the
// test-driver switch below.
import { XMLParser } from "fast-xml-parser";
import type { HostFacts } from "./domain/xml.ts";

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@_", parseTagValue: false });

type X = Record<string, unknown>;
const list = (v: unknown): X[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]) as X[];

export interface HostCapabilities extends HostFacts {
  /** Domain types QEMU offers here: "qemu" always, "kvm" with hardware virtualisation. */
  hypervisors: Array<"kvm" | "qemu">;
}

/**
 * Test-only (the agent's LIBVIRT_TEST_DRIVER=true): libvirt's test driver offers just domain
 * type "test" (for i686), so a node on it would offer no hypervisor. With this on, such a host
 * offers kvm and qemu backed by type "test", and the agent places and runs VMs on in-memory
 * hypervisors unchanged. Process-wide rather than a parameter because the node publisher
 * parses the capabilities again on every heartbeat.
 */
let testDriverDomains = false;

export function offerTestDriverDomains(on: boolean): void {
  testDriverDomains = on;
}

export function parseCapabilities(xml: string, arch = "x86_64"): HostCapabilities {
  const doc = parser.parse(xml) as { capabilities?: { guest?: unknown } };
  if (testDriverDomains) {
    const test = testDriverGuest(doc.capabilities?.guest, arch);
    if (test) return test;
  }
  const guest = list(doc.capabilities?.guest).find(
    (g) => g.os_type === "hvm" && (g.arch as X | undefined)?.["@_name"] === arch,
  );
  if (!guest) throw new Error(`libvirt offers no hvm guests for ${arch}`);
  const a = guest.arch as X;
  const emulator = String(a.emulator ?? "");
  const machines = list(a.machine).map((m) => (typeof m === "string" ? m : String(m["#text"] ?? "")));
  const machine = machines.includes("pc") ? "pc" : (machines[0] ?? "pc");
  const types = new Set(list(a.domain).map((d) => String(d["@_type"])));
  const hypervisors: Array<"kvm" | "qemu"> = [];
  if (types.has("kvm")) hypervisors.push("kvm");
  if (types.has("qemu")) hypervisors.push("qemu");
  return { emulator, arch, machine, hypervisors };
}

/**
 * A host whose only hvm domain type is the test driver's: the domains keep the requested arch
 * and machine (the test driver accepts any) so they look like a real host's, with type "test".
 */
function testDriverGuest(guests: unknown, arch: string): HostCapabilities | undefined {
  const guest = list(guests).find(
    (g) => g.os_type === "hvm" && list((g.arch as X | undefined)?.domain).some((d) => d["@_type"] === "test"),
  );
  if (!guest) return undefined;
  const emulator = String((guest.arch as X).emulator ?? "");
  return { emulator, arch, machine: "pc", domainType: "test", hypervisors: ["kvm", "qemu"] };
}
