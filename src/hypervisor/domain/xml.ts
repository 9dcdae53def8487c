// Pure: what a domain should look like → libvirt domain XML. Built from small parts
// (identity, memory, cpu, os, devices …), every value escaped by the XML library.
import { createHash } from "node:crypto";
import { XMLBuilder, XMLParser } from "fast-xml-parser";
import { isHotpluggable, type ObservedDisk } from "./disks.ts";

export const OWNER_NS = "https://vm.libvirt-operator.io/xmlns/owner/v1alpha1";

export interface HostFacts {
  /** QEMU binary from the host's capabilities. */
  emulator: string;
  arch: string;
  machine: string;
  /**
   * The libvirt domain type when it is not the VM's hypervisor: "test" for libvirt's test
   * driver (tests and benchmarks only), which runs every VM in memory whatever it asks for.
   */
  domainType?: "test";
}

export interface DiskDevice {
  name: string;
  path: string;
  format: "qcow2" | "raw";
  bus: "virtio" | "scsi" | "sata" | "ide";
  target: string;
  bootOrder?: number;
  readOnly?: boolean;
  shareable?: boolean;
  /** false: pause the VM on I/O errors (oVirt default); true: report them to the guest. */
  propagateErrors?: boolean;
}

export interface NicDevice {
  name: string;
  mac: string;
  network: string;
  model: "virtio" | "e1000" | "rtl8139";
  linked: boolean;
}

export interface Owner {
  /** The cluster (UID of its kube-system namespace): two clusters may share a host. */
  cluster: string;
  namespace: string;
  name: string;
  uid: string;
}

export interface DomainDefinition {
  name: string;
  uuid: string;
  owner: Owner;
  description?: string;
  hypervisor: "kvm" | "qemu";
  memoryBytes: number;
  cpu: {
    sockets: number;
    cores: number;
    threads: number;
    cputune?: { period?: number; quota?: number; shares?: number };
    numa?: Array<{ index: number; memoryBytes: number; cpus: string; hostNodes?: string }>;
  };
  boot: {
    firmware?: "bios" | "uefi";
    order?: Array<"hd" | "cdrom" | "network">;
    kernel?: string;
    initrd?: string;
    cmdline?: string;
  };
  disks: DiskDevice[];
  cdrom?: { image: string; bus: "sata" | "ide" | "scsi"; bootFirst: boolean };
  nics: NicDevice[];
  /** File the serial console is copied to (virtlogd), for humans and tests. */
  consoleLog?: string;
}

type Node = Record<string, unknown>;

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  format: true,
  suppressEmptyNode: true,
});

function identity(d: DomainDefinition): Node {
  return {
    name: d.name,
    uuid: d.uuid,
    ...(d.description ? { description: d.description } : {}),
    metadata: {
      "lvo:owner": {
        "@_xmlns:lvo": OWNER_NS,
        "lvo:cluster": d.owner.cluster,
        "lvo:namespace": d.owner.namespace,
        "lvo:name": d.owner.name,
        "lvo:uid": d.owner.uid,
        "lvo:spec-hash": specHash(d),
      },
    },
  };
}

function memory(d: DomainDefinition): Node {
  const kib = Math.ceil(d.memoryBytes / 1024);
  return {
    memory: { "@_unit": "KiB", "#text": kib },
    currentMemory: { "@_unit": "KiB", "#text": kib },
  };
}

