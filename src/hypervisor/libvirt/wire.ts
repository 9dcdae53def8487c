// libvirt's RPC framing: a 4-byte length (counting itself), a 24-byte header, then the XDR
// payload. See virnetprotocol.x.
import { XdrDecodeError, XdrReader, XdrWriter } from "./xdr.ts";

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROC_PING = 1;
export const KEEPALIVE_PROC_PONG = 2;

export const MESSAGE_MAX = 33554432;
/**
 * Largest data payload of one STREAM packet we send: VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX
 * (256 KiB minus the header), the chunk libvirt's own client and daemon use for streams.
 */
export const STREAM_PACKET_MAX = 262120;
const LEN_BYTES = 4;
const HEADER_BYTES = 24;

export const MessageType = {
  Call: 0,
  Reply: 1,
  Message: 2,
  Stream: 3,
  CallWithFds: 4,
  ReplyWithFds: 5,
  StreamHole: 6,
} as const;

export const MessageStatus = { Ok: 0, Error: 1, Continue: 2 } as const;

export interface Header {
  program: number;
  version: number;
  procedure: number;
  type: number;
  serial: number;
  status: number;
}

export interface Message {
  header: Header;
  /** The payload after the header (reply body, error or event). */
  body: Buffer;
}

/** A whole message ready for the socket: length word, header, then BODY's XDR. */
export function encodeMessage(header: Header, body?: (w: XdrWriter) => void): Buffer {
  const w = new XdrWriter(512);
  w.uint(0); // length, patched below
  w.uint(header.program);
  w.uint(header.version);
  w.int(header.procedure);
  w.int(header.type);
  w.uint(header.serial);
  w.int(header.status);
  body?.(w);
  if (w.length > MESSAGE_MAX) throw new RangeError(`message of ${w.length} bytes exceeds ${MESSAGE_MAX}`);
  w.patchUint(0, w.length);
  return w.finish();
}

/** A STREAM packet: the header, then DATA as raw bytes (no XDR length word, no padding). */
export function encodeStreamPacket(header: Header, data?: Uint8Array): Buffer {
  const head = encodeMessage(header);
  if (!data?.length) return head;
  if (data.length > STREAM_PACKET_MAX) {
    throw new RangeError(`stream packet of ${data.length} bytes exceeds ${STREAM_PACKET_MAX}`);
  }
  const out = Buffer.allocUnsafe(head.length + data.length);
  head.copy(out, 0);
  out.set(data, head.length);
  out.writeUInt32BE(out.length, 0);
  return out;
}

/** Parses one complete message (without its length word). */
export function decodeMessage(frame: Buffer): Message {
  if (frame.length < HEADER_BYTES) {
    throw new XdrDecodeError(`message of ${frame.length} bytes is shorter than a header`);
  }
  const r = new XdrReader(frame);
  const header: Header = {
    program: r.uint(),
    version: r.uint(),
    procedure: r.int(),
    type: r.int(),
    serial: r.uint(),
    status: r.int(),
  };
  return { header, body: frame.subarray(HEADER_BYTES) };
}

/**
 * Cuts a byte stream into messages. Keeps partial data between chunks; a length word
 * outside [28, MESSAGE_MAX] means the stream is corrupt and cannot be resynchronised.
 */
export class Framer {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    while (this.buffered >= LEN_BYTES) {
      const head = this.peek(LEN_BYTES);
      const total = head.readUInt32BE(0);
      if (total < LEN_BYTES + HEADER_BYTES || total > MESSAGE_MAX) {
        throw new XdrDecodeError(`corrupt stream: message length ${total}`);
      }
      if (this.buffered < total) break;
      const whole = this.consume(total);
      frames.push(whole.subarray(LEN_BYTES));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private consume(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered -= n;
    return out;
  }
}
