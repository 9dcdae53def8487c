// Pure disk logic: which devices a VM's domain gets, hot-plug diffs, volume names and XML,
// image sniffing, and where disks (and the VMs using them) are placed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import {
  diskHolders,
  diskNodeDecision,
  nodeOfVmDisks,
  placeFloatingDisk,
} from "../../src/controllers/cluster/disk-placement.ts";
import { agentDiskStatus } from "../../src/controllers/node/disk-status.ts";
import { diskCountersOf, diskStatisticsBetween } from "../../src/controllers/node/statistics.ts";
import { diskChanges, diskTargets, resolveDisks } from "../../src/hypervisor/domain/disks.ts";
import { type DiskDevice, type DomainDefinition, specHash } from "../../src/hypervisor/domain/xml.ts";
import {
  dirPoolXml,
  parsePoolXml,
  snapshotVolumeNameOf,
  sniffImage,
  UnsafeNameError,
  uncopyableReason,
  volumeNameOf,
  volumeXml,
} from "../../src/hypervisor/storage/volume.ts";

function vm(
  name: string,
  disks: VirtualMachine["spec"]["disks"],
  status?: VirtualMachine["status"],
  created = 0,
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name, namespace: "ns", creationTimestamp: new Date(created * 1000).toISOString() },
    spec: { memory: "1Gi", disks },
    ...(status ? { status } : {}),
  };
}

/** In these tests the volume is where status says (the agent asks libvirt instead). */
const statusPath = (disks: Record<string, VMDisk | undefined>) => (n: string) => disks[n]?.status?.path;

function disk(name: string, spec: Partial<VMDisk["spec"]> = {}, status: VMDisk["status"] = {}): VMDisk {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "ns" },
    spec: { provisionedSize: "1Gi", ...spec },
    status,
  };
}

const ready = (name: string, holders: string[], extra: VMDisk["status"] = {}) => ({
  phase: "Ready" as const,
  nodeName: "n1",
  path: `/pool/ns_${name}.qcow2`,
  format: "qcow2",
  attachedTo: holders,
  ...extra,
});

