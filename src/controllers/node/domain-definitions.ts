// What the node agent needs from the definition of every domain libvirt has on the node (the
// MACs and owner record a VM's identity check compares, vm-identity-check.ts), kept between
// checks. Which domains there are is listed once, then kept by libvirt's events: a name an event
// names is looked up again (one call) when next asked, so a check costs no call at all in the
// common case (our own define is remembered, our own start changes no name) — listing every
// domain for each new VM made its cost grow with the node's domains. Definitions are read only
// for domains defined, redefined or changed since. A reconnect forgets all (events may have been
// missed); the list, and each definition, older than maxAgeMs is read again, which bounds how
// long a change no event told of (a NIC hot-plugged into someone else's domain) stays unseen.
import type { DomainRef } from "../../hypervisor/libvirt/index.ts";

export interface DefinitionSource {
  /** Every domain on the node. */
  list(): Promise<readonly DomainRef[]>;
  /** The domain named NAME; undefined when there is none. */
  lookup(name: string): Promise<DomainRef | undefined>;
  /** The domain's persistent definition; undefined when it is gone. */
  read(dom: DomainRef): Promise<string | undefined>;
}

interface Entry<T> {
  uuid: string;
  readAt: number;
  facts: T;
  /** The domain as our own define returned it (remember). */
  dom?: DomainRef;
}

/** Lists, then lookups, tried again when libvirt reconnected meanwhile. */
const REFRESH_TRIES = 3;
/** More names than this spoken of since the last answer: one list costs less than their lookups. */
const LOOKUPS_MAX = 16;

export class DomainDefinitions<T> {
  private readonly source: DefinitionSource;
  private readonly digest: (xml: string) => T;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry<T>>();
  /** The domains by name, as last listed and kept since; undefined until listed (again). */
  private domains?: Map<string, DomainRef>;
  private listedAt = 0;
  /** Names an event spoke of since: looked up before the next answer. */
  private readonly touched = new Set<string>();
  /** Events spoke of more names than lookups are worth (or a list failed): list again. */
  private relist = false;
  private refreshing?: Promise<void>;
  /** A tick per change heard; per domain, the tick of its last change (kept while calls run). */
  private tick = 0;
  private readonly changedAt = new Map<string, number>();
  private everythingChangedAt = 0;
  /** Lists, lookups and reads under way. */
  private busy = 0;

