// Storage limits, the pure parts: a namespace's provisioned-bytes budget, pool capacity with the
// admin's overcommit ratio, and what a VM paused by a full pool reports.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import { placeFloatingDisk } from "../../../src/controllers/cluster/disk-placement.ts";
import {
  poolRoom,
  provisionedInPool,
  storageOvercommitFromEnv,
} from "../../../src/controllers/cluster/pool-capacity.ts";
import { budgetRefusal, diskRefusal, formatBytes, heldBytes } from "../../../src/controllers/disk-limits.ts";
import { agentStatus, diskErrorsSeen } from "../../../src/controllers/node/vm-status.ts";
import {
  DISK_BYTES_LIMIT_ANNOTATION,
  tenancyDefaultsFromEnv,
  tenantPolicy,
} from "../../../src/controllers/tenant-policy.ts";
import { DomainDiskError, DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

const Gi = 2 ** 30;

function disk(
  name: string,
  size: string,
  opts: { placed?: boolean; has?: number; pool?: string; node?: string; sparse?: boolean } = {},
): VMDisk {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "t" },
    spec: {
      provisionedSize: size,
      ...(opts.pool ? { storagePool: opts.pool } : {}),
      ...(opts.sparse === false ? { sparse: false } : {}),
    },
    ...(opts.placed || opts.has !== undefined
      ? {
          status: {
            nodeName: opts.node ?? "n1",
            ...(opts.has !== undefined ? { provisionedSize: opts.has } : {}),
            ...(opts.pool ? { pool: opts.pool } : {}),
          },
        }
      : {}),
  };
}

const defaults = tenancyDefaultsFromEnv({ TENANT_DISK_BYTES_LIMIT: "10Gi" });
const policy = tenantPolicy(undefined, defaults);

describe("namespace disk byte budget", () => {
  it("counts placed disks by the size their volume has, placed-not-created ones by their spec, unplaced ones not at all", () => {
    assert.equal(heldBytes(disk("a", "4Gi", { has: 4 * Gi })), 4 * Gi);
    assert.equal(
      heldBytes(disk("a", "8Gi", { has: 4 * Gi })),
      4 * Gi,
      "a growth not granted holds nothing more",
    );
    assert.equal(heldBytes(disk("a", "4Gi", { placed: true })), 4 * Gi);
    assert.equal(heldBytes(disk("a", "4Gi")), 0);
  });

  it("admits a disk that fits exactly and refuses one byte more, naming what is used, the limit and its source", () => {
    const others = [disk("a", "6Gi", { has: 6 * Gi }), disk("waiting", "50Gi")];
    const fits = disk("b", "4Gi");
    assert.equal(budgetRefusal(fits, [...others, fits], policy), undefined);
    const over = disk("b", `${4 * Gi + 1}`);
    const refusal = budgetRefusal(over, [...others, over], policy);
    assert.equal(refusal?.reason, "DiskBytesLimitExceeded");
    assert.equal(refusal?.field, "spec.provisionedSize");
    assert.match(refusal!.message, /creating it .* over its limit of 10Gi \(set by the cluster default\)/);
    assert.match(refusal!.message, /other VMDisks hold 6Gi/);
    assert.match(refusal!.message, /waits and is created once the limit rises/);
  });

  it("a growth over the limit keeps the volume's size; a disk already holding its size is never refused", () => {
    const a = disk("a", "8Gi", { has: 4 * Gi });
    const b = disk("b", "4Gi", { has: 4 * Gi });
    const refusal = budgetRefusal(a, [a, b], policy);
    assert.match(
      refusal!.message,
      /growing it from 4Gi to 8Gi would bring .* to 12Gi, over its limit of 10Gi/,
    );
    assert.match(refusal!.message, /volume stays at 4Gi/);
    const lowered = tenantPolicy(
      { metadata: { name: "t", annotations: { [DISK_BYTES_LIMIT_ANNOTATION]: "1Gi" } } },
      defaults,
    );
    assert.equal(budgetRefusal(b, [a, b], lowered), undefined, "lowering the limit takes nothing away");
  });

  it("the namespace annotation overrides the default and is named in the message; no limit refuses nothing", () => {
    const annotated = tenantPolicy(
      { metadata: { name: "t", annotations: { [DISK_BYTES_LIMIT_ANNOTATION]: "20Gi" } } },
      defaults,
    );
    const big = disk("big", "15Gi");
    assert.equal(budgetRefusal(big, [big], annotated), undefined);
    const small = tenantPolicy(
      { metadata: { name: "t", annotations: { [DISK_BYTES_LIMIT_ANNOTATION]: "1Gi" } } },
      defaults,
    );
    assert.match(
      budgetRefusal(big, [big], small)!.message,
      /annotation vm.libvirt-operator.io\/disk-bytes-limit of namespace t/,
    );
    assert.equal(budgetRefusal(big, [big], tenantPolicy(undefined, tenancyDefaultsFromEnv({}))), undefined);
  });

  it("placements made by this process and not yet in the cache count (no double booking)", () => {
    const a = disk("a", "6Gi");
    const b = disk("b", "6Gi");
    assert.equal(budgetRefusal(b, [a, b], policy), undefined);
    const booked = (d: VMDisk) => d.metadata.name === "a";
    assert.equal(budgetRefusal(b, [a, b], policy, booked)?.reason, "DiskBytesLimitExceeded");
  });

  it("a pool outside the allowlist is refused before the budget is looked at", () => {
    const d = disk("d", "1Gi", { pool: "other" });
    assert.equal(diskRefusal(d, [d], policy)?.reason, "StoragePoolNotAllowed");
    assert.equal(diskRefusal(disk("d", "1Gi", { pool: "libvirt-operator" }), [], policy), undefined);
  });

  it("formats bytes as people read them", () => {
    assert.equal(formatBytes(2 * Gi), "2Gi");
    assert.equal(formatBytes(1.5 * Gi), "1.5Gi");
    assert.equal(formatBytes(300 * 2 ** 20), "300Mi");
    assert.equal(formatBytes(12), "12 bytes");
  });
});

