// The libvirt client with real QEMU: a TCG guest is defined, boots, is snapshotted with its
// memory while running, reverted, and powers off by ACPI; volumes on a directory pool.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  DomainAffect,
  DomainEventType,
  DomainShutdownFlags,
  DomainState,
  DomainStats,
  DomainUndefineFlags,
  LibvirtClient,
  type LifecycleEvent,
  type StoragePoolRef,
} from "../../src/hypervisor/libvirt/index.ts";
import {
  BOOTED,
  consoleText,
  ensureGuest,
  type Guest,
  guestDomainXml,
  POWEROFF,
  waitForConsole,
} from "../support/guest.ts";
import { createTestPool, removeTestPool } from "../support/pool.ts";

let client: LibvirtClient;
let guest: Guest;
let workDir: string;
let pool: StoragePoolRef;
const events: LifecycleEvent[] = [];
const DOMAIN = `lvo-it-${process.pid}`;
const POOL = `lvo-it-pool-${process.pid}`;

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-qemu-"));
  client = await LibvirtClient.connect({ uri: "qemu:///system" });
  await client.enableDomainEvents();
  client.on("lifecycle", (e: LifecycleEvent) => {
    if (e.domain.name === DOMAIN) events.push(e);
  });
  pool = await createTestPool(client, POOL, join(workDir, "pool"));
});

after(async () => {
  // Leave nothing behind, whatever failed.
  const dom = await client.lookupDomainByName(DOMAIN).catch(() => undefined);
  if (dom) {
    await client.destroyDomain(dom).catch(() => undefined);
    await client.undefineDomain(dom, DomainUndefineFlags.SnapshotsMetadata).catch(() => undefined);
  }
  await removeTestPool(client, pool);
  await client.close();
  await rm(workDir, { recursive: true, force: true });
});

async function waitForEvent(event: number, detail?: number, timeoutMs = 30_000): Promise<LifecycleEvent> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const found = events.find((e) => e.event === event && (detail === undefined || e.detail === detail));
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `no lifecycle event ${event}/${detail}; saw ${JSON.stringify(events.map((e) => [e.event, e.detail]))}`,
  );
}

describe("libvirt client with QEMU (TCG guest)", () => {
  it("volumes: a qcow2 volume is created, cloned, resized, wiped and deleted", async () => {
    const mib = 2 ** 20;
    const vol = await client.createVolume(
      pool,
      `<volume><name>a.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>`,
    );
    assert.equal((await client.volumeInfo(vol)).capacity, 16 * mib);
    const clone = await client.cloneVolume(
      pool,
      `<volume><name>b.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>`,
      vol,
    );
    assert.equal(await client.volumePath(clone), join(workDir, "pool", "b.qcow2"));
    await client.resizeVolume(clone, 32 * mib);
    assert.equal((await client.volumeInfo(clone)).capacity, 32 * mib);
    await client.wipeVolume(clone);
    await client.deleteVolume(clone);
    await client.deleteVolume(vol);
    await client.refreshStoragePool(pool);
    assert.deepEqual(await client.listVolumes(pool), []);
  });

  it("a guest boots, reports statistics, takes a hot-plugged disk, grows one, is snapshotted with memory, reverted, and powers off by ACPI", async () => {
    const disk = await client.createVolume(
      pool,
      `<volume><name>root.qcow2</name><capacity unit='MiB'>64</capacity><target><format type='qcow2'/></target></volume>`,
    );
    const consoleLog = join(workDir, "console.log");
    const dom = await client.defineDomain(
      guestDomainXml({
        name: DOMAIN,
        guest,
        consoleLog,
        disks: [{ path: await client.volumePath(disk), format: "qcow2", dev: "vda" }],
      }),
    );
    await waitForEvent(DomainEventType.Defined);

    await client.startDomain(dom);
    await waitForEvent(DomainEventType.Started);
    const bootMs = await waitForConsole(consoleLog, BOOTED);
    assert.ok(bootMs < 60_000);

    const [stats] = await client.allDomainStats(
      DomainStats.State | DomainStats.CpuTotal | DomainStats.Balloon,
      [dom],
    );
    assert.ok(stats, "stats for the running guest");
    assert.equal(stats.stats["state.state"], DomainState.Running);
    assert.ok(BigInt(stats.stats["cpu.time"] as bigint) > 0n, "cpu.time is non-zero");
    assert.ok(Number(stats.stats["balloon.maximum"]) >= 256 * 1024);

    // Hot-plug: a second disk appears in the guest; unplugged, it goes (device-removed event).
    const extra = await client.createVolume(
      pool,
      `<volume><name>extra.qcow2</name><capacity unit='MiB'>8</capacity><target><format type='qcow2'/></target></volume>`,
    );
    const diskXml = `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${await client.volumePath(extra)}'/><target dev='vdb' bus='virtio'/></disk>`;
    await client.attachDevice(dom, diskXml, DomainAffect.Live);
    await waitForConsole(consoleLog, " vdb", 60_000); // the guest lists /sys/block when it changes
    const removed = new Promise<string>((resolve) =>
      client.on("deviceRemoved", (e: { domain: { name: string }; alias: string }) => {
        if (e.domain.name === DOMAIN) resolve(e.alias);
      }),
    );
    await client.detachDevice(dom, diskXml, DomainAffect.Live);
    assert.match(await removed, /virtio-disk1/);
    assert.doesNotMatch(await client.domainXml(dom), /extra\.qcow2/);

    // Growing a disk of the running guest.
    await client.blockResize(dom, "vda", 96 * 2 ** 20);
    await client.refreshStoragePool(pool);
    assert.equal((await client.volumeInfo(disk)).capacity, 96 * 2 ** 20);

    // Internal snapshot of a running guest: disks and memory.
    const snap = await client.createSnapshot(
      dom,
      "<domainsnapshot><name>live</name><memory snapshot='internal'/></domainsnapshot>",
      0,
      120_000,
    );
    assert.match(await client.snapshotXml(snap), /<state>running<\/state>/);
    await client.revertToSnapshot(snap, 0, 120_000);
    assert.equal(
      (await client.domainState(dom)).state,
      DomainState.Running,
      "a memory snapshot resumes running",
    );

    await client.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
    await waitForEvent(DomainEventType.Stopped, 0 /* shutdown */, 60_000);
    assert.ok(consoleText(consoleLog).includes(POWEROFF), "the guest itself powered off");
    assert.equal((await client.domainState(dom)).state, DomainState.Shutoff);

    await client.deleteSnapshot(snap);
    await client.undefineDomain(dom, DomainUndefineFlags.SnapshotsMetadata);
    await waitForEvent(DomainEventType.Undefined);
    await client.deleteVolume(disk);
    await client.deleteVolume(extra);
  });
});
