// Kubernetes access the controllers share: clients from the kubeconfig, informers over our
// kinds, status written by server-side apply (each writer owns its fields and conditions),
// metadata patches guarded by resourceVersion, and Events.
import type { KubernetesObject } from "@kubernetes/client-node";
import type { CustomObject, KindName } from "../api/kind.ts";
import { GROUP, VERSION } from "../api/names.ts";
import {
  type CoordinationApi,
  type CoreApi,
  type CustomObjects,
  coordinationApi,
  coreApi,
  customObjectsApi,
} from "../kube/apis.ts";
import { HttpApi, PatchType } from "../kube/http.ts";
import { defaultConfig, type ResolvedConfig } from "../kube/kubeconfig.ts";
import type { Logger } from "./logging.ts";
import { InformerHandlerError, makeSlimInformer } from "./slim-informer.ts";

/**
 * Longest an API request may take, headers and body (watches excepted: they end when silent):
 * a server or network path that stops answering fails the reconcile, which then backs off and
 * retries, rather than hang it and hold its key forever. Ample for lists of thousands of objects.
 */
export const KUBE_REQUEST_DEADLINE_MS = 30_000;
/** Requests in flight at once over kept-alive connections (the work queues' workers together). */
const KUBE_MAX_SOCKETS = 32;

export interface Kube {
  http: HttpApi;
  custom: CustomObjects;
  core: CoreApi;
  coordination: CoordinationApi;
}

/**
 * Clients of the kubeconfig (or the pod's service account) whose every request (watches aside)
 * fails after REQUEST_DEADLINE_MS.
 */
export async function connectKube(
  requestDeadlineMs = KUBE_REQUEST_DEADLINE_MS,
  config: ResolvedConfig = defaultConfig(),
  maxSockets = KUBE_MAX_SOCKETS,
): Promise<Kube> {
  const http = await HttpApi.connect(config, {
    deadlineMs: requestDeadlineMs,
    maxSockets,
    userAgent: "libvirt-operator",
  });
  return { http, custom: customObjectsApi(http), core: coreApi(http), coordination: coordinationApi(http) };
}

export type AnyObject = CustomObject<unknown, unknown> & KubernetesObject;

/** An informer (list + watch + cache) over one of our kinds, optionally label-filtered (slim-informer.ts). */
export function kindInformer<T extends KubernetesObject>(kube: Kube, def: KindName, labelSelector?: string) {
  const path = `/apis/${GROUP}/${VERSION}/${def.plural}`;
  return makeSlimInformer<T>(kube.http, path, labelSelector);
}

