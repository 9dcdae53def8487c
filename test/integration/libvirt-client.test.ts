// The libvirt RPC client against a real libvirtd, using its test driver (an in-memory
// hypervisor per connection): every call the driver supports, events, concurrency, errors.
import assert from "node:assert/strict";
import { once } from "node:events";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  DomainDiskError,
  DomainEventType,
  DomainState,
  ErrorCode,
  LibvirtClient,
  LibvirtError,
  type LifecycleEvent,
  StoragePoolState,
  uuidToString,
} from "../../src/hypervisor/libvirt/index.ts";
import { DEFAULT_SOCKET } from "../../src/hypervisor/libvirt/uri.ts";
import { SocketProxy } from "../support/socket-proxy.ts";

const DOMAIN_XML = (name: string, uuid = "") => `<domain type='test'>
  <name>${name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ""}
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>`;

let client: LibvirtClient;

before(async () => {
  client = await LibvirtClient.connect({ uri: "test+unix:///default" });
});

after(async () => {
  await client.close();
});

/** Collects lifecycle events until one matches. */
function nextEvent(
  c: LibvirtClient,
  match: (e: LifecycleEvent) => boolean,
  timeoutMs = 5000,
): Promise<LifecycleEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off("lifecycle", onEvent);
      reject(new Error("no matching lifecycle event"));
    }, timeoutMs);
    const onEvent = (e: LifecycleEvent) => {
      if (!match(e)) return;
      clearTimeout(timer);
      c.off("lifecycle", onEvent);
      resolve(e);
    };
    c.on("lifecycle", onEvent);
  });
}

describe("libvirt client: host", () => {
  it("reports hostname, versions, URI, node info and capabilities", async () => {
    assert.ok((await client.hostname()).length > 0);
    assert.match(await client.libVersion(), /^\d+\.\d+\.\d+$/);
    assert.match(await client.version(), /^\d+\.\d+\.\d+$/);
    assert.equal(await client.uri(), "test:///default");
    const info = await client.nodeInfo();
    assert.ok(info.cpus > 0 && info.memoryKiB > 0 && info.model.length > 0);
    assert.match(await client.capabilities(), /<capabilities>/);
  });
});

