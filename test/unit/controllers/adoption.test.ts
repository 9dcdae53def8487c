// The pure decisions of adoption (issue 14, "No data lost to missing status"): whose a volume or a
// domain found on the node is, what an agent reports of its orphans, and where the controller
// places an object that comes back without status.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Node } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import {
  orphanPlacementOfDisk,
  orphanPlacementOfVm,
  withOrphanIdentity,
} from "../../../src/controllers/cluster/orphan-placement.ts";
import { VmIndex } from "../../../src/controllers/cluster/vm-index.ts";
import { InterfaceAssigner } from "../../../src/controllers/cluster/vm-interfaces.ts";
import { dhcpHostName } from "../../../src/controllers/node/dhcp.ts";
import {
  adoptedProgress,
  DOMAIN_NOT_ADOPTED,
  type DomainSeenForClaim,
  decideDomainClaim,
} from "../../../src/controllers/node/domain-claim.ts";
import { orphanChanges, orphanInterfaces } from "../../../src/controllers/node/orphans.ts";
import { progressFromStatus } from "../../../src/controllers/node/vm-progress.ts";
import {
  decideVolumeClaim,
  diskOfVolumeName,
  markNameOf,
  volumeOfOwnerMark,
} from "../../../src/controllers/node/volume-claim.ts";
import { CAPACITY_ANNOTATION } from "../../../src/controllers/node-facts.ts";
import {
  ORPHANS_ANNOTATION,
  ORPHANS_LISTED_MAX,
  type OrphanReport,
  orphanAnnotation,
  parseOrphanAnnotation,
} from "../../../src/controllers/orphan-facts.ts";
import { placementOf } from "../../../src/controllers/vm-placement.ts";
import { parseNics } from "../../../src/hypervisor/domain/xml.ts";

const CLUSTER = "0b7d9a4e-1f2c-4c3d-9e8f-0123456789ab";
const UUID = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

describe("decideVolumeClaim: whose the volume of a disk's name is", () => {
  const seen = { exists: true, owner: false, making: false, known: false };
  it("no volume: made afresh", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, exists: false }), { create: true });
  });
  it("complete and this cluster's, the disk without status (restored, re-applied): adopted, never redone", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, owner: true, path: "/p/v" }), { adopt: true });
    // Even with a making mark left by a crash between the two marks.
    assert.deepEqual(decideVolumeClaim({ ...seen, owner: true, making: true, path: "/p/v" }), {
      adopt: true,
    });
  });
  it("complete, and the disk reported it already: simply its own", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, owner: true, path: "/p/v", statusPath: "/p/v" }), {
      own: true,
    });
    assert.deepEqual(decideVolumeClaim({ ...seen, owner: true, known: true }), { own: true });
  });
  it("a copy this cluster began and never finished: started over", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, making: true, path: "/p/v" }), { restart: true });
  });
  it("without marks but reported Ready by the disk itself (made before marks existed): marked, kept", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, path: "/p/v", statusPath: "/p/v" }), { mark: true });
  });
  it("without this cluster's marks (another cluster's, by hand): refused, neither used nor deleted", () => {
    assert.deepEqual(decideVolumeClaim({ ...seen, path: "/p/v" }), { refuse: true });
    // A status naming another path proves nothing about this volume.
    assert.deepEqual(decideVolumeClaim({ ...seen, path: "/p/v", statusPath: "/q/v" }), { refuse: true });
  });
});

describe("volume marks: names that carry the key", () => {
  it("name the volume and the cluster; an owner mark reads back to its disk", () => {
    const mark = markNameOf("ns-a_data.qcow2", CLUSTER, "owner");
    assert.equal(mark, `lvo-owner-${CLUSTER}.ns-a_data.qcow2`);
    assert.equal(volumeOfOwnerMark(mark, CLUSTER), "ns-a_data.qcow2");
    assert.deepEqual(diskOfVolumeName("ns-a_data.qcow2"), {
      namespace: "ns-a",
      name: "data",
      format: "qcow2",
    });
    assert.deepEqual(diskOfVolumeName("ns-a_data.img"), { namespace: "ns-a", name: "data", format: "raw" });
  });
  it("another cluster's mark, a making mark or a staging volume is not this cluster's owner mark", () => {
    assert.equal(volumeOfOwnerMark(markNameOf("a_b.qcow2", "other-cluster", "owner"), CLUSTER), undefined);
    assert.equal(volumeOfOwnerMark(markNameOf("a_b.qcow2", CLUSTER, "making"), CLUSTER), undefined);
    assert.equal(diskOfVolumeName("a_b.qcow2.import"), undefined);
    assert.equal(diskOfVolumeName("a_b_1700000000.qcow2"), undefined);
  });
  it("a cluster identity that is no file-name text is hashed; a name too long keeps within 255 bytes", () => {
    const odd = markNameOf("a_b.qcow2", "Prod Cluster/1", "owner");
    assert.match(odd, /^lvo-owner-[0-9a-f]{32}\.a_b\.qcow2$/);
    const long = markNameOf(`a_${"x".repeat(250)}.qcow2`, CLUSTER, "owner");
    assert.ok(long.length <= 255);
    const readBack = volumeOfOwnerMark(long, CLUSTER);
    assert.equal(
      readBack && diskOfVolumeName(readBack),
      undefined,
      "a shortened name is kept, never reported",
    );
  });
});

