// What the node agent needs from the definition of every domain libvirt has on the node (the
// MACs and owner record a VM's identity check compares, vm-identity-check.ts), kept between
// checks: a check lists the domains (one call) and reads the definitions of only those defined,
// redefined or changed since, not of every domain — with 100 VMs created at once, 100 reads
// instead of 5,000. libvirt's events say which domain changed (forget); a reconnect forgets all
// (events may have been missed); an entry older than maxAgeMs is read again, which bounds how
// long a change no event told of (a NIC hot-plugged into someone else's domain) stays unseen.
import type { DomainRef } from "../../hypervisor/libvirt/index.ts";

export interface DefinitionSource {
  /** Every domain on the node. */
  list(): Promise<readonly DomainRef[]>;
  /** The domain's persistent definition; undefined when it is gone. */
  read(dom: DomainRef): Promise<string | undefined>;
}

interface Entry<T> {
  uuid: string;
  readAt: number;
  facts: T;
}

export class DomainDefinitions<T> {
  private readonly source: DefinitionSource;
  private readonly digest: (xml: string) => T;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry<T>>();
  /** A tick per change heard; per domain, the tick of its last change (kept while reads run). */
  private tick = 0;
  private readonly changedAt = new Map<string, number>();
  private everythingChangedAt = 0;
  private reading = 0;

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

  /** NAME's definition changed (or it went): read it again when next asked. */
  forget(name: string): void {
    this.entries.delete(name);
    if (this.reading) this.changedAt.set(name, ++this.tick);
  }

  /** We just defined NAME (UUID in hex) as XML: its facts are known without reading it back. */
  remember(name: string, uuid: string, xml: string): void {
    this.forget(name); // a read of what it was, under way, is not kept over this
    this.entries.set(name, { uuid, readAt: this.now(), facts: this.digest(xml) });
  }

  /** Anything may have changed unheard (libvirt reconnected). */
  forgetAll(): void {
    this.entries.clear();
    this.everythingChangedAt = ++this.tick;
  }

  /** Domains held in memory (for tests and figures). */
  get size(): number {
    return this.entries.size;
  }

  /** Every domain on the node with the facts of its definition; ones gone meanwhile are left out. */
  async all(): Promise<Array<{ dom: DomainRef; facts: T }>> {
    const doms = await this.source.list();
    const listed = new Set(doms.map((d) => d.name));
    for (const name of this.entries.keys()) if (!listed.has(name)) this.entries.delete(name);
    const out: Array<{ dom: DomainRef; facts: T }> = [];
    for (const dom of doms) {
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

  private async readFacts(dom: DomainRef, uuid: string): Promise<T | undefined> {
    const startedAt = this.tick;
    const readAt = this.now();
    this.reading++;
    try {
      const xml = await this.source.read(dom);
      if (xml === undefined) return undefined;
      const facts = this.digest(xml);
      // A change heard while it was being read may not be in what was read: not kept.
      const changed = Math.max(this.changedAt.get(dom.name) ?? 0, this.everythingChangedAt);
      if (changed <= startedAt) this.entries.set(dom.name, { uuid, readAt, facts });
      return facts;
    } finally {
      // Changes matter only to reads under way.
      if (--this.reading === 0) this.changedAt.clear();
    }
  }
}
