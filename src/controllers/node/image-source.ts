// Where an imported image's bytes come from: a file on the node (only inside the directories
// the agent is configured to import from, never inside a storage pool) or an http(s) URL,
// streamed, never held in memory.
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { sep } from "node:path";
import { IMAGE_HEADER_BYTES } from "../../hypervisor/storage/volume.ts";

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
 * import directory (they hold other namespaces' volumes).
 */
export async function openImage(
  url: string,
  importDirs: readonly string[],
  poolDirs: readonly string[],
): Promise<ImageSource> {
  return /^https?:\/\//.test(url) ? openHttp(url) : openFile(url, importDirs, poolDirs);
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

async function openHttp(url: string): Promise<ImageSource> {
  let response: Response;
  try {
    // identity: Content-Length must be the image's own length, not a compressed body's.
    response = await fetch(url, { redirect: "follow", headers: { "accept-encoding": "identity" } });
  } catch (err) {
    throw new ImageSourceError(`cannot fetch ${url}: ${(err as Error).cause ?? (err as Error).message}`);
  }
  if (!response.ok || !response.body) {
    throw new ImageSourceError(`fetching ${url} answered HTTP ${response.status} ${response.statusText}`);
  }
  const length = Number(response.headers.get("content-length"));
  if (!Number.isSafeInteger(length) || length <= 0) {
    await response.body.cancel();
    throw new ImageSourceError(
      `${url} does not say how long it is (Content-Length); the volume size must be known`,
    );
  }
  const iterator = (response.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  // Read until the header is complete, then hand on those bytes followed by the rest.
  const buffered: Uint8Array[] = [];
  let have = 0;
  while (have < Math.min(IMAGE_HEADER_BYTES, length)) {
    const next = await iterator.next();
    if (next.done) break;
    buffered.push(next.value);
    have += next.value.byteLength;
  }
  const joined = Buffer.concat(buffered);
  async function* all() {
    if (joined.byteLength) yield joined;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return {
    length,
    header: joined.subarray(0, IMAGE_HEADER_BYTES),
    chunks: all(),
    close: () => void iterator.return?.()?.catch(() => undefined),
  };
}

async function firstBytes(stream: AsyncIterable<Buffer>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}
