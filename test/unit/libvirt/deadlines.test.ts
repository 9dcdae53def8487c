// The deadline table (every procedure classified, overrides checked) and the client's use of
// it against a scripted peer: per-class deadlines, a handshake stuck mid-way, and streams
// bounded by silence rather than total time.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LibvirtClient } from "../../../src/hypervisor/libvirt/client.ts";
import {
  DEFAULT_DEADLINES,
  deadlinesWith,
  overdueBy,
  PROCEDURE_CLASS,
} from "../../../src/hypervisor/libvirt/deadlines.ts";
import { CallTimeoutError } from "../../../src/hypervisor/libvirt/errors.ts";
import { P } from "../../../src/hypervisor/libvirt/protocol.ts";
import {
  decodeMessage,
  encodeMessage,
  Framer,
  type Header,
  MessageStatus,
  MessageType,
} from "../../../src/hypervisor/libvirt/wire.ts";
import { isCall, isStream, replyOk, streamPacket, T, vol } from "./stream-peer.ts";

describe("deadline table", () => {
  it("classifies every procedure the client knows", () => {
    const missing = Object.values(P)
      .map((p) => p.name)
      .filter((name) => !(name in PROCEDURE_CLASS));
    assert.deepEqual(missing, []);
  });

  it("gives changes more than libvirt's 30 s job wait, and copies more than starts", () => {
    assert.ok(DEFAULT_DEADLINES.query <= 15_000);
    assert.ok(DEFAULT_DEADLINES.change > 30_000);
    assert.ok(DEFAULT_DEADLINES.lifecycle < DEFAULT_DEADLINES.long);
    assert.ok(DEFAULT_DEADLINES.long < DEFAULT_DEADLINES.bulk);
  });

  it("takes overrides and refuses nonsense", () => {
    assert.equal(deadlinesWith({ query: 5 }).query, 5);
    assert.equal(deadlinesWith({ query: undefined }).query, DEFAULT_DEADLINES.query);
    assert.throws(() => deadlinesWith({ bulk: -1 }), /bulk/);
    assert.throws(() => deadlinesWith({ bulk: Number.NaN }), /bulk/);
  });

  it("says how far a call is past its deadline, streams from their last progress", () => {
    assert.equal(overdueBy({ procedure: "x", startedAt: 0, deadlineMs: 100 }, 150), 50);
    assert.equal(overdueBy({ procedure: "x", startedAt: 0, deadlineMs: 100, lastProgressAt: 100 }, 150), -50);
    assert.equal(overdueBy({ procedure: "x", startedAt: 0, deadlineMs: 0 }, 1e9), Number.NEGATIVE_INFINITY);
  });
});

// ---- a scripted libvirtd that speaks the handshake ----

type Script = (h: Header, body: Buffer, peer: Socket) => void;

const path = join(tmpdir(), `lvo-fake-deadlines-${process.pid}.sock`);
let server: Server | undefined;
const peers = new Set<Socket>();
const clients: LibvirtClient[] = [];

function reply(peer: Socket, call: Header, encode?: Parameters<typeof encodeMessage>[1]) {
  peer.write(encodeMessage({ ...call, type: MessageType.Reply, status: MessageStatus.Ok }, encode));
}

/** Answers the handshake (going silent at the procedure SILENT_AT, if given), then runs SCRIPT. */
async function fakeDaemon(script: Script, silentAt?: number): Promise<string> {
  rmSync(path, { force: true });
  server = createServer((peer) => {
    peers.add(peer);
    const framer = new Framer();
    peer.on("error", () => undefined);
    peer.on("data", (chunk) => {
      for (const frame of framer.push(chunk)) {
        const { header: h, body } = decodeMessage(frame);
        if (h.type === MessageType.Call && h.procedure === silentAt) continue;
        if (isCall(h, P.AuthList.number)) reply(peer, h, (w) => P.AuthList.ret.encode(w, { types: [0] }));
        else if (isCall(h, P.ConnectOpen.number)) reply(peer, h);
        else if (isCall(h, P.ConnectSupportsFeature.number))
          reply(peer, h, (w) => P.ConnectSupportsFeature.ret.encode(w, { supported: 0 }));
        else if (isCall(h, P.ConnectClose.number)) reply(peer, h);
        else script(h, body, peer);
      }
    });
  });
  await new Promise<void>((r) => server!.listen(path, r));
  return `test+unix:///default?socket=${path}`;
}

