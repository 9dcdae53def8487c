// Orphans on this node: domains and volumes of this cluster whose object is gone without its
// finalizer having let the agent remove them (removed by force, lost in an etcd or Velero
// restore). They are kept — deleting them would lose what a restore or re-apply of the same
// object is meant to take over (domain-claim.ts, volume-claim.ts) — and reported: one log line
// when one appears or goes, a gauge, and the Node annotation the controller places a re-applied
// object by (orphan-facts.ts), written only when the set changes.

import { Gauge, type Registry } from "prom-client";
import { VirtualMachineKind } from "../../api/names.ts";
import { keyOfDomain } from "../../hypervisor/domain/from-spec.ts";
import { parseNics, parseOwnership } from "../../hypervisor/domain/xml.ts";
import {
  DomainXmlFlags,
  type LibvirtClient,
  unlessNotFound,
  uuidToString,
} from "../../hypervisor/libvirt/index.ts";
import { parseDhcpHosts } from "../../hypervisor/network.ts";
import { PatchType } from "../../kube/http.ts";
import { describeError, type Kube, objectGone } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import {
  ORPHANS_ANNOTATION,
  type OrphanDomain,
  type OrphanInterface,
  type OrphanReport,
  type OrphanVolume,
  orphanAnnotation,
} from "../orphan-facts.ts";
import { dhcpHostName } from "./dhcp.ts";
import { readStoragePools } from "./storage-pools.ts";
import { diskOfVolumeName, volumeOfOwnerMark } from "./volume-claim.ts";

/** A scan after a change waits this long, so a burst of deletions makes one scan. */
const DEBOUNCE_MS = 5_000;
/** And one every so often, for what no event told (a volume moved into a shared pool). */
const RESCAN_MS = 10 * 60_000;

export interface OrphanScanOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  clusterId: string;
  nodeName: string;
  /** The UID of the VM of this key placed on this node, as the agent's cache has it (undefined: none). */
  vmUid(namespace: string, name: string): string | undefined;
  /** A VMDisk of this key exists (the cache of every disk, whatever its node). */
  diskExists(namespace: string, name: string): boolean;
  registry?: Registry;
  log: Logger;
}

/** Pure: the addresses the network's DHCP reservations hold for an orphan's NICs. */
export function orphanInterfaces(
  namespace: string,
  name: string,
  nics: ReadonlyArray<{ name: string; mac: string; network?: string }>,
  hostsOf: (network: string) => ReadonlyArray<{ mac?: string; name?: string; ip: string }>,
): OrphanInterface[] {
  return nics.map((nic) => {
    const host = dhcpHostName(namespace, name, nic.name);
    const hosts = nic.network ? hostsOf(nic.network).filter((h) => h.name === host) : [];
    const ipv4 = hosts.find((h) => !h.ip.includes(":") && h.mac === nic.mac)?.ip;
    const ipv6 = hosts.find((h) => h.ip.includes(":"))?.ip;
    return {
      name: nic.name,
      mac: nic.mac,
      ...(nic.network ? { network: nic.network } : {}),
      ...(ipv4 ? { ipv4 } : {}),
      ...(ipv6 ? { ipv6 } : {}),
    };
  });
}

/** Pure: what changed between two reports, by kind and key, for the log. */
export function orphanChanges(before: OrphanReport, after: OrphanReport) {
  const keys = (r: OrphanReport) =>
    new Set([
      ...r.domains.map((d) => `domain ${d.namespace}/${d.name}`),
      ...r.volumes.map((v) => `volume ${v.namespace}/${v.name} (pool ${v.pool})`),
    ]);
  const was = keys(before);
  const now = keys(after);
  return { appeared: [...now].filter((k) => !was.has(k)), gone: [...was].filter((k) => !now.has(k)) };
}

export class OrphanReporter {
  private readonly o: OrphanScanOptions;
  private readonly gauge: Gauge<"kind">;
  /** UIDs the API server said are gone: they never come back, so they are not asked again. */
  private gone = new Set<string>();
  private last: OrphanReport = { domains: [], volumes: [] };
  /** The annotation as this process last wrote it. */
  private published: string | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(options: OrphanScanOptions) {
    this.o = options;
    this.gauge = new Gauge({
      name: "libvirt_operator_orphans",
      help: "Domains and volumes of this cluster on the node whose object is gone (kept, not deleted)",
      labelNames: ["kind"],
      registers: options.registry ? [options.registry] : [],
    });
  }

