// Kubernetes API requests over node:http(s), for the plugin and the daemons alike: JSON requests
// with a deadline over a pool of kept-alive connections, and watches (newline-delimited JSON)
// that end when the connection falls silent. Answers that are not 2xx throw ApiError {code,
// body} (the shape of client-node's ApiException, which our error handling reads).
// @kubernetes/client-node is not loaded for this: it costs ~60 MiB per process and ~0.7 s to load.
import type { Agent as HttpAgent } from "node:http";
import type { RequestOptions } from "node:https";
import { type Auth, type AuthParts, connectionOptions, type Headers } from "./connection.ts";
import { KubeconfigError, type ResolvedConfig } from "./kubeconfig.ts";
import { http, https } from "./node-http.ts";

/** How long one request may take, headers and body, before the plugin gives up on it. */
export const REQUEST_DEADLINE_MS = 15_000;
/**
 * A watch that brings nothing (no event, no bookmark) this long is taken for a dead connection:
 * longer than the API server's bookmark interval (a minute), so a quiet watch is never cut.
 */
export const WATCH_SILENCE_MS = 90_000;
/** Socket timeout of pooled connections: idle ones close then (requests end sooner: their deadline). */
const IDLE_CLOSE_MS = 60_000;

export class ApiError extends Error {
  override name = "ApiError";
  readonly code: number;
  readonly body: unknown;
  constructor(code: number, body: unknown) {
    // The server's reason in the message too, for logs that print only that (a page cut short).
    const reason =
      typeof body === "string" ? body.slice(0, 200) : (body as { message?: unknown } | undefined)?.message;
    super(typeof reason === "string" && reason ? `HTTP ${code}: ${reason}` : `HTTP ${code}`);
    this.code = code;
    this.body = body;
  }
}

export class KubeRequestTimeoutError extends Error {
  override name = "KubeRequestTimeoutError";
  readonly method: string;
  readonly url: string;
  readonly deadlineMs: number;

  constructor(method: string, url: string, host: string, deadlineMs: number) {
    super(
      `Kubernetes API request ${method} ${url} got no complete answer from ${host} within ${deadlineMs} ms`,
    );
    this.method = method;
    this.url = url;
    this.deadlineMs = deadlineMs;
  }
}

/** A watch that went silent past its limit: the connection is presumed dead. */
export class WatchSilenceError extends Error {
  override name = "WatchSilenceError";
}

/** The Content-Type of a PATCH says what kind of patch it is. */
export const PatchType = {
  Merge: "application/merge-patch+json",
  Json: "application/json-patch+json",
  Apply: "application/apply-patch+yaml",
} as const;
export type PatchType = (typeof PatchType)[keyof typeof PatchType];

export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: unknown;
}

export interface HttpApiOptions {
  /** Every request (watches aside) fails after this long. */
  deadlineMs?: number;
  /** Connections open at once for requests (watches have their own). */
  maxSockets?: number;
  userAgent?: string;
  /** How long an exec or auth-provider credential plugin may take (default 30 s; 5 min at a terminal). */
  credentialDeadlineMs?: number;
  /** A person at a terminal may answer an exec credential plugin's prompts (the kubectl plugin). */
  interactive?: boolean;
}

/** BODY as JSON when it is; as text when not (a proxy's page, kept for the error). */
function parsed(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text;
  }
}

export class HttpApi {
  private readonly options: RequestOptions;
  private readonly auth: Auth;
  private readonly basePath: string;
  private readonly agent: HttpAgent;
  private readonly watchAgent: HttpAgent;
  private readonly deadlineMs: number;
  private readonly userAgent: string;

