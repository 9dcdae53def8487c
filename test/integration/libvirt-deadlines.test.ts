// Deadlines against a real libvirtd (test driver) behind a proxy that can go silent: a call
// to a peer that stopped answering fails with CallTimeoutError within its class's deadline, a
// handshake with a peer that accepts and never answers fails within the handshake deadline,
// and once the peer answers again the client works, on the same connection or a new one.
import assert from "node:assert/strict";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CallTimeoutError, LibvirtClient } from "../../src/hypervisor/libvirt/index.ts";
import { DEFAULT_SOCKET } from "../../src/hypervisor/libvirt/uri.ts";
import { StallProxy } from "../support/stall-proxy.ts";

/** Timers fire late on a loaded machine; a deadline must not fire early, nor much later. */
const SLACK_MS = 1500;

async function rejectsWithin(
  call: Promise<unknown>,
  expected: { procedure: string; deadlineMs: number },
): Promise<CallTimeoutError> {
  const started = Date.now();
  const err = await call.then(
    () => assert.fail(`${expected.procedure} succeeded against a silent peer`),
    (e: unknown) => e,
  );
  const took = Date.now() - started;
  assert.ok(err instanceof CallTimeoutError, `expected CallTimeoutError, got ${String(err)}`);
  assert.equal(err.procedure, expected.procedure);
  assert.equal(err.deadlineMs, expected.deadlineMs);
  assert.ok(err.message.includes(expected.procedure), err.message);
  assert.ok(err.message.includes(`deadline of ${expected.deadlineMs} ms`), err.message);
  assert.ok(took >= expected.deadlineMs - 20, `rejected after ${took} ms, before its deadline`);
  assert.ok(took < expected.deadlineMs + SLACK_MS, `rejected after ${took} ms`);
  return err;
}

const proxy = new StallProxy(join(tmpdir(), `lvo-stall-${process.pid}.sock`), DEFAULT_SOCKET);

before(async () => {
  await proxy.listen();
});

after(async () => {
  await proxy.close();
});

describe("libvirt deadlines: a peer that stops answering", () => {
  it("fails each call within its class's deadline, then works again on the same connection", async () => {
    const c = await LibvirtClient.connect({
      uri: `test+unix:///default?socket=${proxy.path}`,
      deadlines: { query: 400, lifecycle: 900 },
      // Keepalive would declare the peer dead after 25 s: this stall is shorter.
    });
    try {
      assert.ok((await c.hostname()).length > 0);
      proxy.stall();
      const hostname = c.hostname();
      const listed = c.inFlight();
      assert.deepEqual(
        listed.map((call) => [call.procedure, call.deadlineMs]),
        [["connect-get-hostname", 400]],
      );
      await rejectsWithin(hostname, { procedure: "connect-get-hostname", deadlineMs: 400 });
      assert.deepEqual(c.inFlight(), [], "a timed-out call is no longer in flight");
      // A start is a lifecycle call: its own, longer deadline (the daemon answers "no such
      // domain" once the stall ends; that late reply is dropped).
      const missing = { name: "lvo-deadline-missing", uuid: Buffer.alloc(16, 7), id: -1 };
      await rejectsWithin(c.startDomain(missing), { procedure: "domain-create-with-flags", deadlineMs: 900 });
      assert.equal(c.connected, true);
      assert.equal(c.disconnectedSince(), undefined);

      proxy.resume();
      assert.ok((await c.hostname()).length > 0);
      assert.equal((await c.lookupDomainByName("test")).name, "test");
    } finally {
      proxy.resume();
      await c.close();
    }
  });

  it("reconnects once the stall ends, each attempt bounded by the handshake deadline", async () => {
    const c = await LibvirtClient.connect({
      uri: `test+unix:///default?socket=${proxy.path}`,
      keepaliveIntervalMs: 100,
      keepaliveCount: 3,
      reconnectMinMs: 50,
      reconnectMaxMs: 100,
      deadlines: { handshake: 300 },
    });
    try {
      const disconnected = once(c, "disconnected");
      const stalledAt = Date.now();
      proxy.stall();
      const [error] = (await disconnected) as [Error];
      assert.match(error.message, /unresponsive/);
      const since = c.disconnectedSince();
      assert.ok(since !== undefined && since >= stalledAt, "disconnectedSince() says when");
      assert.deepEqual(c.inFlight(), []);

      // Attempts against the silent peer time out and are retried, rather than waiting forever.
      const acceptedBefore = proxy.accepted;
      await sleep(1500);
      assert.ok(proxy.accepted - acceptedBefore >= 2, `${proxy.accepted - acceptedBefore} attempts`);
      assert.equal(c.disconnectedSince(), since);

      proxy.resume();
      await c.waitConnected();
      assert.equal(c.disconnectedSince(), undefined);
      assert.ok((await c.hostname()).length > 0);
    } finally {
      proxy.resume();
      await c.close();
    }
  });
});

describe("libvirt deadlines: the handshake", () => {
  it("fails within its deadline against a peer that accepts and never answers", async () => {
    const path = join(tmpdir(), `lvo-silent-${process.pid}.sock`);
    rmSync(path, { force: true });
    const peers = new Set<Socket>();
    let closed = 0;
    const silent = createServer((s) => {
      peers.add(s);
      s.on("error", () => undefined);
      s.on("close", () => closed++);
      s.resume(); // read (and ignore) what the client says, so its hang-up is seen
    });
    await new Promise<void>((r) => silent.listen(path, r));
    try {
      const err = await rejectsWithin(
        LibvirtClient.connect({ uri: `test+unix:///default?socket=${path}`, deadlines: { handshake: 600 } }),
        { procedure: "auth-list", deadlineMs: 600 },
      );
      assert.match(err.message, /handshake/);
      // The attempt hung up rather than leave its socket open.
      await sleep(100);
      assert.equal(peers.size, 1);
      assert.equal(closed, 1);
    } finally {
      for (const s of peers) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it("fails within its deadline against the stalled proxy, and succeeds once it answers", async () => {
    proxy.stall();
    try {
      await rejectsWithin(
        LibvirtClient.connect({
          uri: `test+unix:///default?socket=${proxy.path}`,
          deadlines: { handshake: 500 },
        }),
        { procedure: "auth-list", deadlineMs: 500 },
      );
    } finally {
      proxy.resume();
    }
    const c = await LibvirtClient.connect({
      uri: `test+unix:///default?socket=${proxy.path}`,
      deadlines: { handshake: 500 },
    });
    assert.equal(await c.uri(), "test:///default");
    await c.close();
  });
});