describe("pool capacity with overcommit", () => {
  const facts = (capGi: number, freeGi = capGi, shared = false) => ({
    type: "dir",
    shared,
    capacityBytes: capGi * Gi,
    availableBytes: freeGi * Gi,
  });

  it("STORAGE_OVERCOMMIT defaults to 1 and refuses nonsense", () => {
    assert.equal(storageOvercommitFromEnv(undefined), 1);
    assert.equal(storageOvercommitFromEnv("2.5"), 2.5);
    assert.throws(() => storageOvercommitFromEnv("0"), /STORAGE_OVERCOMMIT: "0" is not a positive number/);
    assert.throws(() => storageOvercommitFromEnv("lots"), /STORAGE_OVERCOMMIT/);
  });

  it("sums what disks placed in the pool are promised (sparse ones in full), per node, or cluster-wide when shared", () => {
    const disks = [
      disk("a", "30Gi", { placed: true, pool: "p", node: "n1" }),
      disk("b", "10Gi", { has: 20 * Gi, pool: "p", node: "n1" }),
      disk("c", "50Gi", { placed: true, pool: "p", node: "n2" }),
      disk("d", "70Gi", { pool: "p" }),
    ];
    const locate = (d: VMDisk) =>
      d.status?.nodeName ? { node: d.status.nodeName, pool: d.status.pool ?? "" } : undefined;
    assert.equal(provisionedInPool(disks, { node: "n1", pool: "p", shared: false }, locate), 50 * Gi);
    assert.equal(provisionedInPool(disks, { node: "n1", pool: "p", shared: true }, locate), 100 * Gi);
    assert.equal(
      provisionedInPool(disks, { node: "n1", pool: "p", shared: false }, locate, disks[0]),
      20 * Gi,
    );
  });

  it("a disk fits up to capacity × overcommit; the refusal names the pool, its capacity and what is provisioned", () => {
    const pool = { name: "p", node: "n1", facts: facts(100) };
    const need = (gib: number) => ({ bytes: gib * Gi, preallocated: false });
    assert.equal(poolRoom(pool, 60 * Gi, need(40), 1).refusal, undefined);
    assert.equal(
      poolRoom(pool, 60 * Gi, need(41), 1).refusal,
      "pool p on node n1 has 100Gi capacity, 60Gi already provisioned; the disk needs 41Gi",
    );
    assert.equal(poolRoom(pool, 60 * Gi, need(140), 2).refusal, undefined);
    assert.equal(
      poolRoom(pool, 60 * Gi, need(141), 2).refusal,
      "pool p on node n1 has 100Gi capacity × overcommit 2 = 200Gi, 60Gi already provisioned; the disk needs 141Gi",
    );
    assert.match(
      poolRoom({ ...pool, facts: facts(100, 5) }, 0, { bytes: 10 * Gi, preallocated: true }, 1).refusal!,
      /has 5Gi free; the preallocated disk needs 10Gi/,
    );
  });

  it("a floating disk goes to the node with most promisable room; none fits: every node says why", () => {
    const nodes = [
      { name: "a", usable: true, storagePools: { p: facts(100) }, provisioned: { p: 90 * Gi } },
      { name: "b", usable: true, storagePools: { p: facts(50) }, provisioned: { p: 10 * Gi } },
    ];
    assert.deepEqual(placeFloatingDisk(disk("d", "5Gi", { pool: "p" }), nodes), { node: "b" });
    assert.deepEqual(placeFloatingDisk(disk("d", "5Gi", { pool: "p" }), nodes, 2), { node: "a" });
    const error = (placeFloatingDisk(disk("d", "60Gi", { pool: "p" }), nodes) as { error: string }).error;
    assert.match(
      error,
      /a: pool p on node a has 100Gi capacity, 90Gi already provisioned; the disk needs 60Gi/,
    );
    assert.match(error, /b: pool p on node b has 50Gi capacity, 10Gi already provisioned/);
  });
});

