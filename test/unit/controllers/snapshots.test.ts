import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import type { VMRestore, VMSnapshot } from "../../../src/api/vmsnapshot.ts";
import { judgeRestore } from "../../../src/controllers/cluster/restore-judge.ts";
import { acceptSnapshot, uniqueTimestamp } from "../../../src/controllers/cluster/snapshot-accept.ts";
import { snapshotFigures } from "../../../src/controllers/cluster/snapshot-metrics.ts";
import { snapshotMirror } from "../../../src/controllers/cluster/snapshot-mirror.ts";
import { snapshotBytesOf, snapshotRefusal } from "../../../src/controllers/disk-limits.ts";
import { DomainLocks } from "../../../src/controllers/node/domain-locks.ts";
import { hardwareChanges, shouldRunAfterRestore } from "../../../src/controllers/node/restore-plan.ts";
import {
  internalSnapshotXml,
  memoryImagePath,
  parseDuration,
  planSnapshot,
} from "../../../src/controllers/node/snapshot-plan.ts";
import type { ObservedDisk } from "../../../src/hypervisor/domain/disks.ts";

const vm = (
  spec: Partial<VirtualMachine["spec"]> = {},
  status: VirtualMachine["status"] = {},
): VirtualMachine => ({
  apiVersion: "vm.libvirt-operator.io/v1alpha1",
  kind: "VirtualMachine",
  metadata: { name: "web", namespace: "team", uid: "uid-1" },
  spec: { memory: "128Mi", ...spec },
  status,
});
const disk = (name: string, spec: Partial<VMDisk["spec"]> = {}): VMDisk => ({
  apiVersion: "v",
  kind: "VMDisk",
  metadata: { name, namespace: "team" },
  spec: { provisionedSize: "1Gi", ...spec },
});
const observed = (name: string, target: string, readOnly = false): ObservedDisk => ({
  name,
  path: `/pool/${name}`,
  target,
  bus: "virtio",
  readOnly,
});
const snapshot = (status: VMSnapshot["status"], spec: Partial<VMSnapshot["spec"]> = {}): VMSnapshot => ({
  apiVersion: "v",
  kind: "VMSnapshot",
  metadata: { name: "s1", namespace: "team", creationTimestamp: "2026-11-26T10:00:00Z" },
  spec: { vmName: "web", ...spec },
  status,
});

describe("what a snapshot holds and how", () => {
  const disks = new Map([
    ["root", disk("root")],
    ["data", disk("data", { format: "raw" })],
    ["iso", disk("iso", { format: "raw", readOnly: true })],
    ["shared", disk("shared", { shareable: true })],
  ]);
  const named = (n: string) => disks.get(n);

  it("qcow2 disks only: libvirt's internal snapshot; read-only and shareable disks stay out", () => {
    const v = vm({
      disks: [
        { name: "root", diskRef: { name: "root" } },
        { name: "iso", diskRef: { name: "iso" } },
        { name: "shared", diskRef: { name: "shared" } },
      ],
    });
    const dd = {
      root: observed("root", "vda"),
      iso: observed("iso", "vdb", true),
      shared: observed("shared", "vdc"),
    };
    const plan = planSnapshot(v, dd, named, "pool", 1700000000);
    assert.ok(!("refused" in plan));
    assert.equal(plan.method, "Internal");
    assert.deepEqual(
      plan.disks.map((d) => [d.name, d.volume, d.copyVolume]),
      [["root", "team_root.qcow2", "team_root_snap-1700000000.qcow2"]],
    );
    assert.deepEqual(plan.skipped, ["iso: read-only", "shared: shareable (other VMs write it too)"]);
    const xml = internalSnapshotXml("lvo-1", "a <label> & more", plan, dd, true);
    assert.match(xml, /<memory snapshot="internal"/);
    assert.match(xml, /<disk name="vda" snapshot="internal"/);
    assert.match(xml, /<disk name="vdb" snapshot="no"/);
    assert.match(xml, /a &lt;label&gt; &amp; more/);
    assert.match(internalSnapshotXml("lvo-1", "", plan, dd, false), /<memory snapshot="no"/);
  });

  it("a raw disk or UEFI firmware: every volume is copied", () => {
    const withRaw = vm({
      disks: [
        { name: "root", diskRef: { name: "root" } },
        { name: "data", diskRef: { name: "data" } },
      ],
    });
    const dd = { root: observed("root", "vda"), data: observed("data", "vdb") };
    const plan = planSnapshot(withRaw, dd, named, "pool", 5);
    assert.ok(!("refused" in plan));
    assert.equal(plan.method, "VolumeCopy");
    assert.match(plan.why, /raw disk data/);
    assert.deepEqual(
      plan.disks.map((d) => d.copyVolume),
      ["team_root_snap-5.qcow2", "team_data_snap-5.img"],
    );
    const uefi = vm({ boot: { firmware: "uefi" }, disks: [{ name: "root", diskRef: { name: "root" } }] });
    const p2 = planSnapshot(uefi, { root: observed("root", "vda") }, named, "pool", 5);
    assert.ok(!("refused" in p2) && p2.method === "VolumeCopy" && /UEFI/.test(p2.why));
  });

  it("a disk not attached yet or missing refuses the snapshot", () => {
    const v = vm({ disks: [{ name: "root", diskRef: { name: "root" } }] });
    assert.deepEqual(planSnapshot(v, {}, named, "p", 1), {
      refused: "disk root is not attached to the domain yet",
    });
    const gone = vm({ disks: [{ name: "x", diskRef: { name: "nope" } }] });
    assert.match(
      (planSnapshot(gone, { x: observed("x", "vda") }, named, "p", 1) as { refused: string }).refused,
      /does not exist/,
    );
  });

  it("deadlines and memory image names", () => {
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("90s"), 90_000);
    for (const bad of ["", "5", "m5", "1d", "-1s"]) assert.equal(parseDuration(bad), undefined, bad);
    assert.equal(memoryImagePath("/mem/", "team", "web", 7), "/mem/team_web_snap-7.mem");
    assert.throws(() => memoryImagePath("/mem", "team", "../x", 7));
  });
});

