// Capturing a real TCG guest's state with the libvirt client: file-system freeze through the guest
// agent (and the errors when there is none), save to a file and restore, internal snapshots with
// memory of a running guest (reverted running and paused) and disk-only ones of a shut-off guest.
// The guest's counter (lvo.counter, scripts/setup/guest.sh) tells what a revert brought back.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CallTimeoutError,
  type DomainRef,
  DomainSaveRestoreFlags,
  DomainState,
  DomainUndefineFlags,
  ErrorCode,
  isGuestAgentUnavailable,
  LibvirtClient,
  LibvirtError,
  SnapshotRevertFlags,
  type StoragePoolRef,
  uuidToString,
} from "../../src/hypervisor/libvirt/index.ts";
import {
  BOOTED,
  consoleText,
  ensureGuest,
  type Guest,
  guestDomainXml,
  waitForConsole,
} from "../support/guest.ts";
import { createTestPool, removeTestPool } from "../support/pool.ts";

const GUEST = "LIBVIRT-OPERATOR-GUEST-";
const SLOW = 180_000; // a call that moves the guest's memory, under TCG on a loaded host
let client: LibvirtClient;
let guest: Guest;
let workDir: string;
let pool: StoragePoolRef;
const PLAIN = `lvo-snap-${process.pid}`; // no guest agent channel; snapshots and save/restore
const AGENT = `lvo-snap-agent-${process.pid}`; // with the channel; the guest runs qemu-ga
const POOL = `lvo-snap-pool-${process.pid}`;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "lvo-snap-"));
  // Our own copy: the guests here start again and again, and a rebuild of the cached guest
  // (another test run, a new revision) must not pull the files from under them.
  const cached = await ensureGuest();
  guest = { kernel: join(workDir, "vmlinuz"), initrd: join(workDir, "initramfs.img") };
  await copyFile(cached.kernel, guest.kernel);
  await copyFile(cached.initrd, guest.initrd);
  client = await LibvirtClient.connect({ uri: "qemu:///system" });
  pool = await createTestPool(client, POOL, join(workDir, "pool"));
});

after(async () => {
  for (const name of [PLAIN, AGENT]) {
    const dom = await client.lookupDomainByName(name).catch(() => undefined);
    if (!dom) continue;
    await client.destroyDomain(dom).catch(() => undefined);
    await client.undefineDomain(dom, DomainUndefineFlags.SnapshotsMetadata).catch(() => undefined);
  }
  await removeTestPool(client, pool);
  await client.close();
  await rm(workDir, { recursive: true, force: true });
});

async function qcow2(name: string, mib: number): Promise<string> {
  const vol = await client.createVolume(
    pool,
    `<volume><name>${name}</name><capacity unit='MiB'>${mib}</capacity><target><format type='qcow2'/></target></volume>`,
  );
  return client.volumePath(vol);
}

/**
 * The domain XML of the test guest with extra kernel arguments and devices; its console log
 * is appended to, so it keeps what earlier QEMU processes (before a restore, a restart) wrote.
 */
function domainXml(name: string, consoleLog: string, disks: string[], cmdline: string, devices = ""): string {
  return guestDomainXml({
    name,
    guest,
    consoleLog,
    disks: disks.map((path, i) => ({ path, format: "qcow2" as const, dev: `vd${"ab"[i]}` })),
  })
    .replace(
      "<cmdline>console=ttyS0 panic=-1</cmdline>",
      `<cmdline>console=ttyS0 panic=-1 ${cmdline}</cmdline>`,
    )
    .replace("</devices>", `${devices}</devices>`)
    .replace(`<source path='${consoleLog}'/>`, `<source path='${consoleLog}' append='on'/>`);
}

async function state(dom: DomainRef): Promise<number> {
  return (await client.domainState(dom)).state;
}

/** What libvirt said, for the log: the codes tell which case the daemon saw. */
async function failure(call: Promise<unknown>): Promise<LibvirtError> {
  const err = await call.then(
    () => assert.fail("expected the call to fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof LibvirtError, `a LibvirtError, got ${String(err)}`);
  process.stderr.write(`# ${err.procedure}: code ${err.code} domain ${err.domain}: ${err.message}\n`);
  return err;
}

/** The counter values the guest printed after console offset FROM. */
function counters(consoleLog: string, from = 0): number[] {
  return [
    ...consoleText(consoleLog)
      .slice(from)
      .matchAll(/GUEST-COUNTER (\d+) uptime=/g),
  ].map((m) => Number(m[1]));
}

async function waitForCounter(
  consoleLog: string,
  from: number,
  min: number,
  timeoutMs = 60_000,
): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const seen = counters(consoleLog, from);
    const last = seen.at(-1);
    if (last !== undefined && last >= min) return last;
    await sleep(100);
  }
  throw new Error(`no counter ≥ ${min} after offset ${from}:\n${consoleText(consoleLog).slice(-1500)}`);
}

/** The COUNTER-BOOT values, one per boot. */
function counterBoots(consoleLog: string): number[] {
  return [...consoleText(consoleLog).matchAll(/GUEST-COUNTER-BOOT (\d+)/g)].map((m) => Number(m[1]));
}

