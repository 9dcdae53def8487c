// The one way our reconcilers write status: server-side apply of the fields one writer owns,
// only when applying them would change something (steady state writes nothing). Which writer
// owns which field is listed in the README ("Who writes what").
import type { KindName } from "../api/kind.ts";
import { applyStatus, httpStatus, type Kube } from "../runtime/kube.ts";
import { type Condition, type Standing, standingConditions, writerConditions } from "./conditions.ts";
import { CONDITIONS_RULE, type ListMapRule, ownedStatusChanged } from "./status-diff.ts";

/** The controller's word on where an object stands until its node agent reports; yields to the agent. */
export const STANDING_FIELD_MANAGER = "libvirt-operator-controller-standing";

export interface StatusWriterOptions {
  kind: KindName;
  fieldManager: string;
  /**
   * Every field this writer owns: one it leaves out of an apply is removed. Without it, the
   * fields of each apply are compared (writers whose set of fields varies by case).
   */
  owns?: readonly string[];
  /** List-map fields (conditions by type are one). */
  listMaps?: Record<string, ListMapRule>;
  /**
   * Yield to other writers: a field another manager holds with another value is left to it
   * (the write is skipped) instead of taken over.
   */
  yieldToOthers?: boolean;
  /**
   * Skip a write judged on an object the cache still shows as it was before this writer's last
   * write of it (that write's watch event has not come yet): judged on the status before, it
   * would only write that again with new timestamps, or older values. The event brings the
   * reconcile back with the status written. Only for writers whose reconciler's watch wakes it
   * for the fields they write.
   */
  waitForOwnWrites?: boolean;
}

/** How long the resourceVersions of a write are kept: far longer than a watch event takes. */
export const OWN_WRITE_MEMORY_MS = 60_000;

interface OwnWrite {
  /** The object's resourceVersion the write was judged on, and the one it made. */
  judgedOn: string;
  made: string;
  at: number;
  /** A reconcile judged on the object as it was before this write: its echo must wake it again. */
  judgedBehind?: boolean;
  /** The object judged on, but for what this write set (foreignPrint). */
  foreign: string;
  /** The status fields and condition types this write set. */
  wrote: { fields: readonly string[]; conditionTypes: ReadonlySet<string> };
  /** The object's UID and finalizers as the write's answer had them (at MADE). */
  uid?: string;
  finalizers?: string[];
}

/**
 * Pure: OBJ as JSON without its resourceVersion, managed fields, and the status this writer's
 * write set (FIELDS, and of the conditions those of CONDITION_TYPES): what anyone else wrote.
 */
export function foreignPrint(
  obj: { metadata: object; status?: unknown },
  fields: readonly string[],
  conditionTypes: ReadonlySet<string>,
): string {
  const { resourceVersion: _rv, managedFields: _mf, ...metadata } = obj.metadata as Record<string, unknown>;
  const status: Record<string, unknown> = { ...(obj.status as Record<string, unknown> | undefined) };
  for (const f of fields) if (f !== "conditions") delete status[f];
  if (Array.isArray(status.conditions)) {
    const others = (status.conditions as Array<{ type?: string }>).filter(
      (c) => !conditionTypes.has(c.type ?? ""),
    );
    // None left reads as none at all (the object before the first write had no list).
    if (others.length) status.conditions = others;
    else delete status.conditions;
  }
  return JSON.stringify({ ...obj, metadata, status });
}

/** An etcd revision as a number, when the API server's resourceVersion is one (it always is in practice). */
function revision(rv: string): bigint | undefined {
  return /^\d{1,30}$/.test(rv) ? BigInt(rv) : undefined;
}

/** Whether a cached object at SEEN is older than the version THAN a write made (both numbers). */
export function olderVersion(seen: string | undefined, than: string): boolean {
  const [a, b] = [seen === undefined ? undefined : revision(seen), revision(than)];
  return a !== undefined && b !== undefined && a < b;
}

/**
 * Pure: the cache shows OBJ (at resourceVersion RV) as it was before LAST, a write of ours:
 * the version that write was judged on, or (revisions being numbers) any older than the one it
 * made — another writer's change that came in between shows first, and judging on it would
 * write our own fields again with new timestamps.
 */
export function behindOwnWrite(
  last: Pick<OwnWrite, "judgedOn" | "made" | "at"> | undefined,
  rv: string | undefined,
  now: number,
): boolean {
  if (!last || !rv || last.made === rv || now - last.at >= OWN_WRITE_MEMORY_MS) return false;
  if (last.judgedOn === rv) return true;
  const [seen, made] = [revision(rv), revision(last.made)];
  return seen !== undefined && made !== undefined && seen < made;
}

type Writable = {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  status?: unknown;
};
type Judged = {
  metadata: { name: string; namespace?: string; generation?: number };
  status?: { conditions?: Condition[] };
};

export class StatusWriter {
  private readonly kube: Kube;
  private readonly o: StatusWriterOptions;
  /** This writer's last write per object (namespace/name), oldest first. */
  private readonly ownWrites = new Map<string, OwnWrite>();

  constructor(kube: Kube, options: StatusWriterOptions) {
    this.kube = kube;
    this.o = options;
  }

  /** Applies STATUS to OBJ when it differs from OBJ's status; true when it wrote. */
  async write(obj: Writable, status: Record<string, unknown>): Promise<boolean> {
    return (await this.writeOrDefer(obj, status)) === "written";
  }

