import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { placedStatus } from "../../../src/controllers/cluster/vm-status.ts";
import { AGENT_STATUS_FIELDS, agentStatus } from "../../../src/controllers/node/vm-status.ts";
import { CONDITIONS_RULE, ownedStatusChanged } from "../../../src/controllers/status-diff.ts";
import {
  asPlacedOn,
  decodePlacement,
  encodePlacement,
  PLACEMENT_ANNOTATION,
  placedNode,
  placementOf,
  placementRecorded,
} from "../../../src/controllers/vm-placement.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

const UUID = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
const NIC = { name: "default", mac: "52:54:00:aa:bb:cc", network: "default", ipv4: "10.0.0.5" };
const placed = { nodeName: "n1", uuid: UUID, interfaces: [NIC] };

function vm(annotation?: string, status: VirtualMachine["status"] = {}): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      name: "v",
      namespace: "ns",
      generation: 1,
      ...(annotation === undefined ? {} : { annotations: { [PLACEMENT_ANNOTATION]: annotation } }),
    },
    spec: { memory: "1Gi" },
    status,
  };
}

describe("the placement record", () => {
  it("reads back what was written, and an unchanged placement is the same string", () => {
    const text = encodePlacement(placed);
    assert.deepEqual(decodePlacement(text), placed);
    assert.equal(encodePlacement({ interfaces: [{ ...NIC }], uuid: UUID, nodeName: "n1" }), text);
    assert.equal(placedNode(vm(text)), "n1");
    assert.ok(placementRecorded(vm(text)));
  });

  it("a VM placed before the record existed is read from its status", () => {
    const legacy = vm(undefined, { nodeName: "n2", uuid: UUID, interfaces: [{ ...NIC, linked: true }] });
    assert.deepEqual(placementOf(legacy), { nodeName: "n2", uuid: UUID, interfaces: [NIC] });
    assert.equal(placementRecorded(legacy), false);
    assert.deepEqual(placementOf(vm()), { interfaces: [] });
  });

  it("the record wins over status: a VM unplaced after its node was lost is not placed", () => {
    const unplaced = vm(encodePlacement({ uuid: UUID, interfaces: [NIC] }), { nodeName: "gone" });
    assert.equal(placedNode(unplaced), undefined);
    assert.equal(placementOf(unplaced).uuid, UUID);
  });

  it("a malformed or hostile record counts as no placement (nothing of it reaches libvirt or DHCP)", () => {
    for (const bad of [
      "not json",
      "[]",
      JSON.stringify({ nodeName: "n1" }),
      JSON.stringify({ nodeName: "../etc", interfaces: [] }),
      JSON.stringify({ uuid: "x'/><evil/>", interfaces: [] }),
      JSON.stringify({ interfaces: [{ name: "nic", mac: "52:54:00:aa:bb:cc'/>" }] }),
      JSON.stringify({ interfaces: [{ name: "nic", ipv4: "10.0.0.1,set:evil" }] }),
      JSON.stringify({ interfaces: [{ name: "nic", network: "a b" }] }),
      JSON.stringify({ interfaces: [{ name: "nic", ipv6: 5 }] }),
      JSON.stringify({ interfaces: Array.from({ length: 17 }, (_, i) => ({ name: `n${i}` })) }),
    ])
      assert.deepEqual(decodePlacement(bad), { interfaces: [] }, bad);
  });

  it("asPlacedOn keeps what the VM holds and names the node", () => {
    const unplaced = vm(encodePlacement({ uuid: UUID, interfaces: [NIC] }));
    assert.deepEqual(placementOf(asPlacedOn(unplaced, "n3")), { ...placed, nodeName: "n3" });
    assert.equal(placedNode(asPlacedOn(vm(), "n3")), "n3");
  });
});

describe("one status write for a new VM", () => {
  const running = {
    domainName: "ns_v",
    domain: { state: DomainState.Running, reason: 1, id: 7 },
    definitionInSync: true,
    stopping: false,
    startCount: 1,
    links: { default: true },
  };

  it("the agent's report carries the placement and Scheduled", () => {
    const s = agentStatus(vm(encodePlacement(placed)), running, new Date());
    assert.equal(s.nodeName, "n1");
    assert.equal(s.uuid, UUID);
    assert.deepEqual(s.interfaces, [{ ...NIC, linked: true }]);
    const scheduled = s.conditions?.find((c) => c.type === "Scheduled");
    assert.equal(scheduled?.status, "True");
    assert.equal(scheduled?.message, "placed on node n1");
  });

  it("after the report the controller's placed status changes nothing (no second controller write)", () => {
    const annotated = vm(encodePlacement(placed));
    const reported = agentStatus(annotated, running, new Date());
    const after = vm(encodePlacement(placed), reported);
    const controller = placedStatus(after, "n1", { uuid: UUID, interfaces: [NIC] });
    assert.equal(
      ownedStatusChanged(reported as Record<string, unknown>, controller, Object.keys(controller), {
        conditions: CONDITIONS_RULE,
        interfaces: { key: "name", ownsSet: true },
      }),
      false,
    );
    // Nor does the agent's next look.
    const again = agentStatus(after, running, new Date());
    assert.equal(ownedStatusChanged(reported as Record<string, unknown>, again, AGENT_STATUS_FIELDS), false);
  });

  it("an interface dropped from the placement is dropped from the agent's report", () => {
    const two = { ...placed, interfaces: [NIC, { name: "second", mac: "52:54:00:aa:bb:cd" }] };
    const reported = agentStatus(vm(encodePlacement(two)), running, new Date());
    const fewer = agentStatus(vm(encodePlacement(placed), reported), running, new Date());
    assert.deepEqual(
      fewer.interfaces?.map((i) => i.name),
      ["default"],
    );
    assert.equal(
      ownedStatusChanged(reported as Record<string, unknown>, fewer, AGENT_STATUS_FIELDS, {
        conditions: CONDITIONS_RULE,
        interfaces: { key: "name", ownsSet: true },
      }),
      true,
    );
  });
});
