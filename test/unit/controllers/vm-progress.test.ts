import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { progressFromStatus, withMemory } from "../../../src/controllers/node/vm-progress.ts";

function vm(status: VirtualMachine["status"]): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns" },
    spec: { memory: "1Gi" },
    status,
  };
}
const at = "2026-11-22T10:00:00.000Z";

describe("progressFromStatus", () => {
  it("picks up a shutdown, a power cycle or a reboot that was in flight when the agent restarted", () => {
    const running = (type: string) => vm({ lastOperation: { type, phase: "Running", startedAt: at } });
    assert.equal(progressFromStatus(running("Stop")).shutdownRequestedAt, Date.parse(at));
    assert.equal(progressFromStatus(running("Restart")).shutdownRequestedAt, Date.parse(at));
    assert.equal(progressFromStatus(running("Reboot")).rebootRequestedAt, Date.parse(at));
    const done = progressFromStatus(
      vm({ lastOperation: { type: "Stop", phase: "Succeeded", startedAt: at } }),
    );
    assert.equal(done.shutdownRequestedAt, undefined);
  });

  it("remembers the fields only the agent writes", () => {
    const p = progressFromStatus(
      vm({ startCount: 2, restartRequestHandled: "t1", cdromBootedImage: "/a.iso" }),
    );
    assert.deepEqual([p.startCount, p.restartHandled, p.cdromBootedImage], [2, "t1", "/a.iso"]);
  });

  it("its memory wins over a stale cache", () => {
    const stale = vm({ startCount: 0 });
    const p = { ...progressFromStatus(stale), startCount: 1, restartHandled: "t2" };
    const v = withMemory(stale, p);
    assert.equal(v.status?.startCount, 1);
    assert.equal(v.status?.restartRequestHandled, "t2");
  });
});
