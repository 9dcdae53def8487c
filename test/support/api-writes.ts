// Every write to a stack's API server over a time window, said per object: which object, which
// field manager, which fields, and whether it is one steady state allows (a heartbeat Lease, a
// statistics refresh with a changed figure). Watches see what a write changed; the API server's
// own request counters (apiserver_request_total) also see writes that changed nothing, which
// no watch reports.
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../../src/api/names.ts";
import { kubectl } from "../../src/cmd/local/kube.ts";
import { kubeconfigPath, type StackConfig } from "../../src/cmd/local/stack.ts";
import { HEARTBEAT_LEASE_PREFIX } from "../../src/controllers/node-facts.ts";

/** What the recorder watches: our kinds, and what the operator writes besides (Events, Nodes, Leases). */
const WATCHED: Array<{ kind: string; path: string; resource: string }> = [
  ...["virtualmachines", "vmdisks", "vmsnapshots", "vmrestores", "vmtemplates"].map((plural) => ({
    kind: plural,
    path: `/apis/${GROUP}/${VERSION}/${plural}`,
    resource: plural,
  })),
  { kind: "events", path: "/api/v1/events", resource: "events" },
  { kind: "nodes", path: "/api/v1/nodes", resource: "nodes" },
  { kind: "leases", path: "/apis/coordination.k8s.io/v1/leases", resource: "leases" },
];
/** Resources whose write requests count against steady state (Leases are heartbeats). */
const COUNTED = WATCHED.map((w) => w.resource).filter((r) => r !== "leases");

type Obj = {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    managedFields?: Array<{ manager?: string; operation?: string; subresource?: string; time?: unknown }>;
  };
  status?: { statistics?: Record<string, unknown> };
  reason?: string;
  source?: { component?: string };
  involvedObject?: { name?: string };
};

export interface SeenWrite {
  kind: string;
  /** namespace/name (an Event: the object it is about, and its reason). */
  object: string;
  verb: "ADDED" | "MODIFIED" | "DELETED";
  /** Field managers whose entry the write touched (an Event: its source component). */
  managers: string[];
  /** Paths that changed (two levels deep). */
  fields: string[];
  /** Why steady state allows it, if it does. */
  allowed?: "heartbeat" | "statistics";
  /** The object's resourceVersion after the write (an etcd revision). */
  revision: number;
}

export interface WriteReport {
  writes: SeenWrite[];
  /** Write requests to COUNTED resources, by resource, from the API server's counters. */
  requests: Record<string, number>;
  /** The ones steady state does not allow. */
  disallowed: SeenWrite[];
  /** Write requests that no watch saw change anything (requests minus writes seen). */
  unseenRequests: number;
}

/** Paths (up to two levels) whose values differ between A and B. */
export function changedPaths(a: unknown, b: unknown, prefix = "", depth = 2): string[] {
  if (isDeepStrictEqual(a, b)) return [];
  const isObj = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (depth === 0 || !isObj(a) || !isObj(b)) return [prefix || "."];
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
  return [...keys].flatMap((k) =>
    changedPaths(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      prefix ? `${prefix}.${k}` : k,
      depth - 1,
    ),
  );
}

/** Field managers whose managedFields entry differs between BEFORE and AFTER. */
function touchedManagers(before: Obj | undefined, after: Obj): string[] {
  const entries = (o: Obj | undefined) =>
    new Map(
      (o?.metadata.managedFields ?? []).map((e) => [
        `${e.manager}${e.subresource ? `/${e.subresource}` : ""}`,
        JSON.stringify(e),
      ]),
    );
  const was = entries(before);
  return [...entries(after)].filter(([k, v]) => was.get(k) !== v).map(([k]) => k);
}

/** Judges one write: a heartbeat Lease, or a statistics refresh that changed a figure. */
export function allowedWrite(
  kind: string,
  before: Obj | undefined,
  after: Obj,
  fields: readonly string[],
): SeenWrite["allowed"] {
  if (kind === "leases") {
    const name = after.metadata.name;
    const ours = name.startsWith(HEARTBEAT_LEASE_PREFIX) || name === "libvirt-operator-controller";
    const apiserver = after.metadata.namespace === "kube-system" && name.startsWith("apiserver-");
    return ours || apiserver ? "heartbeat" : undefined;
  }
  if (!before || !fields.length || !fields.every((f) => f === "status.statistics")) return undefined;
  const figures = (o: Obj) => {
    const { updatedAt: _at, ...rest } = o.status?.statistics ?? {};
    return rest;
  };
  return isDeepStrictEqual(figures(before), figures(after)) ? undefined : "statistics";
}

