import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TEMPLATE_DISK_LABEL, TEMPLATE_GENERATION_LABEL, TEMPLATE_LABEL } from "../../../src/api/names.ts";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import type { VMSnapshot } from "../../../src/api/vmsnapshot.ts";
import type { VMTemplate } from "../../../src/api/vmtemplate.ts";
import type { NodeView } from "../../../src/controllers/cluster/placement.ts";
import {
  baseDiskName,
  childDiskSpecs,
  sourceBaseNode,
  templatePhase,
  templateRecord,
  unwantedBases,
  wantedBases,
} from "../../../src/controllers/cluster/template-plan.ts";
import {
  ownersWhenGivenBack,
  ownersWhenTaken,
  sourceVerdict,
} from "../../../src/controllers/cluster/template-source.ts";
import { targetNodes } from "../../../src/controllers/cluster/template-targets.ts";
import { effectiveSpec } from "../../../src/controllers/vm-clone.ts";

const tpl = (spec: Partial<VMTemplate["spec"]>, extra: Partial<VMTemplate["metadata"]> = {}): VMTemplate =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMTemplate",
    metadata: { name: "web", namespace: "t1", uid: "tpl-uid", generation: 3, ...extra },
    spec,
  }) as VMTemplate;

const shape = {
  memory: "1Gi",
  hypervisor: "qemu" as const,
  disks: [
    { name: "root", size: "8Gi", image: "/images/debian.qcow2", bootOrder: 1 },
    { name: "copy", size: "2Gi", image: "/images/debian.qcow2", fullCopy: true, format: "raw" as const },
    { name: "scratch", size: "1Gi" },
  ],
};

const vm = (name: string, spec: Partial<VirtualMachine["spec"]>, status: VirtualMachine["status"] = {}) =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name, namespace: "t1", uid: `${name}-uid` },
    spec,
    status,
  }) as VirtualMachine;

const disk = (name: string, over: Partial<VMDisk> = {}): VMDisk =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "t1", ...(over.metadata ?? {}) },
    spec: { provisionedSize: "4Gi", ...(over.spec ?? {}) },
    status: over.status ?? {},
  }) as VMDisk;

