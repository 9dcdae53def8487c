// Where an imported image's bytes come from: a file on the node (only inside the directories
// the agent is configured to import from, never inside a storage pool) or an http(s) URL,
// streamed, never held in memory.
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { posix, sep } from "node:path";
import { IMAGE_HEADER_BYTES } from "../../hypervisor/storage/volume.ts";
import { DEFAULT_DOWNLOAD_DEADLINES, type DownloadDeadlines } from "./download-deadlines.ts";
import { openHttp, type Resolver, systemResolver } from "./image-http.ts";
import {
  DEFAULT_IMPORT_LIMITS,
  type ImageSource,
  ImageSourceError,
  type ImportLimits,
  limitImageBytes,
  maximumText,
} from "./image-limits.ts";
import { redactUrl } from "./url-redaction.ts";

export { type ImageSource, ImageSourceError } from "./image-limits.ts";

export interface OpenOptions extends Partial<ImportLimits> {
  /** http only, over DEFAULT_DOWNLOAD_DEADLINES: how long the headers may take, the least throughput. */
  deadlines?: Partial<DownloadDeadlines>;
  /** http only: host names to addresses (the system resolver unless a test injects one). */
  resolve?: Resolver;
}

/**
 * IMPORT_DIRS: where node files may come from. POOL_DIRS: never from there, even inside an
 * import directory (they hold other namespaces' volumes). Both kinds are held to the maximum
 * size; http(s) URLs only reach allowed addresses (image-http.ts).
 */
export async function openImage(
  url: string,
  importDirs: readonly string[],
  poolDirs: readonly string[],
  options: OpenOptions = {},
): Promise<ImageSource> {
  const limits = { ...DEFAULT_IMPORT_LIMITS, ...options };
  if (!/^https?:\/\//i.test(url)) return openFile(url, importDirs, poolDirs, limits.maxBytes);
  if (!URL.canParse(url)) throw new ImageSourceError(`${redactUrl(url)} is not a valid URL`);
  return openHttp(url, {
    allowedNetworks: limits.allowedNetworks,
    maxBytes: limits.maxBytes,
    deadlines: { ...DEFAULT_DOWNLOAD_DEADLINES, ...options.deadlines },
    resolve: options.resolve ?? systemResolver,
  });
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
  maxBytes: number,
): Promise<ImageSource> {
  // One answer for every refusal, and the path judged as written before the file system is
  // touched: a tenant learns nothing about files outside the import directories (another
  // namespace's volumes included), not even whether they exist.
  const refused = () =>
    new ImageSourceError(
      `image file ${path}: not a regular file inside the directories this node imports from ` +
        `(${importDirs.join(", ") || "none"}), outside every storage pool; copy a disk with spec.source.disk`,
    );
  const written = posix.normalize(path);
  if (written !== path.replace(/\/+$/, "") || !importDirs.some((dir) => inside(written, dir)))
    throw refused();
  const real = await realpath(path).catch(() => undefined);
  if (!real || !(await realDirs(importDirs)).some((dir) => inside(real, dir))) throw refused();
  if ((await realDirs(poolDirs)).some((dir) => inside(real, dir))) throw refused();
  const info = await stat(real);
  if (!info.isFile()) throw refused();
  if (info.size > maxBytes)
    throw new ImageSourceError(
      `image file ${path} is ${info.size} bytes, more than ${maximumText(maxBytes)}`,
    );
  const header = await firstBytes(createReadStream(real, { end: IMAGE_HEADER_BYTES - 1 }));
  // Only the bytes it had when looked at: a file that grows meanwhile is cut there.
  const file = createReadStream(real, { highWaterMark: 256 * 1024, end: Math.max(0, info.size - 1) });
  const chunks = limitImageBytes(file, { shown: path, maxBytes, length: info.size });
  return { length: info.size, header, chunks, close: () => file.destroy() };
}

async function firstBytes(stream: AsyncIterable<Buffer>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}