describe("libvirt client: domains", () => {
  it("defines, starts, pauses, resumes, stops and undefines a domain, with lifecycle events", async () => {
    await client.enableDomainEvents();
    const defined = nextEvent(client, (e) => e.domain.name === "t1" && e.event === DomainEventType.Defined);
    const dom = await client.defineDomain(DOMAIN_XML("t1"));
    assert.equal(dom.name, "t1");
    await defined;

    const started = nextEvent(client, (e) => e.domain.name === "t1" && e.event === DomainEventType.Started);
    const running = await client.startDomain(dom);
    assert.ok(running.id > 0, "a running domain has an id");
    await started;
    assert.equal((await client.domainState(dom)).state, DomainState.Running);

    await client.suspendDomain(dom);
    assert.equal((await client.domainState(dom)).state, DomainState.Paused);
    await client.resumeDomain(dom);
    assert.equal((await client.domainInfo(dom)).state, DomainState.Running);

    await client.setDomainAutostart(dom, true);
    assert.equal(await client.domainAutostart(dom), true);
    await client.rebootDomain(dom);
    await client.resetDomain(dom);

    const stopped = nextEvent(client, (e) => e.domain.name === "t1" && e.event === DomainEventType.Stopped);
    await client.shutdownDomain(dom);
    await stopped;
    assert.equal((await client.domainState(dom)).state, DomainState.Shutoff);

    await client.startDomain(dom);
    await client.destroyDomain(dom);
    assert.equal((await client.domainState(dom)).state, DomainState.Shutoff);
    await client.undefineDomain(dom);
    await assert.rejects(client.lookupDomainByName("t1"), (e: LibvirtError) => e.isNotFound);
  });

  it("reads a domain's disk errors (the test driver reports unspecified, no space, … by disk order)", async () => {
    const disk = (dev: string) =>
      `<disk type='file' device='disk'><source file='/nonexistent/${dev}.img'/><target dev='${dev}' bus='virtio'/></disk>`;
    const dom = await client.defineDomain(
      DOMAIN_XML("disk-errors").replace(
        "</domain>",
        `<devices>${disk("vda")}${disk("vdb")}</devices></domain>`,
      ),
    );
    const running = await client.startDomain(dom);
    assert.deepEqual(await client.domainDiskErrors(running), [
      { disk: "vda", error: DomainDiskError.Unspecified },
      { disk: "vdb", error: DomainDiskError.NoSpace },
    ]);
    await client.destroyDomain(running);
    await client.undefineDomain(dom);
  });

  it("looks domains up by name and UUID, lists them, and returns their XML", async () => {
    const uuid = "0b9d3c1e-8f21-4d3a-9a51-3c1d2e4f5a6b";
    const dom = await client.defineDomain(DOMAIN_XML("t2", uuid));
    assert.equal(uuidToString(dom.uuid), uuid);
    assert.equal((await client.lookupDomainByUuid(uuid)).name, "t2");
    assert.ok((await client.listAllDomains()).some((d) => d.name === "t2"));
    assert.match(await client.domainXml(dom), /<name>t2<\/name>/);
    await client.undefineDomain(dom);
  });

  it("escaped XML text reaches libvirt intact", async () => {
    const dom = await client.defineDomain(
      DOMAIN_XML("t3").replace("<vcpu>", "<description>a &lt;b&gt; &amp; &quot;c&quot;</description><vcpu>"),
    );
    assert.match(
      await client.domainXml(dom),
      /<description>a &lt;b&gt; &amp; (&quot;|")c(&quot;|")<\/description>/,
    );
    await client.undefineDomain(dom);
  });

  it("raises typed errors with libvirt's code and message", async () => {
    const err = await client.lookupDomainByName("no-such-domain").catch((e: unknown) => e);
    assert.ok(err instanceof LibvirtError);
    assert.equal(err.code, ErrorCode.NoDomain);
    assert.match(err.message, /Domain not found/);
    assert.equal(err.procedure, "domain-lookup-by-name");
    await assert.rejects(client.defineDomain("<domain"), LibvirtError);
  });

  it("keeps many calls in flight on one connection and matches every reply", async () => {
    const names = Array.from({ length: 32 }, (_, i) => `par-${i}`);
    await Promise.all(names.map((n) => client.defineDomain(DOMAIN_XML(n))));
    const looked = await Promise.all(names.map((n) => client.lookupDomainByName(n)));
    assert.deepEqual(
      looked.map((d) => d.name),
      names,
    );
    const xmls = await Promise.all(looked.map((d) => client.domainXml(d)));
    for (const [i, xml] of xmls.entries()) assert.match(xml, new RegExp(`<name>${names[i]}</name>`));
    await Promise.all(looked.map((d) => client.undefineDomain(d)));
  });

  it("returns typed statistics for all domains", async () => {
    const records = await client.allDomainStats(0x1 | 0x2);
    const test = records.find((r) => r.domain.name === "test");
    assert.ok(test, "the test driver's own domain is listed");
    assert.equal(test.stats["state.state"], DomainState.Running);
  });
});

describe("libvirt client: snapshots", () => {
  it("creates, lists, looks up, reverts to and deletes snapshots", async () => {
    const dom = await client.defineDomain(DOMAIN_XML("snap1"));
    await client.startDomain(dom);
    const s1 = await client.createSnapshot(
      dom,
      "<domainsnapshot><name>one</name><description>d</description></domainsnapshot>",
    );
    assert.equal(s1.name, "one");
    await client.createSnapshot(dom, "<domainsnapshot><name>two</name></domainsnapshot>");
    assert.deepEqual((await client.listSnapshots(dom)).map((s) => s.name).sort(), ["one", "two"]);
    assert.equal((await client.currentSnapshot(dom)).name, "two");
    assert.match(
      await client.snapshotXml(await client.lookupSnapshot(dom, "one")),
      /<description>d<\/description>/,
    );
    await client.revertToSnapshot(s1);
    assert.equal((await client.currentSnapshot(dom)).name, "one");
    await client.deleteSnapshot(s1);
    await assert.rejects(
      client.lookupSnapshot(dom, "one"),
      (e: LibvirtError) => e.code === ErrorCode.NoDomainSnapshot,
    );
    await client.destroyDomain(dom);
    await client.undefineDomain(dom, 2 /* snapshots metadata */);
  });
});