describe("a VM made from a template", () => {
  it("records the template's hardware at its generation, its disks pointing to its own", () => {
    const plan = templateRecord(
      vm("a", { source: { template: "web" } }),
      tpl({ template: shape }),
      () => undefined,
    );
    assert.ok("record" in plan);
    const r = plan.record;
    assert.equal(r.generation, 3);
    assert.deepEqual(
      r.disks.map((d) => [d.vmDisk, d.format, d.from, d.fullCopy]),
      [
        ["a-root", "qcow2", "image", undefined],
        ["a-copy", "raw", "image", true],
        ["a-scratch", "qcow2", undefined, undefined],
      ],
    );
    // Its own fields win; its spec says nothing else, so it gets the template's.
    const own = vm("a", { source: { template: "web" }, memory: "2Gi" }, { template: r });
    const eff = effectiveSpec(own);
    assert.equal(eff.memory, "2Gi");
    assert.equal(eff.hypervisor, "qemu");
    assert.deepEqual(
      eff.disks?.map((d) => [d.name, d.diskRef.name, d.bootOrder]),
      [
        ["root", "a-root", 1],
        ["copy", "a-copy", undefined],
        ["scratch", "a-scratch", undefined],
      ],
    );
  });

  it("gets linked clones of its node's base, full copies, and blank disks", () => {
    const plan = templateRecord(
      vm("a", { source: { template: "web" } }),
      tpl({ template: shape }),
      () => undefined,
    );
    assert.ok("record" in plan);
    const specs = childDiskSpecs(plan.record, "n1");
    assert.deepEqual(specs[0]?.spec.source, {
      disk: { name: baseDiskName("web", 3, "root", "n1"), linked: true },
    });
    assert.deepEqual(specs[1]?.spec.source, { disk: { name: "web-g3-copy-n1" } });
    assert.equal(specs[1]?.spec.format, "raw");
    assert.deepEqual(specs[2]?.spec.source, { blank: {} });
    assert.ok(specs.every((s) => s.spec.nodeName === "n1"));
  });

  it("waits for a missing template, refuses one being deleted, waits until one made from a VM took it", () => {
    const child = vm("a", { source: { template: "web" } });
    assert.ok("wait" in templateRecord(child, undefined, () => undefined));
    const deleting = tpl({ template: shape }, { deletionTimestamp: "2026-11-26T10:00:00Z" });
    assert.ok("refuse" in templateRecord(child, deleting, () => undefined));
    assert.ok("wait" in templateRecord(child, tpl({ source: { vmName: "golden" } }), () => undefined));
  });

  it("made from a VM: clones of the VM's disks, on their node", () => {
    const taken = tpl({ source: { vmName: "golden" } });
    taken.status = {
      vm: {
        name: "golden",
        uid: "g",
        spec: { memory: "1Gi", disks: [{ name: "root", diskRef: { name: "golden-root" } }] },
        disks: [{ name: "root", vmDisk: "golden-root", ownedByVm: true }],
      },
    };
    const base = disk("golden-root", { spec: { provisionedSize: "3Gi" }, status: { nodeName: "n2" } });
    const plan = templateRecord(vm("a", { source: { template: "web" } }), taken, () => base);
    assert.ok("record" in plan);
    assert.equal(
      sourceBaseNode(plan.record, () => base),
      "n2",
    );
    const [spec] = childDiskSpecs(plan.record, "n2");
    assert.deepEqual(spec?.spec.source, { disk: { name: "golden-root", linked: true } });
    assert.equal(spec?.spec.provisionedSize, "3Gi");
    const shared = disk("golden-root", { status: { nodeName: "n2", storagePoolShared: true } });
    assert.equal(
      sourceBaseNode(plan.record, () => shared),
      undefined,
      "a shared pool pins nothing",
    );
  });
});

