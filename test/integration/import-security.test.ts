// Attacks through a VMDisk's image URL, tried against the real stack (kube-apiserver, the agent,
// libvirtd): a server on 127.0.0.1 reached through several spellings (refused by default,
// accepted once the admin allows 127.0.0.0/8); images larger than the agent's maximum, by
// Content-Length, by qcow2 header and mid-stream, with nothing left in the pool; and a
// password in the URL, which must show in no status, Event or agent log line.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { logFile } from "../../src/cmd/local/processes.ts";
import { run } from "../../src/cmd/local/tools.ts";
import {
  actAsTenant,
  applyObject,
  eventsOf,
  getObject,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForEvent,
  waitForObject,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const MiB = 2 ** 20;
const POOL = "libvirt-operator";
const POOL_DIR = "/var/lib/libvirt/libvirt-operator";
const MARKER = "IMPORT-SECURITY-MARKER";
const PASSWORD = `pw-${randomBytes(8).toString("hex")}`;
const TOKEN = `tk-${randomBytes(8).toString("hex")}`;

let ns = "";
let workDir = "";
let server: Server;
let port = 0;
const requests: string[] = [];
/** The endless stream: how much the server sent, and whether the agent hung up first. */
const endless = { served: 0, sent: 0, closedEarly: false };
const small = Buffer.alloc(2 * MiB);
small.write(MARKER, 0, "latin1");

type Disk = VMDisk & { metadata: { name: string } };
const condition = (d: Disk | undefined, type: string) => d?.status?.conditions?.find((c) => c.type === type);
const waitForPhase = (name: string, phase: string, timeoutMs = 90_000) =>
  waitForObject<Disk>("vmdisk", ns, name, (d) => d?.status?.phase === phase, phase, timeoutMs);
const readyMessage = (d: Disk | undefined) => condition(d, "Ready")?.message ?? "";

/** Volumes (and staging volumes) of disk NAME: in libvirt's pool and in its directory. */
async function volumesOf(name: string): Promise<string[]> {
  const prefix = `${ns}_${name}.`;
  const listed = (await virsh("vol-list", POOL))
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((v) => v.startsWith(prefix));
  const files = readdirSync(POOL_DIR).filter((f) => f.startsWith(prefix));
  return [...new Set([...listed, ...files])];
}

async function restartAgent(env: Record<string, string>) {
  await stopTestOperator();
  Object.assign(process.env, env);
  await startTestOperator();
}

/** 64 KiB every 10 ms, chunked (no Content-Length), for as long as the client reads: 6 MiB/s. */
async function streamForever(res: ServerResponse) {
  res.writeHead(200, { "content-type": "application/octet-stream" });
  res.on("close", () => {
    endless.closedEarly = !res.writableFinished;
  });
  const chunk = Buffer.alloc(64 * 1024, 7);
  chunk.write(MARKER, 0, "latin1");
  while (!res.destroyed && endless.sent < 1024 * MiB) {
    res.write(chunk);
    endless.sent += chunk.length;
    await sleep(10);
  }
  res.end();
}

function authorized(header: string | undefined): boolean {
  return header === `Basic ${Buffer.from(`alice:${PASSWORD}`).toString("base64")}`;
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "lvo-import-security-"));
  writeFileSync(join(workDir, "big.raw"), Buffer.alloc(16 * MiB));
  // 40 KiB of file that says the disk is 1 GiB.
  await run("qemu-img", ["create", "-q", "-f", "qcow2", join(workDir, "huge-virtual.qcow2"), "1G"]);
  const hugeVirtual = readFileSync(join(workDir, "huge-virtual.qcow2"));
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    switch (req.url) {
      case "/small.raw":
        return res.writeHead(200, { "content-length": small.length }).end(small);
      case "/small-chunked.raw":
        res.writeHead(200);
        res.write(small.subarray(0, MiB));
        return res.end(small.subarray(MiB));
      case "/endless":
        // Only the first request streams; retries get no answer, so the pool can be looked at.
        if (endless.served++ === 0) void streamForever(res);
        return;
      case "/announced-32Mi":
        res.writeHead(200, { "content-length": 32 * MiB });
        return res.write(Buffer.alloc(64 * 1024));
      case "/huge-virtual.qcow2":
        return res.writeHead(200, { "content-length": hugeVirtual.length }).end(hugeVirtual);
      case "/secret/small.raw":
        if (!authorized(req.headers.authorization)) return res.writeHead(401).end();
        return res.writeHead(200, { "content-length": small.length }).end(small);
      default:
        return res.writeHead(authorized(req.headers.authorization) ? 403 : 401).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  ns = await testNamespace("import-security");
  process.env.IMAGE_IMPORT_DIRS = workDir;
  // What a cluster install does by default: nothing beyond global unicast.
  await restartAgent({ IMAGE_IMPORT_ALLOWED_NETWORKS: "", IMAGE_MAX_BYTES: "8Mi" });
  // The attacker: a tenant of the namespace with the built-in edit role, nothing more.
  await actAsTenant(ns);
});