  /**
   * write, only onto the object as it is at OBJ's resourceVersion: false when anyone wrote it
   * since (what they wrote stands: a word said on the version before would overwrite it).
   */
  async writeIfUnchanged(obj: Writable, status: Record<string, unknown>): Promise<boolean> {
    if (!obj.metadata.resourceVersion) throw new Error("a guarded status write needs a resourceVersion");
    try {
      return (await this.writeOrDefer(obj, status, true)) === "written";
    } catch (err) {
      if (httpStatus(err) === 409) return false;
      throw err;
    }
  }

  /**
   * write, saying also when a write was put off because the cache is behind this writer's last
   * write (waitForOwnWrites): the caller looks again soon, whatever the watch brings.
   */
  async writeOrDefer(
    obj: Writable,
    status: Record<string, unknown>,
    guarded = false,
  ): Promise<"written" | "unchanged" | "deferred"> {
    const listMaps = this.o.listMaps ?? { conditions: CONDITIONS_RULE };
    const fields = this.o.owns ?? Object.keys(status);
    const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    const rv = obj.metadata.resourceVersion;
    const now = Date.now();
    const behind = this.judging(obj, now);
    if (!ownedStatusChanged(obj.status as Record<string, unknown> | undefined, status, fields, listMaps))
      return "unchanged";
    if (this.o.waitForOwnWrites && behind) return "deferred";
    try {
      const written = await applyStatus(
        this.kube,
        this.o.kind,
        obj,
        this.o.fieldManager,
        status,
        !this.o.yieldToOthers,
        guarded ? rv : undefined,
      );
      const made = written?.metadata?.resourceVersion;
      if (rv && made) {
        const conditions = (status.conditions ?? []) as Array<{ type?: string }>;
        const wrote = { fields, conditionTypes: new Set(conditions.map((c) => c.type ?? "")) };
        const foreign = foreignPrint(obj, wrote.fields, wrote.conditionTypes);
        const { uid, finalizers } = written?.metadata ?? {};
        this.remember(key, {
          judgedOn: rv,
          made,
          at: now,
          foreign,
          wrote,
          ...(uid ? { uid } : {}),
          ...(finalizers ? { finalizers } : {}),
        });
      }
    } catch (err) {
      if (this.o.yieldToOthers && httpStatus(err) === 409) return "unchanged";
      throw err;
    }
    return "written";
  }

  /**
   * Whether OBJ is exactly what this writer's last write of it made, over the very object it
   * was judged on, and no reconcile judged on the object as it was before: its watch event then
   * tells its reconciler nothing new.
   */
  echoOfOwnWrite(obj: Writable, now = Date.now()): boolean {
    const last = this.ownWrites.get(`${obj.metadata.namespace ?? ""}/${obj.metadata.name}`);
    if (!last || last.judgedBehind || last.made !== obj.metadata.resourceVersion) return false;
    // Older than a reconcile's judging looks back (behindOwnWrite): it no longer knows.
    if (now - last.at >= OWN_WRITE_MEMORY_MS) return false;
    // What others wrote between the version judged on and ours, unseen when a relist skips
    // versions, shows here.
    return foreignPrint(obj, last.wrote.fields, last.wrote.conditionTypes) === last.foreign;
  }

  /**
   * OBJ's metadata as this writer last saw it: when the cache does not show its last write yet,
   * the resourceVersion, UID and finalizers that write's answer had (a metadata write guarded by
   * that version then goes through, and carries the finalizers the server has at it).
   */
  latestCopy<T extends Writable>(obj: T, now = Date.now()): T {
    const last = this.ownWrites.get(`${obj.metadata.namespace ?? ""}/${obj.metadata.name}`);
    if (!last || !behindOwnWrite(last, obj.metadata.resourceVersion, now)) return obj;
    const metadata = { ...obj.metadata, resourceVersion: last.made } as T["metadata"] & {
      uid?: string;
      finalizers?: string[];
    };
    if (last.uid) metadata.uid = last.uid;
    if (last.finalizers) metadata.finalizers = last.finalizers;
    else delete metadata.finalizers;
    return { ...obj, metadata };
  }

  /**
   * A reconcile judges OBJ: whether the cache shows it as it was before this writer's last
   * write (behindOwnWrite). Then that write's watch event is no echo: it must wake it again.
   */
  judging(obj: Writable, now = Date.now()): boolean {
    const last = this.ownWrites.get(`${obj.metadata.namespace ?? ""}/${obj.metadata.name}`);
    const behind = behindOwnWrite(last, obj.metadata.resourceVersion, now);
    if (last && behind) last.judgedBehind = true;
    return behind;
  }

  private remember(key: string, write: OwnWrite) {
    this.ownWrites.delete(key);
    this.ownWrites.set(key, write);
    for (const [k, w] of this.ownWrites) {
      if (write.at - w.at < OWN_WRITE_MEMORY_MS) break;
      this.ownWrites.delete(k);
    }
  }

  /** Applies FIELDS with Ready/Reconciling/Stalled saying STANDING, judged at OBJ's generation. */
  async writeStanding(obj: Judged, fields: Record<string, unknown>, standing: Standing): Promise<boolean> {
    const generation = obj.metadata.generation ?? 0;
    return this.write(obj, {
      ...fields,
      observedGeneration: generation,
      conditions: writerConditions(
        obj.status?.conditions,
        standingConditions(standing),
        generation,
        new Date(),
      ),
    });
  }
}
