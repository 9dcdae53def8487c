// The http(s) side of an image import. Each hop (redirects included) resolves the host name
// once, checks the address against the policy (address-policy.ts), and connects to exactly
// that address: the socket's lookup returns it, so a DNS answer that changes between check
// and connect (DNS rebinding) cannot redirect the connection. TLS still verifies the name.
import { lookup as dnsLookup } from "node:dns/promises";
import type { IncomingMessage } from "node:http";
import { isIP, type LookupFunction } from "node:net";
import { IMAGE_HEADER_BYTES } from "../../hypervisor/storage/volume.ts";
import { http, https } from "../../kube/node-http.ts";
import { ipLiteralOf, judgeAddress, type Network } from "./address-policy.ts";
import { type DownloadDeadlines, formatSeconds, withThroughputDeadline } from "./download-deadlines.ts";
import { type ImageSource, ImageSourceError, limitImageBytes, maximumText } from "./image-limits.ts";
import { redactUrl, redactUrls } from "./url-redaction.ts";

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Host name → its addresses. The agent uses the system resolver; tests inject their own. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export interface HttpImageOptions {
  allowedNetworks: readonly Network[];
  maxBytes: number;
  deadlines: DownloadDeadlines;
  resolve: Resolver;
}

const MAX_REDIRECTS = 5;

/**
 * The one address a request to AT connects to: AT's IP literal, or the first address its
 * name resolves to that the policy allows (resolved once). Refuses when none is allowed.
 */
export async function checkedAddress(at: URL, o: HttpImageOptions): Promise<ResolvedAddress> {
  const shown = redactUrls(at.href);
  const literal = ipLiteralOf(at.hostname);
  const rule =
    "Images come only from global unicast addresses unless the node's admin allows the range " +
    "(agent.imageImport.allowedNetworks)";
  let candidates: ResolvedAddress[];
  if (literal) candidates = [{ address: literal, family: isIP(literal) }];
  else candidates = await o.resolve(at.hostname).catch(() => []);
  const reasons: string[] = [];
  for (const candidate of candidates) {
    const verdict = judgeAddress(candidate.address, o.allowedNetworks);
    if (verdict.allowed) return candidate;
    reasons.push(verdict.reason);
  }
  // A name's addresses (or that it has none) are not told: the agent resolves with the
  // cluster's DNS, and a tenant must not map other namespaces' Services through it.
  throw new ImageSourceError(
    literal
      ? `${shown}: refused to connect: ${reasons.join("; ")}. ${rule}`
      : `${shown}: refused to connect: ${at.hostname} does not resolve to an address images may come from. ${rule}`,
  );
}

/** GETs AT from exactly address TO, with a deadline for the response headers. */
function get(at: URL, to: ResolvedAddress, headersTimeoutMs: number): Promise<IncomingMessage> {
  const shown = redactUrls(at.href);
  // Called by the socket instead of DNS: the answer is the address already checked.
  const lookup = ((_host, options, callback) => {
    if (options.all) callback(null, [{ address: to.address, family: to.family }]);
    else callback(null, to.address, to.family);
  }) as LookupFunction;
  return new Promise((resolve, reject) => {
    const req = (at.protocol === "https:" ? https : http).request(at, {
      agent: false, // a connection of its own, never a pooled one made for another check
      lookup,
      // identity: Content-Length is the image's own length, and the bytes are the image's.
      headers: { "accept-encoding": "identity" },
    });
    const timer =
      headersTimeoutMs > 0
        ? setTimeout(
            () =>
              req.destroy(
                new ImageSourceError(
                  `cannot fetch ${shown}: no response headers within ${formatSeconds(headersTimeoutMs)}`,
                ),
              ),
            headersTimeoutMs,
          )
        : undefined;
    req.on("response", (res) => {
      clearTimeout(timer);
      // Failures of the body surface through its iterator; this keeps them off the process.
      res.on("error", () => undefined);
      resolve(res);
    });
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(
        err instanceof ImageSourceError
          ? err
          : new ImageSourceError(redactUrls(`cannot fetch ${shown}: ${err.message}`)),
      );
    });
    req.end();
  });
}

