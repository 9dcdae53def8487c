// Upload streams against a scripted peer: packet sizes, the finish handshake, server stream
// errors, a connection dying mid-stream, aborts, and waiting for the socket to drain.
import assert from "node:assert/strict";
import { randomBytes as random } from "node:crypto";
import type { Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CallTimeoutError,
  ConnectionClosedError,
  LibvirtError,
} from "../../../src/hypervisor/libvirt/errors.ts";
import { P } from "../../../src/hypervisor/libvirt/protocol.ts";
import { uploadStream } from "../../../src/hypervisor/libvirt/stream.ts";
import {
  encodeMessage,
  type Header,
  MessageStatus,
  MessageType,
  STREAM_PACKET_MAX,
} from "../../../src/hypervisor/libvirt/wire.ts";
import { XdrReader } from "../../../src/hypervisor/libvirt/xdr.ts";
import {
  endless,
  errorPacket,
  fakePeer,
  isCall,
  isStream,
  replyOk,
  stopPeer,
  streamPacket,
  T,
  vol,
  volArgs,
} from "./stream-peer.ts";

afterEach(stopPeer);

const UPLOAD = P.StorageVolUpload.number;

describe("upload stream", () => {
  it(
    "waits for the call's reply, sends packets of at most 262120 bytes, and resolves only after the server confirms the end",
    T,
    async () => {
      const chunks = [100_000, 700_000, 1, 262_119, 500_000, 3].map((n) => random(n));
      const total = chunks.reduce((n, c) => n + c.length, 0);
      const data: Header[] = [];
      const payloads: Buffer[] = [];
      let call: Header | undefined;
      let replied = false;
      let sentBeforeReply = 0;
      let finishBody: Buffer | undefined;
      let confirmed = false;
      const c = await fakePeer((h, body, peer) => {
        if (isCall(h, UPLOAD)) {
          call = h;
          const args = P.StorageVolUpload.args.decode(new XdrReader(body));
          assert.deepEqual(args, { vol, offset: 4096, length: total, flags: 0 });
          setTimeout(() => {
            replied = true;
            replyOk(peer, h);
          }, 50);
        } else if (isStream(h) && h.status === MessageStatus.Continue) {
          if (!replied) sentBeforeReply++;
          data.push(h);
          payloads.push(Buffer.from(body));
        } else if (isStream(h) && h.status === MessageStatus.Ok) {
          finishBody = body;
          setTimeout(() => {
            confirmed = true;
            streamPacket(peer, h, MessageStatus.Ok);
          }, 100);
        }
      });
      const progress: number[] = [];
      const args = { vol, offset: 4096, length: total, flags: 0 };
      const sent = await uploadStream(c, P.StorageVolUpload, args, chunks, {
        onProgress: (n) => progress.push(n),
      });
      assert.equal(confirmed, true, "resolved only after the server's OK");
      assert.equal(sent, total);
      assert.equal(sentBeforeReply, 0, "no data before the call's reply");
      assert.ok(call);
      for (const h of data) {
        assert.equal(h.procedure, UPLOAD);
        assert.equal(h.serial, call.serial);
      }
      const sizes = payloads.map((p) => p.length);
      assert.ok(
        sizes.every((n) => n <= 262_120), // VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX
        `packet sizes ${sizes}`,
      );
      assert.deepEqual(sizes.slice(0, -1), Array(sizes.length - 1).fill(STREAM_PACKET_MAX), "full packets");
      assert.equal(Buffer.compare(Buffer.concat(payloads), Buffer.concat(chunks)), 0, "bytes arrive intact");
      assert.equal(finishBody?.length, 0, "the finish packet is empty");
      assert.deepEqual(
        progress,
        [...progress].sort((a, b) => a - b),
      );
      assert.equal(progress.at(-1), total);
      assert.equal(c.closed, false);
    },
  );

  it(
    "a stream error from the server rejects with its LibvirtError; no abort is sent and the connection goes on",
    T,
    async () => {
      const clientErrors: Header[] = [];
      let failed = false;
      const c = await fakePeer((h, _body, peer) => {
        if (isCall(h, UPLOAD)) replyOk(peer, h);
        else if (isStream(h) && h.status === MessageStatus.Continue) {
          if (!failed) peer.write(errorPacket(h, 38, "cannot write: No space left on device"));
          failed = true;
        } else if (isStream(h) && h.status === MessageStatus.Error) clientErrors.push(h);
        else if (isCall(h, P.ConnectGetHostname.number))
          peer.write(
            encodeMessage({ ...h, type: MessageType.Reply, status: MessageStatus.Ok }, (w) => w.string("h")),
          );
      });
      const counter = { pulled: 0 };
      const err = await uploadStream(c, P.StorageVolUpload, volArgs, endless(counter)).catch(
        (e: unknown) => e,
      );
      assert.ok(err instanceof LibvirtError, `got ${err}`);
      assert.equal(err.code, 38);
      assert.equal(err.procedure, "storage-vol-upload");
      assert.match(err.message, /No space left on device/);
      await sleep(50);
      assert.deepEqual(clientErrors, [], "the server already dropped the stream");
      assert.equal((await c.call(P.ConnectGetHostname, undefined)).hostname, "h");
    },
  );

  it(
    "a connection closed mid-stream rejects the upload with ConnectionClosedError, with no unhandled rejection",
    T,
    async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (e: unknown) => unhandled.push(e);
      process.on("unhandledRejection", onUnhandled);
      let packets = 0;
      const c = await fakePeer((h, _body, peer) => {
        if (isCall(h, UPLOAD)) replyOk(peer, h);
        else if (isStream(h) && ++packets === 2) peer.destroy();
      });
      await assert.rejects(
        uploadStream(c, P.StorageVolUpload, volArgs, endless({ pulled: 0 })),
        (e: Error) => e instanceof ConnectionClosedError && /storage-vol-upload/.test(e.message),
      );
      await new Promise((r) => setImmediate(r));
      process.off("unhandledRejection", onUnhandled);
      assert.deepEqual(unhandled, []);
    },
  );

  it(
    "a failing source aborts the stream with an empty ERROR packet, which the server confirms",
    T,
    async () => {
      const seen: Array<{ status: number; length: number }> = [];
      const c = await fakePeer((h, body, peer) => {
        if (isCall(h, UPLOAD)) replyOk(peer, h);
        else if (isStream(h)) {
          seen.push({ status: h.status, length: body.length });
          if (h.status === MessageStatus.Error) streamPacket(peer, h, MessageStatus.Ok);
        }
      });
      const broken = (async function* () {
        yield random(300_000);
        throw new Error("source read failed");
      })();
      await assert.rejects(uploadStream(c, P.StorageVolUpload, volArgs, broken), /source read failed/);
      assert.deepEqual(seen, [
        { status: MessageStatus.Continue, length: STREAM_PACKET_MAX },
        { status: MessageStatus.Error, length: 0 },
      ]);
    },
  );

  it("waits for the socket to drain: a peer that stops reading stops the source being read", T, async () => {
    let peerSocket: Socket | undefined;
    const c = await fakePeer((h, _body, peer) => {
      if (isCall(h, UPLOAD)) {
        peerSocket = peer;
        replyOk(peer, h);
        peer.pause();
      }
    });
    const counter = { pulled: 0 };
    const upload = uploadStream(c, P.StorageVolUpload, volArgs, endless(counter));
    upload.catch(() => undefined);
    await sleep(500);
    const pulled = counter.pulled;
    assert.ok(pulled > 0, "the upload started");
    assert.ok(pulled < 16 * 2 ** 20, `read ${pulled} bytes from the source with nobody reading`);
    peerSocket?.destroy();
    await assert.rejects(upload, ConnectionClosedError);
  });

  it("times out when the server does not confirm the end, and aborts the stream", T, async () => {
    const statuses: number[] = [];
    const c = await fakePeer((h, _body, peer) => {
      if (isCall(h, UPLOAD)) replyOk(peer, h);
      else if (isStream(h)) {
        statuses.push(h.status);
        if (h.status === MessageStatus.Error) streamPacket(peer, h, MessageStatus.Ok);
      }
    });
    await assert.rejects(
      uploadStream(c, P.StorageVolUpload, volArgs, [random(1000)], { timeoutMs: 100 }),
      CallTimeoutError,
    );
    assert.deepEqual(statuses, [MessageStatus.Continue, MessageStatus.Ok, MessageStatus.Error]);
  });

  it("an error reply to the call rejects before any data is sent", T, async () => {
    const streamed: Header[] = [];
    const c = await fakePeer((h, _body, peer) => {
      if (isCall(h, UPLOAD)) {
        peer.write(errorPacket(h, 50, "Storage volume not found", MessageType.Reply));
      } else if (isStream(h)) streamed.push(h);
    });
    const err = await uploadStream(c, P.StorageVolUpload, volArgs, [random(10)]).catch((e: unknown) => e);
    assert.ok(err instanceof LibvirtError && err.isNotFound, `got ${err}`);
    await sleep(20);
    assert.deepEqual(streamed, []);
  });
});
