import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { VirtualMachineStatus } from "../../../src/api/virtualmachine.ts";
import { VMDiskStatus } from "../../../src/api/vmdisk.ts";
import * as views from "../../../src/controllers/watch-views.ts";
import { fingerprintOf, type StatusView } from "../../../src/runtime/watch.ts";

const VM_FIELDS = Object.keys(VirtualMachineStatus.properties);
const DISK_FIELDS = Object.keys(VMDiskStatus.properties);
/** Condition types our writers set (README "Who writes what"). */
const CONDITION_TYPES = [
  "Ready",
  "Reconciling",
  "Stalled",
  "Scheduled",
  "Admitted",
  "InUse",
  "RestartRequired",
  "Synchronized",
  "Paused",
  "Failure",
  "SnapshotPolicy",
];
const DISK_VIEWS = new Set<StatusView>([views.DISK_VIEW, views.CLUSTER_DISK_VIEW]);

/** The status fields (and condition types) a change of which wakes a watcher with VIEW. */
function wakers(view: StatusView, fields: readonly string[]): string[] {
  const base = {
    metadata: { name: "v", namespace: "ns", resourceVersion: "1" },
    spec: {},
    status: { conditions: CONDITION_TYPES.map((type) => ({ type, status: "True" })) },
  };
  const before = fingerprintOf(base as KubernetesObject, view);
  const changed = (status: object) =>
    fingerprintOf(
      { ...base, metadata: { ...base.metadata, resourceVersion: "2" }, status } as KubernetesObject,
      view,
    ) !== before;
  return [
    ...fields.filter((f) => f !== "conditions" && changed({ ...base.status, [f]: "changed" })),
    ...CONDITION_TYPES.filter((type) =>
      changed({
        conditions: base.status.conditions.map((c) => (c.type === type ? { ...c, status: "False" } : c)),
      }),
    ).map((type) => `conditions/${type}`),
  ].sort();
}

describe("watch views", () => {
  it("name only status fields and condition types that exist", () => {
    for (const [name, view] of Object.entries(views)) {
      const fields = DISK_VIEWS.has(view) ? DISK_FIELDS : VM_FIELDS;
      for (const f of "reads" in view ? view.reads : view.ignores) {
        if (f.startsWith("conditions/")) assert.ok(CONDITION_TYPES.includes(f.slice(11)), `${name}: ${f}`);
        else assert.ok(fields.includes(f), `${name}: ${f} is no status field`);
      }
    }
  });

  it("statistics refreshes wake no watcher, on either side", () => {
    for (const [name, view] of Object.entries(views)) {
      const fields = DISK_VIEWS.has(view) ? DISK_FIELDS : VM_FIELDS;
      assert.ok(!wakers(view, fields).includes("statistics"), name);
    }
  });

  it("cluster VM placement wakes for what it reads and writes, not for the agent's fields and conditions", () => {
    assert.deepEqual(wakers(views.CLUSTER_VM_VIEW, VM_FIELDS), [
      "clonedFrom",
      "conditions/Admitted",
      "conditions/Ready",
      "conditions/Reconciling",
      "conditions/Scheduled",
      "conditions/Stalled",
      "domainName",
      "interfaces",
      "nodeName",
      "observedGeneration",
      "printableStatus",
      "template",
      "uuid",
    ]);
  });

  it("the node agent wakes for all of its VMs' status but statistics and the controller's snapshot fields", () => {
    const woken = wakers(views.NODE_VM_VIEW, VM_FIELDS);
    for (const f of ["statistics", "snapshots", "snapshotPolicy", "conditions/SnapshotPolicy"])
      assert.ok(!woken.includes(f), f);
    // Its own fields, and the controller's placement, still wake it.
    for (const f of ["nodeName", "uuid", "interfaces", "template", "clonedFrom", "printableStatus", "disks"])
      assert.ok(woken.includes(f), f);
  });

  it("cluster disk placement ignores the agent's statistics, import progress and last operation", () => {
    const woken = wakers(views.CLUSTER_DISK_VIEW, DISK_FIELDS);
    assert.deepEqual(DISK_FIELDS.filter((f) => f !== "conditions" && !woken.includes(f)).sort(), [
      "lastOperation",
      "progress",
      "statistics",
    ]);
    // The template reconciler reports import progress: it wakes for it.
    assert.ok(wakers(views.DISK_VIEW, DISK_FIELDS).includes("progress"));
  });

  it("other cluster watchers of VMs wake only for what their reconcilers read", () => {
    assert.deepEqual(wakers(views.VM_IDENTITY_VIEW, VM_FIELDS), ["interfaces", "uuid"]);
    assert.deepEqual(wakers(views.RESTORE_VM_VIEW, VM_FIELDS), ["nodeName"]);
    assert.deepEqual(wakers(views.SNAPSHOT_VM_VIEW, VM_FIELDS), [
      "domainName",
      "nodeName",
      "printableStatus",
    ]);
    assert.deepEqual(wakers(views.DISK_USERS_VIEW, VM_FIELDS), [
      "clonedFrom",
      "disks",
      "nodeName",
      "template",
    ]);
    assert.deepEqual(wakers(views.SNAPSHOT_POLICY_VM_VIEW, VM_FIELDS), [
      "clonedFrom",
      "conditions/SnapshotPolicy",
      "snapshotPolicy",
    ]);
  });
});