function cpu(d: DomainDefinition): Node {
  const { sockets, cores, threads, cputune, numa } = d.cpu;
  const vcpus = sockets * cores * threads;
  const cpuNode: Node = {
    ...(d.hypervisor === "kvm" ? { "@_mode": "host-passthrough" } : {}),
    topology: { "@_sockets": sockets, "@_dies": 1, "@_cores": cores, "@_threads": threads },
  };
  if (numa?.length) {
    cpuNode.numa = {
      cell: numa.map((c) => ({
        "@_id": c.index,
        "@_cpus": c.cpus,
        "@_memory": Math.ceil(c.memoryBytes / 1024),
        "@_unit": "KiB",
      })),
    };
  }
  const out: Node = { vcpu: { "@_placement": "static", "#text": vcpus }, cpu: cpuNode };
  if (
    cputune &&
    (cputune.period !== undefined || cputune.quota !== undefined || cputune.shares !== undefined)
  ) {
    out.cputune = {
      ...(cputune.shares !== undefined ? { shares: cputune.shares } : {}),
      ...(cputune.period !== undefined ? { period: cputune.period } : {}),
      ...(cputune.quota !== undefined ? { quota: cputune.quota } : {}),
    };
  }
  const pinned = (numa ?? []).filter((c) => c.hostNodes);
  if (pinned.length) {
    out.numatune = {
      memnode: pinned.map((c) => ({ "@_cellid": c.index, "@_mode": "strict", "@_nodeset": c.hostNodes })),
    };
  }
  return out;
}

/** Per-device boot order when any device asks for one; libvirt refuses mixing it with <os><boot>. */
function usesDeviceBootOrder(d: DomainDefinition): boolean {
  return d.disks.some((x) => x.bootOrder !== undefined) || Boolean(d.cdrom?.bootFirst);
}

function os(d: DomainDefinition, host: HostFacts): Node {
  const osNode: Node = {
    ...(d.boot.firmware === "uefi" ? { "@_firmware": "efi" } : {}),
    type: { "@_arch": host.arch, "@_machine": host.machine, "#text": "hvm" },
  };
  if (d.boot.kernel) {
    osNode.kernel = d.boot.kernel;
    if (d.boot.initrd) osNode.initrd = d.boot.initrd;
    if (d.boot.cmdline) osNode.cmdline = d.boot.cmdline;
  } else if (!usesDeviceBootOrder(d)) {
    osNode.boot = (d.boot.order?.length ? d.boot.order : ["hd"]).map((dev) => ({ "@_dev": dev }));
  }
  return {
    os: osNode,
    features: { acpi: "", apic: "" },
    clock: { "@_offset": "utc" },
    on_poweroff: "destroy",
    on_reboot: "restart",
    on_crash: "destroy",
  };
}

function disk(x: DiskDevice, bootOffset: number): Node {
  return {
    "@_type": "file",
    "@_device": "disk",
    driver: {
      "@_name": "qemu",
      "@_type": x.format,
      "@_cache": "none",
      "@_error_policy": x.propagateErrors ? "report" : "stop",
    },
    source: { "@_file": x.path },
    target: { "@_dev": x.target, "@_bus": x.bus },
    ...(x.readOnly ? { readonly: "" } : {}),
    ...(x.shareable ? { shareable: "" } : {}),
    ...(x.bootOrder !== undefined ? { boot: { "@_order": x.bootOrder + bootOffset } } : {}),
    alias: { "@_name": `ua-disk-${x.name}` },
  };
}

function cdrom(c: NonNullable<DomainDefinition["cdrom"]>): Node {
  return {
    "@_type": "file",
    "@_device": "cdrom",
    driver: { "@_name": "qemu", "@_type": "raw" },
    ...(c.image ? { source: { "@_file": c.image } } : {}),
    target: { "@_dev": c.bus === "ide" ? "hdc" : "sdz", "@_bus": c.bus },
    readonly: "",
    ...(c.bootFirst ? { boot: { "@_order": 1 } } : {}),
    alias: { "@_name": "ua-cdrom" },
  };
}

export function nicXml(n: NicDevice): Node {
  return {
    "@_type": "network",
    mac: { "@_address": n.mac },
    source: { "@_network": n.network },
    model: { "@_type": n.model },
    link: { "@_state": n.linked ? "up" : "down" },
    alias: { "@_name": `ua-net-${n.name}` },
  };
}

