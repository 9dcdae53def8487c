// Where an imported image's bytes come from: a file on the node (only inside the directories
// the agent is configured to import from, never inside a storage pool) or an http(s) URL,
// streamed, never held in memory.
import { lookup } from "node:dns/promises";
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { BlockList, isIP } from "node:net";
import { sep } from "node:path";
import { IMAGE_HEADER_BYTES } from "../../hypervisor/storage/volume.ts";
import {
  DEFAULT_DOWNLOAD_DEADLINES,
  type DownloadDeadlines,
  formatSeconds,
  withThroughputDeadline,
} from "./download-deadlines.ts";

export interface ImageSource {
  /** Bytes the image has. */
  length: number;
  /** Its first bytes (up to IMAGE_HEADER_BYTES), to tell qcow2 from raw before anything is written. */
  header: Uint8Array;
  /** Every byte, header included. */
  chunks: AsyncIterable<Uint8Array>;
  /** Releases the file or connection when the bytes are not wanted after all. */
  close(): void;
}

/** A problem with the image the user has to fix (wrong URL, missing file, refused path). */
export class ImageSourceError extends Error {}

/**
 * IMPORT_DIRS: where node files may come from. POOL_DIRS: never from there, even inside an
 * import directory (they hold other namespaces' volumes). DEADLINES (http only, over
 * DEFAULT_DOWNLOAD_DEADLINES): how long the headers may take and the least throughput.
 */
export async function openImage(
  url: string,
  importDirs: readonly string[],
  poolDirs: readonly string[],
  blockedNetworks: BlockList = blockedNetworksOf(DEFAULT_BLOCKED_NETWORKS),
  deadlines: Partial<DownloadDeadlines> = {},
): Promise<ImageSource> {
  return /^https?:\/\//.test(url)
    ? openHttp(url, blockedNetworks, { ...DEFAULT_DOWNLOAD_DEADLINES, ...deadlines })
    : openFile(url, importDirs, poolDirs);
}

/** Link-local: the cloud metadata services a URL must not reach from the privileged agent. */
export const DEFAULT_BLOCKED_NETWORKS = "169.254.0.0/16,fe80::/10";

/** "cidr,cidr,…" → a BlockList (IMAGE_IMPORT_BLOCKED_NETWORKS). */
export function blockedNetworksOf(spec: string): BlockList {
  const list = new BlockList();
  for (const cidr of spec
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean)) {
    const [address = "", bits = ""] = cidr.split("/");
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";
    list.addSubnet(address, Number(bits || (family === "ipv6" ? 128 : 32)), family);
  }
  return list;
}

/** Refuses a URL whose host resolves into a blocked network (checked again on every redirect). */
async function checkHost(url: URL, blocked: BlockList): Promise<void> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true });
  for (const a of addresses) {
    if (blocked.check(a.address, a.family === 6 ? "ipv6" : "ipv4"))
      throw new ImageSourceError(`${url.href}: ${a.address} is in a network images may not come from`);
  }
}

async function realDirs(dirs: readonly string[]): Promise<string[]> {
  return Promise.all(dirs.map((dir) => realpath(dir).catch(() => dir)));
}

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

async function openFile(
  path: string,
  importDirs: readonly string[],
  poolDirs: readonly string[],
): Promise<ImageSource> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw new ImageSourceError(`image file ${path} does not exist on this node`);
  }
  if (!(await realDirs(importDirs)).some((dir) => inside(real, dir)))
    throw new ImageSourceError(
      `image file ${path} is outside the directories this node imports from (${importDirs.join(", ") || "none"})`,
    );
  if ((await realDirs(poolDirs)).some((dir) => inside(real, dir)))
    throw new ImageSourceError(
      `image file ${path} is inside a storage pool; copy a disk with spec.source.disk`,
    );
  const info = await stat(real);
  if (!info.isFile()) throw new ImageSourceError(`image ${path} is not a regular file`);
  const header = await firstBytes(createReadStream(real, { end: IMAGE_HEADER_BYTES - 1 }));
  const chunks = createReadStream(real, { highWaterMark: 256 * 1024 });
  return { length: info.size, header, chunks, close: () => chunks.destroy() };
}

/**
 * GETs AT with a deadline for the response headers. The returned controller aborts the
 * request (and its body) later; the stall watch uses it.
 */
async function fetchWithHeadersDeadline(
  at: URL,
  headersTimeoutMs: number,
): Promise<{ response: Response; controller: AbortController }> {
  const controller = new AbortController();
  const timer =
    headersTimeoutMs > 0
      ? setTimeout(
          () =>
            controller.abort(
              new ImageSourceError(
                `cannot fetch ${at.href}: no response headers within ${formatSeconds(headersTimeoutMs)}`,
              ),
            ),
          headersTimeoutMs,
        )
      : undefined;
  try {
    // identity: Content-Length must be the image's own length, not a compressed body's.
    const response = await fetch(at, {
      redirect: "manual",
      headers: { "accept-encoding": "identity" },
      signal: controller.signal,
    });
    return { response, controller };
  } catch (err) {
    if (controller.signal.aborted && controller.signal.reason instanceof ImageSourceError)
      throw controller.signal.reason;
    throw new ImageSourceError(`cannot fetch ${at.href}: ${(err as Error).cause ?? (err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function openHttp(url: string, blocked: BlockList, deadlines: DownloadDeadlines): Promise<ImageSource> {
  let response: Response | undefined;
  let controller: AbortController;
  let at = new URL(url);
  for (let hop = 0; ; hop++) {
    await checkHost(at, blocked);
    ({ response, controller } = await fetchWithHeadersDeadline(at, deadlines.headersTimeoutMs));
    const location = response.headers.get("location");
    if (response.status < 300 || response.status >= 400 || !location) break;
    await response.body?.cancel();
    if (hop >= 5) throw new ImageSourceError(`${url}: more than 5 redirects`);
    at = new URL(location, at);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new ImageSourceError(`fetching ${url} answered HTTP ${response.status} ${response.statusText}`);
  }
  const length = Number(response.headers.get("content-length"));
  if (!Number.isSafeInteger(length) || length <= 0) {
    await response.body.cancel();
    throw new ImageSourceError(
      `${url} does not say how long it is (Content-Length); the volume size must be known`,
    );
  }
  const body = (response.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  // The whole body, header bytes included, is read under the throughput deadline.
  const iterator = withThroughputDeadline(body, deadlines, {
    url,
    length,
    error: (message) => new ImageSourceError(message),
    abort: (error) => controller.abort(error),
  });
  // Read until the header is complete, then hand on those bytes followed by the rest.
  const buffered: Uint8Array[] = [];
  let have = 0;
  try {
    while (have < Math.min(IMAGE_HEADER_BYTES, length)) {
      const next = await iterator.next();
      if (next.done) break;
      buffered.push(next.value);
      have += next.value.byteLength;
    }
  } catch (err) {
    controller.abort();
    throw err;
  }
  const joined = Buffer.concat(buffered);
  async function* all() {
    if (joined.byteLength) yield joined;
    yield* iterator;
  }
  return {
    length,
    header: joined.subarray(0, IMAGE_HEADER_BYTES),
    chunks: all(),
    close: () => {
      void iterator.return().catch(() => undefined);
      controller.abort();
    },
  };
}

async function firstBytes(stream: AsyncIterable<Buffer>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}
