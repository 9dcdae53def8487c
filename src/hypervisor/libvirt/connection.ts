// One RPC connection to libvirtd: many calls in flight matched by serial, keepalive, server
// events, and a close that settles every pending call. It knows framing and errors, not
// what the procedures mean (client.ts does).
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { CallTimeoutError, ConnectionClosedError, LibvirtError } from "./errors.ts";
import { type Procedure, RemoteError } from "./protocol.ts";
import {
  decodeMessage,
  encodeMessage,
  Framer,
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
  /** Default per-call timeout (0 = none). */
  callTimeoutMs?: number;
}

interface Pending {
  procedure: string;
  decode: (body: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

export type EventHandler = (reader: XdrReader) => void;

/**
 * Events: "close" (error?: Error) once, when the socket is gone for whatever reason.
 */
export class RpcConnection extends EventEmitter {
  private readonly socket: Socket;
  private readonly framer = new Framer();
  private readonly pending = new Map<number, Pending>();
  private readonly eventHandlers = new Map<number, EventHandler>();
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

  /** Starts answering and sending keepalives (after the server agreed to the feature). */
  startKeepalive() {
    const interval = this.options.keepaliveIntervalMs;
    if (!interval || this.keepaliveTimer) return;
    this.keepaliveTimer = setInterval(() => {
      const silentFor = Date.now() - this.lastHeard;
      if (silentFor >= interval * this.options.keepaliveCount) {
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
    if (this.closedWith) return Promise.reject(this.closedWith);
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
      return Promise.reject(err);
    }
    return new Promise<R>((resolve, reject) => {
      const entry: Pending = {
        procedure: p.name,
        decode: (body) => {
          const r = new XdrReader(body);
          const v = p.ret.decode(r);
          r.expectEnd(`${p.name} reply`);
          return v;
        },
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      const timeout = options.timeoutMs ?? this.options.callTimeoutMs;
      if (timeout > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(serial);
          reject(new CallTimeoutError(`${p.name} got no reply within ${timeout} ms`));
        }, timeout);
      }
      this.pending.set(serial, entry);
      this.socket.write(frame);
    });
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
    if (header.type !== MessageType.Reply && header.type !== MessageType.ReplyWithFds) return;
    const entry = this.pending.get(header.serial);
    if (!entry) return; // a reply to a call that already timed out
    this.pending.delete(header.serial);
    if (entry.timer) clearTimeout(entry.timer);
    try {
      if (header.status === MessageStatus.Error) {
        const e = RemoteError.decode(new XdrReader(body));
        entry.reject(
          new LibvirtError(
            e.code,
            e.domain,
            e.level,
            e.message ?? `libvirt error ${e.code}`,
            entry.procedure,
          ),
        );
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
    this.emit("close", error);
  }
}