function devices(d: DomainDefinition, host: HostFacts): Node {
  // A CD-ROM booted once takes order 1; the disks' own orders follow it.
  const bootOffset = d.cdrom?.bootFirst ? 1 : 0;
  const disks = d.disks.map((x) => disk(x, bootOffset));
  if (d.cdrom) disks.push(cdrom(d.cdrom));
  const consoleLog = d.consoleLog ? { log: { "@_file": d.consoleLog, "@_append": "on" } } : {};
  return {
    devices: {
      emulator: host.emulator,
      ...(disks.length ? { disk: disks } : {}),
      // virtio-scsi, so SCSI disks can be hot-plugged (libvirt's default controller is LSI).
      controller: { "@_type": "scsi", "@_index": 0, "@_model": "virtio-scsi" },
      ...(d.nics.length ? { interface: d.nics.map(nicXml) } : {}),
      serial: { "@_type": "pty", target: { "@_port": 0 }, ...consoleLog },
      console: { "@_type": "pty", target: { "@_type": "serial", "@_port": 0 } },
      // The QEMU guest agent's channel, always (as KubeVirt): libvirt picks the socket path
      // and adds the virtio-serial controller; snapshots quiesce through it when an agent
      // answers. libvirt's test driver takes it too. Spelling out mode='bind' (what libvirt
      // fills in) left XML_BUILDER_REVISION alone: defined domains already have this channel.
      channel: {
        "@_type": "unix",
        source: { "@_mode": "bind" },
        target: { "@_type": "virtio", "@_name": "org.qemu.guest_agent.0" },
      },
      memballoon: { "@_model": "virtio", stats: { "@_period": 10 } },
      rng: { "@_model": "virtio", backend: { "@_model": "random", "#text": "/dev/urandom" } },
      // A guest kernel that panics tells QEMU (pvpanic): libvirt then ends the domain as a
      // crash (on_crash), so RerunOnFailure restarts it, instead of it hanging as "running".
      panic: { "@_model": "isa" },
    },
  };
}

/**
 * Hash of everything that shapes the domain (a changed spec is seen without parsing libvirt's
 * XML). NIC link state and the CD-ROM medium are left out: they change live, in place.
 */
/**
 * Bumped when buildDomainXml makes a different domain from the same spec (2: the pvpanic
 * device): existing domains are redefined and say RestartRequired until their next boot.
 */
export const XML_BUILDER_REVISION = 2;

export function specHash(d: DomainDefinition): string {
  const { owner: _owner, ...shape } = d;
  const stable = {
    ...shape,
    // Hot-pluggable disks come and go live (attach/detach); only their boot order shapes the domain.
    disks: shape.disks.map((x) => (isHotpluggable(x.bus) ? { name: x.name, bootOrder: x.bootOrder } : x)),
    nics: shape.nics.map(({ linked: _linked, ...nic }) => nic),
    // The medium changes live; booting from it first is a one-boot variant of the same domain.
    ...(shape.cdrom ? { cdrom: { ...shape.cdrom, image: undefined, bootFirst: undefined } } : {}),
  };
  return createHash("sha256")
    .update(JSON.stringify({ builder: XML_BUILDER_REVISION, ...stable }))
    .digest("hex")
    .slice(0, 16);
}

/** XML of one disk, to attach it to (or detach it from) a domain. */
export function diskDeviceXml(x: DiskDevice): string {
  return deviceXml("disk", disk(x, 0));
}

/** Device changes that apply to a domain in place: NIC link states and the CD-ROM medium. */
export function liveDeviceUpdates(
  d: DomainDefinition,
  current: ReturnType<typeof parseLiveDevices>,
): string[] {
  const updates: string[] = [];
  for (const nic of d.nics) {
    const linked = current.links[nic.name];
    if (linked !== undefined && linked !== nic.linked) updates.push(deviceXml("interface", nicXml(nic)));
  }
  if (d.cdrom && current.cdromImage !== undefined && current.cdromImage !== d.cdrom.image) {
    updates.push(cdromDeviceXml(d.cdrom));
  }
  return updates;
}