const WRITE_VERBS = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/** Write requests the API server served so far, by resource[/subresource] (its own /metrics). */
export async function apiWriteRequests(stack: StackConfig): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [key, n] of Object.entries(await apiRequests(stack))) {
    const [verb = "", resource = ""] = key.split(" ");
    if (WRITE_VERBS.includes(verb)) out[resource] = (out[resource] ?? 0) + n;
  }
  return out;
}

/** What each count grew by from BEFORE to AFTER (those that did). */
export function requestsGrew(
  before: Readonly<Record<string, number>>,
  after: Readonly<Record<string, number>>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(after)) if (n - (before[k] ?? 0)) out[k] = n - (before[k] ?? 0);
  return out;
}

/** Every request the API server served so far (watches and lists too), by "VERB resource[/subresource]". */
export async function apiRequests(stack: StackConfig): Promise<Record<string, number>> {
  const pki = join(stack.stateDir, "pki");
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(
      `https://127.0.0.1:${stack.ports.apiserver}/metrics`,
      {
        ca: readFileSync(join(pki, "ca.crt")),
        cert: readFileSync(join(pki, "admin.crt")),
        key: readFileSync(join(pki, "admin.key")),
        timeout: 10_000,
      },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve(body));
      },
    );
    req.on("error", reject);
    req.end();
  });
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const verb = /verb="([A-Z]+)"/.exec(line)?.[1] ?? "";
    const resource = /resource="([^"]*)"/.exec(line)?.[1] ?? "";
    const sub = /subresource="([^"]*)"/.exec(line)?.[1] ?? "";
    const key = `${verb} ${sub ? `${resource}/${sub}` : resource}`;
    out[key] = (out[key] ?? 0) + Number(line.split(" ").at(-1));
  }
  return out;
}

/** Write requests to COUNTED resources (subresources folded in). */
async function countedRequests(stack: StackConfig): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [key, n] of Object.entries(await apiWriteRequests(stack))) {
    const resource = key.split("/")[0] ?? "";
    if (COUNTED.includes(resource)) out[resource] = (out[resource] ?? 0) + n;
  }
  return out;
}

/**
 * Watches the stack from now on. The watches first list what exists (kept as the state writes
 * are compared with); writes count from start(), by resourceVersion, until stop().
 */
export class WriteRecorder {
  private readonly stack: StackConfig;
  private readonly last = new Map<string, Obj>();
  private readonly seen: SeenWrite[] = [];
  private readonly aborts = new Set<{ abort(): void }>();
  private stopped = false;
  private from = Number.POSITIVE_INFINITY;
  private requestsBefore: Record<string, number> = {};

  constructor(stack: StackConfig) {
    this.stack = stack;
  }

