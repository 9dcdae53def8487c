// The libvirt client the agent uses: opens an RPC connection (handshake.ts), offers typed
// promise-based calls, each with the deadline of its class (deadlines.ts), turns server
// messages into events, and reconnects with backoff when the daemon goes away, registering its
// callbacks again.
import { setTimeout as sleep } from "node:timers/promises";
import type { ConnectionOptions, RpcConnection } from "./connection.ts";
import { DomainEventId, NetworkSection, NetworkUpdateAffect, NetworkUpdateCommand } from "./constants.ts";
import { type Deadlines, deadlineOf, deadlinesWith, type InFlightCall } from "./deadlines.ts";
import { ConnectionClosedError } from "./errors.ts";
import { handshake, type Opened, type ServerFeatures } from "./handshake.ts";
import {
  DeviceRemovedEventMsg,
  type DomainRef,
  EventProc,
  LifecycleEventMsg,
  type NetworkRef,
  P,
  type Procedure,
  RebootEventMsg,
  type StoragePoolRef,
  type StorageVolRef,
  type TypedValue,
} from "./protocol.ts";
import { SnapshotCalls } from "./snapshots.ts";
import { type DownloadOptions, downloadStream, type UploadOptions, uploadStream } from "./stream.ts";

export type { DeadlineClass, Deadlines, InFlightCall } from "./deadlines.ts";
export { DEFAULT_DEADLINES, overdueBy } from "./deadlines.ts";

export interface LibvirtClientOptions extends Omit<ConnectionOptions, "callTimeoutMs"> {
  uri: string;
  readOnly?: boolean;
  /** Reconnect after the daemon goes away (default true). */
  reconnect?: boolean;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /**
   * Deadlines per class of call, in ms, over DEFAULT_DEADLINES (deadlines.ts says which
   * procedure is in which class and why). `handshake` bounds each (re)connect attempt,
   * `streamStall` the silence an upload or download may have.
   */
  deadlines?: Partial<Deadlines>;
}

export interface LifecycleEvent {
  domain: DomainRef;
  uuid: string;
  event: number;
  detail: number;
}

export interface DomainStatsRecord {
  domain: DomainRef;
  stats: Record<string, TypedValue>;
}

/** libvirt packs versions as major * 1,000,000 + minor * 1,000 + release. */
export function formatVersion(v: number): string {
  return `${Math.floor(v / 1e6)}.${Math.floor((v % 1e6) / 1e3)}.${v % 1e3}`;
}

export function uuidToString(uuid: Buffer): string {
  const h = uuid.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function uuidFromString(uuid: string): Buffer {
  const hex = uuid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`invalid UUID "${uuid}"`);
  return Buffer.from(hex, "hex");
}

/**
 * Events: "lifecycle" (LifecycleEvent), "reboot" (DomainRef), "deviceRemoved"
 * ({domain, alias}), "disconnected" (Error), "reconnected" (), "error" is never emitted.
 * Snapshots, save/restore and file-system freeze come from SnapshotCalls (snapshots.ts).
 */
export class LibvirtClient extends SnapshotCalls {
  private conn: RpcConnection;
  private features: ServerFeatures;
  private readonly options: LibvirtClientOptions;
  private readonly deadlines: Deadlines;
  private closing = false;
  private eventsWanted = false;
  private reconnecting?: Promise<void>;
  /** Date.now() when the connection was lost; undefined while connected. */
  private lostAt?: number;
  /** Calls made (answered or not), by procedure name: what each loop costs libvirtd. */
  private readonly callsMade = new Map<string, number>();

  private constructor(opened: Opened, options: LibvirtClientOptions, deadlines: Deadlines) {
    super();
    this.conn = opened.conn;
    this.features = opened.features;
    this.options = options;
    this.deadlines = deadlines;
    this.watch(this.conn);
  }

  static async connect(options: LibvirtClientOptions): Promise<LibvirtClient> {
    const deadlines = deadlinesWith(options.deadlines);
    return new LibvirtClient(await handshake(options, deadlines.handshake), options, deadlines);
  }