  private constructor(
    { options, auth }: { options: RequestOptions; auth: Auth },
    basePath: string,
    o: HttpApiOptions,
  ) {
    this.options = options;
    this.auth = auth;
    this.basePath = basePath;
    this.deadlineMs = o.deadlineMs ?? REQUEST_DEADLINE_MS;
    this.userAgent = o.userAgent ?? "kubectl-vm";
    const Agent = options.protocol === "http:" ? http.Agent : https.Agent;
    // An idle connection is closed after a minute, before the server may close it under a request.
    this.agent = new Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 1, timeout: IDLE_CLOSE_MS });
    // Watches hold their connection for minutes: apart, so they never keep a request waiting.
    this.watchAgent = new Agent({ keepAlive: false });
  }

  /** A connection to CONFIG's API server whose every request fails after its deadline. */
  static async connect(config: ResolvedConfig, options: HttpApiOptions | number = {}): Promise<HttpApi> {
    let url: URL;
    try {
      url = new URL(config.cluster.server);
    } catch {
      throw new KubeconfigError(`server "${config.cluster.server}" of the kubeconfig is no URL`);
    }
    const o = typeof options === "number" ? { deadlineMs: options } : options;
    const api = new HttpApi(
      await connectionOptions(config, o.credentialDeadlineMs, o.interactive),
      url.pathname.replace(/\/$/, ""),
      o,
    );
    await api.auth.get(); // a broken token file or exec plugin fails here, not on the first request
    return api;
  }

  private headers(auth: AuthParts, extra: Headers): Headers {
    return { ...auth.headers, Accept: "application/json", "User-Agent": this.userAgent, ...extra };
  }

  /** A request with AUTH's certificate when it brings one (an exec plugin's, renewed as it expires). */
  private send(options: RequestOptions, auth: AuthParts) {
    const cert = auth.cert && auth.key ? { cert: auth.cert, key: auth.key } : {};
    return (this.options.protocol === "http:" ? http.request : https.request)({
      ...this.options,
      ...cert,
      ...options,
    });
  }

  /** One request; resolves with the parsed JSON body of a 2xx answer. */
  async request(
    method: string,
    path: string,
    body?: object,
    contentType = "application/json",
  ): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const auth = await this.auth.get();
    const headers = this.headers(
      auth,
      payload ? { "Content-Type": contentType, "Content-Length": String(Buffer.byteLength(payload)) } : {},
    );
    const deadline = Date.now() + this.deadlineMs;
    const attempt = (resolve: (v: unknown) => void, reject: (e: unknown) => void, retried: boolean) => {
      // A header or path node refuses (a token with a newline) throws here, before any timer.
      let req: ReturnType<HttpApi["send"]>;
      try {
        req = this.send({ agent: this.agent, method, path: this.basePath + path, headers }, auth);
      } catch (err) {
        reject(err);
        return;
      }
      // One deadline for the whole exchange: an API server that accepts and then stalls fails too.
      const timer = setTimeout(
        () => {
          const host = String(this.options.host);
          req.destroy(new KubeRequestTimeoutError(method, path.split("?")[0] ?? path, host, this.deadlineMs));
        },
        Math.max(deadline - Date.now(), 0),
      );
      let answered = false;
      const fail = (err: Error) => {
        clearTimeout(timer);
        // A kept-alive socket the server had closed as we sent on it: the request never reached
        // it (no answer began), so it is sent once more on a fresh socket.
        const reset = (err as NodeJS.ErrnoException).code === "ECONNRESET";
        if (!retried && !answered && req.reusedSocket && reset) attempt(resolve, reject, true);
        else reject(err);
      };
      req.on("response", (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", fail);
        res.on("end", () => {
          clearTimeout(timer);
          const answer = parsed(Buffer.concat(chunks).toString("utf8"));
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) return resolve(answer);
          if (code === 401) this.auth.invalidate(auth);
          reject(new ApiError(code, answer));
        });
      });
      req.on("error", fail);
      req.end(payload);
    };
    return new Promise((resolve, reject) => attempt(resolve, reject, false));
  }

  /**
   * Watches PATH (a list path) from QUERY's resourceVersion: ON_EVENT for every event. Resolves
   * once the watch is under way or has failed; DONE is called once when it ends: without an
   * error when the server closed it or SIGNAL aborted it; with ApiError for an answer other
   * than 200, WatchSilenceError after SILENCE_MS without a byte.
   */
  async watch(
    path: string,
    query: Record<string, string | undefined>,
    onEvent: (event: WatchEvent) => void,
    done: (err?: unknown) => void,
    { signal, silenceMs = WATCH_SILENCE_MS }: { signal?: AbortSignal; silenceMs?: number } = {},
  ): Promise<void> {
    let auth: AuthParts;
    let headers: Headers;
    try {
      auth = await this.auth.get();
      headers = this.headers(auth, {});
    } catch (err) {
      done(err);
      return;
    }
    const params = new URLSearchParams({ watch: "true" });
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    await new Promise<void>((started) => {
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: unknown) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        req.destroy();
        done(err);
        started();
      };
      const onAbort = () => finish();
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => finish(new WatchSilenceError(`watch ${path}: nothing for ${silenceMs} ms`)),
          silenceMs,
        );
      };
      let req: ReturnType<HttpApi["send"]>;
      try {
        req = this.send(
          {
            agent: this.watchAgent,
            method: "GET",
            path: `${this.basePath}${path}?${params}`,
            headers,
          },
          auth,
        );
      } catch (err) {
        finished = true;
        done(err);
        started();
        return;
      }
      req.on("response", (res) => {
        res.setEncoding("utf8");
        if (res.statusCode !== 200) {
          let text = "";
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            if (res.statusCode === 401) this.auth.invalidate(auth);
            finish(new ApiError(res.statusCode ?? 0, parsed(text)));
          });
          return;
        }
        started();
        arm();
        let partial = "";
        res.on("data", (chunk: string) => {
          arm();
          const lines = (partial + chunk).split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) {
            if (finished) return;
            if (!line.trim()) continue;
            let event: WatchEvent;
            try {
              event = JSON.parse(line) as WatchEvent;
            } catch {
              return finish(new Error(`watch ${path}: a line that is no JSON`));
            }
            try {
              onEvent(event);
            } catch (err) {
              // The receiver failed on it: the watch ends with that error (it is started again).
              return finish(err);
            }
          }
        });
        res.on("end", () => finish());
        res.on("close", () => finish());
        res.on("error", finish);
      });
      req.on("error", finish);
      if (signal?.aborted) return finish();
      signal?.addEventListener("abort", onAbort, { once: true });
      arm();
      req.end();
    });
  }

  /** Closes the kept-alive connections so the process can exit at once. */
  close(): void {
    this.agent.destroy();
    this.watchAgent.destroy();
  }
}
