import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NODE_LABEL } from "../../../src/api/names.ts";
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
  type VmPlacement,
  withPlacement,
} from "../../../src/controllers/vm-placement.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

const UID = "0b6f3c1e-6a55-4d59-9d7e-1f2e3d4c5b6a";
const UUID = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
const NIC = { name: "default", mac: "52:54:00:aa:bb:cc", network: "default", ipv4: "10.0.0.5" };
const placed = { nodeName: "n1", uuid: UUID, interfaces: [NIC] };

function vm(status: VirtualMachine["status"] = {}, metadata: Partial<VirtualMachine["metadata"]> = {}) {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", uid: UID, generation: 1, ...metadata },
    spec: { memory: "1Gi" },
    status,
  } as VirtualMachine;
}
/** A VM as the controller leaves it: its record, and the node label agreeing. */
const recorded = (p: VmPlacement, status: VirtualMachine["status"] = {}) => withPlacement(vm(status), p);
/** The annotation TEXT put on by hand (or by an older or copied object). */
const annotated = (text: string, labels: Record<string, string> = { [NODE_LABEL]: "n1" }) =>
  vm({ nodeName: "legacy" }, { annotations: { [PLACEMENT_ANNOTATION]: text }, labels });

describe("the placement record", () => {
  it("reads back what was written, and an unchanged placement is the same string", () => {
    const text = encodePlacement(placed, UID);
    assert.deepEqual(decodePlacement(text), { uid: UID, ...placed });
    assert.equal(encodePlacement({ interfaces: [{ ...NIC }], uuid: UUID, nodeName: "n1" }, UID), text);
    const v = recorded(placed);
    assert.equal(placedNode(v), "n1");
    assert.deepEqual(placementOf(v), placed);
    assert.ok(placementRecorded(v));
  });

  it("takes every name the API accepts (network names with _ or a trailing -)", () => {
    const odd = { nodeName: "node-1.example", interfaces: [{ name: "nic-2", network: "_vm_net-" }] };
    assert.deepEqual(placementOf(recorded(odd)), odd);
  });

  it("a VM placed before the record existed is read from its status", () => {
    const legacy = vm({ nodeName: "n2", uuid: UUID, interfaces: [{ ...NIC, linked: true }] });
    assert.deepEqual(placementOf(legacy), { nodeName: "n2", uuid: UUID, interfaces: [NIC] });
    assert.equal(placementRecorded(legacy), false);
    assert.deepEqual(placementOf(vm()), { interfaces: [] });
  });

  it("the record wins over status: a VM unplaced after its node was lost is not placed", () => {
    const unplaced = recorded({ uuid: UUID, interfaces: [NIC] }, { nodeName: "gone" });
    assert.equal(placedNode(unplaced), undefined);
    assert.equal(placementOf(unplaced).uuid, UUID);
  });

  it("a record of another object, or one the node label disagrees with, is not trusted: status is read", () => {
    assert.equal(
      placedNode(annotated(encodePlacement(placed, "other-uid"))),
      "legacy",
      "a copy of another VM",
    );
    assert.equal(placedNode(annotated(encodePlacement(placed, undefined))), "legacy", "no UID");
    assert.equal(placedNode(annotated(encodePlacement(placed, UID), { [NODE_LABEL]: "n9" })), "legacy");
    assert.equal(placedNode(annotated(encodePlacement(placed, UID))), "n1");
  });

  it("a malformed or hostile record is not trusted (nothing of it reaches libvirt or DHCP)", () => {
    const bad = [
      "",
      "not json",
      "[]",
      JSON.stringify({ uid: UID, nodeName: "n1" }),
      JSON.stringify({ uid: UID, nodeName: "../etc", interfaces: [] }),
      JSON.stringify({ uid: UID, uuid: "x'/><evil/>", interfaces: [] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", mac: "52:54:00:aa:bb:cc'/>" }] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", ipv4: "10.0.0.1,set:evil" }] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", ipv4: "999.0.0.1" }] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", network: "a b" }] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", ipv6: 5 }] }),
      JSON.stringify({ uid: UID, interfaces: [{ name: "nic", ipv6: "fd00::5%eth0" }] }),
      JSON.stringify({ uid: UID, interfaces: Array.from({ length: 17 }, (_, i) => ({ name: `n${i}` })) }),
    ];
    for (const text of bad) {
      assert.equal(decodePlacement(text), undefined, text);
      assert.equal(placedNode(annotated(text)), "legacy", text);
      assert.equal(placementRecorded(annotated(text)), false, text);
    }
    assert.throws(
      () => encodePlacement({ nodeName: "Bad Node", interfaces: [] }, UID),
      /would not read back/,
    );
  });

  it("asPlacedOn keeps what the VM holds and names the node (label too)", () => {
    const unplaced = recorded({ uuid: UUID, interfaces: [NIC] });
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
  const rules = { conditions: CONDITIONS_RULE, interfaces: { key: "name", ownsSet: true } };

  it("the agent's report carries the placement and Scheduled", () => {
    const s = agentStatus(recorded(placed), running, new Date());
    assert.equal(s.nodeName, "n1");
    assert.equal(s.uuid, UUID);
    assert.deepEqual(s.interfaces, [{ ...NIC, linked: true }]);
    const scheduled = s.conditions?.find((c) => c.type === "Scheduled");
    assert.equal(scheduled?.status, "True");
    assert.equal(scheduled?.message, "placed on node n1");
  });

  it("after the report the controller's placed status changes nothing (no second controller write)", () => {
    const reported = agentStatus(recorded(placed), running, new Date());
    const after = recorded(placed, reported);
    const controller = placedStatus(after, "n1", { uuid: UUID, interfaces: [NIC] });
    assert.equal(
      ownedStatusChanged(reported as Record<string, unknown>, controller, Object.keys(controller), rules),
      false,
    );
    // Nor does the agent's next look.
    const again = agentStatus(after, running, new Date());
    assert.equal(ownedStatusChanged(reported as Record<string, unknown>, again, AGENT_STATUS_FIELDS), false);
  });

  it("an interface dropped from the placement is dropped from the agent's report", () => {
    const two = { ...placed, interfaces: [NIC, { name: "second", mac: "52:54:00:aa:bb:cd" }] };
    const reported = agentStatus(recorded(two), running, new Date());
    const fewer = agentStatus(recorded(placed, reported), running, new Date());
    assert.deepEqual(
      fewer.interfaces?.map((i) => i.name),
      ["default"],
    );
    assert.equal(
      ownedStatusChanged(reported as Record<string, unknown>, fewer, AGENT_STATUS_FIELDS, rules),
      true,
    );
  });
});
