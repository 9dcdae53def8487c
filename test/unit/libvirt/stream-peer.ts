// A scripted libvirtd for the stream tests: a unix socket peer that sees every message (header
// and body) and answers as each test says, plus the packets such a peer sends.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcConnection } from "../../../src/hypervisor/libvirt/connection.ts";
import { RemoteError, type StorageVolRef } from "../../../src/hypervisor/libvirt/protocol.ts";
import {
  decodeMessage,
  encodeMessage,
  encodeStreamPacket,
  Framer,
  type Header,
  MessageStatus,
  MessageType,
} from "../../../src/hypervisor/libvirt/wire.ts";
import type { XdrWriter } from "../../../src/hypervisor/libvirt/xdr.ts";

export type OnMessage = (header: Header, body: Buffer, peer: Socket) => void;

let server: Server | undefined;
let conn: RpcConnection | undefined;
const peers = new Set<Socket>();
/** A broken stream tends to hang, not throw: fail it instead. */
export const T = { timeout: 10_000 };
const path = join(tmpdir(), `lvo-fake-stream-${process.pid}.sock`);
export const vol: StorageVolRef = { pool: "p", name: "v.raw", key: "/pool/v.raw" };
/** The arguments of a StorageVolUpload / StorageVolDownload call on VOL. */
export const volArgs = { vol, offset: 0, length: 0, flags: 0 };

/** Listens, connects an RpcConnection to itself and hands each message it gets to ON_MESSAGE. */
export async function fakePeer(onMessage: OnMessage, keepaliveIntervalMs = 5000): Promise<RpcConnection> {
  rmSync(path, { force: true });
  server = createServer((peer) => {
    peers.add(peer);
    const framer = new Framer();
    peer.on("data", (chunk) => {
      for (const frame of framer.push(chunk)) {
        const { header, body } = decodeMessage(frame);
        onMessage(header, body, peer);
      }
    });
    peer.on("error", () => undefined);
  });
  await new Promise<void>((r) => server!.listen(path, r));
  const socket = connect(path);
  await once(socket, "connect");
  conn = new RpcConnection(socket, { keepaliveIntervalMs, keepaliveCount: 3 });
  return conn;
}

/** For afterEach: closes the connection, the peers and the server. */
export async function stopPeer() {
  conn?.close();
  conn = undefined;
  for (const peer of peers) peer.destroy(); // a paused peer would never notice the close
  peers.clear();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
}

export const isStream = (h: Header) => h.type === MessageType.Stream;
export const isCall = (h: Header, procedure: number) =>
  h.type === MessageType.Call && h.procedure === procedure;

export function replyOk(peer: Socket, call: Header) {
  peer.write(encodeMessage({ ...call, type: MessageType.Reply, status: MessageStatus.Ok }));
}

export function streamPacket(peer: Socket, call: Header, status: number, data?: Uint8Array) {
  return peer.write(encodeStreamPacket({ ...call, type: MessageType.Stream, status }, data));
}

export function errorPacket(
  call: Header,
  code: number,
  message: string,
  type: number = MessageType.Stream,
): Buffer {
  return encodeMessage({ ...call, type, status: MessageStatus.Error }, (w) =>
    encodeRemoteError(w, code, 18 /* VIR_FROM_STORAGE */, message),
  );
}

/** A remote_error body as libvirtd sends it (level error, no object names). */
export function encodeRemoteError(w: XdrWriter, code: number, domain: number, message: string): void {
  RemoteError.encode(w, {
    code,
    domain,
    message,
    level: 2,
    dom: null,
    str1: null,
    str2: null,
    str3: null,
    int1: 0,
    int2: 0,
    net: null,
  });
}

/** A source (of 256 MiB, "endless" for these tests) that counts what was taken from it. */
export function endless(counter: { pulled: number }, chunk = 65536): AsyncIterable<Uint8Array> {
  const data = randomBytes(chunk);
  return (async function* () {
    while (counter.pulled < 256 * 2 ** 20) {
      counter.pulled += data.length;
      yield data;
      await new Promise(setImmediate); // a real source waits for I/O too
    }
  })();
}