function vm(extra: {
  uid?: string;
  specUuid?: string;
  statusUuid?: string;
  annotations?: Record<string, string>;
}) {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      name: "web",
      namespace: "shop",
      uid: extra.uid ?? "new-uid",
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: { memory: "256Mi", ...(extra.specUuid ? { uuid: extra.specUuid } : {}) },
    status: extra.statusUuid ? { uuid: extra.statusUuid, nodeName: "n1" } : { nodeName: "n1" },
  } as VirtualMachine;
}
const domain = (d: Partial<DomainSeenForClaim> = {}): DomainSeenForClaim => ({
  name: "shop_web",
  uuid: UUID,
  recordedUid: "old-uid",
  recordedOwnerGone: true,
  ...d,
});

describe("decideDomainClaim: a VM and the domain of its name left on the node", () => {
  it("the VM's own domain", () => {
    assert.deepEqual(decideDomainClaim(vm({ uid: "old-uid" }), domain(), "n1"), { own: true });
  });
  it("the earlier object not confirmed gone (the cache lags): wait", () => {
    assert.deepEqual(
      decideDomainClaim(vm({ statusUuid: UUID }), domain({ recordedOwnerGone: false }), "n1"),
      {
        wait: true,
      },
    );
  });
  it("no UUID given yet by the controller: wait", () => {
    assert.deepEqual(decideDomainClaim(vm({}), domain(), "n1"), { wait: true });
  });
  it("same cluster, namespace, name and UUID (spec.uuid, or the one placement took from the orphan): adopted", () => {
    const byStatus = decideDomainClaim(vm({ statusUuid: UUID }), domain(), "n1");
    assert.ok("adopt" in byStatus);
    assert.match(byStatus.adopt, /took over domain shop_web on node n1 .*not restarted/);
    assert.ok(
      "adopt" in decideDomainClaim(vm({ specUuid: UUID.toUpperCase(), statusUuid: UUID }), domain(), "n1"),
    );
  });
  it("another UUID (spec.uuid, or one given before the domain was found): refused, never destroyed", () => {
    const other = "11111111-2222-4333-8444-555555555555";
    const bySpec = decideDomainClaim(vm({ specUuid: other, statusUuid: other }), domain(), "n1");
    assert.ok("refuse" in bySpec);
    assert.equal(bySpec.refuse.reason, DOMAIN_NOT_ADOPTED);
    assert.match(
      bySpec.refuse.message,
      new RegExp(`spec.uuid is ${other}.*left untouched.*spec.uuid: ${UUID}`),
    );
    const byStatus = decideDomainClaim(vm({ statusUuid: other }), domain(), "n1");
    assert.ok("refuse" in byStatus);
    assert.match(byStatus.refuse.message, /given UUID 11111111-.* before the domain was found/);
  });
  it("requests that came with the adopted VM are handled already: the running guest is not restarted", () => {
    const restored = vm({
      statusUuid: UUID,
      annotations: {
        "vm.libvirt-operator.io/restart-requested-at": "2026-01-01T00:00:00Z",
        "vm.libvirt-operator.io/stop-requested-at": "2026-01-02T00:00:00Z",
        "vm.libvirt-operator.io/fsfreeze-requested-at": "2026-01-03T00:00:00Z",
      },
    });
    const p = adoptedProgress(restored, progressFromStatus(restored));
    assert.equal(p.restartHandled, "2026-01-01T00:00:00Z");
    assert.equal(p.powerRequestHandled, "stop@2026-01-02T00:00:00Z");
    assert.deepEqual(p.guestFilesystems, { frozen: true, requestHandled: "freeze@2026-01-03T00:00:00Z" });
    const plain = adoptedProgress(vm({ statusUuid: UUID }), progressFromStatus(vm({})));
    assert.equal(plain.restartHandled, undefined);
    assert.equal(plain.powerRequestHandled, undefined);
  });
});

