// Linked clones of a VMTemplate's base on the node: the volume XML with its backing file, the
// one backing file a copy may read through, when a clone may be made, and how VMs treat a base
// (read-only to all, the VM made into the template never starts again).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { linkedBaseOf, sourceDiskWait } from "../../src/controllers/node/disk-from-disk.ts";
import { planSnapshot } from "../../src/controllers/node/snapshot-plan.ts";
import { type AgentObservation, agentStatus } from "../../src/controllers/node/vm-status.ts";
import {
  diskChanges,
  type ObservedDisk,
  resolveDisks,
  templateBaseRefusal,
} from "../../src/hypervisor/domain/disks.ts";
import { DomainState } from "../../src/hypervisor/libvirt/constants.ts";
import { parseVolume, uncopyableReason, volumeXml } from "../../src/hypervisor/storage/volume.ts";
import { kstatus } from "../support/kstatus.ts";

const testdata = join(import.meta.dirname, "testdata");

/** Compares with testdata/NAME; UPDATE_GOLDEN=1 rewrites it. */
function golden(name: string, actual: string) {
  const path = join(testdata, name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  assert.equal(actual, readFileSync(path, "utf8"));
}

function disk(name: string, spec: Partial<VMDisk["spec"]> = {}, status?: VMDisk["status"]): VMDisk {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "ns", generation: 1 },
    spec: { provisionedSize: "1Gi", ...spec },
    ...(status ? { status } : {}),
  };
}

const ready = (name: string, extra: VMDisk["status"] = {}): VMDisk["status"] => ({
  phase: "Ready",
  nodeName: "n1",
  pool: "p",
  path: `/pool/ns_${name}.qcow2`,
  format: "qcow2",
  ...extra,
});
const baseOf = { template: "tpl", templateUID: "u-1" };

function vm(spec: Partial<VirtualMachine["spec"]>, status: VirtualMachine["status"] = {}): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "web", namespace: "ns", generation: 2 },
    spec: { memory: "1Gi", ...spec },
    status,
  };
}

describe("a linked clone's volume", () => {
  it("names its backing file and format (golden), escaped", () => {
    const xml = volumeXml({
      name: "ns_clone.qcow2",
      format: "qcow2",
      capacityBytes: 64 * 2 ** 20,
      allocationBytes: 0,
      backing: { path: "/var/lib/libvirt/libvirt-operator/ns_base.qcow2", format: "qcow2" },
    });
    golden("volume-linked-clone.xml", xml);
    assert.match(
      volumeXml({
        name: "c.qcow2",
        format: "qcow2",
        capacityBytes: 1,
        allocationBytes: 0,
        backing: { path: "/p/a&b<c>.img", format: "raw" },
      }),
      /<backingStore>\s*<path>\/p\/a&amp;b&lt;c&gt;\.img<\/path>\s*<format type="raw"><\/format>\s*<\/backingStore>/,
    );
    assert.doesNotMatch(
      volumeXml({ name: "b.qcow2", format: "qcow2", capacityBytes: 1, allocationBytes: 0 }),
      /backingStore/,
    );
  });

  it("libvirt's volume XML reads back with the backing file's format", () => {
    const xml =
      "<volume><target><path>/p/c</path><format type='qcow2'/></target>" +
      "<backingStore><path>/p/b.img</path><format type='raw'/></backingStore></volume>";
    assert.deepEqual(parseVolume(xml), { format: "qcow2", backingPath: "/p/b.img", backingFormat: "raw" });
  });
});

describe("volumes libvirt may copy, with a backing file", () => {
  const xml = (path: string, format: string) =>
    "<volume><target><path>/p/c.qcow2</path><format type='qcow2'/></target>" +
    `<backingStore><path>${path}</path><format type='${format}'/></backingStore></volume>`;
  const ours = { path: "/p/ns_base.qcow2", format: "qcow2" as const };
  it("only the base of the linked clone we made, in its format", () => {
    assert.equal(uncopyableReason(xml("/p/ns_base.qcow2", "qcow2"), "qcow2", ours), undefined);
    assert.match(uncopyableReason(xml("/p/ns_base.qcow2", "qcow2"), "qcow2") ?? "", /backing file/);
    assert.match(uncopyableReason(xml("/etc/shadow", "raw"), "qcow2", ours) ?? "", /\/etc\/shadow/);
    assert.match(uncopyableReason(xml("/p/ns_base.qcow2", "raw"), "qcow2", ours) ?? "", /backing file/);
    // The clone itself must still read as what it is.
    assert.match(uncopyableReason(xml("/p/ns_base.qcow2", "qcow2"), "raw", ours) ?? "", /not raw/);
  });
});

