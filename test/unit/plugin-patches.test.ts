// Each verb's merge patch, whole: exactly the fields it changes and nothing else.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  FROZEN_ANNOTATION,
  FSFREEZE_ANNOTATION,
  FSTHAW_ANNOTATION,
  REFRESH_ANNOTATION,
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
} from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { PluginError } from "../../src/cli/errors.ts";
import {
  cdromEjectPatch,
  cdromInsertPatch,
  diskActivePatch,
  diskAttachPatch,
  diskDetachPatch,
  findDisk,
  freezePatch,
  frozenWarning,
  fsPatch,
  pausePatch,
  refreshPatch,
  restartPatch,
  rotationPatch,
  startPatch,
  stopPatch,
  unfreezePatch,
} from "../../src/cli/patches.ts";

const now = new Date("2025-03-04T05:06:07.890Z");
const stamp = "2025-03-04T05:06:07.890Z";

function vm(spec: VirtualMachine["spec"] = {}, annotations?: Record<string, string>): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      name: "web",
      namespace: "ns",
      resourceVersion: "42",
      ...(annotations ? { annotations } : {}),
    },
    spec,
  };
}

describe("start", () => {
  it("Manual: the start request (RFC 3339 with ms)", () => {
    assert.deepEqual(startPatch(vm({ runStrategy: "Manual" }), now), {
      metadata: { annotations: { [START_ANNOTATION]: stamp } },
    });
  });
  it("Halted: runStrategy Always", () => {
    assert.deepEqual(startPatch(vm({ runStrategy: "Halted" }), now), { spec: { runStrategy: "Always" } });
  });
  it("a VM the operator starts itself is refused", () => {
    for (const runStrategy of [undefined, "Always", "RerunOnFailure", "Once"] as const)
      assert.throws(() => startPatch(vm(runStrategy ? { runStrategy } : {}), now), PluginError);
  });
  it("--cdrom: a VMDisk or a host path in the same patch; --once boots once from it", () => {
    assert.deepEqual(startPatch(vm({ runStrategy: "Manual" }), now, { cdrom: "rescue", once: true }).spec, {
      cdrom: { image: null, diskRef: { name: "rescue" }, bootOnce: true },
    });
    assert.deepEqual(startPatch(vm({ runStrategy: "Halted" }), now, { cdrom: "/iso/a.iso" }).spec, {
      runStrategy: "Always",
      cdrom: { image: "/iso/a.iso", diskRef: null, bootOnce: false },
    });
  });
  it("a frozen VM still gets the request (its agent refuses it), with a warning", () => {
    const frozen = vm({ runStrategy: "Manual" }, { [FROZEN_ANNOTATION]: stamp });
    assert.equal(startPatch(frozen, now).metadata?.annotations?.[START_ANNOTATION], stamp);
    assert.match(frozenWarning(frozen, "start") ?? "", /frozen.*kubectl vm unfreeze web/);
    assert.equal(frozenWarning(vm(), "start"), undefined);
  });
});

describe("stop, restart, freeze", () => {
  it("stop: the request for every strategy; Halted only for those the operator would restart", () => {
    const request = { [STOP_ANNOTATION]: stamp };
    for (const runStrategy of ["Manual", "Halted"] as const)
      assert.deepEqual(stopPatch(vm({ runStrategy }), now), { metadata: { annotations: request } });
    for (const runStrategy of ["Always", "RerunOnFailure", "Once"] as const)
      assert.deepEqual(stopPatch(vm({ runStrategy }), now), {
        metadata: { annotations: request },
        spec: { runStrategy: "Halted" },
      });
  });
  it("--force is grace 0, --grace-period N is N, both in the request itself", () => {
    const request = (p: ReturnType<typeof stopPatch>) => p.metadata?.annotations?.[STOP_ANNOTATION];
    assert.equal(request(stopPatch(vm(), now, { force: true })), `${stamp};grace=0`);
    assert.equal(request(stopPatch(vm(), now, { gracePeriodSeconds: 5 })), `${stamp};grace=5`);
    assert.equal(request(stopPatch(vm(), now, { gracePeriodSeconds: 0 })), `${stamp};grace=0`);
  });
  it("restart: the request and its grace period, annotations only", () => {
    assert.deepEqual(restartPatch(now), { metadata: { annotations: { [RESTART_ANNOTATION]: stamp } } });
    assert.equal(
      restartPatch(now, { force: true }).metadata?.annotations?.[RESTART_ANNOTATION],
      `${stamp};grace=0`,
    );
  });
  it("freeze: frozen and a stop request at once, no spec; unfreeze removes frozen only", () => {
    assert.deepEqual(freezePatch(now, { gracePeriodSeconds: 30 }), {
      metadata: {
        annotations: { [FROZEN_ANNOTATION]: stamp, [STOP_ANNOTATION]: `${stamp};grace=30` },
      },
    });
    assert.deepEqual(unfreezePatch(), { metadata: { annotations: { [FROZEN_ANNOTATION]: null } } });
  });
});