describe("libvirt client: storage", () => {
  // The test driver has no volume resize or wipe; the qemu:///system tests cover those.
  it("defines and starts a pool, and creates, clones, looks up and deletes volumes", async () => {
    const pool = await client.defineStoragePool(
      "<pool type='dir'><name>p1</name><target><path>/p1</path></target></pool>",
    );
    await client.startStoragePool(pool);
    await client.setStoragePoolAutostart(pool, true);
    assert.equal((await client.storagePoolInfo(pool)).state, StoragePoolState.Running);
    assert.match(await client.storagePoolXml(pool), /<name>p1<\/name>/);
    assert.ok((await client.listStoragePools()).some((p) => p.name === "p1"));

    const vol = await client.createVolume(
      pool,
      "<volume><name>v1</name><capacity unit='MiB'>10</capacity><target><format type='qcow2'/></target></volume>",
    );
    assert.equal((await client.volumeInfo(vol)).capacity, 10 * 2 ** 20);
    assert.equal(await client.volumePath(vol), "/p1/v1");
    const clone = await client.cloneVolume(
      pool,
      "<volume><name>v2</name><capacity>0</capacity></volume>",
      vol,
    );
    assert.equal((await client.lookupVolume(pool, "v2")).name, clone.name);
    assert.match(await client.volumeXml(vol), /<name>v1<\/name>/);
    await client.refreshStoragePool(pool);
    assert.deepEqual((await client.listVolumes(pool)).map((v) => v.name).sort(), ["v1", "v2"]);
    await client.deleteVolume(clone);
    await client.deleteVolume(vol);
    await assert.rejects(
      client.lookupVolume(pool, "v1"),
      (e: LibvirtError) => e.code === ErrorCode.NoStorageVol,
    );
    await client.destroyStoragePool(pool);
    await client.undefineStoragePool(pool);
  });
});

describe("libvirt client: networks", () => {
  it("reads the network and adds and removes DHCP host entries", async () => {
    const nets = await client.listNetworks();
    assert.ok(nets.some((n) => n.name === "default"));
    const net = await client.lookupNetwork("default");
    const host = "<host mac='52:54:00:aa:bb:cc' name='vm1' ip='192.168.122.77'/>";
    await client.addDhcpHost(net, host);
    assert.match(await client.networkXml(net), /192\.168\.122\.77/);
    await client.removeDhcpHost(net, host);
    assert.doesNotMatch(await client.networkXml(net), /192\.168\.122\.77/);
  });
});

describe("libvirt client: TCP transport", () => {
  it("speaks the protocol over TCP (qemu+tcp style URI) to the daemon", async () => {
    // A loopback TCP listener in front of the daemon's socket: the bytes are libvirt's own.
    const server = createServer((sock) => {
      const upstream = connect(DEFAULT_SOCKET);
      sock.pipe(upstream).pipe(sock);
      sock.on("error", () => upstream.destroy());
      upstream.on("error", () => sock.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const c = await LibvirtClient.connect({ uri: `test+tcp://127.0.0.1:${port}/default` });
    try {
      assert.equal(await c.uri(), "test:///default");
      assert.equal((await c.lookupDomainByName("test")).name, "test");
    } finally {
      await c.close();
      server.close();
    }
  });
});

describe("libvirt client: connection loss", () => {
  it("reconnects with backoff after the daemon goes away and registers its callbacks again", async () => {
    const proxy = new SocketProxy(join(tmpdir(), `lvo-proxy-${process.pid}.sock`), DEFAULT_SOCKET);
    await proxy.listen();
    const c = await LibvirtClient.connect({
      uri: `test+unix:///default?socket=${proxy.path}`,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    try {
      await c.enableDomainEvents();
      const disconnected = once(c, "disconnected");
      await proxy.cut();
      const [error] = (await disconnected) as [Error];
      assert.match(error.message, /closed/);
      assert.equal(c.connected, false);
      await assert.rejects(c.hostname(), /closed/);

      await proxy.listen();
      await c.waitConnected();
      // The test driver's state is per connection; events must flow on the new one.
      const defined = nextEvent(c, (e) => e.domain.name === "after" && e.event === DomainEventType.Defined);
      await c.defineDomain(DOMAIN_XML("after"));
      await defined;
    } finally {
      await c.close();
      await proxy.cut();
    }
  });
});