describe("a disk made from another", () => {
  const clone = disk("clone", { source: { disk: { name: "base", linked: true } } });
  const copy = disk("copy", { source: { disk: { name: "base" } } });
  it("waits for its source to be Ready; a linked clone for a VMTemplate's base not being deleted", () => {
    assert.match(sourceDiskWait(clone, undefined) ?? "", /waiting for VMDisk base .* to be Ready/);
    assert.match(sourceDiskWait(clone, disk("base", {}, { phase: "Locked" })) ?? "", /to be Ready/);
    assert.equal(
      sourceDiskWait(clone, disk("base", {}, ready("base"))),
      "VMDisk base is not a VMTemplate's base; a linked clone needs one (status.baseOf)",
    );
    assert.equal(sourceDiskWait(copy, disk("base", {}, ready("base"))), undefined, "a full copy of any disk");
    assert.equal(sourceDiskWait(clone, disk("base", {}, ready("base", { baseOf }))), undefined);
    const deleting = disk("base", {}, ready("base", { baseOf }));
    deleting.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    assert.match(sourceDiskWait(clone, deleting) ?? "", /being deleted; no linked clone/);
  });

  it("a linked clone's base is its source only when that is a VMTemplate's base", () => {
    const disks: Record<string, VMDisk> = { base: disk("base", {}, ready("base", { baseOf })) };
    assert.equal(linkedBaseOf(clone, (n) => disks[n])?.metadata.name, "base");
    assert.equal(
      linkedBaseOf(copy, (n) => disks[n]),
      undefined,
      "a full copy has no base",
    );
    disks.base = disk("base", {}, ready("base"));
    assert.equal(
      linkedBaseOf(clone, (n) => disks[n]),
      undefined,
    );
  });
});

describe("VMs and a VMTemplate's base", () => {
  const disks: Record<string, VMDisk> = {
    root: disk("root", {}, ready("root", { baseOf, attachedTo: ["web"] })),
    data: disk("data", {}, ready("data", { attachedTo: ["web"] })),
  };
  const resolve = (v: VirtualMachine, current: Record<string, ObservedDisk> = {}) =>
    resolveDisks(
      v,
      (n) => disks[n],
      "n1",
      current,
      (n) => disks[n]?.status?.path,
    );

  it("a base is attached read-only; the VM made into the template may not start", () => {
    const r = resolve(
      vm({
        disks: [
          { name: "root", diskRef: { name: "root" } },
          { name: "data", diskRef: { name: "data" } },
        ],
      }),
    );
    assert.deepEqual(
      r.devices.map((d) => [d.name, Boolean(d.readOnly)]),
      [
        ["root", true],
        ["data", false],
      ],
    );
    assert.deepEqual(r.bases, [{ name: "root", vmDisk: "root", template: "tpl", askedReadOnly: false }]);
    assert.deepEqual(templateBaseRefusal(r.bases), {
      reason: "TemplateBase",
      message:
        "disk root (VMDisk root) is a base of VMTemplate tpl; a VM made into a template does not run: " +
        "make a VM from the template instead",
    });
  });

  it("a VM that asks for the base read-only may start; an inactive entry is no use of it", () => {
    const readOnly = resolve(vm({ disks: [{ name: "root", diskRef: { name: "root" }, readOnly: true }] }));
    assert.equal(readOnly.devices[0]?.readOnly, true);
    assert.equal(templateBaseRefusal(readOnly.bases), undefined);
    const inactive = resolve(vm({ disks: [{ name: "root", diskRef: { name: "root" }, active: false }] }));
    assert.equal(templateBaseRefusal(inactive.bases), undefined);
  });

  it("a running guest keeps a disk it writes that became a base; a read-only one is not made writable", () => {
    const wanted = resolve(vm({ disks: [{ name: "root", diskRef: { name: "root" } }] })).devices;
    const live = (readOnly: boolean): Record<string, ObservedDisk> => ({
      root: { name: "root", path: "/pool/ns_root.qcow2", target: "vda", bus: "virtio", readOnly },
    });
    const keep = new Set(["root"]);
    assert.deepEqual(diskChanges(wanted, live(false), keep), { attach: [], detach: [] });
    assert.equal(diskChanges(wanted, live(false)).detach.length, 1, "elsewhere a read-only change replugs");
    const writable = wanted.map(({ readOnly: _r, ...d }) => d);
    assert.equal(diskChanges(writable, live(true), keep).detach.length, 1);
  });
});