  /** Scans now, then again after changes (changed()) and every RESCAN_MS until SIGNAL aborts. */
  async start(signal: AbortSignal): Promise<void> {
    await this.scanNow();
    const periodic = setInterval(() => this.changed(), RESCAN_MS);
    signal.addEventListener(
      "abort",
      () => {
        clearInterval(periodic);
        clearTimeout(this.timer);
      },
      { once: true },
    );
  }

  /** Something may have become an orphan, or stopped being one: scan again shortly. */
  changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.scanNow();
    }, DEBOUNCE_MS);
  }

  /** The last report. */
  current(): OrphanReport {
    return this.last;
  }

  /** One scan at a time; a change during a scan makes one more. */
  scanNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.publish(await this.scan());
        } catch (err) {
          this.o.log.warn({ err: describeError(err) }, "orphan scan failed; the last report stands");
        }
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async scan(): Promise<OrphanReport> {
    const domains = await this.scanDomains();
    const volumes = await this.scanVolumes();
    return { domains, volumes };
  }

  private async scanDomains(): Promise<OrphanDomain[]> {
    const { libvirt, kube, clusterId } = this.o;
    const found: OrphanDomain[] = [];
    const seenGone = new Set<string>();
    const hosts = new Map<string, ReturnType<typeof parseDhcpHosts>>();
    const hostsOf = (network: string) => hosts.get(network) ?? [];
    for (const dom of await libvirt.listAllDomains()) {
      // A VM of the domain's name is placed here: its domain, or one it is taking over.
      const key = keyOfDomain(dom.name)?.split("/");
      if (key && this.o.vmUid(key[0]!, key[1]!) !== undefined) continue;
      const xml = await unlessNotFound(libvirt.domainXml(dom, DomainXmlFlags.Inactive));
      const owner = xml ? parseOwnership(xml) : undefined;
      if (!xml || !owner || owner.cluster !== clusterId || !owner.uid) continue;
      const gone = this.gone.has(owner.uid) || (await objectGone(kube, VirtualMachineKind, owner));
      if (!gone) continue;
      seenGone.add(owner.uid);
      const nics = parseNics(xml);
      for (const n of nics) {
        if (!n.network || hosts.has(n.network)) continue;
        const net = await unlessNotFound(libvirt.lookupNetwork(n.network));
        hosts.set(n.network, net ? parseDhcpHosts(await libvirt.networkXml(net)) : []);
      }
      found.push({
        namespace: owner.namespace,
        name: owner.name,
        uuid: uuidToString(dom.uuid),
        interfaces: orphanInterfaces(owner.namespace, owner.name, nics, hostsOf),
      });
    }
    this.gone = seenGone;
    return found;
  }

  private async scanVolumes(): Promise<OrphanVolume[]> {
    const { libvirt, clusterId } = this.o;
    const found: OrphanVolume[] = [];
    for (const [poolName, facts] of Object.entries(await readStoragePools(libvirt))) {
      const pool = await unlessNotFound(libvirt.lookupStoragePool(poolName));
      if (!pool) continue;
      const names = new Set((await libvirt.listVolumes(pool)).map((v) => v.name));
      for (const name of names) {
        const volume = volumeOfOwnerMark(name, clusterId);
        const disk = volume && names.has(volume) ? diskOfVolumeName(volume) : undefined;
        if (!disk || this.o.diskExists(disk.namespace, disk.name)) continue;
        found.push({
          namespace: disk.namespace,
          name: disk.name,
          pool: poolName,
          ...(facts.shared ? { shared: true } : {}),
        });
      }
    }
    return found;
  }

  private async publish(report: OrphanReport) {
    const { appeared, gone } = orphanChanges(this.last, report);
    for (const what of appeared)
      this.o.log.warn({ orphan: what }, "orphan kept: its object is gone; applying it again takes it over");
    for (const what of gone) this.o.log.info({ orphan: what }, "orphan no longer: taken over or removed");
    this.last = report;
    this.gauge.set({ kind: "domain" }, report.domains.length);
    this.gauge.set({ kind: "volume" }, report.volumes.length);
    const value = orphanAnnotation(report);
    // The first scan writes whatever it found (the agent may not read Nodes; a patch that
    // changes nothing is no write in etcd); later ones only what changed.
    if (value === this.published) return;
    await this.o.kube.core.patchNode(
      { name: this.o.nodeName, body: { metadata: { annotations: { [ORPHANS_ANNOTATION]: value } } } },
      PatchType.Merge,
    );
    this.published = value;
    this.o.log.info(
      { domains: report.domains.length, volumes: report.volumes.length },
      "orphans published on the Node",
    );
  }
}