describe("a VM's disks on its domain", () => {
  it("targets are stable per bus and keep sdz/hdc for the CD-ROM", () => {
    const many = Array.from({ length: 27 }, (_, i) => ({ name: `s${i}`, bus: "sata" as const }));
    const t = diskTargets([{ name: "a" }, { name: "b", bus: "virtio" }, { name: "c", bus: "ide" }, ...many]);
    assert.equal(t.a, "vda");
    assert.equal(t.b, "vdb");
    assert.equal(t.c, "hda");
    assert.equal(t.s0, "sda");
    assert.equal(t.s24, "sdy");
    assert.equal(t.s25, "sdaa", "sdz is skipped");
    const ide = diskTargets(["a", "b", "c"].map((name) => ({ name, bus: "ide" as const })));
    assert.deepEqual(Object.values(ide), ["hda", "hdb", "hdd"]);
  });

  it("a ready disk becomes a device; read-only, shareable and error policy come from both sides", () => {
    const v = vm("web", [
      { name: "root", diskRef: { name: "r" }, bootOrder: 1 },
      { name: "data", diskRef: { name: "d" }, bus: "scsi", readOnly: true },
      { name: "off", diskRef: { name: "x" }, active: false },
    ]);
    const disks: Record<string, VMDisk> = {
      r: disk("r", { propagateErrors: true }, ready("r", ["web"])),
      // The format is the spec's: a status claiming another never reaches QEMU.
      d: disk("d", { shareable: true, format: "raw" }, ready("d", ["other", "web"], { format: "qcow2" })),
    };
    const r = resolveDisks(v, (n) => disks[n], "n1", {}, statusPath(disks));
    assert.deepEqual(r.waiting, []);
    assert.deepEqual(r.blocked, []);
    assert.deepEqual(r.devices, [
      {
        name: "root",
        path: "/pool/ns_r.qcow2",
        format: "qcow2",
        bus: "virtio",
        target: "vda",
        bootOrder: 1,
        propagateErrors: true,
      },
      {
        name: "data",
        path: "/pool/ns_d.qcow2",
        format: "raw",
        bus: "scsi",
        target: "sda",
        readOnly: true,
        shareable: true,
      },
    ]);
  });

  it("waits for missing, unready and unrecorded disks; refuses another node's and another VM's", () => {
    const v = vm(
      "web",
      ["a", "b", "c", "d", "e"].map((n) => ({ name: n, diskRef: { name: n } })),
    );
    const disks: Record<string, VMDisk> = {
      b: disk("b", {}, { phase: "Creating" }),
      c: disk("c", {}, ready("c", [])),
      d: disk("d", {}, ready("d", ["web"], { nodeName: "n2" })),
      e: disk("e", {}, ready("e", ["db", "web"])),
    };
    const r = resolveDisks(v, (n) => disks[n], "n1", {}, statusPath(disks));
    assert.deepEqual(r.devices, []);
    assert.deepEqual(r.waiting, [
      "VMDisk a does not exist",
      "VMDisk b is Creating",
      "VMDisk c has not recorded the attachment yet",
    ]);
    assert.deepEqual(r.blocked, [
      "VMDisk d lives on node n2, the VM runs on n1",
      "VMDisk e is attached to VirtualMachine db and is not shareable (spec.shareable)",
    ]);
    // A shared pool is seen from every node.
    disks.d = disk("d", {}, ready("d", ["web"], { nodeName: "n2", storagePoolShared: true }));
    assert.equal(resolveDisks(v, (n) => disks[n], "n1", {}, statusPath(disks)).devices.length, 1);
  });

  it("hot-plug diff: attach new, detach removed, replace changed, leave SATA/IDE to a redefinition", () => {
    const dev = (name: string, target: string, extra: Partial<DiskDevice> = {}): DiskDevice => ({
      name,
      path: `/p/${name}`,
      format: "qcow2",
      bus: "virtio",
      target,
      ...extra,
    });
    const seen = (d: DiskDevice) => ({
      name: d.name,
      path: d.path,
      target: d.target,
      bus: d.bus,
      readOnly: Boolean(d.readOnly),
    });
    const current = {
      keep: seen(dev("keep", "vda")),
      gone: seen(dev("gone", "vdb")),
      ro: seen(dev("ro", "vdc")),
      sata: seen(dev("sata", "sda", { bus: "sata" })),
    };
    const wanted = [
      dev("keep", "vda", { bootOrder: 2 }),
      dev("ro", "vdc", { readOnly: true }),
      dev("new", "vdd"),
      dev("sata2", "sdb", { bus: "sata" }),
    ];
    const { attach, detach } = diskChanges(wanted, current);
    assert.deepEqual(
      detach.map((d) => d.name),
      ["gone", "ro"],
    );
    assert.deepEqual(
      attach.map((d) => d.name),
      ["ro", "new"],
    );
  });

  it("the spec hash ignores hot-pluggable disks except their boot order", () => {
    const base: DomainDefinition = {
      name: "ns_web",
      uuid: "u",
      owner: { cluster: "c", namespace: "ns", name: "web", uid: "1" },
      hypervisor: "qemu",
      memoryBytes: 1 << 30,
      cpu: { sockets: 1, cores: 1, threads: 1 },
      boot: {},
      disks: [],
      nics: [],
    };
    const virtio: DiskDevice = { name: "d", path: "/p/d", format: "qcow2", bus: "virtio", target: "vda" };
    const h = specHash(base);
    assert.equal(
      specHash({ ...base, disks: [virtio] }),
      specHash({ ...base, disks: [{ ...virtio, path: "/p/other" }] }),
    );
    assert.notEqual(
      specHash({ ...base, disks: [virtio] }),
      specHash({ ...base, disks: [{ ...virtio, bootOrder: 1 }] }),
    );
    assert.notEqual(h, specHash({ ...base, disks: [{ ...virtio, bus: "sata", target: "sda" }] }));
  });
});

