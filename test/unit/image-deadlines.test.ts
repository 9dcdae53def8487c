// Deadlines of http(s) image imports against local servers that misbehave: one that never
// sends headers, one that stalls mid-body, one that trickles; and what must not trip them
// (a consumer slower than the window, a healthy server).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { parseNetworks } from "../../src/controllers/node/address-policy.ts";
import {
  DEFAULT_DOWNLOAD_DEADLINES,
  type DownloadDeadlines,
  ThroughputWindow,
} from "../../src/controllers/node/download-deadlines.ts";
import { ImageSourceError, openImage } from "../../src/controllers/node/image-source.ts";
import { closeAll, serve as serveHttp } from "../support/http-servers.ts";

const T = { timeout: 10_000 };
afterEach(closeAll);

/** A server answering with HANDLER; the URL of an image on it. */
async function serve(handler: Parameters<typeof serveHttp>[0]): Promise<string> {
  return `${await serveHttp(handler)}/disk.img`;
}

/** Loopback is where these servers are: allowed here. */
const open = (url: string, deadlines: Partial<DownloadDeadlines>) =>
  openImage(url, [], [], { allowedNetworks: parseNetworks("127.0.0.0/8"), deadlines });

async function drain(
  chunks: AsyncIterable<Uint8Array>,
  perChunk?: () => Promise<unknown> | undefined,
): Promise<number> {
  let bytes = 0;
  for await (const chunk of chunks) {
    bytes += chunk.byteLength;
    await perChunk?.();
  }
  return bytes;
}

async function failure(work: Promise<unknown>): Promise<{ ms: number; error: Error }> {
  const started = Date.now();
  const error = await work.then(
    () => assert.fail("the download succeeded"),
    (e: Error) => e,
  );
  return { ms: Date.now() - started, error };
}

describe("ThroughputWindow", () => {
  it("counts only time spent waiting, over a sliding window", () => {
    let now = 0;
    const w = new ThroughputWindow(
      { headersTimeoutMs: 0, minBytesPerWindow: 100, windowMs: 1000 },
      () => now,
    );
    w.startWait();
    now = 900;
    assert.equal(w.stalled(), false, "not a full window yet");
    w.endWait(150);
    now = 60_000; // the consumer took a minute: not the server's time
    assert.equal(w.clock(), 900);
    w.startWait();
    now = 60_500; // 1400 ms of waiting; the 150 bytes came at 900, within the last second
    assert.equal(w.stalled(), false);
    now = 61_000; // 1900 ms: the window (900, 1900] brought nothing
    assert.equal(w.stalled(), true);
  });

  it("never stalls with a zero window or minimum", () => {
    let now = 0;
    const w = new ThroughputWindow({ headersTimeoutMs: 0, minBytesPerWindow: 0, windowMs: 10 }, () => now);
    w.startWait();
    now = 1e6;
    assert.equal(w.stalled(), false);
  });

  it("has named defaults", () => {
    assert.deepEqual(DEFAULT_DOWNLOAD_DEADLINES, {
      headersTimeoutMs: 30_000,
      minBytesPerWindow: 1024 * 1024,
      windowMs: 60_000,
    });
  });
});

describe("image download deadlines", () => {
  it("fails when the server never sends its headers", T, async () => {
    const url = await serve(() => undefined); // reads the request, never answers
    const { ms, error } = await failure(open(url, { headersTimeoutMs: 300 }));
    assert.ok(error instanceof ImageSourceError, String(error));
    assert.equal(error.message, `cannot fetch ${url}: no response headers within 0.3 s`);
    assert.ok(ms >= 290 && ms < 5000, `${ms} ms`);
  });

  it("fails a body that stalls midway, naming the minimum and the window", T, async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-length": String(1024 * 1024) });
      res.write(randomBytes(100 * 1024)); // then nothing, connection kept open
    });
    const image = await open(url, { minBytesPerWindow: 64 * 1024, windowMs: 300 });
    const started = Date.now();
    const { error } = await failure(drain(image.chunks));
    const ms = Date.now() - started;
    assert.ok(error instanceof ImageSourceError, String(error));
    assert.equal(
      error.message,
      `image download stalled: less than 64 KiB in 0.3 s from ${url} (${100 * 1024} of ${1024 * 1024} bytes so far)`,
    );
    assert.ok(ms >= 250 && ms < 5000, `${ms} ms`);
  });

  it("fails a body that trickles below the minimum, though bytes keep coming", T, async () => {
    const url = await serve(async (_req, res) => {
      res.writeHead(200, { "content-length": String(1024 * 1024) });
      for (let i = 0; i < 200 && !res.destroyed; i++) {
        res.write(Buffer.alloc(1024, i)); // 1 KiB every 20 ms: 50 KiB/s
        await sleep(20);
      }
    });
    const image = await open(url, { minBytesPerWindow: 64 * 1024, windowMs: 400 });
    const { ms, error } = await failure(drain(image.chunks));
    assert.match(error.message, /^image download stalled: less than 64 KiB in 0\.4 s/);
    // Caught once a window's worth of waiting is over, not only when a read waits long.
    assert.ok(ms < 5000, `${ms} ms`);
  });

  it("does not blame the server for a consumer slower than the window", T, async () => {
    const body = randomBytes(512 * 1024);
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-length": String(body.length) });
      res.end(body);
    });
    const image = await open(url, { minBytesPerWindow: 1024 * 1024, windowMs: 200 });
    let chunks = 0;
    const bytes = await drain(image.chunks, () => (chunks++ < 4 ? sleep(150) : undefined));
    assert.equal(bytes, body.length);
  });

  it("reads a healthy image with the default deadlines", T, async () => {
    const body = randomBytes(3 * 1024 * 1024);
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-length": String(body.length) });
      res.end(body);
    });
    const image = await open(url, {});
    assert.equal(image.length, body.length);
    assert.equal(Buffer.compare(Buffer.from(image.header), body.subarray(0, 512)), 0);
    assert.equal(await drain(image.chunks), body.length);
  });

  it("close() releases a download nobody reads", T, async () => {
    let closed = false;
    const url = await serve((req, res) => {
      res.writeHead(200, { "content-length": String(1024 * 1024) });
      res.write(randomBytes(1024));
      req.socket.on("close", () => {
        closed = true;
      });
    });
    const image = await open(url, {});
    image.close();
    for (let i = 0; i < 50 && !closed; i++) await sleep(20);
    assert.equal(closed, true, "the connection was closed");
  });
});
