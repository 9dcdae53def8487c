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

/** INNER with a deadline of DEADLINE_MS (0 = none) on every request but long-lived ones. */
export function withDeadline(inner: HttpLibrary, deadlineMs: number): HttpLibrary {
  return wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      if (deadlineMs <= 0 || isLongLived(request.getUrl())) return inner.send(request).toPromise();
      const path = new URL(request.getUrl());
      const timeout = new KubeRequestTimeoutError(
        request.getHttpMethod(),
        `${path.pathname}${path.search}`,
        deadlineMs,
      );
      const controller = new AbortController();
      // undici rejects the fetch, or the body read, with the abort's reason: our message.
      const timer = setTimeout(() => controller.abort(timeout), deadlineMs);
      const own = request.getSignal();
      request.setSignal(own ? AbortSignal.any([own, controller.signal]) : controller.signal);
      const done = () => clearTimeout(timer);
      let response: ResponseContext;
      try {
        response = await inner.send(request).toPromise();
      } catch (err) {
        done();
        throw controller.signal.aborted ? timeout : err;
      }
      const body = response.body;
      const settle = async <T>(read: Promise<T>): Promise<T> => {
        try {
          return await read;
        } catch (err) {
          throw controller.signal.aborted ? timeout : err;
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

/** The connection pool (an undici Dispatcher) each KubeConfig's requests share (sharingConnections). */
const pools = new WeakMap<KubeConfig, NonNullable<ReturnType<RequestContext["getDispatcher"]>>>();

/**
 * INNER, every request of KC sent over one connection pool. client-node hands each request an
 * undici Agent of its own (KubeConfig.applySecurityAuthentication), so each opened a TLS
 * connection of its own: a handshake per status write, ~1/3 of an agent's CPU while 100 VMs
 * start. The first request's Agent serves them all — the TLS settings come from the kubeconfig,
 * loaded once; the token travels in a header, read per request as before.
 */
export function sharingConnections(inner: HttpLibrary, kc: KubeConfig): HttpLibrary {
  return wrapHttpLibrary({
    send(request: RequestContext): Promise<ResponseContext> {
      const own = request.getDispatcher();
      if (own) {
        const pool = pools.get(kc) ?? own;
        pools.set(kc, pool);
        request.setDispatcher(pool);
      }
      return inner.send(request).toPromise();
    },
  });
}

/**
 * kc.makeApiClient(API) whose requests have a deadline, over one connection pool. The Proxy
 * swaps only the HTTP library in the Configuration makeApiClient builds, so server,
 * authentication and User-Agent stay exactly client-node's.
 */
export function makeApiClientWithDeadline<T extends ApiType>(
  kc: KubeConfig,
  api: ApiConstructor<T>,
  deadlineMs = KUBE_REQUEST_DEADLINE_MS,
): T {
  const withDeadlineApi = new Proxy(api, {
    construct: (target, [config]: [Configuration]) =>
      new target({ ...config, httpApi: withDeadline(sharingConnections(config.httpApi, kc), deadlineMs) }),
  });
  return kc.makeApiClient(withDeadlineApi);
}