  /** Opens the watches; writes count once start() is called. */
  async open(): Promise<void> {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath(this.stack));
    const watch = new Watch(kc);
    // The client ends a watch after 30 s without a line: a quiet kind's watch ended unseen and
    // its later writes went uncounted. Each is opened again from the last version it saw.
    await Promise.all(WATCHED.map((w) => this.watchKind(watch, w.kind, w.path)));
  }

  /** Watches one kind until stop(), opened again from the last version it saw whenever it ends. */
  private async watchKind(watch: Watch, kind: string, path: string, resourceVersion?: string): Promise<void> {
    if (this.stopped) return;
    let last = resourceVersion;
    const handle: { req?: { abort(): void }; ended: boolean } = { ended: false };
    const again = () => {
      if (handle.req) this.aborts.delete(handle.req);
      if (handle.ended || this.stopped) return;
      handle.ended = true;
      this.reopenLater(watch, kind, path, last);
    };
    try {
      handle.req = await watch.watch(
        path,
        { allowWatchBookmarks: true, ...(last ? { resourceVersion: last } : {}) },
        (type: string, obj: Obj) => {
          // Too old a version to go on from (410): the next watch lists afresh.
          if (type === "ERROR") last = undefined;
          else last = obj.metadata?.resourceVersion ?? last;
          if (type !== "BOOKMARK" && type !== "ERROR") this.onEvent(kind, type, obj);
        },
        // Called before watch() returns when it cannot connect.
        () => again(),
      );
    } catch {
      again();
      return;
    }
    if (this.stopped) handle.req.abort();
    else if (!handle.ended) this.aborts.add(handle.req);
  }

  /** Not at once: an API server that refuses would be asked in a tight loop. */
  private reopenLater(watch: Watch, kind: string, path: string, last: string | undefined) {
    if (this.stopped) return;
    // watchKind never throws: a watch that cannot connect comes back here.
    setTimeout(() => void this.watchKind(watch, kind, path, last), 200).unref();
  }

  /** From now on every write counts. */
  async start(): Promise<void> {
    this.requestsBefore = await countedRequests(this.stack);
    this.from = await this.currentRevision();
  }

  async stop(): Promise<WriteReport> {
    const until = await this.currentRevision();
    const after = await countedRequests(this.stack);
    // Events of writes up to UNTIL may still be on their way.
    await new Promise((r) => setTimeout(r, 1000));
    this.stopped = true;
    for (const a of [...this.aborts]) a.abort();
    const requests: Record<string, number> = {};
    for (const r of COUNTED) {
      const n = (after[r] ?? 0) - (this.requestsBefore[r] ?? 0);
      if (n) requests[r] = n;
    }
    const writes = this.seen.filter((w) => w.revision <= until);
    const counted = writes.filter((w) => w.kind !== "leases").length;
    const total = Object.values(requests).reduce((a, b) => a + b, 0);
    return {
      writes,
      requests,
      disallowed: writes.filter((w) => !w.allowed),
      unseenRequests: Math.max(0, total - counted),
    };
  }

  /** The store's revision now (a list's resourceVersion). */
  private async currentRevision(): Promise<number> {
    const { stdout } = await kubectl(kubeconfigPath(this.stack), [
      "get",
      "--raw",
      "/api/v1/namespaces?limit=1",
    ]);
    return Number((JSON.parse(stdout) as { metadata: { resourceVersion: string } }).metadata.resourceVersion);
  }

  private onEvent(kind: string, given: string, obj: Obj) {
    const id = `${kind}/${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    const before = this.last.get(id);
    // A watch listing afresh (after a 410) says ADDED of what it had already shown: the same
    // version is nothing new, a later one a change.
    if (given === "ADDED" && before?.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    const type = given === "ADDED" && before ? "MODIFIED" : given;
    if (type === "DELETED") this.last.delete(id);
    else this.last.set(id, obj);
    const rv = Number(obj.metadata.resourceVersion);
    if (!(rv > this.from) || !["ADDED", "MODIFIED", "DELETED"].includes(type)) return;
    const strip = (o: Obj | undefined) =>
      o && { ...o, metadata: { ...o.metadata, resourceVersion: undefined, managedFields: undefined } };
    const fields = type === "MODIFIED" ? changedPaths(strip(before), strip(obj)) : [];
    const event = kind === "events";
    const object = event
      ? `${obj.metadata.namespace}/${obj.involvedObject?.name} (${obj.reason})`
      : `${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ""}${obj.metadata.name}`;
    const allowed = type === "MODIFIED" ? allowedWrite(kind, before, obj, fields) : undefined;
    this.seen.push({
      kind,
      object,
      verb: type as SeenWrite["verb"],
      managers: event ? [obj.source?.component ?? "?"] : touchedManagers(before, obj),
      fields,
      ...(allowed ? { allowed } : {}),
      revision: rv,
    });
  }
}

/** One line per write: kind, object, verb, managers, fields. */
export function describeWrites(writes: readonly SeenWrite[]): string {
  return writes
    .map(
      (w) =>
        `${w.kind} ${w.object} ${w.verb} by ${w.managers.join(", ") || "?"}${w.fields.length ? `: ${w.fields.join(", ")}` : ""}`,
    )
    .join("\n");
}