/** Follows redirects (each hop checked and pinned) to the image's response. */
async function follow(url: string, o: HttpImageOptions): Promise<IncomingMessage> {
  let at = new URL(url);
  for (let hop = 0; ; hop++) {
    if (at.protocol !== "http:" && at.protocol !== "https:")
      throw new ImageSourceError(
        `${redactUrl(url)} redirects to a ${at.protocol} URL; only http(s) is followed`,
      );
    const res = await get(at, await checkedAddress(at, o), o.deadlines.headersTimeoutMs);
    const location = res.headers.location;
    const status = res.statusCode ?? 0;
    if (status < 300 || status >= 400 || !location) return res;
    res.destroy();
    if (hop >= MAX_REDIRECTS) throw new ImageSourceError(`${redactUrl(url)}: more than 5 redirects`);
    try {
      at = new URL(location, at);
    } catch {
      throw new ImageSourceError(`${redactUrls(at.href)} redirects to an invalid URL`);
    }
  }
}

/** The response's Content-Length; undefined when it has none. */
function contentLength(res: IncomingMessage, shown: string): number | undefined {
  const header = res.headers["content-length"];
  if (header === undefined) return undefined;
  const length = Number(header);
  if (!/^\d+$/.test(header) || !Number.isSafeInteger(length))
    throw new ImageSourceError(`${shown} answered an invalid Content-Length: ${header}`);
  return length;
}

/**
 * Opens URL: headers within the deadline, a body that keeps the minimum throughput and stays
 * within the announced length and the maximum. Without a Content-Length the image is read to
 * its end, bounded by the maximum.
 */
export async function openHttp(url: string, o: HttpImageOptions): Promise<ImageSource> {
  const shown = redactUrls(url);
  const res = await follow(url, o);
  let length: number | undefined;
  try {
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300)
      throw new ImageSourceError(
        `fetching ${shown} answered HTTP ${status} ${res.statusMessage ?? ""}`.trim(),
      );
    const encoding = res.headers["content-encoding"];
    if (encoding && encoding !== "identity")
      throw new ImageSourceError(`${shown} answered in ${encoding} encoding; serve the image as it is`);
    length = contentLength(res, shown);
    if (length === 0) throw new ImageSourceError(`${shown} answered an empty body`);
    if (length !== undefined && length > o.maxBytes)
      throw new ImageSourceError(`${shown} is ${length} bytes, more than ${maximumText(o.maxBytes)}`);
  } catch (err) {
    res.destroy();
    throw err;
  }
  // The whole body, header bytes included, is read under the throughput deadline and the count.
  const timed = withThroughputDeadline(res[Symbol.asyncIterator](), o.deadlines, {
    url: shown,
    ...(length !== undefined ? { length } : {}),
    error: (message) => new ImageSourceError(message),
    abort: () => res.destroy(),
  });
  const counted = limitImageBytes(timed, { shown, maxBytes: o.maxBytes, ...(length ? { length } : {}) });
  // Read until the header is complete, then hand on those bytes followed by the rest.
  const buffered: Uint8Array[] = [];
  let have = 0;
  try {
    while (have < Math.min(IMAGE_HEADER_BYTES, length ?? IMAGE_HEADER_BYTES)) {
      const next = await counted.next();
      if (next.done) break;
      buffered.push(next.value);
      have += next.value.byteLength;
    }
  } catch (err) {
    res.destroy();
    throw err;
  }
  if (have === 0) {
    res.destroy();
    throw new ImageSourceError(`${shown} answered an empty body`);
  }
  const joined = Buffer.concat(buffered);
  async function* all() {
    yield joined;
    yield* counted;
  }
  return {
    ...(length !== undefined ? { length } : {}),
    header: joined.subarray(0, IMAGE_HEADER_BYTES),
    chunks: all(),
    close: () => {
      void counted.return().catch(() => undefined);
      res.destroy();
    },
  };
}