describe("volumes and pools", () => {
  it("volume names stay inside the pool", () => {
    assert.equal(volumeNameOf("ns", "data", "qcow2"), "ns_data.qcow2");
    assert.equal(volumeNameOf("ns", "a.b", "raw"), "ns_a.b.img");
    // A snapshot's copy carries "_", which no disk's own volume name can: never the name of a disk.
    assert.equal(snapshotVolumeNameOf("ns", "a.b", "raw", 1700000000), "ns_a.b_snap-1700000000.img");
    assert.throws(() => snapshotVolumeNameOf("ns", "../x", "raw", 1), UnsafeNameError);
    // The longest namespace and disk names still give a file name the node takes, unique by hash.
    const ns63 = "n".repeat(63);
    const long = snapshotVolumeNameOf(ns63, "d".repeat(176), "qcow2", 1795682291);
    assert.ok(long.length <= 255 && long.endsWith("_snap-1795682291.qcow2"), long);
    assert.notEqual(long, snapshotVolumeNameOf(ns63, `${"d".repeat(175)}e`, "qcow2", 1795682291));
    for (const bad of ["../etc", "a/b", "a\0b", "a..b", "", "UPPER", ".hidden"])
      assert.throws(() => volumeNameOf("ns", bad, "qcow2"), UnsafeNameError, bad);
    assert.throws(() => dirPoolXml("p", "relative/path"), UnsafeNameError);
    assert.throws(() => dirPoolXml("p", "/var/../etc"), UnsafeNameError);
  });

  it("volume and pool XML escape what they carry", () => {
    const xml = volumeXml({
      name: "ns_a.qcow2",
      format: "qcow2",
      capacityBytes: 10 * 2 ** 30,
      allocationBytes: 0,
    });
    assert.match(xml, /<capacity unit="bytes">10737418240<\/capacity>/);
    assert.match(xml, /<allocation unit="bytes">0<\/allocation>/);
    assert.match(xml, /<format type="qcow2"><\/format>\s*<compat>1.1<\/compat>/, "qcow2 v3");
    assert.doesNotMatch(
      volumeXml({ name: "r.img", format: "raw", capacityBytes: 1, allocationBytes: 0 }),
      /compat/,
    );
    assert.match(
      dirPoolXml("p<&>", "/srv/a&b"),
      /<name>p&lt;&amp;&gt;<\/name>[\s\S]*<path>\/srv\/a&amp;b<\/path>/,
    );
    assert.deepEqual(
      parsePoolXml("<pool type='netfs'><name>n</name><target><path>/mnt</path></target></pool>"),
      {
        type: "netfs",
        path: "/mnt",
        shared: true,
      },
    );
    assert.equal(parsePoolXml("<pool type='dir'><name>n</name></pool>").shared, false);
  });

  it("sniffs qcow2 (size, backing file, external data) and raw", () => {
    const qcow2 = (version: number, backing: bigint, size: bigint, incompatible = 0n) => {
      const b = new Uint8Array(512);
      const v = new DataView(b.buffer);
      v.setUint32(0, 0x514649fb);
      v.setUint32(4, version);
      v.setBigUint64(8, backing);
      v.setBigUint64(24, size);
      v.setBigUint64(72, incompatible);
      return b;
    };
    assert.deepEqual(sniffImage(qcow2(3, 0n, 1n << 30n)), { format: "qcow2", virtualSize: 2 ** 30 });
    assert.match(sniffImage(qcow2(3, 512n, 1n << 30n)).refused ?? "", /backing file/);
    assert.match(sniffImage(qcow2(3, 0n, 1n << 30n, 4n)).refused ?? "", /external file/);
    assert.equal(sniffImage(qcow2(2, 0n, 1n << 30n, 4n)).refused, undefined, "v2 has no feature bits");
    assert.deepEqual(sniffImage(new Uint8Array(512), 4096), { format: "raw", virtualSize: 4096 });
    assert.deepEqual(sniffImage(new Uint8Array(3), 3), { format: "raw", virtualSize: 3 });
  });
});