describe("the orphan report on a Node", () => {
  const report: OrphanReport = {
    domains: [
      { namespace: "b", name: "y", uuid: UUID, interfaces: [{ name: "default", mac: "52:54:00:00:00:01" }] },
    ],
    volumes: [
      { namespace: "b", name: "d", pool: "p" },
      { namespace: "a", name: "d", pool: "p", shared: true },
    ],
  };
  it("is the same text for the same set (no write when nothing changed), sorted, and reads back", () => {
    const text = orphanAnnotation(report);
    assert.equal(text, orphanAnnotation({ ...report, volumes: [...report.volumes].reverse() }));
    assert.deepEqual(parseOrphanAnnotation(text ?? undefined), {
      domains: report.domains,
      volumes: [report.volumes[1], report.volumes[0]],
    });
  });
  it("no orphans: the annotation goes (null)", () => {
    assert.equal(orphanAnnotation({ domains: [], volumes: [] }), null);
  });
  it("lists at most ORPHANS_LISTED_MAX per kind and counts the rest", () => {
    const many = Array.from({ length: ORPHANS_LISTED_MAX + 3 }, (_, i) => ({
      namespace: "n",
      name: `v${i}`,
      pool: "p",
    }));
    const parsed = JSON.parse(orphanAnnotation({ domains: [], volumes: many })!);
    assert.equal(parsed.volumes.length, ORPHANS_LISTED_MAX);
    assert.equal(parsed.unlisted, 3);
  });
  it("entries that do not read right are left out; garbage is no report", () => {
    assert.deepEqual(parseOrphanAnnotation("{"), { domains: [], volumes: [] });
    assert.deepEqual(
      parseOrphanAnnotation(
        JSON.stringify({ domains: [{ namespace: "a", name: "b" }], volumes: [{ name: 1 }] }),
      ),
      { domains: [], volumes: [] },
    );
  });
  it("says what appeared and what went", () => {
    const after: OrphanReport = {
      domains: [],
      volumes: [...report.volumes, { namespace: "c", name: "e", pool: "p" }],
    };
    assert.deepEqual(orphanChanges(report, after), {
      appeared: ["volume c/e (pool p)"],
      gone: ["domain b/y"],
    });
  });
  it("an orphan domain's NICs carry the addresses its DHCP reservations hold", () => {
    const xml = `<domain><devices>
      <interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='default'/><alias name='ua-net-default'/></interface>
      <interface type='network'><mac address='52:54:00:aa:bb:cd'/><source network='lab'/><alias name='ua-net-lab'/></interface>
      <interface type='bridge'><mac address='52:54:00:00:00:09'/></interface>
    </devices></domain>`;
    const nics = parseNics(xml);
    assert.deepEqual(nics, [
      { name: "default", mac: "52:54:00:aa:bb:cc", network: "default" },
      { name: "lab", mac: "52:54:00:aa:bb:cd", network: "lab" },
    ]);
    const hostsOf = (network: string) =>
      network === "default"
        ? [
            { mac: "52:54:00:aa:bb:cc", name: "web-shop-xxxxxxxxxxxxxxxxxxxx", ip: "10.0.0.9" },
            { mac: "52:54:00:aa:bb:cc", name: dhcpName("default"), ip: "10.0.0.5" },
            { name: dhcpName("default"), ip: "fd00::5" },
          ]
        : [];
    assert.deepEqual(orphanInterfaces("shop", "web", nics, hostsOf), [
      { name: "default", mac: "52:54:00:aa:bb:cc", network: "default", ipv4: "10.0.0.5", ipv6: "fd00::5" },
      { name: "lab", mac: "52:54:00:aa:bb:cd", network: "lab" },
    ]);
  });
});

const dhcpName = (nic: string) => dhcpHostName("shop", "web", nic);

function node(name: string, report?: OrphanReport, defaultStoragePool = "local"): V1Node {
  return {
    metadata: {
      name,
      annotations: {
        [CAPACITY_ANNOTATION]: JSON.stringify({
          cpus: 4,
          memoryBytes: 2 ** 33,
          hypervisors: ["qemu"],
          defaultStoragePool,
        }),
        ...(report ? { [ORPHANS_ANNOTATION]: orphanAnnotation(report)! } : {}),
      },
    },
  };
}
const orphanDomain = {
  namespace: "shop",
  name: "web",
  uuid: UUID,
  interfaces: [{ name: "default", mac: "52:54:00:aa:bb:cc", network: "default", ipv4: "10.0.0.5" }],
};
const newVm = (spec: Partial<VirtualMachine["spec"]> = {}) =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "web", namespace: "shop", uid: "new" },
    spec: { memory: "256Mi", disks: [{ name: "root", diskRef: { name: "root" } }], ...spec },
  }) as VirtualMachine;
const disk = (name: string, extra: Partial<VMDisk["spec"]> = {}, status?: VMDisk["status"]) =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "shop" },
    spec: { provisionedSize: "1Gi", ...extra },
    ...(status ? { status } : {}),
  }) as VMDisk;

