// Download streams against a scripted peer: data arriving with the reply, the end-of-data and
// finish handshake, early aborts, server stream errors, and pausing for a slow consumer.
import assert from "node:assert/strict";
import { randomBytes as random } from "node:crypto";
import type { Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { P } from "../../../src/hypervisor/libvirt/protocol.ts";
import { downloadStream } from "../../../src/hypervisor/libvirt/stream.ts";
import {
  encodeMessage,
  encodeStreamPacket,
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROGRAM,
  MessageStatus,
  MessageType,
  STREAM_PACKET_MAX,
} from "../../../src/hypervisor/libvirt/wire.ts";
import {
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

const DOWNLOAD = P.StorageVolDownload.number;

describe("download stream", () => {
  it(
    "yields the data, even when it arrives with the reply, until the empty end packet, then finishes",
    T,
    async () => {
      const parts = [random(1000), random(STREAM_PACKET_MAX), random(77_777)];
      const finish: Array<{ length: number }> = [];
      const c = await fakePeer((h, body, peer) => {
        if (isCall(h, DOWNLOAD)) {
          // One write: the packets reach the client in the same chunk as the reply.
          const stream = { ...h, type: MessageType.Stream, status: MessageStatus.Continue };
          peer.write(
            Buffer.concat([
              encodeMessage({ ...h, type: MessageType.Reply, status: MessageStatus.Ok }),
              ...parts.map((p) => encodeStreamPacket(stream, p)),
              encodeStreamPacket(stream),
            ]),
          );
        } else if (isStream(h) && h.status === MessageStatus.Ok) {
          finish.push({ length: body.length });
          streamPacket(peer, h, MessageStatus.Ok);
        }
      });
      const got: Uint8Array[] = [];
      for await (const chunk of downloadStream(c, P.StorageVolDownload, {
        vol,
        offset: 0,
        length: 0,
        flags: 0,
      }))
        got.push(chunk);
      assert.equal(Buffer.compare(Buffer.concat(got), Buffer.concat(parts)), 0);
      assert.deepEqual(finish, [{ length: 0 }], "one empty finish packet");
    },
  );

  it("a consumer that stops early aborts the stream", T, async () => {
    const statuses: number[] = [];
    const c = await fakePeer((h, _body, peer) => {
      if (isCall(h, DOWNLOAD)) {
        replyOk(peer, h);
        streamPacket(peer, h, MessageStatus.Continue, random(1000));
      } else if (isStream(h)) {
        statuses.push(h.status);
        streamPacket(peer, h, MessageStatus.Ok);
      }
    });
    for await (const chunk of downloadStream(c, P.StorageVolDownload, {
      vol,
      offset: 0,
      length: 0,
      flags: 0,
    })) {
      assert.equal(chunk.length, 1000);
      break;
    }
    assert.deepEqual(statuses, [MessageStatus.Error]);
  });

  it("a stream error from the server rejects with its LibvirtError after the data before it", T, async () => {
    const c = await fakePeer((h, _body, peer) => {
      if (isCall(h, DOWNLOAD)) {
        replyOk(peer, h);
        streamPacket(peer, h, MessageStatus.Continue, random(10));
        peer.write(errorPacket(h, 38, "cannot read: Input/output error"));
      }
    });
    const got: number[] = [];
    await assert.rejects(async () => {
      for await (const chunk of downloadStream(c, P.StorageVolDownload, {
        vol,
        offset: 0,
        length: 0,
        flags: 0,
      }))
        got.push(chunk.length);
    }, /Input\/output error/);
    assert.deepEqual(got, [10]);
  });

  it(
    "a slow consumer holds the server back (the socket is paused), without keepalive declaring the peer dead",
    T,
    async () => {
      const count = 160; // 40 MiB
      let peerSocket: Socket | undefined;
      let pings = 0;
      const c = await fakePeer((h, _body, peer) => {
        if (h.program === KEEPALIVE_PROGRAM && h.procedure === KEEPALIVE_PROC_PING) pings++;
        if (isCall(h, DOWNLOAD)) {
          peerSocket = peer;
          replyOk(peer, h);
          const data = random(STREAM_PACKET_MAX);
          for (let i = 0; i < count; i++) {
            data.writeUInt32BE(i, 0);
            streamPacket(peer, h, MessageStatus.Continue, data);
          }
          streamPacket(peer, h, MessageStatus.Continue);
        } else if (isStream(h) && h.status === MessageStatus.Ok) streamPacket(peer, h, MessageStatus.Ok);
        // Keepalive every 250 ms (dead after ~750 ms of silence): the fake peer's 40 MiB of
        // synchronous writes block this one event loop for a while on a loaded machine.
      }, 250);
      c.startKeepalive();
      const stream = downloadStream(c, P.StorageVolDownload, volArgs, {
        highWaterMark: 4 * STREAM_PACKET_MAX,
      });
      const first = await stream.next();
      assert.equal(first.done, false);
      await sleep(1500); // more than the keepalive window
      const backlog = peerSocket?.writableLength ?? 0;
      assert.ok(backlog > 16 * 2 ** 20, `only ${backlog} bytes wait at the server: the client read them all`);
      assert.equal(c.closed, false, "keepalive did not give up while we held reading back");
      assert.ok(pings > 0, "the client kept pinging the server meanwhile");
      let n = 1;
      for await (const chunk of stream) {
        assert.equal(Buffer.from(chunk).readUInt32BE(0), n, "in order");
        n++;
      }
      assert.equal(n, count);
    },
  );
});
