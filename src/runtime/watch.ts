// How reconcilers declare what they watch: an object's own events queue its key; a change of
// the user's intent (a new generation, a deletion, a request annotation) also forgets the
// key's backoff, so a failing object the user fixes or deletes is looked at at once, while
// our own status and Event writes never shorten the wait.
import { hash } from "node:crypto";
import type { KubernetesObject } from "@kubernetes/client-node";
import { PREFIX } from "../api/names.ts";
import { describeError, keyOf } from "./kube.ts";
import type { Logger } from "./logging.ts";
import type { FailureInfo, WorkQueue } from "./workqueue.ts";

export type WatchVerb = "add" | "update" | "delete";

export interface Watchable<T> {
  on(verb: WatchVerb, cb: (obj: T) => void): void;
}

/** Annotations a user writes to ask for something (restart, start, stop: `…-requested-at`; frozen). */
export function isRequestAnnotation(name: string): boolean {
  return name.startsWith(PREFIX) && (name.endsWith("-requested-at") || name === `${PREFIX}frozen`);
}

/** What the user asked for, as far as retrying goes: spec generation, deletion, requests. */
export function intentOf(obj: KubernetesObject): string {
  const requests = Object.entries(obj.metadata?.annotations ?? {})
    .filter(([name]) => isRequestAnnotation(name))
    .sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify([obj.metadata?.generation ?? 0, obj.metadata?.deletionTimestamp ?? null, requests]);
}

/**
 * The part of an object's status one watcher looks at. `reads` names every status field its
 * reconciler reads or writes (the ones it writes too: another writer changing one is news to
 * it); `ignores` names fields it never reads, for reconcilers that read most of their status.
 * "conditions/Type" names one condition type. An update that changes only what the view
 * leaves out (another writer's fields: statistics, the other side's conditions) wakes nobody.
 */
export type StatusView = { readonly reads: readonly string[] } | { readonly ignores: readonly string[] };

const CONDITION = "conditions/";

type Status = Record<string, unknown>;

/** STATUS as VIEW sees it. */
export function viewedStatus(status: Status | undefined, view: StatusView): Status | undefined {
  if (!status) return undefined;
  const named = "reads" in view ? view.reads : view.ignores;
  const fields = named.filter((f) => !f.startsWith(CONDITION));
  const types = named.filter((f) => f.startsWith(CONDITION)).map((f) => f.slice(CONDITION.length));
  const conditions = Array.isArray(status.conditions) ? (status.conditions as Array<{ type?: string }>) : [];
  if ("reads" in view) {
    const out: Status = {};
    for (const f of fields) if (f in status) out[f] = status[f];
    if (!fields.includes("conditions") && types.length)
      out.conditions = conditions.filter((c) => types.includes(c.type ?? ""));
    return out;
  }
  const out: Status = { ...status };
  for (const f of fields) delete out[f];
  if (types.length && "conditions" in out)
    out.conditions = conditions.filter((c) => !types.includes(c.type ?? ""));
  return out;
}

/**
 * A digest of the object without what changes on every write (resourceVersion, managedFields)
 * and with its status as VIEW sees it (all of it without a view): two versions of an object
 * with one fingerprint are the same to the watcher (KubeVirt's "status-only update" predicate).
 * Keys are taken in the order they came: the API server writes an object's keys in one order
 * (Go sorts a map's keys; typed objects follow their fields), so equal objects give equal text.
 * Sorting them cost the controller an eighth of its CPU at 1000 VMs; a copy ordered otherwise
 * could only look changed (one reconcile more, never one less).
 */
export function fingerprintOf(obj: KubernetesObject, view?: StatusView): string {
  const { metadata, ...rest } = obj as KubernetesObject & { status?: Status };
  const { resourceVersion: _rv, managedFields: _mf, ...meta } = metadata ?? {};
  const status = view ? viewedStatus(rest.status, view) : rest.status;
  return hash("sha256", JSON.stringify({ ...rest, metadata: meta, ...(status ? { status } : {}) }), "base64");
}

/**
 * Remembers each object's fingerprint under VIEW: `changed` says whether an event is news to
 * the watcher (adds and deletes always are; an update when its fingerprint moved). Without a
 * view every event is news. Digests, not copies, are kept: a few dozen bytes per object.
 */
export function viewTracker(view: StatusView | undefined) {
  const fingerprints = new Map<string, string>();
  return {
    changed(obj: KubernetesObject, verb: WatchVerb): boolean {
      const key = keyOf(obj);
      if (verb === "delete") {
        fingerprints.delete(key);
        return true;
      }
      if (!view) return true;
      const fingerprint = fingerprintOf(obj, view);
      const before = fingerprints.get(key);
      fingerprints.set(key, fingerprint);
      return verb !== "update" || before !== fingerprint;
    },
    /** The watcher stopped looking at KEY (its filter turned the object away). */
    forget(key: string): void {
      fingerprints.delete(key);
    },
  };
}

/**
 * Queues every event of INFORMER's objects (those FILTER accepts) under their own key;
 * intent changes and deletions forget the key's backoff. With a VIEW, updates that change
 * only what it leaves out (and resourceVersion, managedFields) are not queued; nor those
 * OWN_ECHO says are the reconciler's own write coming back (a status write, or the deletion
 * its own removal of the last finalizer completed).
 */
export function watchOwn<T extends KubernetesObject>(
  informer: Watchable<T>,
  queue: Pick<WorkQueue, "add" | "forget">,
  filter: (obj: T, verb: WatchVerb) => boolean = () => true,
  view?: StatusView,
  ownEcho?: (obj: T, verb: WatchVerb) => boolean,
): void {
  const intents = new Map<string, string>();
  const tracker = viewTracker(view);
  for (const verb of ["add", "update", "delete"] as const) {
    informer.on(verb, (obj) => {
      const key = keyOf(obj);
      if (!filter(obj, verb)) {
        tracker.forget(key);
        return;
      }
      if (!tracker.changed(obj, verb)) return;
      const echo = verb !== "add" && ownEcho?.(obj, verb);
      if (verb === "delete") {
        intents.delete(key);
        if (!echo) queue.forget(key);
        return;
      }
      if (echo) return;
      const intent = intentOf(obj);
      const before = intents.get(key);
      intents.set(key, intent);
      if (before !== undefined && before !== intent) queue.forget(key);
      else queue.add(key);
    });
  }
}

/**
 * Queues the keys MAP names for every event of INFORMER (objects that depend on it); with a
 * VIEW, not for updates that change only what it leaves out.
 */
export function watchRelated<T extends KubernetesObject>(
  informer: Watchable<T>,
  queue: Pick<WorkQueue, "add">,
  map: (obj: T, verb: WatchVerb) => Iterable<string>,
  view?: StatusView,
) {
  const tracker = viewTracker(view);
  for (const verb of ["add", "update", "delete"] as const) {
    informer.on(verb, (obj) => {
      if (!tracker.changed(obj, verb)) return;
      for (const key of map(obj, verb)) queue.add(key);
    });
  }
}
/** A work queue's onError for KIND: a failure is logged once, repeats only count (debug). */
export function logFailures(log: Logger, kind: string) {
  return (key: string, err: unknown, f: FailureInfo) => {
    const fields = {
      kind,
      key,
      attempt: f.attempt,
      ...(f.retryInMs === undefined ? { terminal: true } : { retryInMs: f.retryInMs }),
      err: describeError(err),
    };
    if (f.repeated) log.debug(fields, "reconcile failed again");
    else log.warn(fields, "reconcile failed");
  };
}
