// A VMDisk as the CD-ROM medium (spec.cdrom.diskRef): the cluster counts it as a disk the VM
// uses (placement, holders, protection), and the node decides when the VM may use it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import {
  diskHolders,
  diskNamesOf,
  namesDisk,
  nodeOfVmDisks,
  usesDisk,
} from "../../../src/controllers/cluster/disk-placement.ts";
import { cdromDiskDecision } from "../../../src/controllers/node/vm-media.ts";

function vm(
  name: string,
  medium: string | undefined,
  status?: VirtualMachine["status"],
  created = 0,
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name, namespace: "ns", creationTimestamp: new Date(created * 1000).toISOString() },
    spec: {
      memory: "1Gi",
      disks: [{ name: "root", diskRef: { name: "root" } }],
      ...(medium ? { cdrom: { diskRef: { name: medium } } } : { cdrom: { image: "" } }),
    },
    ...(status ? { status } : {}),
  };
}

function iso(spec: Partial<VMDisk["spec"]> = {}, status: VMDisk["status"] = {}, deleting = false): VMDisk {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: {
      name: "installer",
      namespace: "ns",
      ...(deleting ? { deletionTimestamp: new Date(0).toISOString() } : {}),
    },
    spec: { provisionedSize: "1Gi", format: "raw", ...spec },
    status,
  };
}

const ready = (holders: string[], extra: VMDisk["status"] = {}): VMDisk["status"] => ({
  phase: "Ready",
  nodeName: "n1",
  path: "/pool/ns_installer.img",
  format: "raw",
  attachedTo: holders,
  ...extra,
});

describe("CD-ROM VMDisk: on the cluster", () => {
  it("is a disk the VM names, next to spec.disks", () => {
    assert.deepEqual(diskNamesOf(vm("a", "installer")), ["root", "installer"]);
    assert.deepEqual(diskNamesOf(vm("a", undefined)), ["root"]);
    assert.ok(namesDisk(vm("a", "installer"), "installer"));
    assert.ok(!namesDisk(vm("a", undefined), "installer"));
    assert.ok(!namesDisk(vm("a", "installer"), undefined));
    assert.ok(usesDisk(vm("a", "installer"), iso()));
    assert.ok(!usesDisk({ ...vm("a", "installer"), metadata: { name: "a", namespace: "other" } }, iso()));
  });

  it("places the VM on the medium's node; media on two nodes with the disks is an error", () => {
    const disks: Record<string, VMDisk> = {
      root: { ...iso(), metadata: { name: "root", namespace: "ns" }, status: { nodeName: "n1" } },
      installer: iso({}, { nodeName: "n2" }),
    };
    const got = nodeOfVmDisks(
      vm("a", "installer"),
      (n) => disks[n],
      () => undefined,
    );
    assert.ok("error" in got && /root \(node n1\) and installer \(node n2\)/.test(got.error));
    const onlyMedium = {
      ...vm("a", "installer"),
      spec: { memory: "1Gi", cdrom: { diskRef: { name: "installer" } } },
    };
    assert.deepEqual(
      nodeOfVmDisks(
        onlyMedium,
        (n) => disks[n],
        () => undefined,
      ),
      { node: "n2", disk: "installer" },
    );
  });

  it("a placed VM holds its medium, also while the disk is being deleted; older VMs first", () => {
    const placed = vm("b", "installer", { nodeName: "n1" }, 2);
    const unplaced = vm("a", "installer", undefined, 1);
    assert.deepEqual(diskHolders(iso(), [unplaced, placed]), ["b", "a"]);
    assert.deepEqual(
      diskHolders(iso({}, {}, true), [unplaced, placed]),
      ["b"],
      "protection holds while in use",
    );
    assert.deepEqual(diskHolders(iso({}, {}, true), [vm("c", undefined, { nodeName: "n1" })]), []);
  });
});

describe("CD-ROM VMDisk: on the node", () => {
  const decide = (disk: VMDisk | undefined, name = "a") =>
    cdromDiskDecision(vm(name, "installer"), disk, "n1");

  it("a ready raw disk recorded as held by this VM is used", () => {
    assert.deepEqual(decide(iso({}, ready(["a"]))), { use: true });
    assert.deepEqual(decide(iso({ shareable: true }, ready(["b", "a"]))), { use: true });
    assert.deepEqual(decide(iso({}, ready(["a"], { nodeName: "n2", storagePoolShared: true }))), {
      use: true,
    });
  });

  it("waits for a missing, unready or unrecorded disk", () => {
    assert.match(
      (decide(undefined) as { waiting: string }).waiting,
      /VMDisk installer \(spec\.cdrom\.diskRef\) does not exist/,
    );
    assert.match((decide(iso({}, { phase: "Creating" })) as { waiting: string }).waiting, /is Creating/);
    assert.match((decide(iso({}, ready([]))) as { waiting: string }).waiting, /not recorded the attachment/);
  });

  it("refuses a qcow2 disk, another node's, another VM's, and one being deleted", () => {
    const blocked = (d: VMDisk) => (decide(d) as { blocked: string }).blocked;
    assert.match(
      blocked(iso({ format: "qcow2" }, ready(["a"]))),
      /format qcow2; a CD-ROM medium is a raw image/,
    );
    assert.match(blocked(iso({ format: undefined }, ready(["a"]))), /format qcow2/);
    assert.match(blocked(iso({}, ready(["a"], { nodeName: "n2" }))), /lives on node n2/);
    assert.match(blocked(iso({}, ready(["b", "a"]))), /attached to VirtualMachine b and is not shareable/);
    assert.match(blocked(iso({}, ready(["a"]), true)), /is being deleted/);
  });
});
