// The few API calls the plugin and the daemons make, named and shaped as client-node's
// CustomObjectsApi, CoreV1Api and CoordinationV1Api calls (so call sites read the same), over
// http.ts. Objects come back as the API server sent them: timestamps are strings, never Dates.
import type {
  CoreV1Event,
  V1Lease,
  V1LeaseList,
  V1Namespace,
  V1NamespaceList,
  V1Node,
  V1NodeList,
} from "@kubernetes/client-node";
import { type HttpApi, PatchType } from "./http.ts";

interface ObjectRef {
  group: string;
  version: string;
  namespace: string;
  plural: string;
  name: string;
}
type Collection = Omit<ObjectRef, "name">;
type WriteOptions = { dryRun?: string };
type ApplyOptions = WriteOptions & { fieldManager?: string; force?: boolean };
type Query = Record<string, string | boolean | undefined>;

/** PATH with QUERY's set values appended. */
export function withQuery(path: string, query: Query = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  return q.size ? `${path}?${q}` : path;
}

const seg = encodeURIComponent;

/** The subset of client-node's CustomObjectsApi we use, with the same parameters. */
export interface CustomObjects {
  getNamespacedCustomObject(p: ObjectRef): Promise<unknown>;
  listNamespacedCustomObject(p: Collection & { labelSelector?: string }): Promise<unknown>;
  listClusterCustomObject(p: Omit<Collection, "namespace"> & { labelSelector?: string }): Promise<unknown>;
  createNamespacedCustomObject(p: Collection & WriteOptions & { body: object }): Promise<unknown>;
  /** A JSON merge patch (RFC 7386) unless TYPE says otherwise. */
  patchNamespacedCustomObject(
    p: ObjectRef & ApplyOptions & { body: object },
    type?: PatchType,
  ): Promise<unknown>;
  patchNamespacedCustomObjectStatus(
    p: ObjectRef & ApplyOptions & { body: object },
    type?: PatchType,
  ): Promise<unknown>;
  deleteNamespacedCustomObject(p: ObjectRef & WriteOptions): Promise<unknown>;
}

export function customObjectsApi(http: HttpApi): CustomObjects {
  const path = (p: Collection & { name?: string }, sub = "") => {
    const ns = p.namespace ? `/namespaces/${seg(p.namespace)}` : "";
    const name = p.name ? `/${seg(p.name)}` : "";
    return `/apis/${p.group}/${p.version}${ns}/${p.plural}${name}${sub}`;
  };
  const writeQuery = (p: ApplyOptions) => ({
    dryRun: p.dryRun,
    fieldManager: p.fieldManager,
    force: p.force,
  });
  return {
    getNamespacedCustomObject: (p) => http.request("GET", path(p)),
    listNamespacedCustomObject: (p) =>
      http.request("GET", withQuery(path(p), { labelSelector: p.labelSelector })),
    listClusterCustomObject: (p) =>
      http.request("GET", withQuery(path({ ...p, namespace: "" }), { labelSelector: p.labelSelector })),
    createNamespacedCustomObject: (p) =>
      http.request("POST", withQuery(path(p), { dryRun: p.dryRun }), p.body),
    patchNamespacedCustomObject: (p, type = PatchType.Merge) =>
      http.request("PATCH", withQuery(path(p), writeQuery(p)), p.body, type),
    patchNamespacedCustomObjectStatus: (p, type = PatchType.Merge) =>
      http.request("PATCH", withQuery(path(p, "/status"), writeQuery(p)), p.body, type),
    deleteNamespacedCustomObject: (p) => http.request("DELETE", withQuery(path(p), { dryRun: p.dryRun })),
  };
}

/** The CoreV1Api calls we make. */
export interface CoreApi {
  listNamespace(): Promise<V1NamespaceList>;
  readNamespace(p: { name: string }): Promise<V1Namespace>;
  listNode(): Promise<V1NodeList>;
  patchNode(p: { name: string; body: object }, type?: PatchType): Promise<V1Node>;
  createNamespacedEvent(p: { namespace: string; body: CoreV1Event }): Promise<CoreV1Event>;
  patchNamespacedEvent(
    p: { name: string; namespace: string; body: object },
    type?: PatchType,
  ): Promise<CoreV1Event>;
}

export function coreApi(http: HttpApi): CoreApi {
  const events = (namespace: string) => `/api/v1/namespaces/${seg(namespace)}/events`;
  return {
    listNamespace: async () => (await http.request("GET", "/api/v1/namespaces")) as V1NamespaceList,
    readNamespace: async (p) =>
      (await http.request("GET", `/api/v1/namespaces/${seg(p.name)}`)) as V1Namespace,
    listNode: async () => (await http.request("GET", "/api/v1/nodes")) as V1NodeList,
    patchNode: async (p, type = PatchType.Merge) =>
      (await http.request("PATCH", `/api/v1/nodes/${seg(p.name)}`, p.body, type)) as V1Node,
    createNamespacedEvent: async (p) =>
      (await http.request("POST", events(p.namespace), p.body)) as CoreV1Event,
    patchNamespacedEvent: async (p, type = PatchType.Merge) =>
      (await http.request("PATCH", `${events(p.namespace)}/${seg(p.name)}`, p.body, type)) as CoreV1Event,
  };
}

/** The CoordinationV1Api calls we make. */
export interface CoordinationApi {
  readNamespacedLease(p: { name: string; namespace: string }): Promise<V1Lease>;
  createNamespacedLease(p: { namespace: string; body: V1Lease }): Promise<V1Lease>;
  replaceNamespacedLease(p: { name: string; namespace: string; body: V1Lease }): Promise<V1Lease>;
  listNamespacedLease(p: { namespace: string }): Promise<V1LeaseList>;
}

export function coordinationApi(http: HttpApi): CoordinationApi {
  const leases = (namespace: string) => `/apis/coordination.k8s.io/v1/namespaces/${seg(namespace)}/leases`;
  return {
    readNamespacedLease: async (p) =>
      (await http.request("GET", `${leases(p.namespace)}/${seg(p.name)}`)) as V1Lease,
    createNamespacedLease: async (p) => (await http.request("POST", leases(p.namespace), p.body)) as V1Lease,
    replaceNamespacedLease: async (p) =>
      (await http.request("PUT", `${leases(p.namespace)}/${seg(p.name)}`, p.body)) as V1Lease,
    listNamespacedLease: async (p) => (await http.request("GET", leases(p.namespace))) as V1LeaseList,
  };
}