async function connect(uri: string, deadlines: Parameters<typeof deadlinesWith>[0]) {
  const c = await LibvirtClient.connect({ uri, deadlines, reconnect: false, keepaliveIntervalMs: 0 });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const peer of peers) peer.destroy();
  peers.clear();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function timing(work: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const started = Date.now();
  try {
    await work;
    return { ms: Date.now() - started, error: undefined };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}

describe("client deadlines against a scripted daemon", () => {
  it("gives each call its class's deadline and names it when it passes", T, async () => {
    const uri = await fakeDaemon(() => undefined); // answers nothing after the handshake
    const c = await connect(uri, { query: 150, change: 300 });
    const q = await timing(c.hostname());
    assert.ok(q.error instanceof CallTimeoutError);
    assert.equal(q.error.procedure, "connect-get-hostname");
    assert.equal(q.error.deadlineMs, 150);
    assert.ok(q.ms >= 140 && q.ms < 5000, `${q.ms} ms`);
    const d = await timing(c.defineDomain("<domain/>"));
    assert.ok(d.error instanceof CallTimeoutError);
    assert.equal(d.error.procedure, "domain-define-xml-flags");
    assert.ok(d.ms >= 290 && d.ms < 5000, `${d.ms} ms`);
    // An explicit deadline still wins over the class's.
    const e = await timing(c.wipeVolume(vol, 100));
    assert.ok(e.error instanceof CallTimeoutError && e.error.deadlineMs === 100);
  });

  it("fails a handshake stuck at connect-open within the handshake deadline", T, async () => {
    const uri = await fakeDaemon(() => undefined, P.ConnectOpen.number);
    const r = await timing(connect(uri, { handshake: 250 }));
    assert.ok(r.error instanceof CallTimeoutError, String(r.error));
    assert.equal(r.error.procedure, "connect-open");
    assert.match(r.error.message, /handshake .* within its deadline of 250 ms \(stuck in connect-open\)/);
    assert.ok(r.ms >= 240 && r.ms < 5000, `${r.ms} ms`);
  });

  it("lets a stream run longer than its stall deadline while packets keep coming", T, async () => {
    const uri = await fakeDaemon((h, _body, peer) => {
      if (isCall(h, P.StorageVolDownload.number)) {
        replyOk(peer, h);
        // 8 packets 80 ms apart: 640 ms in all, never 200 ms of silence.
        void (async () => {
          for (let i = 0; i < 8; i++) {
            await sleep(80);
            streamPacket(peer, h, MessageStatus.Continue, Buffer.alloc(1000, i));
          }
          streamPacket(peer, h, MessageStatus.Continue);
        })();
      } else if (isStream(h) && h.status === MessageStatus.Ok) {
        streamPacket(peer, h, MessageStatus.Ok);
      }
    });
    const c = await connect(uri, { streamStall: 200 });
    let bytes = 0;
    const started = Date.now();
    let sawStream = false;
    for await (const chunk of c.downloadVolume(vol)) {
      bytes += chunk.byteLength;
      const [call] = c.inFlight();
      if (call?.lastProgressAt !== undefined) {
        sawStream = call.procedure === "storage-vol-download" && call.deadlineMs === 200;
      }
    }
    assert.equal(bytes, 8000);
    assert.ok(Date.now() - started > 400, "ran longer than the stall deadline");
    assert.ok(sawStream, "inFlight() lists the open stream with its stall deadline");
  });

  it("fails a stream that goes silent, after the stall deadline", T, async () => {
    const uri = await fakeDaemon((h, _body, peer) => {
      if (isCall(h, P.StorageVolDownload.number)) {
        replyOk(peer, h);
        streamPacket(peer, h, MessageStatus.Continue, Buffer.alloc(1000));
      } else if (isStream(h) && h.status === MessageStatus.Error) {
        streamPacket(peer, h, MessageStatus.Error); // confirms our abort
      }
    });
    const c = await connect(uri, { streamStall: 200 });
    let bytes = 0;
    const r = await timing(
      (async () => {
        for await (const chunk of c.downloadVolume(vol)) bytes += chunk.byteLength;
      })(),
    );
    assert.equal(bytes, 1000);
    assert.ok(r.error instanceof CallTimeoutError, String(r.error));
    assert.match(r.error.message, /storage-vol-download: no data within 200 ms/);
    assert.ok(r.ms >= 190 && r.ms < 5000, `${r.ms} ms`);
  });
});
