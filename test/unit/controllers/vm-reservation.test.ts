import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { START_ANNOTATION, STOP_ANNOTATION } from "../../../src/api/names.ts";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { type NodeView, place } from "../../../src/controllers/cluster/placement.ts";
import { capacityNeed, reservesCapacity } from "../../../src/controllers/cluster/vm-reservation.ts";

function vm(
  runStrategy: string | undefined,
  status: Record<string, unknown> = {},
  annotations: Record<string, string> = {},
): VirtualMachine {
  return {
    metadata: { namespace: "t", name: "v", annotations },
    spec: { memory: "1Gi", cpu: { cores: 2 }, ...(runStrategy ? { runStrategy } : {}) },
    status,
  } as unknown as VirtualMachine;
}

describe("what a VM reserves on its node", () => {
  it("a VM that should run reserves its vCPUs and memory; one kept stopped reserves nothing", () => {
    assert.equal(reservesCapacity(vm(undefined)), true);
    assert.equal(reservesCapacity(vm("Always")), true);
    assert.equal(reservesCapacity(vm("Halted")), false);
    assert.deepEqual(capacityNeed(vm("Always")), { cpus: 2, memoryBytes: 2 ** 30 });
    assert.deepEqual(capacityNeed(vm("Halted")), { cpus: 0, memoryBytes: 0 });
    // Frozen (kubectl vm freeze) or being deleted: stopped whatever the strategy.
    assert.equal(reservesCapacity(vm("Always", {}, { "vm.libvirt-operator.io/frozen": "" })), false);
  });

  it("Manual follows the newest start or stop request; Once, whether it started yet", () => {
    assert.equal(reservesCapacity(vm("Manual")), false);
    const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, s)).toISOString();
    assert.equal(reservesCapacity(vm("Manual", {}, { [START_ANNOTATION]: at(1) })), true);
    assert.equal(
      reservesCapacity(vm("Manual", {}, { [START_ANNOTATION]: at(1), [STOP_ANNOTATION]: at(2) })),
      false,
    );
    assert.equal(reservesCapacity(vm("Once")), true);
    assert.equal(reservesCapacity(vm("Once", { startCount: 1, hypervisorStatus: "HALTED" })), false);
  });

  it("RerunOnFailure: a guest that powered itself off (the agent says Stopped) reserves nothing", () => {
    assert.equal(reservesCapacity(vm("RerunOnFailure")), true);
    assert.equal(
      reservesCapacity(vm("RerunOnFailure", { hypervisorStatus: "HALTED", printableStatus: "Stopped" })),
      false,
    );
    assert.equal(
      reservesCapacity(vm("RerunOnFailure", { hypervisorStatus: "HALTED", printableStatus: "Starting" })),
      true,
    );
  });

  it("a domain still running, paused, starting or stopping holds its room whatever the intent", () => {
    for (const status of [
      { hypervisorStatus: "RUNNING" },
      { hypervisorStatus: "PAUSED" },
      { hypervisorStatus: "SHUTDOWN" },
      { printableStatus: "Starting" },
      { printableStatus: "Stopping" },
    ])
      assert.equal(reservesCapacity(vm("Halted", status)), true, JSON.stringify(status));
    assert.equal(
      reservesCapacity(vm("Halted", { hypervisorStatus: "HALTED", printableStatus: "Stopped" })),
      false,
    );
  });

  it("a VM needing nothing is placed on a full node; one needing a vCPU is not", () => {
    const full: NodeView = {
      name: "n",
      labels: {},
      enabled: true,
      heartbeatFresh: true,
      capacity: { cpus: 1, memoryBytes: 2 ** 30, hypervisors: ["qemu"] },
      allocated: { cpus: 9, memoryBytes: 2 ** 30 },
    };
    const policy = { cpuOvercommit: 8 };
    assert.deepEqual(place({ hypervisor: "qemu", ...capacityNeed(vm("Halted")) }, [full], policy), {
      node: "n",
    });
    assert.ok("error" in place({ hypervisor: "qemu", ...capacityNeed(vm("Always")) }, [full], policy));
    // Still only where it could run: the hypervisor and the node's other rules hold.
    assert.ok("error" in place({ hypervisor: "kvm", cpus: 0, memoryBytes: 0 }, [full], policy));
  });
});
