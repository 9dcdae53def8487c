// One RPC connection to libvirtd: many calls in flight matched by serial, keepalive, server
// events, data streams routed by serial, and a close that settles every pending call and
// stream. It knows framing and errors, not what the procedures mean (client.ts does) nor
// the stream handshakes (stream.ts does).
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { InFlightCall } from "./deadlines.ts";
import { CallTimeoutError, ConnectionClosedError, LibvirtError } from "./errors.ts";
import { type Procedure, RemoteError } from "./protocol.ts";
import {
  decodeMessage,
  encodeMessage,
  encodeStreamPacket,
  Framer,
  type Header,
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROC_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  type Message,
  MessageStatus,
  MessageType,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from "./wire.ts";
import { XdrDecodeError, XdrReader } from "./xdr.ts";

export interface ConnectionOptions {
  /** Send a keepalive PING after this much silence from the server (0 disables). */
  keepaliveIntervalMs?: number;
  /** Declare the peer dead after this many intervals without any message. */
  keepaliveCount?: number;
  /** Per-call deadline when the caller gives none (0 = none); LibvirtClient always gives one. */
  callTimeoutMs?: number;
}

interface Pending {
  procedure: string;
  startedAt: number;
  deadlineMs: number;
  decode: (body: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

export type EventHandler = (reader: XdrReader) => void;

interface OpenStream {
  procedure: number;
  name: string;
  sink: StreamSink;
  startedAt: number;
  deadlineMs: number;
  /** When a packet of this stream last went either way (for liveness, see calls()). */
  lastProgressAt: number;
}

/** Receives the STREAM packets of one call (see callStream). */
export interface StreamSink {
  /** A STREAM or STREAM_HOLE packet with the call's procedure and serial; BODY is the raw payload. */
  packet(header: Header, body: Buffer): void;
  /** The connection is gone; no more packets will come. */
  closed(error: Error): void;
}

/** The LibvirtError a status-ERROR message carries (a remote_error body). */
export function remoteErrorOf(body: Buffer, procedure: string): LibvirtError {
  const e = RemoteError.decode(new XdrReader(body));
  return new LibvirtError(e.code, e.domain, e.level, e.message ?? `libvirt error ${e.code}`, procedure);
}

/**
 * Events: "close" (error?: Error) once, when the socket is gone for whatever reason.
 */
export class RpcConnection extends EventEmitter {
  private readonly socket: Socket;
  private readonly framer = new Framer();
  private readonly pending = new Map<number, Pending>();
  private readonly eventHandlers = new Map<number, EventHandler>();
  private readonly streams = new Map<number, OpenStream>();
  /** Who asked to stop reading the socket (a stream consumer that is behind). */
  private readonly pausedBy = new Set<object>();
  private readonly options: Required<ConnectionOptions>;
  private serial = 1;
  private lastHeard = Date.now();
  private keepaliveTimer?: NodeJS.Timeout;
  private closedWith?: Error;

  constructor(socket: Socket, options: ConnectionOptions = {}) {
    super();
    this.socket = socket;
    this.options = { keepaliveIntervalMs: 5000, keepaliveCount: 5, callTimeoutMs: 0, ...options };
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.emit("drain"));
    socket.on("error", (err) =>
      this.shutdown(new ConnectionClosedError(`libvirt connection failed: ${err.message}`)),
    );
    socket.on("close", () =>
      this.shutdown(new ConnectionClosedError("libvirt connection closed by the server")),
    );
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Calls waiting for their reply, and streams still open after it, oldest first. */
  calls(): InFlightCall[] {
    const out: InFlightCall[] = [];
    for (const entry of this.pending.values()) {
      out.push({ procedure: entry.procedure, startedAt: entry.startedAt, deadlineMs: entry.deadlineMs });
    }
    for (const [serial, s] of this.streams) {
      if (this.pending.has(serial)) continue; // listed above, still waiting for the call's reply
      out.push({
        procedure: s.name,
        startedAt: s.startedAt,
        deadlineMs: s.deadlineMs,
        lastProgressAt: s.lastProgressAt,
      });
    }
    return out.sort((a, b) => a.startedAt - b.startedAt);
  }

  /** True while the socket holds more unsent data than it wants: wait for "drain". */
  get needsDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Starts answering and sending keepalives (after the server agreed to the feature). */
  startKeepalive() {
    const interval = this.options.keepaliveIntervalMs;
    if (!interval || this.keepaliveTimer) return;
    this.keepaliveTimer = setInterval(() => {
      const silentFor = Date.now() - this.lastHeard;
      // While we hold reading back the server's answers wait unread: only keep it hearing from us.
      if (silentFor >= interval * this.options.keepaliveCount && this.pausedBy.size === 0) {
        this.shutdown(new ConnectionClosedError(`libvirt peer unresponsive for ${silentFor} ms (keepalive)`));
        this.socket.destroy();
      } else if (silentFor >= interval) {
        this.sendKeepalive(KEEPALIVE_PROC_PING);
      }
    }, interval);
    this.keepaliveTimer.unref();
  }

  onEvent(procedure: number, handler: EventHandler) {
    this.eventHandlers.set(procedure, handler);
  }

  call<A, R>(p: Procedure<A, R>, args: A, options: { timeoutMs?: number } = {}): Promise<R> {
    return this.request(p, args, options).reply;
  }

  /**
   * Calls P like call() and, from the moment the call is written, routes the STREAM packets
   * carrying its procedure and serial to SINK, until endStream(serial) or the connection closes.
   */
  callStream<A, R>(
    p: Procedure<A, R>,
    args: A,
    sink: StreamSink,
    options: { timeoutMs?: number } = {},
  ): { serial: number; reply: Promise<R> } {
    return this.request(p, args, options, sink);
  }

  /** Stops routing packets to a stream's sink (late packets are then dropped, as libvirt does). */
  endStream(serial: number) {
    this.streams.delete(serial);
  }

  /**
   * Writes one STREAM packet of the call SERIAL of PROCEDURE (DATA only with status CONTINUE).
   * False means the socket buffer is full: wait for "drain" (needsDrain) before writing more.
   */
  sendStream(procedure: number, serial: number, status: number, data?: Uint8Array): boolean {
    if (this.closedWith) throw this.closedWith;
    const open = this.streams.get(serial);
    if (open) open.lastProgressAt = Date.now();
    const packet = encodeStreamPacket(
      {
        program: REMOTE_PROGRAM,
        version: REMOTE_PROTOCOL_VERSION,
        procedure,
        type: MessageType.Stream,
        serial,
        status,
      },
      data,
    );
    return this.socket.write(packet);
  }

  /** Stops reading the socket until every OWNER that paused it resumed (download backpressure). */
  pauseReading(owner: object) {
    this.pausedBy.add(owner);
    this.socket.pause();
  }

  resumeReading(owner: object) {
    if (!this.pausedBy.delete(owner) || this.pausedBy.size > 0) return;
    this.lastHeard = Date.now(); // the silence was ours
    this.socket.resume();
  }

  private request<A, R>(
    p: Procedure<A, R>,
    args: A,
    options: { timeoutMs?: number },
    sink?: StreamSink,
  ): { serial: number; reply: Promise<R> } {
    if (this.closedWith) return { serial: 0, reply: Promise.reject(this.closedWith) };
    const serial = this.serial;
    this.serial = (this.serial + 1) >>> 0 || 1;
    let frame: Buffer;
    try {
      frame = encodeMessage(
        {
          program: REMOTE_PROGRAM,
          version: REMOTE_PROTOCOL_VERSION,
          procedure: p.number,
          type: MessageType.Call,
          serial,
          status: MessageStatus.Ok,
        },
        (w) => p.args.encode(w, args),
      );
    } catch (err) {
      return { serial: 0, reply: Promise.reject(err) };
    }
    const startedAt = Date.now();
    const timeout = options.timeoutMs ?? this.options.callTimeoutMs;
    const reply = new Promise<R>((resolve, reject) => {
      const entry: Pending = {
        procedure: p.name,
        startedAt,
        deadlineMs: timeout,
        decode: (body) => {
          const r = new XdrReader(body);
          const v = p.ret.decode(r);
          r.expectEnd(`${p.name} reply`);
          return v;
        },
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      if (timeout > 0) {
        entry.timer = setTimeout(() => {
          // libvirtd may still run the call; its late reply finds no entry and is dropped.
          this.pending.delete(serial);
          reject(
            new CallTimeoutError(`libvirt call ${p.name} got no reply within its deadline of ${timeout} ms`, {
              procedure: p.name,
              deadlineMs: timeout,
            }),
          );
        }, timeout);
      }
      this.pending.set(serial, entry);
      if (sink) {
        const stream = { procedure: p.number, name: p.name, sink, startedAt, deadlineMs: timeout };
        this.streams.set(serial, { ...stream, lastProgressAt: startedAt });
      }
      this.socket.write(frame);
    });
    return { serial, reply };
  }

  /** Closes the socket; pending calls fail with ConnectionClosedError. */
  close(reason = "libvirt connection closed by the client") {
    this.shutdown(new ConnectionClosedError(reason));
    this.socket.end();
    // A peer that does not answer the FIN must not keep the process alive.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private sendKeepalive(procedure: number) {
    if (this.closedWith) return;
    this.socket.write(
      encodeMessage({
        program: KEEPALIVE_PROGRAM,
        version: KEEPALIVE_PROTOCOL_VERSION,
        procedure,
        type: MessageType.Message,
        serial: 0,
        status: MessageStatus.Ok,
      }),
    );
  }

  private onData(chunk: Buffer) {
    this.lastHeard = Date.now();
    let frames: Buffer[];
    try {
      frames = this.framer.push(chunk);
    } catch (err) {
      // A corrupt length word: no way to find the next message boundary.
      this.shutdown(err as Error);
      this.socket.destroy();
      return;
    }
    for (const frame of frames) this.dispatch(frame);
  }

  private dispatch(frame: Buffer) {
    let message: Message;
    try {
      message = decodeMessage(frame);
    } catch (err) {
      this.emit("protocolError", err);
      return;
    }
    const { header, body } = message;
    if (header.program === KEEPALIVE_PROGRAM) {
      if (header.procedure === KEEPALIVE_PROC_PING) this.sendKeepalive(KEEPALIVE_PROC_PONG);
      return;
    }
    if (header.program !== REMOTE_PROGRAM) {
      this.emit(
        "protocolError",
        new XdrDecodeError(`message for unknown program 0x${header.program.toString(16)}`),
      );
      return;
    }
    if (header.type === MessageType.Message) {
      const handler = this.eventHandlers.get(header.procedure);
      if (!handler) return;
      try {
        handler(new XdrReader(body));
      } catch (err) {
        this.emit("protocolError", err);
      }
      return;
    }
    if (header.type === MessageType.Stream || header.type === MessageType.StreamHole) {
      const stream = this.streams.get(header.serial);
      // Packets of a stream we ended (or never had) are dropped, as libvirt's client does.
      if (stream?.procedure === header.procedure) {
        stream.lastProgressAt = Date.now();
        stream.sink.packet(header, body);
      }
      return;
    }
    if (header.type !== MessageType.Reply && header.type !== MessageType.ReplyWithFds) return;
    const entry = this.pending.get(header.serial);
    if (!entry) return; // a reply to a call that already timed out
    this.pending.delete(header.serial);
    if (entry.timer) clearTimeout(entry.timer);
    try {
      if (header.status === MessageStatus.Error) {
        entry.reject(remoteErrorOf(body, entry.procedure));
      } else {
        entry.resolve(entry.decode(body));
      }
    } catch (err) {
      entry.reject(
        err instanceof XdrDecodeError
          ? err
          : new XdrDecodeError(`${entry.procedure}: ${(err as Error).message}`),
      );
    }
  }

  private shutdown(error: Error) {
    if (this.closedWith) return;
    this.closedWith = error;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    for (const [, entry] of this.pending) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(new ConnectionClosedError(`${entry.procedure}: ${error.message}`));
    }
    this.pending.clear();
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const { sink } of streams) sink.closed(error);
    this.emit("close", error);
  }
}
