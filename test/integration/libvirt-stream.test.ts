// libvirt data streams against the real qemu:///system daemon: volumes on a directory pool
// filled by virStorageVolUpload and read back by virStorageVolDownload.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  LibvirtClient,
  LibvirtError,
  STREAM_PACKET_MAX,
  type StoragePoolRef,
  type StorageVolRef,
} from "../../src/hypervisor/libvirt/index.ts";
import { createTestPool, removeTestPool } from "../support/pool.ts";

const MiB = 2 ** 20;
const POOL = `lvo-stream-pool-${process.pid}`;
let client: LibvirtClient;
let pool: StoragePoolRef;
let workDir: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "lvo-stream-"));
  client = await LibvirtClient.connect({ uri: "qemu:///system" });
  pool = await createTestPool(client, POOL, join(workDir, "pool"));
});

after(async () => {
  // Only what this file created: its own pool and the volumes in it.
  await removeTestPool(client, pool);
  await client.close();
  await rm(workDir, { recursive: true, force: true });
});

function rawVolume(name: string, bytes: number): Promise<StorageVolRef> {
  return client.createVolume(
    pool,
    `<volume><name>${name}</name><capacity unit='bytes'>${bytes}</capacity><target><format type='raw'/></target></volume>`,
  );
}

/** DATA in pieces of CHUNK bytes, as a file read stream hands it out. */
async function* pieces(data: Buffer, chunk = 65536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
}

async function download(vol: StorageVolRef, options: { offset?: number; length?: number } = {}) {
  const parts: Uint8Array[] = [];
  for await (const part of client.downloadVolume(vol, options)) {
    assert.ok(part.length <= STREAM_PACKET_MAX, `a ${part.length}-byte packet`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

describe("libvirt streams (qemu:///system)", () => {
  it("uploads 5 MiB of random bytes into a raw volume, reports progress to the total, and downloads them back", async () => {
    const size = 5 * MiB;
    const vol = await rawVolume("up.raw", size);
    const data = randomBytes(size);
    const progress: number[] = [];
    const sent = await client.uploadVolume(vol, pieces(data), { onProgress: (n) => progress.push(n) });
    assert.equal(sent, size);
    assert.equal(progress.at(-1), size, "progress reaches the total");
    assert.ok(progress.length >= Math.ceil(size / STREAM_PACKET_MAX), `${progress.length} progress calls`);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
      "progress only grows",
    );

    const onDisk = await readFile(await client.volumePath(vol));
    assert.equal(Buffer.compare(onDisk, data), 0, "the file holds exactly the uploaded bytes");
    assert.equal(Buffer.compare(await download(vol), data), 0, "the download returns them");
    assert.equal((await client.volumeInfo(vol)).capacity, size);
  });

  it("uploads at an offset, leaving the bytes around it, and downloads a range", async () => {
    const size = 3 * MiB;
    const vol = await rawVolume("offset.raw", size);
    const base = randomBytes(size);
    await client.uploadVolume(vol, [base]);
    const patch = randomBytes(300_001);
    const offset = MiB + 7;
    const sent = await client.uploadVolume(vol, pieces(patch, 4096), { offset, length: patch.length });
    assert.equal(sent, patch.length);

    const expected = Buffer.from(base);
    patch.copy(expected, offset);
    assert.equal(Buffer.compare(await download(vol), expected), 0, "patched in place, nothing else changed");
    const range = await download(vol, { offset: offset - 5, length: patch.length + 10 });
    assert.equal(Buffer.compare(range, expected.subarray(offset - 5, offset + patch.length + 5)), 0);
  });

  it("rejects with libvirt's error when the data does not fit the requested length", async () => {
    const vol = await rawVolume("short.raw", MiB);
    const err = await client
      .uploadVolume(vol, pieces(randomBytes(MiB)), { length: 1000 })
      .catch((e: unknown) => e);
    assert.ok(err instanceof LibvirtError, `got ${err}`);
    assert.equal(err.procedure, "storage-vol-upload");
    // Sent as a STREAM packet with status ERROR once the daemon's write hit the limit.
    assert.match(err.message, /No space left on device/);
    // The stream is gone on both sides; the connection carries on.
    assert.equal((await client.volumeInfo(vol)).capacity, MiB);
  });

  it("a download left early is aborted, and the connection carries on with the next stream", async () => {
    const size = 4 * MiB;
    const vol = await rawVolume("early.raw", size);
    const data = randomBytes(size);
    await client.uploadVolume(vol, pieces(data));
    let first: Uint8Array | undefined;
    for await (const part of client.downloadVolume(vol)) {
      first = part;
      break;
    }
    assert.ok(first && first.length > 0);
    assert.equal(Buffer.compare(Buffer.from(first), data.subarray(0, first.length)), 0);
    assert.equal(Buffer.compare(await download(vol), data), 0);
  });

  it("a volume that is gone fails the call with a not-found LibvirtError", async () => {
    const vol = await rawVolume("gone.raw", MiB);
    await client.deleteVolume(vol);
    const err = await client.uploadVolume(vol, [randomBytes(10)]).catch((e: unknown) => e);
    assert.ok(err instanceof LibvirtError && err.isNotFound, `got ${err}`);
    await assert.rejects(download(vol), (e: unknown) => e instanceof LibvirtError && e.isNotFound);
  });
});