  private watch(conn: RpcConnection) {
    conn.onEvent(EventProc.Lifecycle, (r) => {
      const { msg } = LifecycleEventMsg.decode(r);
      this.emit("lifecycle", {
        domain: msg.dom,
        uuid: uuidToString(msg.dom.uuid),
        event: msg.event,
        detail: msg.detail,
      });
    });
    conn.onEvent(EventProc.Reboot, (r) => this.emit("reboot", RebootEventMsg.decode(r).msg.dom));
    conn.onEvent(EventProc.DeviceRemoved, (r) => {
      const { msg } = DeviceRemovedEventMsg.decode(r);
      this.emit("deviceRemoved", { domain: msg.dom, alias: msg.devAlias });
    });
    conn.once("close", (error: Error) => {
      if (this.closing || conn !== this.conn) return;
      this.lostAt = Date.now();
      this.emit("disconnected", error);
      if (this.options.reconnect !== false) this.reconnecting ??= this.reconnectLoop();
    });
  }

  private async reconnectLoop() {
    let delay = this.options.reconnectMinMs ?? 100;
    const max = this.options.reconnectMaxMs ?? 10_000;
    while (!this.closing) {
      await sleep(delay + Math.random() * delay * 0.2);
      if (this.closing) break;
      let opened: Opened | undefined;
      try {
        opened = await handshake(this.options, this.deadlines.handshake);
        // Handlers first (events may follow the registration at once); the close handler
        // ignores this connection until it becomes this.conn.
        this.watch(opened.conn);
        if (this.eventsWanted) await this.registerEvents(opened.conn);
        if (this.closing || opened.conn.closed) throw new ConnectionClosedError("lost while reconnecting");
        this.conn = opened.conn;
        this.features = opened.features;
        this.lostAt = undefined;
        this.reconnecting = undefined;
        this.emit("reconnected");
        return;
      } catch {
        // Never leave a half-set-up connection open beside the next attempt.
        opened?.conn.close();
        delay = Math.min(delay * 2, max);
      }
    }
    this.reconnecting = undefined;
  }

  /** True while a connection is open (false between a drop and the reconnect). */
  get connected(): boolean {
    return !this.conn.closed;
  }

  /**
   * Date.now() when the connection was lost and not yet re-established (undefined while
   * connected, and after close()): a liveness check fails the agent when this gets old.
   */
  disconnectedSince(): number | undefined {
    return this.closing ? undefined : this.lostAt;
  }

  /**
   * The calls waiting for libvirtd now, oldest first, with their deadlines (streams: the longest
   * silence allowed, measured from lastProgressAt). A call past its deadline has already been
   * rejected, so one that shows up overdue (deadlines.ts overdueBy) means a stuck event loop
   * or a call made without a deadline.
   */
  inFlight(): InFlightCall[] {
    return this.conn.closed ? [] : this.conn.calls();
  }

  /** Calls made so far by procedure name (libvirt_operator_libvirt_calls_total). */
  callCounts(): ReadonlyMap<string, number> {
    return this.callsMade;
  }

  private counted(p: { name: string }) {
    this.callsMade.set(p.name, (this.callsMade.get(p.name) ?? 0) + 1);
  }