export function buildDomainXml(d: DomainDefinition, host: HostFacts): string {
  const domain: Node = {
    "@_type": host.domainType ?? d.hypervisor,
    ...identity(d),
    ...memory(d),
    ...cpu(d),
    ...os(d, host),
    ...devices(d, host),
  };
  return builder.build({ domain }) as string;
}

/** XML of one device, for attach/detach/update on a running domain. */
export function deviceXml(kind: "interface" | "disk", node: Node): string {
  return builder.build({ [kind]: node }) as string;
}

export function cdromDeviceXml(c: NonNullable<DomainDefinition["cdrom"]>): string {
  return deviceXml("disk", cdrom({ ...c, bootFirst: false }));
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  parseTagValue: false,
  parseAttributeValue: false,
});

/**
 * A reconcile reads one domain's XML for its owner record, its NICs and its devices: parsed
 * once, not once per question (parsing was the agent's largest CPU cost at 100 VMs a node).
 * Keyed by the text itself, so a changed definition is parsed afresh; readers never change it.
 */
const recentlyParsed = new Map<string, unknown>();
const RECENTLY_PARSED_MAX = 16;

function parseDomainXml<T>(xml: string): T {
  const known = recentlyParsed.get(xml);
  if (known !== undefined) return known as T;
  const doc = parser.parse(xml) as T;
  if (recentlyParsed.size >= RECENTLY_PARSED_MAX) {
    const oldest = recentlyParsed.keys().next().value;
    if (oldest !== undefined) recentlyParsed.delete(oldest);
  }
  recentlyParsed.set(xml, doc);
  return doc;
}

const METADATA_TAG = /<(\/?)metadata[\s/>]/g;

/**
 * The domain's own <metadata> element, alone: the ownership questions (asked of every domain on
 * the node) need not parse the devices. libvirt writes it before any element that could hold
 * another one (name, uuid, title and description hold text, where "<" is always escaped); an
 * element of the same name nested in it is matched to its own end. Comments and CDATA are not
 * understood here: parseOwnership parses the whole definition when the element holds any.
 */
export function metadataElement(xml: string): string | undefined {
  let depth = 0;
  let start = -1;
  for (const m of xml.matchAll(METADATA_TAG)) {
    const end = xml.indexOf(">", m.index);
    if (end < 0) return undefined;
    if (m[1]) {
      depth--;
      if (depth === 0) return xml.slice(start, end + 1);
      if (depth < 0) return undefined;
    } else if (xml[end - 1] === "/") {
      if (depth === 0) return undefined; // <metadata/>: empty, nothing of ours in it
    } else {
      if (depth === 0) start = m.index;
      depth++;
    }
  }
  return undefined;
}

export interface DomainOwnership extends Owner {
  specHash: string;
}

/**
 * Our ownership record from a domain's XML, or undefined for a domain we do not own. The
 * record is recognised by its namespace URI, whatever prefix the XML uses for it.
 */
export function parseOwnership(xml: string): DomainOwnership | undefined {
  const fragment = metadataElement(xml);
  // Comments, CDATA (kept inside another application's metadata) or no element found: the
  // tags counted may not be tags, so the whole definition is parsed.
  const alone = fragment && !/<[!?]/.test(fragment) ? `<domain>${fragment}</domain>` : xml;
  const doc = parseDomainXml<{ domain?: { metadata?: Record<string, unknown> } }>(alone);
  const metadata = doc.domain?.metadata ?? {};
  for (const [tag, value] of Object.entries(metadata)) {
    const [prefix, local] = tag.includes(":") ? tag.split(":", 2) : ["", tag];
    const el = value as Record<string, unknown>;
    const uri = el?.[prefix ? `@_xmlns:${prefix}` : "@_xmlns"];
    if (local !== "owner" || uri !== OWNER_NS) continue;
    const text = (k: string) => {
      const v = el[prefix ? `${prefix}:${k}` : k];
      return typeof v === "string" ? v : "";
    };
    return {
      cluster: text("cluster"),
      namespace: text("namespace"),
      name: text("name"),
      uid: text("uid"),
      specHash: text("spec-hash"),
    };
  }
  return undefined;
}