describe("handing a snapshot to a node", () => {
  const now = Date.parse("2026-11-26T10:00:10Z");
  it("waits for a VM that is not placed, until the deadline, then fails", () => {
    const s = snapshot(undefined, { failureDeadline: "1m" });
    assert.ok("wait" in acceptSnapshot(s, undefined, now));
    assert.ok("wait" in acceptSnapshot(s, vm({}, { nodeName: "n1" }), now), "no domain yet");
    const late = acceptSnapshot(s, undefined, now + 60_000);
    assert.ok(
      "fail" in late && late.fail.reason === "VMNotFound" && /failureDeadline passed/.test(late.fail.message),
    );
    assert.deepEqual(acceptSnapshot(s, vm({}, { nodeName: "n1", domainName: "team_web" }), now), {
      hand: { node: "n1", vmUID: "uid-1" },
    });
  });

  it("timestamps are unique per VM", () => {
    assert.equal(uniqueTimestamp(1_700_000_000_500, []), 1_700_000_000);
    assert.equal(uniqueTimestamp(1_700_000_000_500, [1_700_000_000, 1_700_000_001]), 1_700_000_002);
  });
});

describe("judging a restore", () => {
  const placed = vm({ disks: [{ name: "root", diskRef: { name: "root" } }] }, { nodeName: "n1" });
  const ready = snapshot({
    phase: "Succeeded",
    readyToUse: true,
    vmUID: "uid-1",
    nodeName: "n1",
    method: "Internal",
    disks: [{ name: "root", vmDisk: "root" }],
  });
  const restore = (name = "r1", status?: VMRestore["status"]): VMRestore => ({
    apiVersion: "v",
    kind: "VMRestore",
    metadata: { name, namespace: "team" },
    spec: { vmName: "web", snapshotName: "s1" },
    ...(status ? { status } : {}),
  });
  const reason = (j: ReturnType<typeof judgeRestore>) =>
    "refuse" in j ? j.refuse.reason : Object.keys(j)[0];

  it("accepts a ready snapshot of this very VM on its node", () => {
    assert.deepEqual(judgeRestore(restore(), placed, ready, []), { hand: { node: "n1" } });
  });

  it("refuses what it must, each with its reason", () => {
    assert.equal(reason(judgeRestore(restore(), undefined, ready, [])), "VMNotFound");
    assert.equal(reason(judgeRestore(restore(), placed, undefined, [])), "SnapshotNotFound");
    assert.equal(
      reason(judgeRestore(restore(), placed, { ...ready, spec: { vmName: "other" } }, [])),
      "WrongVM",
    );
    const earlier = { ...ready, status: { ...ready.status, vmUID: "uid-0" } };
    assert.equal(reason(judgeRestore(restore(), placed, earlier, [])), "EarlierVM");
    assert.equal(
      reason(judgeRestore(restore(), placed, snapshot({ phase: "Failed", vmUID: "uid-1" }), [])),
      "SnapshotFailed",
    );
    const lost = { ...ready, status: { ...ready.status, readyToUse: false } };
    assert.equal(reason(judgeRestore(restore(), placed, lost, [])), "SnapshotNotReady");
    const running = restore("r0", { nodeName: "n1", phase: "InProgress" });
    assert.equal(reason(judgeRestore(restore(), placed, ready, [running])), "RestoreInProgress");
    const done = restore("r0", { nodeName: "n1", phase: "Succeeded" });
    assert.equal(reason(judgeRestore(restore(), placed, ready, [done])), "hand");
    const detached = vm({ disks: [] }, { nodeName: "n1" });
    assert.equal(reason(judgeRestore(restore(), detached, ready, [])), "DiskDetached");
  });

  it("refuses a disk made anew since the snapshot, and a copy restore over internal snapshots", () => {
    const withUid = {
      ...ready,
      status: { ...ready.status, disks: [{ name: "root", vmDisk: "root", vmDiskUID: "d1" }] },
    };
    const remade = { ...disk("root"), metadata: { name: "root", namespace: "team", uid: "d2" } };
    assert.equal(reason(judgeRestore(restore(), placed, withUid, [], [remade])), "DiskReplaced");
    const same = { ...remade, metadata: { ...remade.metadata, uid: "d1" } };
    assert.equal(reason(judgeRestore(restore(), placed, withUid, [], [same])), "hand");
    const copy = { ...withUid, status: { ...withUid.status, method: "VolumeCopy" as const } };
    const internal: VMSnapshot = {
      ...ready,
      metadata: { name: "older", namespace: "team" },
      status: {
        ...ready.status,
        method: "Internal",
        readyToUse: true,
        disks: [{ name: "root", vmDisk: "root" }],
      },
    };
    const j = judgeRestore(restore(), placed, copy, [], [same], [copy, internal]);
    assert.ok(
      "refuse" in j && j.refuse.reason === "InternalSnapshotsInside" && /older/.test(j.refuse.message),
    );
  });

  it("waits for a snapshot still being taken", () => {
    assert.equal(
      reason(judgeRestore(restore(), placed, snapshot({ phase: "InProgress", vmUID: "uid-1" }), [])),
      "wait",
    );
  });

  it("runs the VM afterwards as its runStrategy says", () => {
    assert.equal(shouldRunAfterRestore(undefined, false), true);
    assert.equal(shouldRunAfterRestore("RerunOnFailure", false), true);
    for (const strategy of ["Always", "RerunOnFailure", "Manual", "Once"])
      assert.equal(shouldRunAfterRestore(strategy, true, true), false, `frozen ${strategy}`);
    assert.equal(shouldRunAfterRestore("Halted", true), false);
    assert.equal(shouldRunAfterRestore("Manual", true), true);
    assert.equal(shouldRunAfterRestore("Manual", false), false);
  });

  it("says what changed since the snapshot and was not restored", () => {
    const notes = hardwareChanges(
      { memory: "128Mi", disks: [{ name: "root" }] },
      {
        memory: "256Mi",
        disks: [
          { name: "root", diskRef: { name: "root" } },
          { name: "new", diskRef: { name: "n" } },
        ],
      },
      true,
    );
    assert.match(
      notes[0]!,
      /memory changed since the snapshot and is not restored: the guest resumed with the snapshot's hardware/,
    );
    assert.match(notes[1]!, /disks added since the snapshot \(new\)/);
    assert.deepEqual(hardwareChanges({ memory: "128Mi" }, { memory: "128Mi" }, false), []);
  });
});

