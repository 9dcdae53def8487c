// Pure: the facts the operator needs from libvirt's host capabilities XML.
import { XMLParser } from "fast-xml-parser";
import type { HostFacts } from "./domain/xml.ts";

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@_", parseTagValue: false });

type X = Record<string, unknown>;
const list = (v: unknown): X[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]) as X[];

export interface HostCapabilities extends HostFacts {
  /** Domain types QEMU offers here: "qemu" always, "kvm" with hardware virtualisation. */
  hypervisors: Array<"kvm" | "qemu">;
}

export function parseCapabilities(xml: string, arch = "x86_64"): HostCapabilities {
  const doc = parser.parse(xml) as { capabilities?: { guest?: unknown } };
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