describe("guest agent file-system freeze (TCG guest)", () => {
  it("fails as agent-unavailable without a channel, before the agent connects and when it does not answer; freezes and thaws with it", async () => {
    // No channel: libvirt refuses before asking anybody.
    const plainLog = join(workDir, "plain-agent.log");
    const plain = await client.defineDomain(
      domainXml(`${PLAIN}-a`, plainLog, [await qcow2("na.qcow2", 16)], ""),
    );
    try {
      await client.startDomain(plain);
      const none = await failure(client.domainFSFreeze(plain));
      assert.equal(none.code, ErrorCode.ArgumentUnsupported);
      assert.match(none.message, /QEMU guest agent is not configured/);
      assert.ok(isGuestAgentUnavailable(none));
      assert.ok(isGuestAgentUnavailable(await failure(client.domainFSThaw(plain))));
    } finally {
      await client.destroyDomain(plain).catch(() => undefined);
      await client.undefineDomain(plain).catch(() => undefined);
    }

    const agentLog = join(workDir, "agent.log");
    const channel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>";
    const dom = await client.defineDomain(
      domainXml(AGENT, agentLog, [await qcow2("data.qcow2", 16)], "lvo.ext4=vda", channel),
    );
    await client.startDomain(dom);
    // The guest has not booted yet: the channel is there, the agent is not connected.
    const early = await failure(client.domainFSFreeze(dom));
    assert.ok(isGuestAgentUnavailable(early), `not connected: ${early.code} ${early.message}`);
    assert.equal(early.code, ErrorCode.AgentUnresponsive);

    await waitForConsole(agentLog, `${GUEST}MOUNTED vda`, 120_000);
    await waitForConsole(agentLog, `${GUEST}AGENT-STARTED`, 60_000);
    // The agent is up a moment before libvirt sees the port open: retry while it is "not connected".
    let frozen = -1;
    for (let i = 0; frozen < 0; i++) {
      frozen = await client.domainFSFreeze(dom, [], 0, 60_000).catch(async (err: unknown) => {
        if (i >= 50 || !isGuestAgentUnavailable(err)) throw err;
        await sleep(200);
        return -1;
      });
    }
    assert.equal(frozen, 1, "the guest's one real file system, /data");
    assert.equal(await client.domainFSThaw(dom, [], 0, 60_000), 1);
    assert.equal(await client.domainFSFreeze(dom, ["/data"]), 1);
    // QEMU thaws everything or nothing: mount points are refused (74, but not agent trouble).
    const named = await failure(client.domainFSThaw(dom, ["/data"]));
    assert.equal(named.code, ErrorCode.ArgumentUnsupported);
    assert.equal(isGuestAgentUnavailable(named), false);
    assert.equal(await client.domainFSThaw(dom), 1);

    // An agent that does not answer (QEMU stopped, so nothing reaches the guest): libvirt 9.0
    // has synced with the agent already and waits for the command itself without limit, so our
    // deadline fires, and libvirt keeps the domain's agent job for it.
    const pid = Number(readFileSync(`/run/libvirt/qemu/${AGENT}.pid`, "utf8").trim());
    process.kill(pid, "SIGSTOP");
    try {
      const hung = await client.domainFSFreeze(dom, [], 0, 8000).catch((e: unknown) => e);
      assert.ok(hung instanceof CallTimeoutError, String(hung));
      assert.ok(isGuestAgentUnavailable(hung));
      // The next agent call waits libvirt's 30 s for that job, then gives up.
      const busy = await failure(client.domainFSThaw(dom, [], 0, 60_000));
      assert.equal(busy.code, ErrorCode.OperationTimeout);
      assert.match(busy.message, /held by agent=/);
      assert.ok(isGuestAgentUnavailable(busy));
    } finally {
      process.kill(pid, "SIGCONT");
    }
    // Once QEMU runs again the freeze reaches the guest after all: a late freeze needs a thaw.
    assert.equal(await client.domainFSThaw(dom, [], 0, 60_000), 1);

    // Not agent trouble: a domain that is not running.
    await client.destroyDomain(dom);
    const off = await failure(client.domainFSFreeze(dom));
    assert.equal(off.code, ErrorCode.OperationInvalid);
    assert.equal(isGuestAgentUnavailable(off), false);
    await client.undefineDomain(dom);
  });
});

