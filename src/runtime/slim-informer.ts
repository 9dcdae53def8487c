// Informers: a cache of one resource kept current by a list and then a watch from the list's
// resourceVersion (kube/http.ts), telling handlers of each add, update and delete. Semantics as
// client-node's ListWatch, which they replace: a watch the server ends or that falls silent
// resumes from the last resourceVersion seen (bookmarks keep it fresh); a 410 Gone lists again,
// deleting what vanished meanwhile; any other failure is an "error" (startInformerSynced
// restarts the informer).
//
// Their caches keep less of each object. metadata.managedFields (every field manager's field
// set: on our VMs, with four writers, larger than the rest of the object) is read by nothing of
// ours, and a Node's status.images (every image pulled there) by nothing either; with 1000 VMs
// cached they were most of the controller's live heap. They are dropped as an object arrives,
// from the list and from each watch event, before any handler or cache sees it. Writes are
// unaffected: an update without managedFields leaves the server's as they are, and our
// metadata and status patches never carry them.
import type { KubernetesListObject, KubernetesObject } from "@kubernetes/client-node";
import { withQuery } from "../kube/apis.ts";
import { ApiError, type HttpApi, type WatchEvent, WatchSilenceError } from "../kube/http.ts";

/** Drops from OBJ (freshly parsed, so changed in place) the fields no reader of our caches uses. */
export function slimmed<T>(obj: T): T {
  const o = obj as { metadata?: { managedFields?: unknown }; status?: { images?: unknown } } | undefined;
  if (o?.metadata?.managedFields !== undefined) delete o.metadata.managedFields;
  if (o?.status?.images !== undefined) delete o.status.images;
  return obj;
}

export type InformerVerb = "add" | "update" | "delete" | "error";
type Handler<T> = (obj: T) => void;

/** A watch that the server closed at once is opened again after this, doubling up to the max. */
const RECONNECT_BASE_MS = 1000;
const RECONNECT_MAX_MS = 30_000;

const isGone = (err: unknown) => err instanceof ApiError && err.code === 410;