describe("the VM mirrors its snapshots", () => {
  it("lists its taken snapshots oldest first, only its own", () => {
    const v = vm({}, { disks: [{ name: "root", actualSize: 1000 }] });
    const mk = (name: string, ts: number, extra: Partial<VMSnapshot["status"]> = {}): VMSnapshot => ({
      ...snapshot(
        { phase: "Succeeded", vmUID: "uid-1", timestamp: ts, storedBytes: 10, ...extra },
        { displayName: `Snap_${name}` },
      ),
      metadata: { name, namespace: "team" },
    });
    const out = snapshotMirror(v, [
      mk("b", 2),
      mk("a", 1),
      mk("old", 0, { vmUID: "uid-0" }),
      mk("f", 3, { phase: "Failed" }),
    ]);
    assert.deepEqual(
      (out.snapshots as Array<{ name: string; displayName: string }>).map((s) => [s.name, s.displayName]),
      [
        ["a", "Snap_a"],
        ["b", "Snap_b"],
      ],
    );
  });
});

describe("snapshots in the namespace's disk byte budget", () => {
  const policy = (limit?: number) =>
    ({
      networks: ["default"],
      storagePools: ["p"],
      ...(limit !== undefined ? { diskBytesLimit: limit } : {}),
      source: { networks: "", storagePools: "", diskBytesLimit: "the namespace annotation" },
    }) as unknown as Parameters<typeof snapshotRefusal>[4];
  const placedDisk = (name: string, size: string, format: "qcow2" | "raw" = "qcow2") => ({
    ...disk(name, { format, provisionedSize: size }),
    status: { nodeName: "n1", provisionedSize: Number.parseInt(size, 10) * 2 ** 30 },
  });
  const running = vm(
    { memory: "1Gi", disks: [{ name: "root", diskRef: { name: "root" } }] },
    { printableStatus: "Running" },
  );

  it("counts a copy of each disk when one is raw, the memory when the guest runs", () => {
    const raw = [placedDisk("root", "4Gi", "raw")];
    assert.equal(snapshotRefusal(running, false, raw, [], policy()), undefined, "no limit, no refusal");
    assert.equal(snapshotRefusal(running, false, raw, [], policy(8 * 2 ** 30)), undefined, "4 + 4 fits 8");
    const over = snapshotRefusal(running, true, raw, [], policy(8 * 2 ** 30));
    assert.match(over?.message ?? "", /up to 5Gi \(a copy of each disk and the guest's memory\)/);
    const qcow = [placedDisk("root", "4Gi")];
    assert.equal(
      snapshotRefusal(running, false, qcow, [], policy(5 * 2 ** 30)),
      undefined,
      "internal: 4 + 1",
    );
    const taken = snapshot({ phase: "Succeeded", storedBytes: 2 ** 30 });
    assert.ok(snapshotRefusal(running, false, qcow, [taken], policy(5 * 2 ** 30)), "stored snapshots count");
    assert.equal(snapshotBytesOf([taken, snapshot({ phase: "Failed", storedBytes: 5 })]), 2 ** 30);
  });
});

describe("snapshot metrics", () => {
  it("count, bytes and last success of taken snapshots; failed ones apart", () => {
    const mk = (name: string, vmName: string, status: VMSnapshot["status"]): VMSnapshot => ({
      ...snapshot(status, { vmName }),
      metadata: { name, namespace: "team" },
    });
    const figures = snapshotFigures([
      mk("a", "web", { phase: "Succeeded", storedBytes: 5, creationTime: "2026-11-26T10:00:00Z" }),
      mk("b", "web", { phase: "Succeeded", storedBytes: 7, creationTime: "2026-11-26T11:00:00Z" }),
      mk("c", "web", { phase: "Failed" }),
      mk("d", "db", { phase: "InProgress" }),
    ]);
    assert.deepEqual(figures, [
      {
        namespace: "team",
        name: "web",
        count: 2,
        storedBytes: 12,
        failed: 1,
        lastSuccessSeconds: Date.parse("2026-11-26T11:00:00Z") / 1000,
      },
      { namespace: "team", name: "db", count: 0, storedBytes: 0, failed: 0 },
    ]);
  });
});

describe("one piece of work per VM at a time", () => {
  it("a lock taken is never waited for: the second caller hears who holds it; other keys run", async () => {
    const locks = new DomainLocks();
    let release!: () => void;
    const first = locks.tryRun(
      ["vm", "disk-a"],
      "restore",
      () => new Promise<string>((r) => (release = () => r("restored"))),
    );
    const second = await locks.tryRun(["disk-a"], "disk reconcile", async () => "ran");
    assert.ok("busy" in second && second.busy.what === "restore" && second.busy.key === "disk-a");
    assert.deepEqual(await locks.tryRun(["other-vm"], "reconcile", async () => "ran"), { done: "ran" });
    assert.equal(locks.holder("vm")?.what, "restore");
    release();
    assert.deepEqual(await first, { done: "restored" });
    assert.equal(locks.holder("vm"), undefined);
    assert.deepEqual(await locks.tryRun(["vm", "disk-a"], "snapshot", async () => "taken"), {
      done: "taken",
    });
  });

  it("releases its locks when the work fails", async () => {
    const locks = new DomainLocks();
    await assert.rejects(locks.tryRun(["vm"], "x", async () => Promise.reject(new Error("boom"))));
    assert.equal(locks.holder("vm"), undefined);
  });
});