describe("requests the node agent answers", () => {
  it("pause/unpause set spec.paused only", () => {
    assert.deepEqual(pausePatch(true), { spec: { paused: true } });
    assert.deepEqual(pausePatch(false), { spec: { paused: false } });
  });
  it("fsfreeze, fsthaw, refresh: one annotation each", () => {
    assert.deepEqual(fsPatch("fsfreeze", now), {
      metadata: { annotations: { [FSFREEZE_ANNOTATION]: stamp } },
    });
    assert.deepEqual(fsPatch("fsthaw", now), { metadata: { annotations: { [FSTHAW_ANNOTATION]: stamp } } });
    assert.deepEqual(refreshPatch(now), { metadata: { annotations: { [REFRESH_ANNOTATION]: stamp } } });
  });
});

describe("rotation", () => {
  it("sets schedule and keep; memory and consistent as given (absent: removed); other fields stay", () => {
    assert.deepEqual(rotationPatch({ schedule: "@daily", keep: 3, memory: true }), {
      spec: { snapshotPolicy: { schedule: "@daily", keep: 3, memory: true, consistent: null } },
    });
  });
  it("--off removes the policy", () => {
    assert.deepEqual(rotationPatch("off"), { spec: { snapshotPolicy: null } });
  });
});

describe("cdrom", () => {
  it("insert changes the medium only (bus, bootOnce stay by the merge)", () => {
    assert.deepEqual(cdromInsertPatch("iso-disk"), {
      spec: { cdrom: { image: null, diskRef: { name: "iso-disk" } } },
    });
    assert.deepEqual(cdromInsertPatch("/media/a.iso"), {
      spec: { cdrom: { image: "/media/a.iso", diskRef: null } },
    });
  });
  it("eject leaves an empty drive", () => {
    assert.deepEqual(cdromEjectPatch(), { spec: { cdrom: { image: "", diskRef: null } } });
  });
});

describe("disks: the whole list, guarded by the resourceVersion read", () => {
  const two = vm({
    disks: [
      { name: "root", diskRef: { name: "web-root" }, bootOrder: 1 },
      { name: "data", diskRef: { name: "web-data" }, active: false },
    ],
  });
  it("attach appends {name, diskRef} (name defaults to the VMDisk's), with bus and boot order when given", () => {
    assert.deepEqual(diskAttachPatch(vm(), "extra"), {
      metadata: { resourceVersion: "42" },
      spec: { disks: [{ name: "extra", diskRef: { name: "extra" } }] },
    });
    const patch = diskAttachPatch(two, "web-logs", { name: "logs", bus: "scsi", bootOrder: 3 });
    assert.deepEqual(patch.spec?.disks?.at(-1), {
      name: "logs",
      diskRef: { name: "web-logs" },
      bus: "scsi",
      bootOrder: 3,
    });
    assert.deepEqual(patch.spec?.disks?.slice(0, 2), two.spec.disks, "the others unchanged, in order");
  });
  it("attach refuses a name or a VMDisk already there", () => {
    assert.throws(() => diskAttachPatch(two, "other", { name: "data" }), /disk named "data" already/);
    assert.throws(() => diskAttachPatch(two, "web-data"), /attached to VM "web" already, as "data"/);
  });
  it("activate/deactivate set that entry's active, nothing else", () => {
    const on = diskActivePatch(two, "data", true);
    assert.deepEqual(on, {
      metadata: { resourceVersion: "42" },
      spec: {
        disks: [
          { name: "root", diskRef: { name: "web-root" }, bootOrder: 1 },
          { name: "data", diskRef: { name: "web-data" }, active: true },
        ],
      },
    });
    assert.equal(
      diskActivePatch(two, "web-root", false).spec?.disks?.[0]?.active,
      false,
      "found by its VMDisk",
    );
  });
  it("detach removes the entry; the last one leaves no list at all", () => {
    assert.deepEqual(diskDetachPatch(two, "root").spec?.disks, [
      { name: "data", diskRef: { name: "web-data" }, active: false },
    ]);
    const one = vm({ disks: [{ name: "a", diskRef: { name: "a" } }] });
    assert.deepEqual(diskDetachPatch(one, "a"), {
      metadata: { resourceVersion: "42" },
      spec: { disks: null },
    });
  });
  it("a disk the VM does not have is named with the ones it has", () => {
    assert.throws(() => findDisk(two, "nope"), /no disk "nope" \(its disks: root, data\)/);
    assert.throws(() => diskDetachPatch(vm(), "x"), /its disks: none/);
  });
});