  /** Resolves when connected again (immediately when connected). */
  async waitConnected(): Promise<void> {
    if (this.connected) return;
    await new Promise<void>((resolve) => this.once("reconnected", resolve));
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.conn.closed) return;
    await this.conn.call(P.ConnectClose, undefined, { timeoutMs: 2000 }).catch(() => undefined);
    this.conn.close();
  }

  /** Calls P with TIMEOUT_MS, or else the deadline of P's class. */
  protected override call<A, R>(p: Procedure<A, R>, args: A, timeoutMs?: number): Promise<R> {
    this.counted(p);
    return this.conn.call(p, args, { timeoutMs: timeoutMs ?? deadlineOf(p, this.deadlines) });
  }

  /** Receives lifecycle, reboot and device-removed events for every domain, also after reconnects. */
  async enableDomainEvents(): Promise<void> {
    this.eventsWanted = true;
    await this.registerEvents();
  }

  private async registerEvents(conn = this.conn) {
    const p = P.ConnectDomainEventCallbackRegisterAny;
    for (const eventID of [DomainEventId.Lifecycle, DomainEventId.Reboot, DomainEventId.DeviceRemoved]) {
      this.counted(p);
      await conn.call(p, { eventID, dom: null }, { timeoutMs: deadlineOf(p, this.deadlines) });
    }
  }

  // ---- host ----

  async hostname(): Promise<string> {
    return (await this.call(P.ConnectGetHostname, undefined)).hostname;
  }
  async capabilities(): Promise<string> {
    return (await this.call(P.ConnectGetCapabilities, undefined)).capabilities;
  }
  async nodeInfo() {
    const info = await this.call(P.NodeGetInfo, undefined);
    const model = String.fromCharCode(...info.model.filter((c) => c > 0));
    return { ...info, model, memoryKiB: info.memory };
  }
  /** Hypervisor version, e.g. 7.2.0 for QEMU 7.2. */
  async version(): Promise<string> {
    return formatVersion((await this.call(P.ConnectGetVersion, undefined)).hv_ver);
  }
  async libVersion(): Promise<string> {
    return formatVersion((await this.call(P.ConnectGetLibVersion, undefined)).lib_ver);
  }
  async uri(): Promise<string> {
    return (await this.call(P.ConnectGetUri, undefined)).uri;
  }

  // ---- domains ----

  async listAllDomains(flags = 0): Promise<DomainRef[]> {
    return (await this.call(P.ConnectListAllDomains, { need_results: 1, flags })).domains;
  }
  async lookupDomainByName(name: string): Promise<DomainRef> {
    return (await this.call(P.DomainLookupByName, { name })).dom;
  }
  async lookupDomainByUuid(uuid: string): Promise<DomainRef> {
    return (await this.call(P.DomainLookupByUuid, { uuid: uuidFromString(uuid) })).dom;
  }
  async defineDomain(xml: string, flags = 0): Promise<DomainRef> {
    return (await this.call(P.DomainDefineXmlFlags, { xml, flags })).dom;
  }
  async undefineDomain(dom: DomainRef, flags = 0): Promise<void> {
    await this.call(P.DomainUndefineFlags, { dom, flags });
  }
  /** Starts a defined domain; the returned ref carries its new id. */
  async startDomain(dom: DomainRef, flags = 0): Promise<DomainRef> {
    return (await this.call(P.DomainCreateWithFlags, { dom, flags })).dom;
  }
  async shutdownDomain(dom: DomainRef, flags = 0): Promise<void> {
    await this.call(P.DomainShutdownFlags, { dom, flags });
  }
  async destroyDomain(dom: DomainRef, flags = 0): Promise<void> {
    await this.call(P.DomainDestroyFlags, { dom, flags });
  }
  async rebootDomain(dom: DomainRef, flags = 0): Promise<void> {
    await this.call(P.DomainReboot, { dom, flags });
  }
  async resetDomain(dom: DomainRef): Promise<void> {
    await this.call(P.DomainReset, { dom, flags: 0 });
  }
  async suspendDomain(dom: DomainRef): Promise<void> {
    await this.call(P.DomainSuspend, { dom });
  }
  async resumeDomain(dom: DomainRef): Promise<void> {
    await this.call(P.DomainResume, { dom });
  }
  async domainState(dom: DomainRef): Promise<{ state: number; reason: number }> {
    return this.call(P.DomainGetState, { dom, flags: 0 });
  }
  /** Disks with an I/O error since the guest last ran (virDomainGetDiskErrors): target and DomainDiskError. */
  async domainDiskErrors(dom: DomainRef): Promise<Array<{ disk: string; error: number }>> {
    return (await this.call(P.DomainGetDiskErrors, { dom, maxerrors: 256, flags: 0 })).errors;
  }
  async domainInfo(dom: DomainRef) {
    const i = await this.call(P.DomainGetInfo, { dom });
    return {
      state: i.state,
      maxMemKiB: i.maxMem,
      memoryKiB: i.memory,
      vcpus: i.nrVirtCpu,
      cpuTimeNs: i.cpuTime,
    };
  }
  async domainXml(dom: DomainRef, flags = 0): Promise<string> {
    return (await this.call(P.DomainGetXmlDesc, { dom, flags })).xml;
  }
  async setDomainAutostart(dom: DomainRef, autostart: boolean): Promise<void> {
    await this.call(P.DomainSetAutostart, { dom, autostart: autostart ? 1 : 0 });
  }
  async domainAutostart(dom: DomainRef): Promise<boolean> {
    return (await this.call(P.DomainGetAutostart, { dom })).autostart !== 0;
  }
  async attachDevice(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(P.DomainAttachDeviceFlags, { dom, xml, flags });
  }
  async detachDevice(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(P.DomainDetachDeviceFlags, { dom, xml, flags });
  }
  async updateDevice(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(P.DomainUpdateDeviceFlags, { dom, xml, flags });
  }
  /** Grows a disk of a running domain; SIZE in bytes (flag VIR_DOMAIN_BLOCK_RESIZE_BYTES). */
  async blockResize(dom: DomainRef, disk: string, bytes: number): Promise<void> {
    await this.call(P.DomainBlockResize, { dom, disk, size: bytes, flags: 1 });
  }
  /** virConnectGetAllDomainStats: one record per domain (all domains when DOMS is empty). */
  async allDomainStats(stats: number, doms: DomainRef[] = [], flags = 0): Promise<DomainStatsRecord[]> {
    const { retStats } = await this.call(P.ConnectGetAllDomainStats, { doms, stats, flags });
    return retStats.map((rec) => ({
      domain: rec.dom,
      stats: Object.fromEntries(rec.params.map((p) => [p.field, p.value])),
    }));
  }

  // ---- storage pools ----

  async listStoragePools(flags = 0): Promise<StoragePoolRef[]> {
    return (await this.call(P.ConnectListAllStoragePools, { need_results: 1, flags })).pools;
  }
  async lookupStoragePool(name: string): Promise<StoragePoolRef> {
    return (await this.call(P.StoragePoolLookupByName, { name })).pool;
  }
  async defineStoragePool(xml: string): Promise<StoragePoolRef> {
    return (await this.call(P.StoragePoolDefineXml, { xml, flags: 0 })).pool;
  }
  async buildStoragePool(pool: StoragePoolRef, flags = 0): Promise<void> {
    await this.call(P.StoragePoolBuild, { pool, flags });
  }
  async startStoragePool(pool: StoragePoolRef): Promise<void> {
    await this.call(P.StoragePoolCreate, { pool, flags: 0 });
  }
  async destroyStoragePool(pool: StoragePoolRef): Promise<void> {
    await this.call(P.StoragePoolDestroy, { pool });
  }
  async undefineStoragePool(pool: StoragePoolRef): Promise<void> {
    await this.call(P.StoragePoolUndefine, { pool });
  }
  async refreshStoragePool(pool: StoragePoolRef): Promise<void> {
    await this.call(P.StoragePoolRefresh, { pool, flags: 0 });
  }
  async storagePoolInfo(pool: StoragePoolRef) {
    return this.call(P.StoragePoolGetInfo, { pool });
  }
  async storagePoolXml(pool: StoragePoolRef, flags = 0): Promise<string> {
    return (await this.call(P.StoragePoolGetXmlDesc, { pool, flags })).xml;
  }
  async setStoragePoolAutostart(pool: StoragePoolRef, autostart: boolean): Promise<void> {
    await this.call(P.StoragePoolSetAutostart, { pool, autostart: autostart ? 1 : 0 });
  }
  async listVolumes(pool: StoragePoolRef): Promise<StorageVolRef[]> {
    return (await this.call(P.StoragePoolListAllVolumes, { pool, need_results: 1, flags: 0 })).vols;
  }

  // ---- volumes ----

  async createVolume(
    pool: StoragePoolRef,
    xml: string,
    flags = 0,
    timeoutMs?: number,
  ): Promise<StorageVolRef> {
    return (await this.call(P.StorageVolCreateXml, { pool, xml, flags }, timeoutMs)).vol;
  }
  /** Creates a volume in POOL as a copy of SOURCE (virStorageVolCreateXMLFrom). */
  async cloneVolume(
    pool: StoragePoolRef,
    xml: string,
    source: StorageVolRef,
    flags = 0,
    timeoutMs?: number,
  ): Promise<StorageVolRef> {
    return (await this.call(P.StorageVolCreateXmlFrom, { pool, xml, clonevol: source, flags }, timeoutMs))
      .vol;
  }
  async lookupVolume(pool: StoragePoolRef, name: string): Promise<StorageVolRef> {
    return (await this.call(P.StorageVolLookupByName, { pool, name })).vol;
  }
  async volumeInfo(vol: StorageVolRef): Promise<{ type: number; capacity: number; allocation: number }> {
    return this.call(P.StorageVolGetInfo, { vol });
  }
  async volumeXml(vol: StorageVolRef): Promise<string> {
    return (await this.call(P.StorageVolGetXmlDesc, { vol, flags: 0 })).xml;
  }
  async volumePath(vol: StorageVolRef): Promise<string> {
    return (await this.call(P.StorageVolGetPath, { vol })).name;
  }
  async resizeVolume(vol: StorageVolRef, bytes: number, flags = 0): Promise<void> {
    await this.call(P.StorageVolResize, { vol, capacity: bytes, flags });
  }
  async wipeVolume(vol: StorageVolRef, timeoutMs?: number): Promise<void> {
    await this.call(P.StorageVolWipe, { vol, flags: 0 }, timeoutMs);
  }
  async deleteVolume(vol: StorageVolRef, flags = 0): Promise<void> {
    await this.call(P.StorageVolDelete, { vol, flags });
  }
  /**
   * virStorageVolUpload: writes DATA into VOL from OFFSET (LENGTH 0 = no limit), in packets of at
   * most 256 KiB, at the pace the socket takes them. Resolves with the bytes sent once libvirt
   * confirmed the end of the stream; a libvirt stream error rejects with its LibvirtError.
   */
  uploadVolume(
    vol: StorageVolRef,
    data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: UploadOptions & { offset?: number; length?: number } = {},
  ): Promise<number> {
    const args = { vol, offset: options.offset ?? 0, length: options.length ?? 0, flags: 0 };
    const timeoutMs = options.timeoutMs ?? this.deadlines.streamStall;
    this.counted(P.StorageVolUpload);
    return uploadStream(this.conn, P.StorageVolUpload, args, data, { ...options, timeoutMs });
  }
  /** virStorageVolDownload: VOL's bytes from OFFSET (LENGTH 0 = to the end), as they arrive. */
  downloadVolume(
    vol: StorageVolRef,
    options: DownloadOptions & { offset?: number; length?: number } = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const args = { vol, offset: options.offset ?? 0, length: options.length ?? 0, flags: 0 };
    const timeoutMs = options.timeoutMs ?? this.deadlines.streamStall;
    this.counted(P.StorageVolDownload);
    return downloadStream(this.conn, P.StorageVolDownload, args, { ...options, timeoutMs });
  }

  // ---- networks ----

  async listNetworks(flags = 0): Promise<NetworkRef[]> {
    return (await this.call(P.ConnectListAllNetworks, { need_results: 1, flags })).nets;
  }
  async lookupNetwork(name: string): Promise<NetworkRef> {
    return (await this.call(P.NetworkLookupByName, { name })).net;
  }
  async networkXml(net: NetworkRef, flags = 0): Promise<string> {
    return (await this.call(P.NetworkGetXmlDesc, { net, flags })).xml;
  }
  async defineNetwork(xml: string): Promise<NetworkRef> {
    return (await this.call(P.NetworkDefineXml, { xml })).net;
  }
  async startNetwork(net: NetworkRef): Promise<void> {
    await this.call(P.NetworkCreate, { net });
  }
  async destroyNetwork(net: NetworkRef): Promise<void> {
    await this.call(P.NetworkDestroy, { net });
  }
  async undefineNetwork(net: NetworkRef): Promise<void> {
    await this.call(P.NetworkUndefine, { net });
  }
  /**
   * virNetworkUpdate. Daemons before the fix read command and section swapped; like libvirt's
   * own client, send them in the order the daemon says it understands.
   */
  async updateNetwork(
    net: NetworkRef,
    command: number,
    section: number,
    xml: string,
    flags: number,
    parentIndex = -1,
  ) {
    const ordered = this.features.networkUpdateCorrectOrder
      ? { command, section }
      : { command: section, section: command };
    await this.call(P.NetworkUpdate, { net, ...ordered, parentIndex, xml, flags });
  }
  /**
   * Adds a `<host mac=… ip=…/>` DHCP reservation, live and persistent. PARENT_INDEX picks the
   * <ip> element (an IPv6 host must go under the IPv6 one); -1 means the first.
   */
  async addDhcpHost(net: NetworkRef, hostXml: string, parentIndex = -1): Promise<void> {
    const flags = NetworkUpdateAffect.Live | NetworkUpdateAffect.Config;
    await this.updateNetwork(
      net,
      NetworkUpdateCommand.AddLast,
      NetworkSection.IpDhcpHost,
      hostXml,
      flags,
      parentIndex,
    );
  }
  async removeDhcpHost(net: NetworkRef, hostXml: string, parentIndex = -1): Promise<void> {
    const flags = NetworkUpdateAffect.Live | NetworkUpdateAffect.Config;
    await this.updateNetwork(
      net,
      NetworkUpdateCommand.Delete,
      NetworkSection.IpDhcpHost,
      hostXml,
      flags,
      parentIndex,
    );
  }
  async dhcpLeases(net: NetworkRef, mac: string | null = null) {
    return (await this.call(P.NetworkGetDhcpLeases, { net, mac, need_results: 1, flags: 0 })).leases;
  }
}