describe("save, restore and snapshots (TCG guest)", () => {
  const consoleLog = () => join(workDir, "plain.log");
  let dom: DomainRef;

  before(async () => {
    const disks = [await qcow2("root.qcow2", 16), await qcow2("counter.qcow2", 16)];
    dom = await client.defineDomain(domainXml(PLAIN, consoleLog(), disks, "lvo.counter=vdb"));
    dom = await client.startDomain(dom);
    await waitForConsole(consoleLog(), BOOTED, 120_000);
    await waitForCounter(consoleLog(), 0, 2);
  });

  it("saves a running guest to a file and restores it, running again with the same UUID", async () => {
    const uuid = uuidToString(dom.uuid);
    const image = join(workDir, "plain.save");
    await client.domainSaveFlags(dom, image, null, 0, SLOW);
    assert.equal(await state(dom), DomainState.Shutoff);
    const saved = await client.domainSaveImageXml(image);
    assert.match(saved, new RegExp(`<uuid>${uuid}</uuid>`));
    assert.match(saved, new RegExp(`<name>${PLAIN}</name>`));

    const offset = consoleText(consoleLog()).length;
    await client.domainRestoreFlags(image, null, DomainSaveRestoreFlags.Paused, SLOW);
    const restored = await client.lookupDomainByName(PLAIN);
    assert.equal(uuidToString(restored.uuid), uuid);
    assert.equal(await state(restored), DomainState.Paused, "restored paused as asked");
    await client.resumeDomain(restored);
    assert.equal(await state(restored), DomainState.Running);
    // The memory came back: the guest counts on, it did not boot again.
    await waitForCounter(consoleLog(), offset, 1);
    assert.doesNotMatch(consoleText(consoleLog()).slice(offset), /COUNTER-BOOT/);
    dom = restored;

    // Running/Paused together make no sense; libvirt says so.
    const both = DomainSaveRestoreFlags.Running | DomainSaveRestoreFlags.Paused;
    await failure(client.domainSaveFlags(dom, join(workDir, "never.save"), null, both));
    assert.equal(await state(dom), DomainState.Running);
  });

  it("snapshots a running guest with its memory, reverts it running and paused, and deletes it", async () => {
    const snap = await client.createSnapshot(
      dom,
      "<domainsnapshot><name>live</name><memory snapshot='internal'/></domainsnapshot>",
      0,
      SLOW,
    );
    const atSnapshot = counters(consoleLog()).at(-1)!;
    const xml = await client.snapshotXml(snap);
    assert.match(xml, /<state>running<\/state>/);
    assert.match(xml, /<memory snapshot='internal'\/>/);
    assert.deepEqual(
      (await client.listSnapshots(dom)).map((s) => s.name),
      ["live"],
    );
    assert.equal((await client.lookupSnapshot(dom, "live")).name, "live");
    assert.equal((await client.currentSnapshot(dom)).name, "live");

    // Let the guest count on, then go back: the counter starts again from the snapshot's.
    const before = await waitForCounter(consoleLog(), 0, atSnapshot + 4);
    let offset = consoleText(consoleLog()).length;
    await client.revertToSnapshot(snap, SnapshotRevertFlags.Running, SLOW);
    assert.equal(await state(dom), DomainState.Running);
    await waitForCounter(consoleLog(), offset, 0);
    const afterRevert = counters(consoleLog(), offset)[0]!;
    assert.ok(afterRevert < before, `the counter went back: ${afterRevert} after ${before}`);

    offset = consoleText(consoleLog()).length;
    await client.revertToSnapshot(snap, SnapshotRevertFlags.Paused, SLOW);
    assert.equal(await state(dom), DomainState.Paused, "reverted paused as asked");
    await sleep(2000);
    assert.deepEqual(counters(consoleLog(), offset), [], "a paused guest does not count");
    await client.resumeDomain(dom);
    await waitForCounter(consoleLog(), offset, 0);

    await client.deleteSnapshot(snap, 0, SLOW);
    assert.deepEqual(await client.listSnapshots(dom), []);
    const gone = await failure(client.lookupSnapshot(dom, "live"));
    assert.ok(gone.isNotFound);
  });

  it("snapshots a shut-off guest's disks and reverts to them", async () => {
    await client.destroyDomain(dom);
    assert.equal(await state(dom), DomainState.Shutoff);
    const snap = await client.createSnapshot(
      dom,
      "<domainsnapshot><name>off</name></domainsnapshot>",
      0,
      SLOW,
    );
    const xml = await client.snapshotXml(snap);
    assert.match(xml, /<state>shutoff<\/state>/);
    assert.match(xml, /<disk name='vda' snapshot='internal'/);

    // Boot, count on and write it to the disk, stop; after the revert the next boot reads the
    // value the disk had at the snapshot again.
    const boots = counterBoots(consoleLog()).length;
    dom = await client.startDomain(dom);
    await waitForConsole(consoleLog(), "COUNTER-BOOT", 120_000, boots + 1);
    const atSnapshot = counterBoots(consoleLog()).at(-1)!;
    await waitForCounter(consoleLog(), consoleText(consoleLog()).lastIndexOf("COUNTER-BOOT"), atSnapshot + 3);
    await client.destroyDomain(dom);

    await client.revertToSnapshot(snap, 0, SLOW);
    assert.equal(await state(dom), DomainState.Shutoff, "a shut-off snapshot stays shut off");
    dom = await client.startDomain(dom);
    await waitForConsole(consoleLog(), "COUNTER-BOOT", 120_000, boots + 2);
    assert.equal(counterBoots(consoleLog()).at(-1), atSnapshot);

    await client.destroyDomain(dom);
    await client.deleteSnapshot(snap, 0, SLOW);
    assert.deepEqual(await client.listSnapshots(dom), []);
    await client.undefineDomain(dom);
  });
});