describe("a template's bases", () => {
  const child = (name: string, generation: number, node: string) => {
    const plan = templateRecord(
      vm(name, { source: { template: "web" } }),
      tpl({ template: shape }, { generation }),
      () => undefined,
    );
    assert.ok("record" in plan);
    return vm(name, { source: { template: "web" } }, { template: plan.record, nodeName: node });
  };
  const baseOf = (generation: number, d: string, node: string) =>
    disk(baseDiskName("web", generation, d, node), {
      metadata: {
        name: baseDiskName("web", generation, d, node),
        labels: {
          [TEMPLATE_LABEL]: "web",
          [TEMPLATE_GENERATION_LABEL]: String(generation),
          [TEMPLATE_DISK_LABEL]: d,
        },
      },
      spec: { provisionedSize: "8Gi", format: "qcow2", source: { image: { url: "/images/old.qcow2" } } },
      status: { phase: "Ready" },
    });

  it("are wanted where VMs run and the admin prefetches to, an earlier generation made like its others", () => {
    const t = tpl({ template: shape, prefetchNodes: ["n9"] });
    const old = baseOf(2, "root", "n1");
    const wanted = wantedBases(t, [child("a", 3, "n1"), child("b", 2, "n2")], [old], () => undefined);
    const names = wanted.map((w) => w.name).sort();
    assert.deepEqual(names, [
      "web-g2-root-n2",
      "web-g3-copy-n1",
      "web-g3-copy-n9",
      "web-g3-root-n1",
      "web-g3-root-n9",
    ]);
    const g2 = wanted.find((w) => w.name === "web-g2-root-n2");
    assert.equal(g2?.spec.source?.image?.url, "/images/old.qcow2", "fetched from generation 2's image");
    assert.equal(g2?.spec.readOnly, true);
    assert.equal(g2?.labels[TEMPLATE_GENERATION_LABEL], "2");
  });

  it("a full copy needs its base only until its disk is made", () => {
    const t = tpl({ template: shape });
    const ready = (name: string) =>
      name === "a-copy" ? disk("a-copy", { status: { phase: "Ready" } }) : undefined;
    const names = wantedBases(t, [child("a", 3, "n1")], [], ready).map((w) => w.name);
    assert.deepEqual(names, ["web-g3-root-n1"]);
  });

  it("go when unwanted and no disk is made from them; the current generation's stay; all go with the template", () => {
    const t = tpl({ template: shape });
    const g2 = baseOf(2, "root", "n1");
    const g2held = baseOf(2, "root", "n2");
    const g3 = baseOf(3, "root", "n5");
    const clone = disk("b-root", {
      spec: { provisionedSize: "8Gi", source: { disk: { name: g2held.metadata.name, linked: true } } },
    });
    const gone = unwantedBases(t, [g2, g2held, g3], [], [clone]).map((b) => b.metadata.name);
    assert.deepEqual(gone, [g2.metadata.name]);
    const deleting = tpl({ template: shape }, { deletionTimestamp: "2026-11-26T10:00:00Z" });
    assert.equal(unwantedBases(deleting, [g2, g2held, g3], [], [clone]).length, 3);
  });

  it("say where the template stands: importing, failed, ready", () => {
    const t = tpl({ template: shape });
    const importing = { ...baseOf(3, "root", "n1"), status: { phase: "Creating" as const, progress: 40 } };
    assert.deepEqual(
      [templatePhase(t, [importing]).phase, templatePhase(t, [importing]).progress],
      ["Pending", 40],
    );
    const failed = {
      ...baseOf(3, "root", "n1"),
      status: {
        phase: "Illegal" as const,
        conditions: [
          {
            type: "Stalled",
            status: "True" as const,
            reason: "ImportFailed",
            message: "404",
            lastTransitionTime: "",
          },
        ],
      },
    };
    const f = templatePhase(t, [failed]);
    assert.equal(f.phase, "Failed");
    assert.match(f.message, /404/);
    assert.equal(
      templatePhase(t, [baseOf(2, "root", "n1")]).phase,
      "Ready",
      "an earlier generation's state does not count",
    );
    assert.equal(templatePhase(t, [], undefined, ["web-g3-root-n1"]).phase, "Pending", "a base not made yet");
    const huge = tpl({ template: { ...shape, disks: [{ name: "root", size: "65Ti" }] } });
    assert.deepEqual(
      [templatePhase(huge, []).phase, templatePhase(huge, []).reason],
      ["Failed", "DiskTooLarge"],
    );
    assert.ok("refuse" in templateRecord(vm("a", { source: { template: "web" } }), huge, () => undefined));
  });
});

