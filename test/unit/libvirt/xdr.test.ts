import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { P, TypedParamCodec } from "../../../src/hypervisor/libvirt/protocol.ts";
import {
  array,
  bool,
  decode,
  encode,
  hyper,
  int,
  optional,
  string,
  struct,
  uhyper,
  XdrDecodeError,
  XdrReader,
} from "../../../src/hypervisor/libvirt/xdr.ts";

describe("XDR", () => {
  it("pads strings to four bytes and prefixes their length", () => {
    assert.deepEqual([...encode(string(100), "abcde")], [0, 0, 0, 5, 97, 98, 99, 100, 101, 0, 0, 0]);
    assert.deepEqual([...encode(string(100), "")], [0, 0, 0, 0]);
  });

  it("encodes optional values as a bool then the value", () => {
    assert.deepEqual([...encode(optional(int), null)], [0, 0, 0, 0]);
    assert.deepEqual([...encode(optional(int), -1)], [0, 0, 0, 1, 255, 255, 255, 255]);
  });

  it("round-trips structs of every primitive", () => {
    const codec = struct({
      a: int,
      b: hyper,
      c: uhyper,
      d: bool,
      e: string(64),
      f: array(optional(string(8)), 10),
    });
    fc.assert(
      fc.property(
        fc.record({
          a: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
          b: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
          c: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          d: fc.boolean(),
          e: fc.string({ maxLength: 16 }),
          f: fc.array(fc.option(fc.string({ maxLength: 2 }), { nil: null }), { maxLength: 10 }),
        }),
        (v) => {
          assert.deepEqual(decode(codec, encode(codec, v)), { ...v });
        },
      ),
    );
  });

  it("rejects lengths beyond a field's limit instead of allocating them", () => {
    const evil = Buffer.from([0x7f, 0xff, 0xff, 0xff]);
    assert.throws(() => decode(string(1024), evil), XdrDecodeError);
    assert.throws(() => decode(array(int, 16), evil), XdrDecodeError);
  });

  it("rejects trailing bytes and invalid bools", () => {
    assert.throws(() => decode(int, Buffer.alloc(8)), /trailing/);
    assert.throws(() => decode(bool, Buffer.from([0, 0, 0, 2])), XdrDecodeError);
  });

  it("typed parameters round-trip with their types (integers as 64-bit)", () => {
    for (const value of [2.5, true, "x", 2n ** 63n]) {
      const p = { field: "f", value };
      assert.deepEqual(decode(TypedParamCodec, encode(TypedParamCodec, p)), p);
    }
    assert.deepEqual(decode(TypedParamCodec, encode(TypedParamCodec, { field: "n", value: 7 })), {
      field: "n",
      value: 7n,
    });
  });
});

describe("reply decoders", () => {
  const listReply = P.ConnectListAllDomains.ret;
  const sample = encode(listReply, {
    domains: [
      { name: "a", uuid: Buffer.alloc(16, 1), id: 3 },
      { name: "bb", uuid: Buffer.alloc(16, 2), id: -1 },
    ],
    ret: 2,
  });

  it("every truncation of a valid reply is a typed decode error", () => {
    for (let cut = 0; cut < sample.length; cut++) {
      assert.throws(() => decode(listReply, sample.subarray(0, cut)), XdrDecodeError, `cut at ${cut}`);
    }
  });

  it("arbitrary bytes never crash a decoder with anything but XdrDecodeError", () => {
    const decoders = [
      P.ConnectListAllDomains.ret,
      P.DomainGetInfo.ret,
      P.NodeGetInfo.ret,
      P.ConnectGetAllDomainStats.ret,
      P.NetworkGetDhcpLeases.ret,
      P.DomainListAllSnapshots.ret,
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.constantFrom(...decoders), (bytes, codec) => {
        try {
          codec.decode(new XdrReader(Buffer.from(bytes)));
        } catch (err) {
          assert.ok(err instanceof XdrDecodeError, `${(err as Error).name}: ${(err as Error).message}`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