describe("a VM paused by a full pool", () => {
  const vm: VirtualMachine = {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", generation: 1 },
    spec: { memory: "1Gi", disks: [{ name: "data", diskRef: { name: "data-disk" } }] },
  };
  const attached = [{ name: "data", target: "vdb" }];
  const observation = (errors: Array<{ disk: string; error: number }>) => ({
    domainName: "ns_v",
    domain: { state: DomainState.Paused, reason: 5, id: 3 },
    definitionInSync: true,
    stopping: false,
    startCount: 1,
    diskErrors: diskErrorsSeen(vm, attached, errors),
  });
  const cond = (s: ReturnType<typeof agentStatus>, type: string) =>
    s.conditions?.find((c) => c.type === type);

  it("is Ready False and Stalled with reason DiskFull, naming the disk and its VMDisk", () => {
    const s = agentStatus(vm, observation([{ disk: "vdb", error: DomainDiskError.NoSpace }]), new Date());
    assert.equal(s.printableStatus, "Paused");
    assert.equal(cond(s, "Ready")?.status, "False");
    assert.equal(cond(s, "Ready")?.reason, "DiskFull");
    assert.equal(cond(s, "Stalled")?.status, "True");
    assert.match(
      cond(s, "Ready")!.message,
      /disk vdb \(VMDisk data-disk\) ran out of space in its storage pool/,
    );
    assert.equal(cond(s, "Paused")?.reason, "IOError");
  });

  it("another I/O error is DiskError, also while libvirt names no disk; a pause without I/O error is the usual one", () => {
    const other = agentStatus(
      vm,
      observation([{ disk: "vdb", error: DomainDiskError.Unspecified }]),
      new Date(),
    );
    assert.equal(cond(other, "Ready")?.reason, "DiskError");
    const none = agentStatus(vm, observation([{ disk: "vdb", error: DomainDiskError.None }]), new Date());
    assert.equal(cond(none, "Ready")?.reason, "DiskError", "paused for an I/O error, no disk named yet");
    assert.match(cond(none, "Ready")!.message, /an I\/O error on a disk/);
    const { diskErrors: _, ...notIo } = observation([]);
    assert.equal(cond(agentStatus(vm, notIo, new Date()), "Ready")?.reason, "Paused", "paused by the user");
  });
});