describe("disk placement", () => {
  it("holders: attached VMs first, then the oldest", () => {
    const d = disk("d", {}, { path: "/p/d" });
    const users = [
      vm("young", [{ name: "x", diskRef: { name: "d" } }], undefined, 3),
      vm("old", [{ name: "x", diskRef: { name: "d" } }], undefined, 1),
      vm("attached", [], { disks: [{ name: "x", path: "/p/d" }] }, 5),
      vm("other", [{ name: "x", diskRef: { name: "e" } }], undefined, 0),
    ];
    assert.deepEqual(diskHolders(d, users), ["attached", "old", "young"]);
  });

  it("a disk follows spec.nodeName, its clone source, a placed user, or floats", () => {
    const user = (node?: string) =>
      vm("web", [{ name: "x", diskRef: { name: "d" } }], node ? { nodeName: node } : undefined);
    assert.deepEqual(diskNodeDecision(disk("d", { nodeName: "n9" }), [user("n1")], undefined), {
      node: "n9",
      why: "spec.nodeName",
    });
    const clone = disk("d", { source: { disk: { name: "src" } } });
    assert.match((diskNodeDecision(clone, [], undefined) as { wait: string }).wait, /src .*does not exist/);
    assert.equal(
      (diskNodeDecision(clone, [], disk("src", {}, { nodeName: "n3" })) as { node: string }).node,
      "n3",
    );
    assert.equal(
      (diskNodeDecision(disk("d"), [user(), user("n2")], undefined) as { node: string }).node,
      "n2",
    );
    assert.match(
      (diskNodeDecision(disk("d"), [user()], undefined) as { wait: string }).wait,
      /not placed yet/,
    );
    assert.deepEqual(diskNodeDecision(disk("d"), [], undefined), { floating: true });
  });

  it("a floating disk goes where its pool has most room; preallocated disks need the space", () => {
    const pool = (gib: number) => ({
      default: { type: "dir", shared: false, capacityBytes: 100 * 2 ** 30, availableBytes: gib * 2 ** 30 },
    });
    const nodes = [
      { name: "a", usable: true, storagePools: pool(5), defaultStoragePool: "default" },
      { name: "b", usable: true, storagePools: pool(20), defaultStoragePool: "default" },
      { name: "c", usable: false, storagePools: pool(90), defaultStoragePool: "default" },
    ];
    assert.deepEqual(placeFloatingDisk(disk("d"), nodes), { node: "b" });
    const big = disk("d", { provisionedSize: "50Gi", sparse: false });
    assert.match(
      (placeFloatingDisk(big, nodes) as { error: string }).error,
      /a: pool default on node a has 5Gi free; the preallocated disk needs 50Gi.*c: no node agent/,
    );
    assert.match(
      (placeFloatingDisk(disk("d", { storagePool: "fast" }), nodes) as { error: string }).error,
      /no active storage pool fast/,
    );
  });

  it("a VM goes to the node of its node-local disks; spread disks are an error", () => {
    const v = vm("web", [
      { name: "a", diskRef: { name: "a" } },
      { name: "b", diskRef: { name: "b" } },
      { name: "s", diskRef: { name: "s" } },
    ]);
    const disks: Record<string, VMDisk> = {
      a: disk("a", {}, { nodeName: "n1" }),
      s: disk("s", {}, { nodeName: "n7", storagePoolShared: true }),
    };
    assert.deepEqual(
      nodeOfVmDisks(
        v,
        (n) => disks[n],
        () => undefined,
      ),
      { node: "n1", disk: "a" },
    );
    assert.deepEqual(
      nodeOfVmDisks(
        v,
        (n) => disks[n],
        (n) => (n === "b" ? "n1" : undefined),
      ),
      { node: "n1", disk: "a" },
    );
    disks.b = disk("b", {}, {});
    const spread = nodeOfVmDisks(
      v,
      (n) => disks[n],
      (n) => (n === "b" ? "n2" : undefined),
    );
    assert.match((spread as { error: string }).error, /a \(node n1\) and b \(node n2\)/);
  });
});

describe("disk statistics", () => {
  it("per-disk counters by path, and rates between samples", () => {
    const stats = {
      "block.count": 2,
      "block.0.path": "/p/a",
      "block.0.rd.bytes": 1000,
      "block.0.wr.bytes": 4000,
      "block.0.rd.reqs": 10,
      "block.0.wr.reqs": 40,
      "block.1.name": "sdz", // an empty CD-ROM has no path
    };
    const [a] = diskCountersOf(stats);
    assert.deepEqual(diskCountersOf(stats).length, 1);
    const later = { ...a!, readBytes: 3000, writeBytes: 8000, readOps: 30, writeOps: 80 };
    assert.deepEqual(diskStatisticsBetween({ at: 0, c: a! }, { at: 2000, c: later }), {
      readBytesPerSecond: 1000,
      writeBytesPerSecond: 2000,
      readOpsPerSecond: 10,
      writeOpsPerSecond: 20,
      readBytes: 3000,
      writeBytes: 8000,
    });
  });
});