export function keyOf(obj: KubernetesObject): string {
  return `${obj.metadata?.namespace}/${obj.metadata?.name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const [namespace = "", name = ""] = key.split("/", 2);
  return { namespace, name };
}

/** Where one of our objects lives, as CustomObjectsApi calls want it. */
function address(def: KindName, obj: { metadata: { name: string; namespace?: string } }) {
  return {
    group: GROUP,
    version: VERSION,
    plural: def.plural,
    namespace: obj.metadata.namespace ?? "",
    name: obj.metadata.name,
  };
}

/**
 * Server-side apply of STATUS on the status subresource as FIELD_MANAGER. Fields this manager
 * set before and leaves out now are removed; fields of other managers stay. Without FORCE, a
 * field another manager set to another value is a conflict (HTTP 409) and nothing is written.
 * With IF_AT (a resourceVersion), a 409 too when the object changed since. Resolves with the
 * object as the write left it.
 */
export async function applyStatus(
  kube: Kube,
  def: KindName,
  obj: { metadata: { name: string; namespace?: string } },
  fieldManager: string,
  status: Record<string, unknown>,
  force = true,
  ifAt?: string,
): Promise<KubernetesObject> {
  return (await kube.custom.patchNamespacedCustomObjectStatus(
    {
      ...address(def, obj),
      fieldManager,
      force,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: def.kind,
        metadata: {
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          ...(ifAt ? { resourceVersion: ifAt } : {}),
        },
        status,
      },
    },
    PatchType.Apply,
  )) as KubernetesObject;
}

/**
 * JSON merge patch of FIELDS on the status subresource (null removes a field, whoever set it):
 * for fields another writer owns that cannot write any more (a gone node's agent). With
 * RESOURCE_VERSION, a 409 when the object changed meanwhile.
 */
export async function mergePatchStatus(
  kube: Kube,
  def: KindName,
  obj: { metadata: { name: string; namespace?: string } },
  fields: Record<string, unknown>,
  resourceVersion?: string,
): Promise<string | undefined> {
  const metadata = resourceVersion ? { metadata: { resourceVersion } } : {};
  const patched = await kube.custom.patchNamespacedCustomObjectStatus(
    { ...address(def, obj), body: { ...metadata, status: fields } },
    PatchType.Merge,
  );
  return (patched as Partial<AnyObject> | undefined)?.metadata?.resourceVersion;
}

/** Creates OBJ, one of our kinds (DEF); false when one of its name exists (made a moment ago). */
export async function createObject(
  kube: Kube,
  def: KindName,
  obj: { metadata: { name: string; namespace?: string } & Record<string, unknown>; spec: unknown },
): Promise<boolean> {
  const { name: _name, ...where } = address(def, obj);
  try {
    await kube.custom.createNamespacedCustomObject({
      ...where,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: def.kind, ...obj },
    });
    return true;
  } catch (err) {
    if (httpStatus(err) === 409) return false;
    throw err;
  }
}

/** Deletes OBJ, one of our kinds (DEF); one already gone is fine. */
export async function deleteObject(
  kube: Kube,
  def: KindName,
  obj: { metadata: { name: string; namespace?: string } },
): Promise<void> {
  try {
    await kube.custom.deleteNamespacedCustomObject(address(def, obj));
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
  }
}

/**
 * Merge-patches metadata (labels, annotations, finalizers), failing with 409 if the object changed
 * meanwhile; the resourceVersion it made.
 */
export async function patchMetadata(
  kube: Kube,
  def: KindName,
  obj: AnyObject,
  metadata: {
    labels?: Record<string, string | null>;
    annotations?: Record<string, string | null>;
    finalizers?: string[];
    ownerReferences?: NonNullable<AnyObject["metadata"]["ownerReferences"]>;
  },
): Promise<string | undefined> {
  const patched = await kube.custom.patchNamespacedCustomObject(
    {
      ...address(def, obj),
      // The UID too: even a patch sent without a resourceVersion never lands on another object
      // made since under the same name (the API server refuses it: uid is immutable).
      body: {
        metadata: { ...metadata, resourceVersion: obj.metadata.resourceVersion, uid: obj.metadata.uid },
      },
    },
    PatchType.Merge,
  );
  return (patched as Partial<AnyObject> | undefined)?.metadata?.resourceVersion;
}

/**
 * Removes FINALIZER from a fresh read of OBJ (our own status writes move its resourceVersion);
 * never from a new object made since under its name.
 */
export async function removeFinalizer(kube: Kube, def: KindName, obj: AnyObject, finalizer: string) {
  const held = obj.metadata.finalizers ?? [];
  // From the object as the caller has it, in one write guarded by its resourceVersion and UID;
  // a copy that is behind (or another object's) is refused, and the object is read afresh.
  if (obj.metadata.resourceVersion && obj.metadata.uid && held.includes(finalizer)) {
    try {
      await patchMetadata(kube, def, obj, { finalizers: held.filter((f) => f !== finalizer) });
      return;
    } catch (err) {
      if (httpStatus(err) === 404) return;
      // 409: the copy is behind; 422: refused as it stands (another object's UID, say).
      if (httpStatus(err) !== 409 && httpStatus(err) !== 422) throw err;
    }
  }
  let current: AnyObject;
  try {
    current = (await kube.custom.getNamespacedCustomObject(address(def, obj))) as AnyObject;
  } catch (err) {
    if (httpStatus(err) === 404) return;
    throw err;
  }
  if (obj.metadata.uid && current.metadata.uid !== obj.metadata.uid) return;
  const finalizers = current.metadata.finalizers ?? [];
  if (!finalizers.includes(finalizer)) return;
  await patchMetadata(kube, def, current, { finalizers: finalizers.filter((f) => f !== finalizer) });
}

/** The object as the API server has it now; undefined when it does not exist (404). */
export async function readObject<T extends AnyObject>(
  kube: Kube,
  def: KindName,
  where: { namespace: string; name: string },
): Promise<T | undefined> {
  try {
    return (await kube.custom.getNamespacedCustomObject(
      address(def, { metadata: { name: where.name, namespace: where.namespace } }),
    )) as T;
  } catch (err) {
    if (httpStatus(err) === 404) return undefined;
    throw err; // not an answer: the caller retries with backoff, never acts on a guess
  }
}

/**
 * True only when the API server says the object with this uid no longer exists (a cache may
 * lag; only this lets a guest or volume be destroyed). Throws when the API server does not
 * answer.
 */
export async function objectGone(
  kube: Kube,
  def: KindName,
  owner: { namespace: string; name: string; uid: string },
): Promise<boolean> {
  const current = await readObject(kube, def, owner);
  return current?.metadata.uid !== owner.uid;
}

/**
 * A failure that retrying may fix without the user (a deadline hit, a dropped connection, a
 * busy or conflicting API server): reported as Reconciling, not Stalled.
 */
export function isTransient(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  if (
    name === "CallTimeoutError" ||
    name === "ConnectionClosedError" ||
    name === "KubeRequestTimeoutError" ||
    name === "WatchSilenceError"
  )
    return true;
  const status = httpStatus(err);
  if (status !== undefined) return status === 409 || status === 429 || status >= 500;
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE"].includes(code);
}

/** HTTP status of an API error (kube/http.ts ApiError), if it is one. */
export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

export type EventType = "Normal" | "Warning";

/**
 * Events recorded lately, by object, type, reason and message: repeats only count. Work on
 * one entry is chained, so a burst of repeats creates one Event and raises its count in order.
 */
interface RecentEvent {
  name?: string;
  count: number;
  at: number;
  chain: Promise<void>;
}
const recentEvents = new Map<string, RecentEvent>();
const EVENT_CORRELATION_MS = 30 * 60_000;
const RECENT_EVENTS_MAX = 4096;

/**
 * Records a Kubernetes Event on OBJ (what `kubectl describe` shows). The same event again
 * (as a retried failure gives) raises the existing Event's count, as kubectl's "(x5 over
 * 3m)" shows, instead of creating another. Never throws.
 */
export function recordEvent(
  kube: Kube,
  component: string,
  obj: AnyObject,
  type: EventType,
  reason: string,
  message: string,
): Promise<void> {
  const now = Date.now();
  const text = message.slice(0, 1024);
  const namespace = obj.metadata.namespace ?? "default";
  const id = `${obj.metadata.uid ?? keyOf(obj)}|${type}|${reason}|${text}`;
  const seen = recentEvents.get(id);
  if (seen && now - seen.at < EVENT_CORRELATION_MS) {
    // Least recently used goes first when the cache is full: move this one to the end.
    recentEvents.delete(id);
    recentEvents.set(id, seen);
    seen.count++;
    seen.at = now;
    seen.chain = seen.chain.then(async () => {
      if (!seen.name) return; // its creation failed; this repeat is dropped
      const count = seen.count;
      await kube.core
        .patchNamespacedEvent(
          { name: seen.name, namespace, body: { count, lastTimestamp: new Date(seen.at) } },
          PatchType.Merge,
        )
        .catch((err) => {
          // Expired or deleted meanwhile: the next repeat records it anew.
          if (httpStatus(err) === 404) recentEvents.delete(id);
        });
    });
    return seen.chain;
  }
  if (recentEvents.size >= RECENT_EVENTS_MAX) recentEvents.delete(recentEvents.keys().next().value ?? "");
  const entry: RecentEvent = { count: 1, at: now, chain: Promise.resolve() };
  recentEvents.set(id, entry);
  entry.chain = kube.core
    .createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${obj.metadata.name}.`, namespace: obj.metadata.namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        type,
        reason,
        message: text,
        source: { component },
        reportingComponent: component,
        reportingInstance: process.env.NODE_NAME ?? process.env.POD_NAME ?? component,
        firstTimestamp: new Date(now),
        lastTimestamp: new Date(now),
        eventTime: undefined,
        count: 1,
      },
    })
    .then((created) => {
      entry.name = created.metadata?.name;
    })
    .catch(() => {
      recentEvents.delete(id);
    });
  return entry.chain;
}

