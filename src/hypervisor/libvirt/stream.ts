// libvirt data streams (virStorageVolUpload / virStorageVolDownload and their kind): after the
// call's ordinary reply, raw data travels as STREAM packets carrying the call's procedure and
// serial (virnetprotocol.x):
//   status CONTINUE  data; from the server, an empty one means end of data (read streams)
//   status OK        from us: "finished", which the server confirms with its own empty OK
//   status ERROR     from us (empty): abort, also confirmed by the server;
//                    from the server (a remote_error): the stream failed and is gone
// Data packets are not acknowledged, so an upload is paced by the socket (we wait for
// "drain") and a download by pausing the socket while the consumer is behind.
import { type RpcConnection, remoteErrorOf, type StreamSink } from "./connection.ts";
import { CallTimeoutError, ConnectionClosedError } from "./errors.ts";
import type { Procedure } from "./protocol.ts";
import { type Header, MessageStatus, MessageType, STREAM_PACKET_MAX } from "./wire.ts";
import { XdrDecodeError } from "./xdr.ts";

export interface UploadOptions {
  /** Called after each packet is handed to the socket, with the bytes sent so far. */
  onProgress?: (bytesSent: number) => void;
  /** Longest wait for the server (the call's reply, a socket drain, the final confirmation); 0 = none. */
  timeoutMs?: number;
}

export interface DownloadOptions {
  /** Longest wait for the server (the call's reply, the next packet, the final confirmation); 0 = none. */
  timeoutMs?: number;
  /** Stop reading the socket while this many received bytes wait for the consumer. */
  highWaterMark?: number;
}

/** How long an abort waits for the server's confirmation before the stream is dropped anyway. */
const ABORT_CONFIRM_MS = 5000;
const DEFAULT_HIGH_WATER_MARK = 16 * STREAM_PACKET_MAX;

/** The client side of one stream: what the server sent, and waits on it. */
class Stream implements StreamSink {
  serial = 0;
  /** Until the server's OK or ERROR packet (or the connection's end), the server holds the stream. */
  open = true;
  private readonly incoming: Buffer[] = [];
  private incomingBytes = 0;
  private eof = false;
  private confirmed = false;
  private failure?: Error;
  private discarding = false;
  private paused = false;
  private signal?: () => void;
  private readonly onDrain = () => this.notify();
  private readonly conn: RpcConnection;
  private readonly procedure: Procedure<unknown, unknown>;
  private readonly highWaterMark: number;

  constructor(conn: RpcConnection, procedure: Procedure<unknown, unknown>, highWaterMark?: number) {
    this.conn = conn;
    this.procedure = procedure;
    this.highWaterMark = highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    conn.on("drain", this.onDrain);
  }

  packet(header: Header, body: Buffer) {
    if (header.type !== MessageType.Stream) {
      this.end(new XdrDecodeError(`${this.procedure.name}: sparse stream packet on a plain stream`));
    } else if (header.status === MessageStatus.Continue) {
      if (body.length === 0) this.eof = true;
      else if (!this.discarding) this.push(body);
    } else if (header.status === MessageStatus.Ok) {
      this.confirmed = true;
      this.end();
    } else if (header.status === MessageStatus.Error) {
      let error: Error;
      try {
        error = remoteErrorOf(body, this.procedure.name);
      } catch (err) {
        error = new XdrDecodeError(`${this.procedure.name} stream error: ${(err as Error).message}`);
      }
      this.end(error);
    } else {
      this.end(new XdrDecodeError(`${this.procedure.name}: stream packet with status ${header.status}`));
    }
    this.notify();
  }

  closed(error: Error) {
    this.open = false;
    this.failure ??= new ConnectionClosedError(`${this.procedure.name}: ${error.message}`);
    this.notify();
  }

  /** Opens the stream: the call, whose reply must be OK before data flows. */
  async start<A>(args: A, timeoutMs: number) {
    const call = this.conn.callStream(this.procedure as Procedure<A, unknown>, args, this, { timeoutMs });
    this.serial = call.serial;
    try {
      await call.reply;
    } catch (err) {
      this.open = false;
      this.dispose();
      throw err;
    }
  }

  /** Writes a data packet; false when the socket wants draining first. */
  send(data: Uint8Array): boolean {
    this.throwIfFailed();
    return this.conn.sendStream(this.procedure.number, this.serial, MessageStatus.Continue, data);
  }

  async drained(timeoutMs: number) {
    await this.until(() => !this.conn.needsDrain, "socket drain", timeoutMs);
  }

  /** The next received chunk, or undefined at the end of data. */
  async next(timeoutMs: number): Promise<Buffer | undefined> {
    await this.until(() => this.incoming.length > 0 || this.eof, "data", timeoutMs);
    const chunk = this.incoming.shift();
    if (!chunk) return undefined;
    this.incomingBytes -= chunk.length;
    if (this.paused && this.incomingBytes <= this.highWaterMark / 4) this.setPaused(false);
    return chunk;
  }

