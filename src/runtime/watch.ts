// How reconcilers declare what they watch: an object's own events queue its key; a change of
// the user's intent (a new generation, a deletion, a request annotation) also forgets the
// key's backoff, so a failing object the user fixes or deletes is looked at at once, while
// our own status and Event writes never shorten the wait.
import type { KubernetesObject } from "@kubernetes/client-node";
import { PREFIX } from "../api/common.ts";
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
 * The object without what changes on every write and what the reconciler does not read: an
 * update whose fingerprint is the one seen before wakes nobody (KubeVirt's "status-only update"
 * predicate). IGNORED_STATUS names status fields only another writer keeps (statistics).
 */
export function fingerprintOf(obj: KubernetesObject, ignoredStatus: readonly string[] = []): string {
  const { metadata, ...rest } = obj as KubernetesObject & { status?: Record<string, unknown> };
  const { resourceVersion: _rv, managedFields: _mf, ...meta } = metadata ?? {};
  const status = rest.status ? { ...rest.status } : undefined;
  for (const field of ignoredStatus) if (status) delete status[field];
  return JSON.stringify({ ...rest, metadata: meta, ...(status ? { status } : {}) });
}

/**
 * Queues every event of INFORMER's objects (those FILTER accepts) under their own key;
 * intent changes and deletions forget the key's backoff. Updates that change only the status
 * fields IGNORED_STATUS names (and resourceVersion, managedFields) are not queued.
 */
export function watchOwn<T extends KubernetesObject>(
  informer: Watchable<T>,
  queue: Pick<WorkQueue, "add" | "forget">,
  filter: (obj: T, verb: WatchVerb) => boolean = () => true,
  ignoredStatus: readonly string[] = [],
): void {
  const intents = new Map<string, string>();
  const fingerprints = new Map<string, string>();
  for (const verb of ["add", "update", "delete"] as const) {
    informer.on(verb, (obj) => {
      if (!filter(obj, verb)) return;
      const key = keyOf(obj);
      if (verb === "delete") {
        intents.delete(key);
        fingerprints.delete(key);
        queue.forget(key);
        return;
      }
      if (ignoredStatus.length) {
        const fingerprint = fingerprintOf(obj, ignoredStatus);
        const unchanged = verb === "update" && fingerprints.get(key) === fingerprint;
        fingerprints.set(key, fingerprint);
        if (unchanged) return;
      }
      const intent = intentOf(obj);
      const before = intents.get(key);
      intents.set(key, intent);
      if (before !== undefined && before !== intent) queue.forget(key);
      else queue.add(key);
    });
  }
}

/** Queues the keys MAP names for every event of INFORMER (objects that depend on it). */
export function watchRelated<T>(
  informer: Watchable<T>,
  queue: Pick<WorkQueue, "add">,
  map: (obj: T, verb: WatchVerb) => Iterable<string>,
) {
  for (const verb of ["add", "update", "delete"] as const) {
    informer.on(verb, (obj) => {
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