/**
 * A Date that serializes with microseconds: Lease times are metav1.MicroTime, which the API
 * server parses only as "…T15:04:05.000000Z" (a plain Date would send milliseconds).
 */
export class MicroTime extends Date {
  override toISOString(): string {
    return super.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
  }
  override toJSON(): string {
    return this.toISOString();
  }
}

/** A one-line message for an API or libvirt error (ApiError carries the server's Status). */
export function describeError(err: unknown): string {
  const e = err as { body?: unknown; code?: number; message?: string };
  if (typeof e?.code === "number" && e.body !== undefined) {
    let body = e.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        return `HTTP ${e.code}: ${body}`;
      }
    }
    const message = (body as { message?: string })?.message;
    if (message) return `HTTP ${e.code}: ${message}`;
  }
  return e instanceof Error ? e.message : String(err);
}

interface Startable {
  start(): Promise<void>;
  on(verb: "error", cb: (err?: unknown) => void): void;
  latestResourceVersion?(): string;
}

/** Retries of a failed list or watch: 1 s, doubling to 30 s, spread ±20 %; a minute without failure starts over. */
export class InformerRetry {
  private failures = 0;
  private lastAt = Number.NEGATIVE_INFINITY;
  private readonly random: () => number;
  constructor(random: () => number = Math.random) {
    this.random = random;
  }
  /** The wait before the next try, after a failure at NOW. */
  next(now = Date.now()): number {
    if (now - this.lastAt > 60_000) this.failures = 0;
    this.lastAt = now;
    const base = Math.min(1000 * 2 ** this.failures, 30_000);
    this.failures++;
    return Math.round(base * (0.8 + 0.4 * this.random()));
  }
}

/**
 * Starts an informer and resolves once its first list has succeeded, so nobody acts on an
 * empty cache (an agent that took "not in the cache" for "deleted" would destroy guests).
 * A failed list or watch restarts it after a second, longer when it keeps failing (an API
 * server that is overloaded is not asked again by every informer every second).
 */
export async function startInformerSynced(informer: Startable, what: string, log: Logger): Promise<void> {
  let synced = false;
  const retry = new InformerRetry();
  informer.on("error", (err) => {
    if (err instanceof InformerHandlerError) {
      // Our bug, on one object: said loudly; the cache and the watch go on.
      log.error({ informer: what, err: describeError(err.cause) }, err.message);
      return;
    }
    if (!synced) {
      log.warn({ informer: what, err: describeError(err) }, "list failed; retrying");
      return; // the loop below waits
    }
    const inMs = retry.next();
    log.warn({ informer: what, err: describeError(err), retryInMs: inMs }, "watch failed; restarting it");
    setTimeout(() => void informer.start(), inMs);
  });
  for (;;) {
    await informer.start();
    if (informer.latestResourceVersion?.() !== "") break;
    await new Promise((r) => setTimeout(r, retry.next()));
  }
  synced = true;
}