  constructor(options: {
    source: DefinitionSource;
    digest: (xml: string) => T;
    maxAgeMs?: number;
    now?: () => number;
  }) {
    this.source = options.source;
    this.digest = options.digest;
    this.maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /** NAME's definition changed, or it went: looked up and read again when next asked. */
  forget(name: string): void {
    this.entries.delete(name);
    this.touch(name);
  }

  /**
   * A domain NAME started: a new (transient) one, unless it is known already — and known only
   * while no refresh runs (one under way may be about to drop the name on an older answer).
   */
  started(name: string): void {
    if (this.domains?.has(name) && !this.refreshing) return;
    this.touch(name);
  }

  /** We just defined DOM as XML: known without looking it up or reading it back. */
  remember(dom: DomainRef, xml: string): void {
    // A lookup or read of what it was, under way, is not kept over this; a name another's event
    // spoke of stays to be looked up (that change may have come after our define).
    this.entries.delete(dom.name);
    this.changed(dom.name);
    this.domains?.set(dom.name, dom);
    const uuid = Buffer.from(dom.uuid).toString("hex");
    this.entries.set(dom.name, { uuid, readAt: this.now(), facts: this.digest(xml), dom });
  }

  /** Anything may have changed unheard (libvirt reconnected). */
  forgetAll(): void {
    this.entries.clear();
    this.domains = undefined;
    this.everythingChangedAt = ++this.tick;
  }

  /** Domains held in memory (for tests and figures). */
  get size(): number {
    return this.entries.size;
  }

  /** Every domain on the node with the facts of its definition; ones gone meanwhile are left out. */
  async all(): Promise<Array<{ dom: DomainRef; facts: T }>> {
    const domains = await this.current();
    for (const name of this.entries.keys()) if (!domains.has(name)) this.entries.delete(name);
    const out: Array<{ dom: DomainRef; facts: T }> = [];
    for (const dom of [...domains.values()]) {
      const uuid = Buffer.from(dom.uuid).toString("hex");
      const known = this.entries.get(dom.name);
      if (known?.uuid === uuid && this.now() - known.readAt < this.maxAgeMs) {
        out.push({ dom, facts: known.facts });
        continue;
      }
      const facts = await this.readFacts(dom, uuid);
      if (facts !== undefined) out.push({ dom, facts: facts });
    }
    return out;
  }

  /** NAME to look up; past LOOKUPS_MAX names (however long no check asked), a list instead. */
  private touch(name: string) {
    this.changed(name);
    if (this.relist) return;
    this.touched.add(name);
    if (this.touched.size <= LOOKUPS_MAX) return;
    this.relist = true;
    this.touched.clear();
  }

  private changed(name: string) {
    if (this.busy) this.changedAt.set(name, ++this.tick);
  }

  private changedSince(name: string, tick: number): boolean {
    return Math.max(this.changedAt.get(name) ?? 0, this.everythingChangedAt) > tick;
  }

  /**
   * The domains as they are since this call began: a refresh under way may have begun before
   * an event this call must see, so the next one is awaited (every caller meanwhile joins it).
   */
  private async current(): Promise<Map<string, DomainRef>> {
    await this.refreshing?.catch(() => undefined);
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
    if (!this.domains) throw new Error("libvirt's domains could not be listed: it reconnected meanwhile");
    return this.domains;
  }

  /** Lists when never listed or listed too long ago, then looks up each name events spoke of. */
  private async refresh(): Promise<void> {
    this.busy++;
    try {
      for (let i = 0; i < REFRESH_TRIES; i++) if (await this.refreshOnce()) return;
    } finally {
      if (--this.busy === 0) this.changedAt.clear();
    }
  }

  /** False when libvirt reconnected meanwhile (what was learnt may be of the old connection). */
  private async refreshOnce(): Promise<boolean> {
    const start = this.tick;
    if (!this.domains || this.relist || this.now() - this.listedAt >= this.maxAgeMs) {
      // What changes while listing is spoken of again; if the list fails, it is made next time.
      this.touched.clear();
      this.relist = false;
      const listedAt = this.now();
      let listed: readonly DomainRef[];
      try {
        listed = await this.source.list();
      } catch (err) {
        this.relist = true;
        throw err;
      }
      if (this.everythingChangedAt > start) return false;
      const domains = new Map(listed.map((d) => [d.name, d]));
      // Defined by us while listing: as we defined it (the list may be from before).
      for (const [name, at] of this.changedAt) {
        const ours = this.entries.get(name)?.dom;
        if (at > start && ours) domains.set(name, ours);
      }
      this.domains = domains;
      this.listedAt = listedAt;
    }
    const domains = this.domains;
    const names = [...this.touched];
    this.touched.clear();
    const lookupStart = this.tick;
    try {
      for (const name of names) {
        const dom = await this.source.lookup(name);
        if (this.everythingChangedAt > lookupStart) return false;
        // Spoken of again meanwhile (looked up next time), or defined by us: not overwritten.
        if (this.changedSince(name, lookupStart)) continue;
        if (dom) domains.set(name, dom);
        else domains.delete(name);
      }
    } catch (err) {
      for (const name of names) this.touch(name);
      throw err;
    }
    return true;
  }

  private async readFacts(dom: DomainRef, uuid: string): Promise<T | undefined> {
    const startedAt = this.tick;
    const readAt = this.now();
    this.busy++;
    try {
      const xml = await this.source.read(dom);
      if (xml === undefined) return undefined;
      const facts = this.digest(xml);
      // A change heard while it was being read may not be in what was read: not kept.
      if (!this.changedSince(dom.name, startedAt)) this.entries.set(dom.name, { uuid, readAt, facts });
      return facts;
    } finally {
      // Changes matter only to calls under way.
      if (--this.busy === 0) this.changedAt.clear();
    }
  }
}
