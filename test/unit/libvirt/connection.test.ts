// The RPC engine against a scripted peer on a unix socket: what a real daemon cannot be made
// to do on cue (die mid-call, go silent, send garbage) must still end cleanly.
import assert from "node:assert/strict";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { RpcConnection } from "../../../src/hypervisor/libvirt/connection.ts";
import {
  CallTimeoutError,
  ConnectionClosedError,
  LibvirtError,
} from "../../../src/hypervisor/libvirt/errors.ts";
import { P } from "../../../src/hypervisor/libvirt/protocol.ts";
import {
  decodeMessage,
  encodeMessage,
  Framer,
  type Header,
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROC_PONG,
  KEEPALIVE_PROGRAM,
  MessageStatus,
  MessageType,
  REMOTE_PROGRAM,
} from "../../../src/hypervisor/libvirt/wire.ts";
import { XdrDecodeError, type XdrWriter } from "../../../src/hypervisor/libvirt/xdr.ts";
import { encodeRemoteError } from "./stream-peer.ts";

type OnMessage = (header: Header, peer: Socket) => void;

let server: Server | undefined;
let conn: RpcConnection | undefined;
const path = join(tmpdir(), `lvo-fake-${process.pid}.sock`);

async function fakePeer(onMessage: OnMessage, onConnect?: (peer: Socket) => void): Promise<RpcConnection> {
  rmSync(path, { force: true });
  server = createServer((peer) => {
    onConnect?.(peer);
    const framer = new Framer();
    peer.on("data", (chunk) => {
      for (const frame of framer.push(chunk)) onMessage(decodeMessage(frame).header, peer);
    });
    peer.on("error", () => undefined);
  });
  await new Promise<void>((r) => server!.listen(path, r));
  const socket = connect(path);
  await once(socket, "connect");
  conn = new RpcConnection(socket, { keepaliveIntervalMs: 50, keepaliveCount: 3 });
  return conn;
}

function reply(peer: Socket, call: Header, body?: (w: XdrWriter) => void, status: number = MessageStatus.Ok) {
  peer.write(encodeMessage({ ...call, type: MessageType.Reply, status }, body));
}

afterEach(async () => {
  conn?.close();
  conn = undefined;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

describe("RpcConnection", () => {
  it("a socket closed mid-call rejects every pending call, with no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    let seen = 0;
    const c = await fakePeer((_h, peer) => {
      if (++seen === 5) peer.destroy();
    });
    const calls = Array.from({ length: 5 }, () => c.call(P.ConnectGetHostname, undefined));
    const results = await Promise.allSettled(calls);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.ok(r.reason instanceof ConnectionClosedError);
      assert.match(r.reason.message, /connect-get-hostname: libvirt connection closed/);
    }
    await assert.rejects(c.call(P.ConnectGetHostname, undefined), ConnectionClosedError);
    await new Promise((r) => setImmediate(r));
    process.off("unhandledRejection", onUnhandled);
    assert.deepEqual(unhandled, []);
  });

  it("matches replies that arrive out of order to their calls", async () => {
    const held: Header[] = [];
    const c = await fakePeer((h, peer) => {
      held.push(h);
      if (held.length === 3) {
        for (const call of held.reverse()) reply(peer, call, (w) => w.string(`host-${call.serial}`));
      }
    });
    const names = await Promise.all([1, 2, 3].map(() => c.call(P.ConnectGetHostname, undefined)));
    assert.deepEqual(
      names.map((n) => n.hostname),
      ["host-1", "host-2", "host-3"],
    );
  });

  it("turns an error reply into a LibvirtError with code, domain and message", async () => {
    const c = await fakePeer((h, peer) =>
      reply(
        peer,
        h,
        (w) => encodeRemoteError(w, 42, 10, "Domain not found: no domain with matching name 'x'"),
        MessageStatus.Error,
      ),
    );
    const err = await c.call(P.DomainLookupByName, { name: "x" }).catch((e: unknown) => e);
    assert.ok(err instanceof LibvirtError);
    assert.equal(err.code, 42);
    assert.equal(err.domain, 10);
    assert.ok(err.isNotFound);
    assert.match(err.message, /no domain with matching name 'x'/);
  });

  it("a truncated reply fails that call with a decode error; the connection goes on", async () => {
    let n = 0;
    const c = await fakePeer((h, peer) => {
      n++;
      if (n === 1)
        reply(peer, h, (w) => w.uint(100)); // claims 100 bytes of string, sends none
      else reply(peer, h, (w) => w.string("fine"));
    });
    await assert.rejects(c.call(P.ConnectGetHostname, undefined), XdrDecodeError);
    assert.equal((await c.call(P.ConnectGetHostname, undefined)).hostname, "fine");
  });

  it("times a call out when asked, and ignores its late reply", async () => {
    const held: Header[] = [];
    const c = await fakePeer((h) => held.push(h));
    await assert.rejects(c.call(P.ConnectGetHostname, undefined, { timeoutMs: 50 }), CallTimeoutError);
    assert.equal(c.inFlight, 0);
    assert.equal(c.closed, false);
  });

  it("answers the server's keepalive PING with a PONG", async () => {
    let gotPong: (h: Header) => void = () => undefined;
    const pong = new Promise<Header>((resolve) => {
      gotPong = resolve;
    });
    const ping = encodeMessage({
      program: KEEPALIVE_PROGRAM,
      version: 1,
      procedure: KEEPALIVE_PROC_PING,
      type: MessageType.Message,
      serial: 0,
      status: MessageStatus.Ok,
    });
    await fakePeer(
      (h) => {
        if (h.program === KEEPALIVE_PROGRAM) gotPong(h);
      },
      (peer) => peer.write(ping),
    );
    assert.equal((await pong).procedure, KEEPALIVE_PROC_PONG);
  });

  it("declares a silent peer dead within the keepalive window and fails its calls", async () => {
    const pings: Header[] = [];
    const c = await fakePeer((h) => {
      if (h.program === KEEPALIVE_PROGRAM) pings.push(h);
    });
    c.startKeepalive();
    const started = Date.now();
    const pending = c.call(P.ConnectGetHostname, undefined);
    const [error] = (await once(c, "close")) as [Error];
    const took = Date.now() - started;
    assert.match(error.message, /unresponsive/);
    assert.ok(took < 1000, `detected after ${took} ms`);
    assert.ok(
      pings.some((p) => p.procedure === KEEPALIVE_PROC_PING),
      "the client pinged before giving up",
    );
    await assert.rejects(pending, ConnectionClosedError);
  });

  it("ignores messages of unknown programs and events nobody registered", async () => {
    const c = await fakePeer((h, peer) => {
      peer.write(encodeMessage({ ...h, program: 0x1234, type: MessageType.Reply }));
      peer.write(encodeMessage({ ...h, procedure: 318, type: MessageType.Message }));
      reply(peer, h, (w) => w.string("ok"));
    });
    assert.equal((await c.call(P.ConnectGetHostname, undefined)).hostname, "ok");
    assert.equal(REMOTE_PROGRAM, 0x20008086);
  });
});