after(async () => {
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
  delete process.env.IMAGE_MAX_BYTES;
  delete process.env.IMAGE_IMPORT_ALLOWED_NETWORKS;
  server.closeAllConnections();
  server.close();
  await rm(workDir, { recursive: true, force: true });
});

describe("image imports over http(s), against the real agent", () => {
  it("a server on 127.0.0.1 is refused by default in every spelling, and reached once the admin allows 127.0.0.0/8", async () => {
    const spellings: Record<string, string> = {
      dotted: `http://127.0.0.1:${port}/small.raw`,
      hex: `http://0x7f000001:${port}/small.raw`,
      short: `http://127.1:${port}/small.raw`,
      mapped: `http://[::ffff:127.0.0.1]:${port}/small.raw`,
      named: `http://localhost:${port}/small.raw`,
    };
    for (const [name, url] of Object.entries(spellings))
      await applyObject("VMDisk", ns, name, {
        provisionedSize: "1Mi",
        format: "raw",
        source: { image: { url } },
      });
    for (const name of Object.keys(spellings)) {
      const disk = await waitForPhase(name, "Illegal");
      assert.match(
        readyMessage(disk),
        /refused to connect: (.*127\.0\.0\.1\)? is a loopback address \(127\.0\.0\.0\/8\)|localhost does not resolve to an address images may come from)/,
      );
      assert.match(
        readyMessage(disk),
        /unless the node's admin allows the range \(agent\.imageImport\.allowedNetworks\)/,
      );
      const warning = await waitForEvent(ns, name, (e) => e.reason === "ImportFailed", "ImportFailed");
      assert.match(warning.message, /refused to connect/, `${name}: a Warning Event`);
      assert.equal(warning.type, "Warning");
      assert.deepEqual(await volumesOf(name), [], `${name}: nothing in the pool`);
    }
    assert.deepEqual(requests, [], "the agent never connected to the server");

    await restartAgent({ IMAGE_IMPORT_ALLOWED_NETWORKS: "127.0.0.0/8" });
    for (const name of Object.keys(spellings)) {
      const disk = await waitForPhase(name, "Ready");
      assert.equal(readFileSync(disk!.status!.path!).subarray(0, MARKER.length).toString("latin1"), MARKER);
    }
    assert.equal(requests.filter((r) => r === "/small.raw").length, Object.keys(spellings).length);
  });

  it("images larger than the maximum: refused by Content-Length, by qcow2 header, and stopped mid-stream with nothing left", async () => {
    const url = (path: string) => `http://127.0.0.1:${port}${path}`;
    await applyObject("VMDisk", ns, "endless", {
      provisionedSize: "1Mi",
      source: { image: { url: url("/endless") } },
    });
    // The import runs: its staging volume is in the pool while the bytes stream.
    const deadline = Date.now() + 30_000;
    let seen: string[] = [];
    while (seen.length === 0 && Date.now() < deadline) {
      seen = await volumesOf("endless");
      await sleep(100);
    }
    assert.deepEqual(seen, [`${ns}_endless.qcow2.import`], "the staging volume while importing");
    const stopped = await waitForPhase("endless", "Illegal");
    assert.match(
      readyMessage(stopped),
      /^http:\/\/127\.0\.0\.1:\d+\/endless: stopped after \d+ bytes: the image is larger than the maximum image size of 8 MiB this node allows \(agent\.imageImport\.maxBytes\)$/,
    );
    const received = Number(/stopped after (\d+) bytes/.exec(readyMessage(stopped))![1]);
    assert.ok(received > 8 * MiB && received <= 8 * MiB + 256 * 1024, `stopped at ${received} bytes`);
    assert.ok(endless.closedEarly, "the agent hung up mid-stream");
    assert.ok(endless.sent < 16 * MiB, `the server sent ${endless.sent} bytes in all`);
    assert.deepEqual(await volumesOf("endless"), [], "no volume left in the pool");
    await waitForEvent(
      ns,
      "endless",
      (e) => e.reason === "ImportFailed" && /stopped after/.test(e.message),
      "ImportFailed (stopped after)",
    );

    await applyObject("VMDisk", ns, "announced", {
      provisionedSize: "1Mi",
      source: { image: { url: url("/announced-32Mi") } },
    });
    await applyObject("VMDisk", ns, "virtual", {
      provisionedSize: "1Mi",
      source: { image: { url: url("/huge-virtual.qcow2") } },
    });
    await applyObject("VMDisk", ns, "big-file", {
      provisionedSize: "1Mi",
      source: { image: { url: join(workDir, "big.raw") } },
    });
    await applyObject("VMDisk", ns, "chunked", {
      provisionedSize: "1Mi",
      format: "raw",
      source: { image: { url: url("/small-chunked.raw") } },
    });
    assert.match(
      readyMessage(await waitForPhase("announced", "Illegal")),
      /\/announced-32Mi is 33554432 bytes, more than the maximum image size of 8 MiB/,
    );
    assert.match(
      readyMessage(await waitForPhase("virtual", "Illegal")),
      /the qcow2 image's virtual size, 1073741824 bytes, is more than the maximum image size of 8 MiB/,
    );
    assert.match(
      readyMessage(await waitForPhase("big-file", "Illegal")),
      /big\.raw is 16777216 bytes, more than the maximum image size of 8 MiB/,
    );
    for (const name of ["announced", "virtual", "big-file"])
      assert.deepEqual(await volumesOf(name), [], name);
    // Without a Content-Length, an image within the maximum is read to its end.
    const chunked = await waitForPhase("chunked", "Ready");
    assert.equal(chunked!.status!.provisionedSize, 2 * MiB, "the image's own size");
    assert.equal(readFileSync(chunked!.status!.path!).subarray(0, MARKER.length).toString("latin1"), MARKER);
    assert.deepEqual(await volumesOf("chunked"), [`${ns}_chunked.img`], "no staging volume left");
  });

  it("a password or token in the URL is used, and shown in no status, Event or agent log line", async () => {
    const base = `http://alice:${PASSWORD}@127.0.0.1:${port}`;
    await applyObject("VMDisk", ns, "with-password", {
      provisionedSize: "1Mi",
      format: "raw",
      source: { image: { url: `${base}/secret/small.raw` } },
    });
    await applyObject("VMDisk", ns, "denied", {
      provisionedSize: "1Mi",
      source: { image: { url: `${base}/secret/other.raw?token=${TOKEN}` } },
    });
    const ok = await waitForPhase("with-password", "Ready");
    assert.equal(readFileSync(ok!.status!.path!).subarray(0, MARKER.length).toString("latin1"), MARKER);
    const denied = await waitForPhase("denied", "Illegal");
    assert.match(
      readyMessage(denied),
      /^fetching http:\/\/REDACTED@127\.0\.0\.1:\d+\/secret\/other\.raw\?token=REDACTED answered HTTP 403 Forbidden$/,
    );
    const imported = await waitForEvent(ns, "with-password", (e) => e.reason === "Imported", "Imported");
    // The refusal's Event too, so that the check below reads it.
    await waitForEvent(ns, "denied", (e) => e.reason === "ImportFailed", "ImportFailed");
    assert.match(imported.message, /from http:\/\/REDACTED@127\.0\.0\.1:\d+\/secret\/small\.raw/);
    assert.match(ok!.status!.lastOperation?.message ?? "", /REDACTED@/);

    const shown = [
      JSON.stringify((await getObject<Disk>("vmdisk", ns, "with-password"))?.status),
      JSON.stringify((await getObject<Disk>("vmdisk", ns, "denied"))?.status),
      JSON.stringify(await eventsOf(ns, "with-password")),
      JSON.stringify(await eventsOf(ns, "denied")),
    ];
    const log = readFileSync(logFile(TEST_STACK.stateDir, "agent"), "utf8");
    assert.match(log, /REDACTED@127\.0\.0\.1/, "the agent logged the imports");
    for (const text of [...shown, log]) {
      assert.ok(!text.includes(PASSWORD), "no password");
      assert.ok(!text.includes(TOKEN), "no token");
    }
  });
});