type NicAttr = { "@_name"?: string; "@_address"?: string; "@_network"?: string; "@_dev"?: string };
type Nic = { alias?: NicAttr; mac?: NicAttr; source?: NicAttr; target?: NicAttr };
/** A domain's <interface> elements. */
function interfacesOf(xml: string): Nic[] {
  const doc = parseDomainXml<{ domain?: { devices?: { interface?: Nic | Nic[] } } }>(xml);
  const nics = doc.domain?.devices?.interface;
  return Array.isArray(nics) ? nics : nics ? [nics] : [];
}

/** Our NICs of a domain (alias ua-net-<name>): their MAC and network, as libvirt has them. */
export function parseNics(xml: string): Array<{ name: string; mac: string; network?: string }> {
  return interfacesOf(xml).flatMap((nic) => {
    const alias = nic.alias?.["@_name"];
    const mac = nic.mac?.["@_address"];
    if (!alias?.startsWith("ua-net-") || !mac) return [];
    const network = nic.source?.["@_network"];
    return [{ name: alias.slice("ua-net-".length), mac: mac.toLowerCase(), ...(network ? { network } : {}) }];
  });
}

/** Our NICs of a running domain by their host device (target dev, e.g. vnet3): tap → NIC name. */
export function nicTargets(xml: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const nic of interfacesOf(xml)) {
    const alias = nic.alias?.["@_name"];
    const dev = nic.target?.["@_dev"];
    if (alias?.startsWith("ua-net-") && dev) out[dev] = alias.slice("ua-net-".length);
  }
  return out;
}

/** Interface link states, CD-ROM medium and our disks of a domain, to change them in place. */
export function parseLiveDevices(xml: string): {
  links: Record<string, boolean>;
  cdromImage?: string;
  disks: Record<string, ObservedDisk>;
} {
  const doc = parseDomainXml<{ domain?: { devices?: { interface?: unknown; disk?: unknown } } }>(xml);
  interface El {
    "@_name"?: string;
    "@_state"?: string;
    "@_file"?: string;
    "@_device"?: string;
    "@_dev"?: string;
    "@_bus"?: string;
    alias?: El;
    target?: El;
    readonly?: unknown;
    link?: El;
    source?: El;
  }
  const asList = (v: unknown) => (Array.isArray(v) ? v : v ? [v] : []) as El[];
  const links: Record<string, boolean> = {};
  for (const nic of asList(doc.domain?.devices?.interface)) {
    const alias = nic.alias?.["@_name"];
    if (alias?.startsWith("ua-net-")) links[alias.slice("ua-net-".length)] = nic.link?.["@_state"] !== "down";
  }
  const diskEls = asList(doc.domain?.devices?.disk);
  const disks: Record<string, ObservedDisk> = {};
  for (const x of diskEls) {
    const alias = x.alias?.["@_name"];
    if (x["@_device"] !== "disk" || !alias?.startsWith("ua-disk-")) continue;
    const name = alias.slice("ua-disk-".length);
    disks[name] = {
      name,
      path: x.source?.["@_file"] ?? "",
      target: x.target?.["@_dev"] ?? "",
      bus: x.target?.["@_bus"] ?? "",
      readOnly: x.readonly !== undefined,
    };
  }
  const cd = diskEls.find((x) => x["@_device"] === "cdrom");
  return { links, ...(cd ? { cdromImage: cd.source?.["@_file"] ?? "" } : {}), disks };
}