describe("the status of a VM refused a start for a base", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  const refused = templateBaseRefusal([
    { name: "root", vmDisk: "web-root", template: "tpl", askedReadOnly: false },
  ]);
  const observed: AgentObservation = {
    domainName: "ns_web",
    domain: { state: DomainState.Shutoff, reason: 1, id: -1 },
    definitionInSync: true,
    stopping: false,
    startCount: 1,
    ...(refused ? { startRefused: refused } : {}),
  };
  const conditions = (s: ReturnType<typeof agentStatus>) =>
    Object.fromEntries((s.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason}`]));
  const asObject = (v: VirtualMachine, s: ReturnType<typeof agentStatus>) => ({ ...v, status: s });

  it("should run: Stopped, stalled (kstatus Failed) with reason TemplateBase", async () => {
    const v = vm({ runStrategy: "Always" });
    const s = agentStatus(v, observed, now);
    assert.equal(s.printableStatus, "Stopped");
    const c = conditions(s);
    assert.deepEqual(
      [c.Ready, c.Reconciling, c.Stalled],
      ["False/TemplateBase", "False/Stalled", "True/TemplateBase"],
    );
    assert.match(
      s.conditions!.find((x) => x.type === "Ready")!.message,
      /VMDisk web-root\) is a base of VMTemplate tpl/,
    );
    const k = await kstatus(asObject(v, s));
    assert.deepEqual([k.upstream.status, k.flux.status], ["Failed", "Failed"]);
  });

  it("stopped as asked (Halted): Ready (kstatus Current), and it says it would not start", async () => {
    const v = vm({ runStrategy: "Halted" });
    const s = agentStatus(v, observed, now);
    assert.equal(s.printableStatus, "Stopped");
    const ready = s.conditions!.find((x) => x.type === "Ready")!;
    assert.equal(ready.status, "True");
    assert.match(ready.message, /stopped as asked .*; it does not start: disk root/);
    const k = await kstatus(asObject(v, s));
    assert.deepEqual([k.upstream.status, k.flux.status], ["Current", "Current"]);
  });

  it("a running VM is left running and Ready", () => {
    const s = agentStatus(
      vm({ runStrategy: "Always" }),
      { ...observed, domain: { state: DomainState.Running, reason: 1, id: 4 } },
      now,
    );
    assert.equal(s.printableStatus, "Running");
    assert.equal(conditions(s).Ready, "True/Running");
  });
});

describe("a snapshot of a VM with a base", () => {
  it("leaves the base out: nothing is written into it", () => {
    const disks: Record<string, VMDisk> = {
      root: disk("root", {}, ready("root", { baseOf })),
      data: disk("data", {}, ready("data")),
    };
    const observed = (name: string, target: string): ObservedDisk => ({
      name,
      path: `/pool/ns_${name}.qcow2`,
      target,
      bus: "virtio",
      readOnly: false,
    });
    const plan = planSnapshot(
      vm({
        disks: [
          { name: "root", diskRef: { name: "root" } },
          { name: "data", diskRef: { name: "data" } },
        ],
      }),
      { root: observed("root", "vda"), data: observed("data", "vdb") },
      (n) => disks[n],
      "pool",
      1,
    );
    assert.ok(!("refused" in plan));
    assert.deepEqual(
      plan.disks.map((d) => d.name),
      ["data"],
    );
    assert.deepEqual(plan.skipped, ["root: a base of VMTemplate tpl (never written)"]);
  });
});
