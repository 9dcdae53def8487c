import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decodeMessage,
  encodeMessage,
  Framer,
  MessageType,
  REMOTE_PROGRAM,
} from "../../../src/hypervisor/libvirt/wire.ts";
import { XdrDecodeError } from "../../../src/hypervisor/libvirt/xdr.ts";

const header = (serial: number) => ({
  program: REMOTE_PROGRAM,
  version: 1,
  procedure: 23,
  type: MessageType.Call,
  serial,
  status: 0,
});

describe("framing", () => {
  it("writes a length word that counts itself, then the 24-byte header", () => {
    const frame = encodeMessage(header(7), (w) => w.int(42));
    assert.equal(frame.readUInt32BE(0), frame.length);
    assert.equal(frame.length, 4 + 24 + 4);
    assert.deepEqual(decodeMessage(frame.subarray(4)).header, header(7));
  });

  it("cuts any chunking of a stream into the same messages", () => {
    const frames = Array.from({ length: 5 }, (_, i) =>
      encodeMessage(header(i + 1), (w) => w.string("x".repeat(i * 7))),
    );
    const stream = Buffer.concat(frames);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 12 }), (cuts) => {
        const framer = new Framer();
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const out: Buffer[] = [];
        let from = 0;
        for (const p of [...points, stream.length]) {
          out.push(...framer.push(stream.subarray(from, p)));
          from = p;
        }
        assert.deepEqual(
          out.map((f) => decodeMessage(f).header.serial),
          [1, 2, 3, 4, 5],
        );
      }),
    );
  });

  it("refuses a corrupt length word", () => {
    assert.throws(() => new Framer().push(Buffer.from([0, 0, 0, 3, 1, 2, 3])), XdrDecodeError);
    assert.throws(() => new Framer().push(Buffer.from([0x7f, 0, 0, 0])), XdrDecodeError);
  });
});
