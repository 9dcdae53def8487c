// A deadline for every Kubernetes API request (get, list, patch, create …): an API server or a
// network path that stops answering must fail the reconcile, which then backs off and retries,
// rather than hang it and hold its key forever. client-node 2.x sends through an HttpLibrary
// (undici's fetch) that honours the request's AbortSignal for the headers and the body alike;
// we wrap that library, so the deadline covers the whole exchange.
//
// Watches are left alone: they are long-lived by design and never pass through here anyway
// (client-node's Watch calls fetch itself, with its own inactivity timeout after which the
// informer's ListWatch reconnects from the last resourceVersion). The informer's *list*, which
// goes through the API client, does get the deadline.
import {
  type ApiConstructor,
  type ApiType,
  type Configuration,
  type HttpLibrary,
  type KubeConfig,
  type RequestContext,
  ResponseContext,
  wrapHttpLibrary,
} from "@kubernetes/client-node";

/** client-node's dispatcher type (undici's), without depending on undici ourselves. */
type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;

/** Longest a request may take, headers and body. Ample for lists of thousands of objects. */
export const KUBE_REQUEST_DEADLINE_MS = 30_000;

export class KubeRequestTimeoutError extends Error {
  override name = "KubeRequestTimeoutError";
  readonly method: string;
  readonly url: string;
  readonly deadlineMs: number;

  constructor(method: string, url: string, deadlineMs: number) {
    super(`Kubernetes API request ${method} ${url} got no complete answer within ${deadlineMs} ms`);
    this.method = method;
    this.url = url;
    this.deadlineMs = deadlineMs;
  }
}

/** Requests that stream by design (watch, log follow) keep no deadline. */
export function isLongLived(url: string): boolean {
  const params = new URL(url).searchParams;
  return ["watch", "follow"].some((p) => params.get(p) === "true" || params.get(p) === "1");
}

/** How long one connection pool serves before a fresh one (new client certificates) takes over. */
const POOL_REFRESH_MS = 10 * 60_000;
/** A replaced pool is closed this long after (past any request's deadline). */
const RETIRED_POOL_CLOSE_MS = 2 * KUBE_REQUEST_DEADLINE_MS;

/**
 * client-node builds a new undici Agent for every request, so each would open its own TCP
 * connection and do a full TLS handshake (measured: a third of the controller's CPU at 100
 * VMs, make bench-scale). Requests of one KubeConfig share one pool instead, refreshed now and
 * then so rotated certificates are taken up; a replaced pool closes once its requests finish.
 */
export class ConnectionPool {
  private current?: { dispatcher: Dispatcher; since: number };

  /** The pool to send with, given the one client-node just made for this request. */
  use(fresh: Dispatcher | undefined, now = Date.now()): Dispatcher | undefined {
    if (!fresh) return undefined;
    if (this.current && now - this.current.since < POOL_REFRESH_MS) {
      void fresh.close().catch(() => undefined);
      return this.current.dispatcher;
    }
    const old = this.current?.dispatcher;
    this.current = { dispatcher: fresh, since: now };
    // Later: a request may have picked the old pool and not be sent yet.
    if (old) setTimeout(() => void old.close().catch(() => undefined), RETIRED_POOL_CLOSE_MS).unref();
    return fresh;
  }
}

/** INNER with a deadline of DEADLINE_MS (0 = none) on every request but long-lived ones. */
export function withDeadline(inner: HttpLibrary, deadlineMs: number, pool?: ConnectionPool): HttpLibrary {
  return wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      const dispatcher = pool?.use(request.getDispatcher());
      if (dispatcher) request.setDispatcher(dispatcher);
      if (deadlineMs <= 0 || isLongLived(request.getUrl())) return inner.send(request).toPromise();
      const controller = new AbortController();
      // Made only when the deadline passes (an Error captures a stack: not for every request).
      const timeoutError = () => {
        const path = new URL(request.getUrl());
        return new KubeRequestTimeoutError(
          request.getHttpMethod(),
          `${path.pathname}${path.search}`,
          deadlineMs,
        );
      };
      let timeout: KubeRequestTimeoutError | undefined;
      // undici rejects the fetch, or the body read, with the abort's reason: our message.
      const timer = setTimeout(() => {
        timeout = timeoutError();
        controller.abort(timeout);
      }, deadlineMs);
      const own = request.getSignal();
      request.setSignal(own ? AbortSignal.any([own, controller.signal]) : controller.signal);
      const done = () => clearTimeout(timer);
      let response: ResponseContext;
      try {
        response = await inner.send(request).toPromise();
      } catch (err) {
        done();
        throw controller.signal.aborted && timeout ? timeout : err;
      }
      const body = response.body;
      const settle = async <T>(read: Promise<T>): Promise<T> => {
        try {
          return await read;
        } catch (err) {
          throw controller.signal.aborted && timeout ? timeout : err;
        } finally {
          done();
        }
      };
      return new ResponseContext(response.httpStatusCode, response.headers, {
        text: () => settle(body.text()),
        binary: () => settle(body.binary()),
        stream: () => {
          done(); // whoever streams a body reads it at their own pace
          return body.stream();
        },
      });
    },
  });
}

/** Every API client of one KubeConfig sends through one connection pool. */
const pools = new WeakMap<KubeConfig, ConnectionPool>();

/**
 * kc.makeApiClient(API) whose requests have a deadline. The Proxy swaps only the HTTP library
 * in the Configuration makeApiClient builds, so server, authentication and User-Agent stay
 * exactly client-node's.
 */
export function makeApiClientWithDeadline<T extends ApiType>(
  kc: KubeConfig,
  api: ApiConstructor<T>,
  deadlineMs = KUBE_REQUEST_DEADLINE_MS,
): T {
  let pool = pools.get(kc);
  if (!pool) {
    pool = new ConnectionPool();
    pools.set(kc, pool);
  }
  const shared = pool;
  const withDeadlineApi = new Proxy(api, {
    construct: (target, [config]: [Configuration]) =>
      new target({ ...config, httpApi: withDeadline(config.httpApi, deadlineMs, shared) }),
  });
  return kc.makeApiClient(withDeadlineApi);
}