describe("disks a domain already has", () => {
  const seen = (name: string, target: string, path = `/pool/ns_${name}.qcow2`) => ({
    name,
    path,
    target,
    bus: "virtio",
    readOnly: false,
  });

  it("keep their targets when entries before them go, and new disks take free targets", () => {
    const current = { b: seen("b", "vdb"), c: seen("c", "vdc") };
    assert.deepEqual(diskTargets([{ name: "b" }, { name: "c" }, { name: "new" }], current), {
      b: "vdb",
      c: "vdc",
      new: "vda",
    });
    // A disk moved to another bus gets a target of that bus.
    assert.deepEqual(diskTargets([{ name: "b", bus: "sata" }], current), { b: "sda" });
  });

  it("stay attached while their VMDisk is Illegal, Pending or not yet recorded", () => {
    const v = vm("web", [
      { name: "a", diskRef: { name: "a" } },
      { name: "b", diskRef: { name: "b" } },
    ]);
    const disks: Record<string, VMDisk> = {
      a: disk("a", {}, { ...ready("a", []), phase: "Illegal" }),
      b: disk("b", {}, { phase: "Pending", nodeName: "n1", attachedTo: [] }),
    };
    const current = { a: seen("a", "vdc"), b: seen("b", "vdd", "/pool/ns_b.qcow2") };
    const r = resolveDisks(v, (n) => disks[n], "n1", current, statusPath(disks));
    assert.deepEqual(r.waiting, []);
    assert.deepEqual(
      r.devices.map((d) => [d.name, d.target, d.path]),
      [
        ["a", "vdc", "/pool/ns_a.qcow2"],
        ["b", "vdd", "/pool/ns_b.qcow2"],
      ],
    );
    // Without the domain having them, the same disks wait.
    assert.equal(resolveDisks(v, (n) => disks[n], "n1", {}, statusPath(disks)).waiting.length, 2);
    // Removing an entry re-plugs nothing: the diff against the domain is empty for the other.
    const only = resolveDisks(
      vm("web", [{ name: "b", diskRef: { name: "b" } }]),
      (n) => disks[n],
      "n1",
      current,
      statusPath(disks),
    );
    const { attach, detach } = diskChanges(only.devices, current);
    assert.deepEqual([attach.map((d) => d.name), detach.map((d) => d.name)], [[], ["a"]]);
  });
});

describe("a disk being deleted", () => {
  it("is held only by VMs whose domain still has it", () => {
    const d = disk("d", {}, { path: "/p/d" });
    d.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    const users = [
      vm("asks", [{ name: "x", diskRef: { name: "d" } }]),
      vm("has", [{ name: "x", diskRef: { name: "d" } }], { disks: [{ name: "x", path: "/p/d" }] }),
    ];
    assert.deepEqual(diskHolders(d, users), ["has"]);
  });
});

describe("volumes libvirt may copy", () => {
  const xml = (format: string, backing = "") =>
    `<volume><name>v</name><target><path>/p/v</path><format type='${format}'/></target>${backing}</volume>`;
  it("only when libvirt reads them in their recorded format, without a backing file", () => {
    assert.equal(uncopyableReason(xml("qcow2"), "qcow2"), undefined);
    assert.match(uncopyableReason(xml("qcow2"), "raw") ?? "", /reads the volume as qcow2, not raw/);
    // An ISO image is raw to QEMU, whatever name libvirt's content probe gives it.
    assert.equal(uncopyableReason(xml("iso"), "raw"), undefined);
    assert.match(uncopyableReason(xml("iso"), "qcow2") ?? "", /reads the volume as iso, not qcow2/);
    const backed = xml("qcow2", "<backingStore><path>/etc/shadow</path><format type='raw'/></backingStore>");
    assert.match(uncopyableReason(backed, "qcow2") ?? "", /backing file \(\/etc\/shadow\)/);
  });
});

describe("the agent's VMDisk status", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  it("Ready with sizes, then a failure keeps path, sizes and the transition time of what did not change", () => {
    const d = disk("d");
    const ready = agentDiskStatus(
      d,
      { phase: "Ready", complete: true },
      {
        path: "/p/d",
        pool: "pool",
        format: "qcow2",
        info: { capacity: 100, allocation: 7 },
      },
      now,
    );
    assert.equal(ready.phase, "Ready");
    assert.equal(ready.provisionedSize, 100);
    assert.equal(ready.actualSize, 7);
    const cond = (s: Record<string, unknown>) =>
      (
        s.conditions as Array<{ type: string; status: string; message: string; lastTransitionTime: string }>
      )[0]!;
    assert.equal(cond(ready).status, "True");
    d.status = ready as VMDisk["status"];
    const later = new Date("2026-01-01T01:00:00Z");
    const failed = agentDiskStatus(
      d,
      { phase: "Pending", complete: false },
      {
        failure: { reason: "PoolMissing", message: "storage pool pool does not exist on node n1" },
      },
      later,
    );
    assert.equal(failed.path, "/p/d", "a VM may still use it: the path stays");
    assert.equal(failed.provisionedSize, 100);
    assert.equal(cond(failed).status, "False");
    assert.match(cond(failed).message, /does not exist/);
    assert.equal(cond(failed).lastTransitionTime, later.toISOString());
    const pending = agentDiskStatus(
      disk("e"),
      { complete: false },
      { waiting: "waiting for VMDisk src" },
      now,
    );
    assert.equal(pending.phase, "Pending");
    assert.equal(cond(pending).message, "waiting for VMDisk src");
    assert.equal(pending.path, undefined);
  });
});