  /** Sends "finished" and waits for the server to confirm it (or to report the stream's error). */
  async finish(timeoutMs: number) {
    this.throwIfFailed();
    this.conn.sendStream(this.procedure.number, this.serial, MessageStatus.Ok);
    await this.until(() => this.confirmed, "confirmation of the end", timeoutMs);
  }

  /** Tells a server that still holds the stream to abort it; waits a little for its answer. */
  async abort() {
    this.discarding = true;
    this.incoming.length = 0;
    this.incomingBytes = 0;
    this.setPaused(false);
    if (!this.open || this.conn.closed) return;
    try {
      this.conn.sendStream(this.procedure.number, this.serial, MessageStatus.Error);
      await this.until(() => !this.open, "confirmation of the abort", ABORT_CONFIRM_MS);
    } catch {
      // The stream is dropped either way; the caller reports why it aborted.
    }
  }

  dispose() {
    this.setPaused(false);
    this.conn.off("drain", this.onDrain);
    this.conn.endStream(this.serial);
  }

  private push(body: Buffer) {
    this.incoming.push(body);
    this.incomingBytes += body.length;
    if (!this.paused && this.incomingBytes >= this.highWaterMark) this.setPaused(true);
  }

  private setPaused(paused: boolean) {
    if (paused === this.paused) return;
    this.paused = paused;
    if (paused) this.conn.pauseReading(this);
    else this.conn.resumeReading(this);
  }

  /** The server ended the stream (its OK or ERROR); later packets are not ours. */
  private end(error?: Error) {
    this.open = false;
    if (error) this.failure ??= error;
    this.conn.endStream(this.serial);
  }

  private throwIfFailed() {
    if (this.failure) throw this.failure;
  }

  private notify() {
    const signal = this.signal;
    this.signal = undefined;
    signal?.();
  }

  /**
   * Waits until READY holds. Fails with the stream's failure, or after TIMEOUT_MS without any
   * news from the stream (a packet, a drain).
   */
  private async until(ready: () => boolean, what: string, timeoutMs: number) {
    for (;;) {
      if (ready()) return;
      this.throwIfFailed();
      await new Promise<void>((resolve, reject) => {
        const timer =
          timeoutMs > 0
            ? setTimeout(() => {
                this.signal = undefined;
                reject(new CallTimeoutError(`${this.procedure.name}: no ${what} within ${timeoutMs} ms`));
              }, timeoutMs)
            : undefined;
        this.signal = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

/** Cuts the source into packets of exactly STREAM_PACKET_MAX bytes (the last may be shorter). */
async function* packets(data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  let parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of data) {
    let rest = chunk;
    while (size + rest.length >= STREAM_PACKET_MAX) {
      const take = STREAM_PACKET_MAX - size;
      parts.push(rest.subarray(0, take));
      yield Buffer.concat(parts, STREAM_PACKET_MAX);
      parts = [];
      size = 0;
      rest = rest.subarray(take);
    }
    if (rest.length > 0) {
      // Copy: the source may reuse its buffer once we ask for the next chunk.
      parts.push(Buffer.from(rest));
      size += rest.length;
    }
  }
  if (size > 0) yield Buffer.concat(parts, size);
}

/**
 * Calls P (a write-stream procedure such as StorageVolUpload) and sends DATA as its stream.
 * Resolves with the bytes sent once the server confirmed the end; a server stream error
 * rejects with its LibvirtError; a failing source (or a timeout) aborts the stream first.
 */
export async function uploadStream<A>(
  conn: RpcConnection,
  p: Procedure<A, void>,
  args: A,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: UploadOptions = {},
): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 0;
  const stream = new Stream(conn, p as Procedure<unknown, unknown>);
  await stream.start(args, timeoutMs);
  let sent = 0;
  try {
    for await (const packet of packets(data)) {
      const writable = stream.send(packet);
      sent += packet.length;
      options.onProgress?.(sent);
      if (!writable) await stream.drained(timeoutMs);
    }
    await stream.finish(timeoutMs);
    return sent;
  } catch (err) {
    await stream.abort();
    throw err;
  } finally {
    stream.dispose();
  }
}

/**
 * Calls P (a read-stream procedure such as StorageVolDownload) and yields the stream's data
 * until the server's end of data, then completes the finish handshake. Breaking out of the
 * loop early aborts the stream. Nothing is sent until the first value is asked for.
 */
export async function* downloadStream<A>(
  conn: RpcConnection,
  p: Procedure<A, void>,
  args: A,
  options: DownloadOptions = {},
): AsyncGenerator<Buffer, void, undefined> {
  const timeoutMs = options.timeoutMs ?? 0;
  const stream = new Stream(conn, p as Procedure<unknown, unknown>, options.highWaterMark);
  await stream.start(args, timeoutMs);
  let finished = false;
  try {
    for (;;) {
      const chunk = await stream.next(timeoutMs);
      if (!chunk) break;
      yield chunk;
    }
    await stream.finish(timeoutMs);
    finished = true;
  } finally {
    if (!finished) await stream.abort();
    stream.dispose();
  }
}
