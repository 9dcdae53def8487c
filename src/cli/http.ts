// The plugin's few API requests over node:https: get, list, create, merge-patch and delete of
// our custom objects, each with a deadline, on one kept-alive connection. Answers that are not
// 2xx throw ApiError {code, body} (the shape of client-node's ApiException, which formatError reads).
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import { KubeconfigError, type ResolvedConfig } from "./kubeconfig.ts";

/** How long one request may take, headers and body, before the plugin gives up on it. */
export const REQUEST_DEADLINE_MS = 15_000;

export class ApiError extends Error {
  override name = "ApiError";
  readonly code: number;
  readonly body: unknown;
  constructor(code: number, body: unknown) {
    super(`HTTP ${code}`);
    this.code = code;
    this.body = body;
  }
}

interface ObjectRef {
  group: string;
  version: string;
  namespace: string;
  plural: string;
  name: string;
}
type Collection = Omit<ObjectRef, "name">;
type WriteOptions = { dryRun?: string };

/** The subset of client-node's CustomObjectsApi the plugin uses, with the same parameters. */
export interface CustomObjects {
  getNamespacedCustomObject(p: ObjectRef): Promise<unknown>;
  listNamespacedCustomObject(p: Collection & { labelSelector?: string }): Promise<unknown>;
  listClusterCustomObject(p: Omit<Collection, "namespace"> & { labelSelector?: string }): Promise<unknown>;
  createNamespacedCustomObject(p: Collection & WriteOptions & { body: object }): Promise<unknown>;
  /** Always a JSON merge patch (RFC 7386); a second argument (client-node's header options) is ignored. */
  patchNamespacedCustomObject(
    p: ObjectRef & WriteOptions & { body: object },
    _options?: unknown,
  ): Promise<unknown>;
  deleteNamespacedCustomObject(p: ObjectRef & WriteOptions): Promise<unknown>;
}

function fileOrData(data: string | undefined, file: string | undefined): Buffer | undefined {
  if (data) return Buffer.from(data, "base64");
  if (file) return readFileSync(file);
  return undefined;
}

/** TLS and auth options for the context: from the kubeconfig, or client-node for exec/auth providers. */
async function connectionOptions(config: ResolvedConfig): Promise<RequestOptions> {
  const { cluster, user } = config;
  const url = new URL(cluster.server);
  const base: RequestOptions = {
    // An IPv6 literal comes bracketed in a URL, not in a host name to connect to.
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port || (url.protocol === "https:" ? 443 : 80),
    protocol: url.protocol,
    headers: {},
  };
  if (user.exec || user["auth-provider"]) {
    // Rare in the plugin's use, and the library knows every provider: pay for loading it here.
    const { KubeConfig } = await import("@kubernetes/client-node");
    const kc = new KubeConfig();
    if (config.files.length === 1 && config.files[0]) kc.loadFromFile(config.files[0]);
    else kc.loadFromDefault();
    kc.setCurrentContext(config.contextName);
    await kc.applyToHTTPSOptions(base);
    return base;
  }
  const ca = fileOrData(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const cert = fileOrData(user["client-certificate-data"], user["client-certificate"]);
  const key = fileOrData(user["client-key-data"], user["client-key"]);
  const headers = base.headers as Record<string, string>;
  const token = user.token ?? (user.tokenFile ? readFileSync(user.tokenFile, "utf8").trim() : undefined);
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (user.username !== undefined)
    headers.Authorization = `Basic ${Buffer.from(`${user.username}:${user.password ?? ""}`).toString("base64")}`;
  return {
    ...base,
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(cluster["tls-server-name"] ? { servername: cluster["tls-server-name"] } : {}),
    // Only a real true turns verification off (a YAML "false" string must not).
    rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
  };
}

export class HttpApi {
  private readonly options: RequestOptions;
  private readonly basePath: string;
  private readonly agent: Agent;
  private readonly deadlineMs: number;

  private constructor(options: RequestOptions, basePath: string, deadlineMs: number) {
    this.options = options;
    this.basePath = basePath;
    this.deadlineMs = deadlineMs;
    this.agent = new Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** A connection to CONFIG's API server whose every request fails after DEADLINE_MS. */
  static async connect(config: ResolvedConfig, deadlineMs = REQUEST_DEADLINE_MS): Promise<HttpApi> {
    let url: URL;
    try {
      url = new URL(config.cluster.server);
    } catch {
      throw new KubeconfigError(`server "${config.cluster.server}" of the kubeconfig is no URL`);
    }
    return new HttpApi(await connectionOptions(config), url.pathname.replace(/\/$/, ""), deadlineMs);
  }

  /** One request; resolves with the parsed JSON body of a 2xx answer. */
  request(method: string, path: string, body?: object, contentType = "application/json"): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {
      ...(this.options.headers as Record<string, string>),
      Accept: "application/json",
      "User-Agent": "kubectl-vm",
      ...(payload
        ? { "Content-Type": contentType, "Content-Length": String(Buffer.byteLength(payload)) }
        : {}),
    };
    const send = this.options.protocol === "http:" ? httpRequest : httpsRequest;
    return new Promise((resolve, reject) => {
      // One deadline for the whole exchange: an API server that accepts and then stalls fails too.
      const timer = setTimeout(
        () =>
          req.destroy(
            new Error(
              `${method} ${path.split("?")[0]}: no complete answer from ${this.options.host} within ${this.deadlineMs} ms`,
            ),
          ),
        this.deadlineMs,
      );
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      const req = send(
        {
          ...this.options,
          ...(this.options.protocol === "http:" ? {} : { agent: this.agent }),
          method,
          path: this.basePath + path,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", fail);
          res.on("end", () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON (a proxy's page): keep the text for the error
            }
            const code = res.statusCode ?? 0;
            if (code >= 200 && code < 300) resolve(parsed);
            else reject(new ApiError(code, parsed));
          });
        },
      );
      req.on("error", fail);
      req.end(payload);
    });
  }

  /** Closes the kept-alive connection so the process can exit at once. */
  close(): void {
    this.agent.destroy();
  }

  /** client-node's CustomObjectsApi calls the plugin makes, over this connection. */
  customObjects(): CustomObjects {
    const path = (p: Collection & { name?: string }, query: Record<string, string | undefined> = {}) => {
      const ns = p.namespace ? `/namespaces/${encodeURIComponent(p.namespace)}` : "";
      const name = p.name ? `/${encodeURIComponent(p.name)}` : "";
      const q = new URLSearchParams(
        Object.entries(query).filter((e): e is [string, string] => e[1] !== undefined),
      );
      const qs = q.size ? `?${q}` : "";
      return `/apis/${p.group}/${p.version}${ns}/${p.plural}${name}${qs}`;
    };
    return {
      getNamespacedCustomObject: (p) => this.request("GET", path(p)),
      listNamespacedCustomObject: (p) => this.request("GET", path(p, { labelSelector: p.labelSelector })),
      listClusterCustomObject: (p) =>
        this.request("GET", path({ ...p, namespace: "" }, { labelSelector: p.labelSelector })),
      createNamespacedCustomObject: (p) => this.request("POST", path(p, { dryRun: p.dryRun }), p.body),
      patchNamespacedCustomObject: (p) =>
        this.request("PATCH", path(p, { dryRun: p.dryRun }), p.body, "application/merge-patch+json"),
      deleteNamespacedCustomObject: (p) => this.request("DELETE", path(p, { dryRun: p.dryRun })),
    };
  }
}