describe("set as template", () => {
  const golden = (over: Partial<VirtualMachine["spec"]> = {}, printable = "Stopped") =>
    vm(
      "golden",
      {
        runStrategy: "Halted",
        memory: "1Gi",
        uuid: "0b0b0b0b-0000-0000-0000-000000000000",
        interfaces: [{ name: "nic", macAddress: "52:54:00:00:00:01" }],
        disks: [{ name: "root", diskRef: { name: "golden-root" } }],
        ...over,
      },
      { printableStatus: printable as "Stopped" },
    );
  const root = disk("golden-root", {
    metadata: {
      name: "golden-root",
      ownerReferences: [
        { apiVersion: "v", kind: "VirtualMachine", name: "golden", uid: "golden-uid", controller: true },
      ],
    },
    status: { phase: "Ready", attachedTo: ["golden"] },
  });
  const t = tpl({ source: { vmName: "golden" } });

  it("takes a stopped VM that stays stopped, without its identity", () => {
    const v = sourceVerdict(t, golden(), [], () => root);
    assert.ok("take" in v);
    const took = v.take.spec as Partial<VirtualMachine["spec"]>;
    assert.equal(took.uuid, undefined);
    assert.equal(took.runStrategy, undefined, "its VMs run unless they say otherwise");
    assert.deepEqual(took.interfaces, [{ name: "nic" }]);
    assert.deepEqual(v.take.disks, [{ name: "root", vmDisk: "golden-root", ownedByVm: true }]);
  });

  it("waits for a VM that may run, runs, holds snapshots, or whose disk another VM uses", () => {
    const reason = (v: ReturnType<typeof sourceVerdict>) => ("wait" in v ? v.wait.reason : "take");
    assert.equal(reason(sourceVerdict(t, undefined, [], () => root)), "VMNotFound");
    assert.equal(reason(sourceVerdict(t, golden({ runStrategy: "Always" }), [], () => root)), "VMMayRun");
    assert.equal(reason(sourceVerdict(t, golden({}, "Running"), [], () => root)), "VMNotStopped");
    const snap = { metadata: { name: "s1" }, spec: { vmName: "golden" } } as VMSnapshot;
    assert.equal(reason(sourceVerdict(t, golden(), [snap], () => root)), "VMHasSnapshots");
    const shared = { ...root, status: { ...root.status, attachedTo: ["golden", "other"] } };
    assert.equal(reason(sourceVerdict(t, golden(), [], () => shared)), "DiskInUse");
    const based = { ...root, status: { ...root.status, baseOf: { template: "x", templateUID: "x-uid" } } };
    assert.equal(reason(sourceVerdict(t, golden(), [], () => based)), "DiskIsBase");
  });

  it("moves the disk's ownership to the template and back", () => {
    const taken = ownersWhenTaken(root, t, "golden-uid");
    assert.deepEqual(
      taken.map((r) => [r.kind, r.controller]),
      [["VMTemplate", true]],
    );
    const heldDisk = { ...root, metadata: { ...root.metadata, ownerReferences: taken } };
    const back = ownersWhenGivenBack(heldDisk, t, golden(), true);
    assert.deepEqual(
      back.map((r) => [r.kind, r.name, r.controller]),
      [["VirtualMachine", "golden", true]],
    );
    assert.deepEqual(ownersWhenGivenBack(heldDisk, t, undefined, true), []);
  });
});

describe("a template's target nodes", () => {
  const node = (name: string, over: Partial<NodeView> = {}): NodeView => ({
    name,
    labels: {},
    enabled: true,
    heartbeatFresh: true,
    capacity: { cpus: 2, memoryBytes: 2 ** 30, hypervisors: ["qemu"], networks: { default: {} } },
    allocated: { cpus: 64, memoryBytes: 2 ** 31 },
    ...over,
  });

  it("offer the hypervisor and networks, have an agent and room for the bases they lack; busy ones count", () => {
    const { targets, unfit } = targetNodes(
      {
        hardware: { hypervisor: "qemu" },
        childDiskBytes: 2 ** 30,
        bases: [{ bytes: 8 * 2 ** 30, onNodes: new Set(["has-base"]) }],
      },
      [
        node("busy"),
        node("has-base"),
        node("no-agent", { heartbeatFresh: false }),
        node("kvm-only", { capacity: { cpus: 2, memoryBytes: 2 ** 30, hypervisors: ["kvm"] } }),
        node("no-net", { capacity: { cpus: 2, memoryBytes: 2 ** 30, hypervisors: ["qemu"], networks: {} } }),
        node("small"),
      ],
      (n, bytes) => (n === "small" || (n === "busy" && bytes > 2 ** 30) ? "no room" : undefined),
    );
    assert.deepEqual(targets, ["has-base"]);
    assert.deepEqual(Object.keys(unfit).sort(), ["busy", "kvm-only", "no-agent", "no-net", "small"]);
  });

  it("a template made from a VM: the node of its disks only", () => {
    const { targets } = targetNodes(
      { hardware: { hypervisor: "qemu" }, childDiskBytes: 0, bases: [], pinnedTo: "b" },
      [node("a"), node("b")],
      () => undefined,
    );
    assert.deepEqual(targets, ["b"]);
  });
});