/** A handler of the informer's events threw: reported, and the informer goes on. */
export class InformerHandlerError extends Error {
  override name = "InformerHandlerError";
  constructor(verb: InformerVerb, cause: unknown) {
    super(
      `a handler of an informer's ${verb} event failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

export class Informer<T extends KubernetesObject> {
  private readonly http: HttpApi;
  private readonly path: string;
  private readonly labelSelector?: string;
  private readonly silenceMs?: number;
  /** By namespace ("" for cluster-scoped), then name. */
  private objects = new Map<string, Map<string, T>>();
  private readonly handlers: Record<InformerVerb, Array<(x: never) => void>> = {
    add: [],
    update: [],
    delete: [],
    error: [],
  };
  private resourceVersion = "";
  private stopped = false;
  private watching?: AbortController;
  private reconnectMs = 0;

  constructor(http: HttpApi, path: string, labelSelector?: string, silenceMs?: number) {
    this.http = http;
    this.path = path;
    if (labelSelector !== undefined) this.labelSelector = labelSelector;
    if (silenceMs !== undefined) this.silenceMs = silenceMs;
  }

  on(verb: "error", cb: (err?: unknown) => void): void;
  on(verb: Exclude<InformerVerb, "error">, cb: Handler<T>): void;
  on(verb: InformerVerb, cb: (x: never) => void): void {
    this.handlers[verb].push(cb);
  }

  off(verb: InformerVerb, cb: (x: never) => void): void {
    const list = this.handlers[verb];
    const at = list.indexOf(cb);
    if (at >= 0) list.splice(at, 1);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.objects.get(namespace ?? "")?.get(name);
  }

  list(namespace?: string): T[] {
    if (namespace) return [...(this.objects.get(namespace)?.values() ?? [])];
    return [...this.objects.values()].flatMap((byName) => [...byName.values()]);
  }

  /** "" until the first list succeeded. */
  latestResourceVersion(): string {
    return this.resourceVersion;
  }

  /** Lists (unless resuming) and starts the watch; resolves once it is under way or has failed. */
  async start(): Promise<void> {
    this.stopped = false;
    this.reconnectMs = 0;
    await this.connect(false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watching?.abort();
    this.watching = undefined;
  }

  private emit(verb: InformerVerb, x: unknown): void {
    for (const cb of this.handlers[verb].slice()) {
      try {
        (cb as (x: unknown) => void)(x);
      } catch (err) {
        // One handler's failure stops neither the cache nor the others (nor the process).
        if (verb === "error") continue;
        this.emit("error", new InformerHandlerError(verb, err));
      }
    }
  }

  private async connect(reconnecting: boolean): Promise<void> {
    this.watching?.abort();
    this.watching = undefined;
    if (!this.resourceVersion) {
      let list: KubernetesListObject<T>;
      try {
        list = (await this.http.request(
          "GET",
          withQuery(this.path, { labelSelector: this.labelSelector }),
        )) as KubernetesListObject<T>;
        // A proxy's page or an empty body answered with 200 is no list.
        if (!Array.isArray(list?.items)) throw new Error(`list ${this.path}: the answer is no list`);
      } catch (err) {
        this.emit("error", err);
        return;
      }
      if (this.stopped) return;
      this.replaceAll(list.items.map(slimmed));
      this.resourceVersion = list.metadata?.resourceVersion ?? "";
    }
    if (reconnecting && this.reconnectMs > 0) await new Promise((r) => setTimeout(r, this.reconnectMs));
    if (this.stopped) return;
    if (reconnecting)
      this.reconnectMs = Math.min(Math.max(this.reconnectMs * 2, RECONNECT_BASE_MS), RECONNECT_MAX_MS);
    const watching = new AbortController();
    this.watching = watching;
    await this.http.watch(
      this.path,
      {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: "true",
        labelSelector: this.labelSelector,
        // Ended by the server in 5–10 minutes (spread, as informers elsewhere do); its bookmarks
        // (about every minute) keep a quiet watch's resourceVersion fresh meanwhile.
        timeoutSeconds: String(300 + Math.floor(Math.random() * 300)),
      },
      (event) => this.onEvent(event, watching),
      (err) => this.ended(err, watching),
      { signal: watching.signal, ...(this.silenceMs ? { silenceMs: this.silenceMs } : {}) },
    );
  }

  private ended(err: unknown, watching: AbortController): void {
    if (this.stopped || this.watching !== watching) return; // stopped, or replaced by a newer watch
    this.watching = undefined;
    if (isGone(err)) this.resourceVersion = "";
    else if (err instanceof WatchSilenceError)
      this.reconnectMs = 0; // the silence was the wait
    else if (err) {
      this.emit("error", err);
      return;
    }
    this.connect(true).catch((e: unknown) => this.emit("error", e));
  }

  private onEvent(event: WatchEvent, watching: AbortController): void {
    if (event.type === "ERROR") {
      // The watch's resourceVersion is too old (410 Gone): list again. Anything else: an error.
      const status = event.object as { code?: number };
      const err = new ApiError(status?.code ?? 500, status);
      this.ended(err, watching);
      watching.abort();
      return;
    }
    const obj = slimmed(event.object as T);
    if (event.type === "ADDED" || event.type === "MODIFIED") this.addOrUpdate(obj);
    else if (event.type === "DELETED") this.remove(obj);
    this.reconnectMs = 0;
    this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
  }

  private addOrUpdate(obj: T): void {
    const namespace = obj.metadata?.namespace ?? "";
    const name = obj.metadata?.name ?? "";
    let byName = this.objects.get(namespace);
    if (!byName) {
      byName = new Map();
      this.objects.set(namespace, byName);
    }
    const found = byName.get(name);
    const rv = found?.metadata?.resourceVersion;
    if (found && rv !== undefined && rv === obj.metadata?.resourceVersion) return; // seen already
    byName.set(name, obj);
    this.emit(found ? "update" : "add", obj);
  }

  private remove(obj: T): void {
    const namespace = obj.metadata?.namespace ?? "";
    const byName = this.objects.get(namespace);
    const name = obj.metadata?.name ?? "";
    if (!byName?.has(name)) return;
    byName.delete(name);
    if (!byName.size) this.objects.delete(namespace);
    this.emit("delete", obj);
  }

  /** A fresh list: what vanished since is deleted, the rest added or updated. */
  private replaceAll(items: T[]): void {
    const listed = new Set(items.map((o) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`));
    for (const [namespace, byName] of [...this.objects])
      for (const [name, obj] of [...byName])
        if (!listed.has(`${namespace}/${name}`)) {
          byName.delete(name);
          if (!byName.size) this.objects.delete(namespace);
          this.emit("delete", obj);
        }
    for (const obj of items) this.addOrUpdate(obj);
  }
}

/** An informer over PATH (a list path), optionally label-filtered, caching slimmed objects. */
export function makeSlimInformer<T extends KubernetesObject>(
  http: HttpApi,
  path: string,
  labelSelector?: string,
): Informer<T> {
  return new Informer<T>(http, path, labelSelector);
}
