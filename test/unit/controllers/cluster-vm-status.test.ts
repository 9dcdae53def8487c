import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  firstPlacementStatus,
  notPlacedStatus,
  placedStatus,
  placementRequest,
  refusedStatus,
  unschedulableStatus,
} from "../../../src/controllers/cluster/vm-status.ts";

type Conditions = Array<{
  type: string;
  status: string;
  reason: string;
  message?: string;
  observedGeneration?: number;
}>;
const vm = (status: Record<string, unknown> = {}, spec: Record<string, unknown> = {}) =>
  ({
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "a", namespace: "t", generation: 3 },
    spec: { memory: "1Gi", cpu: { cores: 2 }, ...spec },
    status,
  }) as VirtualMachine;
const conditionOf = (s: Record<string, unknown>, type: string) =>
  (s.conditions as Conditions).find((c) => c.type === type);

describe("what the controller writes of a VM's placement", () => {
  it("first placement: where, what it holds, and Reconciling until its agent reports", () => {
    const s = firstPlacementStatus(vm(), "n1", {
      uuid: "u-1",
      interfaces: [{ name: "net", mac: "52:54:00:00:00:01" }],
    });
    assert.equal(s.nodeName, "n1");
    assert.equal(s.uuid, "u-1");
    assert.equal(s.observedGeneration, 3);
    assert.equal(conditionOf(s, "Scheduled")?.status, "True");
    assert.equal(conditionOf(s, "Reconciling")?.status, "True");
    assert.equal(conditionOf(s, "Ready")?.status, "False");
    assert.equal(conditionOf(s, "Stalled")?.status, "False");
    assert.equal(s.printableStatus, "Provisioning");
  });

  it("placed again (moved for room): the old node's refusal is no longer said", () => {
    const refused = vm({
      nodeName: "n1",
      printableStatus: "ErrorUnschedulable",
      conditions: [
        {
          type: "Stalled",
          status: "True",
          reason: "InsufficientCapacity",
          message: "node n1 has 2 free vCPUs",
        },
        {
          type: "Ready",
          status: "False",
          reason: "InsufficientCapacity",
          message: "node n1 has 2 free vCPUs",
        },
      ] as never,
    });
    const s = firstPlacementStatus(refused, "n2", { interfaces: [] });
    assert.equal(s.nodeName, "n2");
    assert.equal(s.printableStatus, "Provisioning");
    assert.equal(conditionOf(s, "Stalled")?.status, "False");
    assert.equal(conditionOf(s, "Ready")?.message, "placed on node n2; waiting for its node agent");
  });

  it("a refused placed VM keeps what it holds and says Admitted=False; no UUID is invented", () => {
    const s = placedStatus(
      vm(),
      "n1",
      { interfaces: [] },
      { field: "spec.uuid", reason: "NetworkNotAllowed", message: "no" },
    );
    assert.equal("uuid" in s, false);
    assert.equal(conditionOf(s, "Admitted")?.status, "False");
  });

  it("not placed, unschedulable and refused are Stalled or Reconciling with a printable status", () => {
    assert.equal(
      notPlacedStatus(vm(), "WaitingForSnapshot", "w", "reconciling").printableStatus,
      "Provisioning",
    );
    assert.equal(notPlacedStatus(vm(), "TemplateRefused", "r", "stalled").printableStatus, "Failed");
    const u = unschedulableStatus(vm(), "no node has room");
    assert.equal(u.printableStatus, "ErrorUnschedulable");
    assert.equal(conditionOf(u, "Stalled")?.status, "True");
    const r = refusedStatus(vm(), { field: "spec.networks", reason: "NetworkNotAllowed", message: "no" });
    assert.equal(r.printableStatus, "Failed");
    assert.equal(conditionOf(r, "Admitted")?.status, "False");
  });

  it("asks a node for the VM's vCPUs and memory, pins and networks", () => {
    const req = placementRequest(vm({}, { nodeName: "n2", hypervisor: "qemu" }), {
      node: "n3",
      disk: "root",
    });
    assert.equal(req.cpus, 2);
    assert.equal(req.memoryBytes, 2 ** 30);
    assert.equal(req.hypervisor, "qemu");
    assert.equal(req.nodeName, "n2");
    assert.deepEqual(req.disksNode, { node: "n3", disk: "root" });
  });
});