describe("orphan placement: an object without status goes where its earlier incarnation left its data", () => {
  const none = () => undefined;
  it("a VM goes to the node with its domain, and takes its UUID, MACs and addresses", () => {
    const nodes = [node("a"), node("b", { domains: [orphanDomain], volumes: [] })];
    const placed = orphanPlacementOfVm(newVm(), nodes, none);
    assert.ok(placed && "node" in placed);
    assert.equal(placed.node, "b");
    assert.match(placed.why, /its domain \(UUID 6f1e2d3c.*\) on node b/);
    const seeded = withOrphanIdentity(newVm(), placed);
    assert.equal(placementOf(seeded).uuid, UUID);
    // The controller's interface assignment keeps them (MAC, and the address while it is free).
    const withPools = node("b");
    withPools.metadata!.annotations![CAPACITY_ANNOTATION] = JSON.stringify({
      cpus: 4,
      memoryBytes: 2 ** 33,
      hypervisors: ["qemu"],
      networks: { default: { ipv4: { start: "10.0.0.2", end: "10.0.0.254" } } },
    });
    const nics = new InterfaceAssigner(new VmIndex(), { get: () => withPools });
    assert.deepEqual(nics.interfaces(seeded as never, "b"), [
      { name: "default", mac: "52:54:00:aa:bb:cc", network: "default", ipv4: "10.0.0.5" },
    ]);
  });
  it("nothing left anywhere, or a domain of another UUID than spec.uuid: placement as usual", () => {
    assert.equal(orphanPlacementOfVm(newVm(), [node("a"), node("b")], none), undefined);
    const nodes = [node("b", { domains: [orphanDomain], volumes: [] })];
    assert.equal(
      orphanPlacementOfVm(newVm({ uuid: "11111111-2222-4333-8444-555555555555" }), nodes, none),
      undefined,
    );
    assert.ok(orphanPlacementOfVm(newVm({ uuid: UUID }), nodes, none));
    assert.equal(placementOf(withOrphanIdentity(newVm(), undefined)).uuid, undefined);
  });
  it("a VM goes where its disks' node-local volumes were left, unless its disks are placed already", () => {
    const nodes = [
      node("a"),
      node("c", { domains: [], volumes: [{ namespace: "shop", name: "root", pool: "local" }] }),
    ];
    const placed = orphanPlacementOfVm(newVm(), nodes, () => disk("root"));
    assert.ok(placed && "node" in placed && placed.node === "c" && !("domain" in placed));
    assert.equal(
      orphanPlacementOfVm(newVm(), nodes, () => disk("root", {}, { nodeName: "a" })),
      undefined,
    );
  });
  it("left on two nodes, or pinned elsewhere: an error that says where, never a second guest", () => {
    const two = [
      node("a", { domains: [orphanDomain], volumes: [] }),
      node("b", { domains: [], volumes: [{ namespace: "shop", name: "root", pool: "local" }] }),
    ];
    const both = orphanPlacementOfVm(newVm(), two, () => disk("root"));
    assert.ok(both && "error" in both);
    assert.match(
      both.error,
      /more than one node \(its domain .* on node a, the volume of VMDisk root on node b\)/,
    );
    const pinned = orphanPlacementOfVm(newVm({ nodeName: "z" }), [two[0]!], none);
    assert.ok(pinned && "error" in pinned);
    assert.match(pinned.error, /spec.nodeName is node z, but its domain .* on node a/);
    const disksElsewhere = orphanPlacementOfVm(newVm(), [two[0]!], none, { node: "q", disk: "root" });
    assert.ok(disksElsewhere && "error" in disksElsewhere);
    assert.match(disksElsewhere.error, /the node of VMDisk root is node q/);
  });
  it("a disk goes to the node with its node-local volume in the pool it would use there", () => {
    const nodes = [
      node("a", { domains: [], volumes: [{ namespace: "shop", name: "root", pool: "other" }] }),
      node("b", { domains: [], volumes: [{ namespace: "shop", name: "root", pool: "local" }] }),
      node("c", { domains: [], volumes: [{ namespace: "other-ns", name: "root", pool: "local" }] }),
      node("d", { domains: [], volumes: [{ namespace: "shop", name: "root", pool: "local", shared: true }] }),
    ];
    const placed = orphanPlacementOfDisk(disk("root"), nodes);
    assert.ok(placed && "node" in placed);
    assert.equal(placed.node, "b");
    const inOther = orphanPlacementOfDisk(disk("root", { storagePool: "other" }), nodes);
    assert.ok(inOther && "node" in inOther && inOther.node === "a");
    assert.equal(orphanPlacementOfDisk(disk("data"), nodes), undefined);
    const pinned = orphanPlacementOfDisk(disk("root", { nodeName: "c" }), nodes);
    assert.ok(pinned && "error" in pinned);
  });
});
