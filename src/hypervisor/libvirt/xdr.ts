// XDR (RFC 4506) as libvirt's rpcgen uses it: big-endian 4-byte units, strings and opaque
// data padded to 4 bytes, optional values as a bool "pointer", arrays with a count.
// Codecs are small composable values so protocol.ts reads like remote_protocol.x.

export class XdrDecodeError extends Error {
  override name = "XdrDecodeError";
}

export class XdrWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private reserve(n: number) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  int(v: number) {
    this.reserve(4);
    this.buf.writeInt32BE(v, this.len);
    this.len += 4;
  }

  uint(v: number) {
    this.reserve(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
  }

  hyper(v: bigint) {
    this.reserve(8);
    this.buf.writeBigInt64BE(v, this.len);
    this.len += 8;
  }

  uhyper(v: bigint) {
    this.reserve(8);
    this.buf.writeBigUInt64BE(v, this.len);
    this.len += 8;
  }

  double(v: number) {
    this.reserve(8);
    this.buf.writeDoubleBE(v, this.len);
    this.len += 8;
  }

  /** Fixed-length opaque data: the bytes, then zero padding to a multiple of 4. */
  opaqueFixed(data: Uint8Array) {
    const padded = (data.length + 3) & ~3;
    this.reserve(padded);
    this.buf.set(data, this.len);
    this.buf.fill(0, this.len + data.length, this.len + padded);
    this.len += padded;
  }

  opaqueVar(data: Uint8Array) {
    this.uint(data.length);
    this.opaqueFixed(data);
  }

  string(s: string) {
    this.opaqueVar(Buffer.from(s, "utf8"));
  }

  /** Overwrites a uint already written at OFFSET (used for the length word of a message). */
  patchUint(offset: number, v: number) {
    this.buf.writeUInt32BE(v >>> 0, offset);
  }

  get length() {
    return this.len;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

export class XdrReader {
  private readonly buf: Buffer;
  private pos: number;

  constructor(buf: Buffer, offset = 0) {
    this.buf = buf;
    this.pos = offset;
  }

  private take(n: number, what: string): number {
    if (n < 0 || this.pos + n > this.buf.length) {
      throw new XdrDecodeError(
        `truncated message: ${what} needs ${n} bytes at offset ${this.pos}, ${this.buf.length - this.pos} left`,
      );
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int(): number {
    return this.buf.readInt32BE(this.take(4, "int"));
  }

  uint(): number {
    return this.buf.readUInt32BE(this.take(4, "unsigned int"));
  }

  hyper(): bigint {
    return this.buf.readBigInt64BE(this.take(8, "hyper"));
  }

  uhyper(): bigint {
    return this.buf.readBigUInt64BE(this.take(8, "unsigned hyper"));
  }

  double(): number {
    return this.buf.readDoubleBE(this.take(8, "double"));
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrDecodeError(`invalid bool ${v} at offset ${this.pos - 4}`);
    return v === 1;
  }

  opaqueFixed(n: number): Buffer {
    const at = this.take((n + 3) & ~3, "opaque data");
    return Buffer.from(this.buf.subarray(at, at + n));
  }

  opaqueVar(max: number): Buffer {
    const n = this.uint();
    if (n > max) throw new XdrDecodeError(`opaque length ${n} exceeds its limit ${max}`);
    return this.opaqueFixed(n);
  }

  string(max: number): string {
    const n = this.uint();
    if (n > max) throw new XdrDecodeError(`string length ${n} exceeds its limit ${max}`);
    const at = this.take((n + 3) & ~3, "string");
    return this.buf.toString("utf8", at, at + n);
  }

  count(max: number, what: string): number {
    const n = this.uint();
    if (n > max) throw new XdrDecodeError(`${what}: ${n} elements exceed the limit ${max}`);
    return n;
  }

  get remaining() {
    return this.buf.length - this.pos;
  }

  /** A reply must be consumed exactly; trailing bytes mean we decoded the wrong shape. */
  expectEnd(what: string) {
    if (this.remaining !== 0) {
      throw new XdrDecodeError(`${what}: ${this.remaining} unexpected trailing bytes`);
    }
  }
}

export interface Codec<T> {
  encode(w: XdrWriter, v: T): void;
  decode(r: XdrReader): T;
}

export type Infer<C> = C extends Codec<infer T> ? T : never;

export const xdrVoid: Codec<void> = { encode() {}, decode() {} };

export const int: Codec<number> = { encode: (w, v) => w.int(v), decode: (r) => r.int() };
export const uint: Codec<number> = { encode: (w, v) => w.uint(v), decode: (r) => r.uint() };
export const bool: Codec<boolean> = { encode: (w, v) => w.int(v ? 1 : 0), decode: (r) => r.bool() };
export const hyper: Codec<bigint> = { encode: (w, v) => w.hyper(v), decode: (r) => r.hyper() };
export const uhyper: Codec<bigint> = { encode: (w, v) => w.uhyper(v), decode: (r) => r.uhyper() };
export const double: Codec<number> = { encode: (w, v) => w.double(v), decode: (r) => r.double() };

/** An unsigned hyper read as a JS number: sizes and counters that stay below 2^53. */
export const uhyperNumber: Codec<number> = {
  encode: (w, v) => w.uhyper(BigInt(Math.trunc(v))),
  decode: (r) => Number(r.uhyper()),
};

export function string(max: number): Codec<string> {
  return {
    encode: (w, v) => {
      if (Buffer.byteLength(v, "utf8") > max) throw new RangeError(`string longer than ${max} bytes`);
      w.string(v);
    },
    decode: (r) => r.string(max),
  };
}

export function opaqueFixed(n: number): Codec<Buffer> {
  return {
    encode: (w, v) => {
      if (v.length !== n) throw new RangeError(`expected ${n} bytes, got ${v.length}`);
      w.opaqueFixed(v);
    },
    decode: (r) => r.opaqueFixed(n),
  };
}

/** `T *name`: a bool saying whether the value follows. */
export function optional<T>(c: Codec<T>): Codec<T | null> {
  return {
    encode: (w, v) => {
      w.int(v === null ? 0 : 1);
      if (v !== null) c.encode(w, v);
    },
    decode: (r) => (r.bool() ? c.decode(r) : null),
  };
}

/** `T name<max>`: a count, then the elements. */
export function array<T>(c: Codec<T>, max: number): Codec<T[]> {
  return {
    encode: (w, v) => {
      if (v.length > max) throw new RangeError(`array longer than ${max}`);
      w.uint(v.length);
      for (const item of v) c.encode(w, item);
    },
    decode: (r) => {
      const n = r.count(max, "array");
      const out: T[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = c.decode(r);
      return out;
    },
  };
}

/** `T name[n]`: exactly n elements, no count (e.g. `char model[32]`, one int per char). */
export function fixedArray<T>(c: Codec<T>, n: number): Codec<T[]> {
  return {
    encode: (w, v) => {
      if (v.length !== n) throw new RangeError(`expected ${n} elements`);
      for (const item of v) c.encode(w, item);
    },
    decode: (r) => Array.from({ length: n }, () => c.decode(r)),
  };
}

// biome-ignore lint/suspicious/noExplicitAny: a struct's fields may be codecs of any type.
type Fields = Record<string, Codec<any>>;

/** A struct: fields encoded in declaration order. */
export function struct<F extends Fields>(fields: F): Codec<{ [K in keyof F]: Infer<F[K]> }> {
  const entries = Object.entries(fields);
  return {
    encode: (w, v) => {
      for (const [name, c] of entries) c.encode(w, (v as Record<string, unknown>)[name]);
    },
    decode: (r) => {
      const out: Record<string, unknown> = {};
      for (const [name, c] of entries) out[name] = c.decode(r);
      return out as { [K in keyof F]: Infer<F[K]> };
    },
  };
}

/** Encodes one value with a codec into a fresh buffer. */
export function encode<T>(c: Codec<T>, v: T): Buffer {
  const w = new XdrWriter();
  c.encode(w, v);
  return w.finish();
}

/** Decodes a whole buffer; bytes left over are an error. */
export function decode<T>(c: Codec<T>, buf: Buffer, what = "message"): T {
  const r = new XdrReader(buf);
  const v = c.decode(r);
  r.expectEnd(what);
  return v;
}
