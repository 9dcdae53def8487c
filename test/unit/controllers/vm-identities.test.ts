import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  domainMacs,
  type NodeIdentityContext,
  nodeIdentityRefusal,
} from "../../../src/controllers/node/vm-identity-check.ts";
import { claimedIdentities, identityRefusal } from "../../../src/controllers/vm-identities.ts";

const UUID = "6f1c1a52-1d7e-4c4e-9a55-0e7f1f0e0001";
const MAC = "52:54:00:12:34:56";

function vm(
  namespace: string,
  name: string,
  o: { created?: string; uuid?: string; mac?: string; statusUuid?: string; statusMac?: string } = {},
): VirtualMachine {
  return {
    metadata: {
      namespace,
      name,
      uid: `${namespace}-${name}`,
      creationTimestamp: o.created ?? "2025-01-01T00:00:00Z",
    },
    spec: {
      memory: "64Mi",
      ...(o.uuid ? { uuid: o.uuid } : {}),
      ...(o.mac ? { interfaces: [{ name: "default", macAddress: o.mac }] } : {}),
    },
    status: {
      ...(o.statusUuid ? { uuid: o.statusUuid } : {}),
      ...(o.statusMac ? { interfaces: [{ name: "default", mac: o.statusMac, network: "default" }] } : {}),
    },
  } as unknown as VirtualMachine;
}

describe("identityRefusal", () => {
  it("refuses a UUID another VM of the namespace holds, naming it; the holder is unaffected", () => {
    const holder = vm("t1", "web", { statusUuid: UUID, created: "2025-02-01T00:00:00Z" });
    const copy = vm("t1", "copy", { uuid: UUID.toUpperCase() }); // older, yet not assigned
    const refusal = identityRefusal(copy, [holder, copy]);
    assert.equal(refusal?.reason, "UuidInUse");
    assert.equal(refusal?.field, "spec.uuid");
    assert.match(
      refusal?.message ?? "",
      /^spec\.uuid: UUID 6f1c1a52-.* is already used by VirtualMachine web;/,
    );
    assert.equal(identityRefusal(holder, [holder, copy]), undefined);
  });

  it("across namespaces says only that the value is in use in another namespace", () => {
    const holder = vm("tenant-a", "secret-name", { statusMac: MAC });
    const copy = vm("tenant-b", "x", { mac: MAC.toUpperCase() });
    const refusal = identityRefusal(copy, [holder]);
    assert.equal(refusal?.reason, "MacAddressInUse");
    assert.equal(refusal?.field, "spec.interfaces[0].macAddress");
    assert.match(refusal?.message ?? "", /is already in use in another namespace/);
    assert.doesNotMatch(refusal?.message ?? "", /secret-name|tenant-a/);
  });

  it("between two asking for the same value, the older holds it, then the namespace/name order", () => {
    const older = vm("t", "b", { mac: MAC, created: "2025-01-01T00:00:00Z" });
    const newer = vm("t", "a", { mac: MAC, created: "2025-01-02T00:00:00Z" });
    assert.equal(identityRefusal(older, [older, newer]), undefined);
    assert.equal(identityRefusal(newer, [older, newer])?.reason, "MacAddressInUse");
    const twinA = vm("t", "a", { uuid: UUID });
    const twinB = vm("t", "b", { uuid: UUID });
    assert.equal(identityRefusal(twinA, [twinA, twinB]), undefined);
    assert.ok(identityRefusal(twinB, [twinA, twinB]));
  });

  it("keeps a MAC held while a VM's status still carries it, though its spec asks for another", () => {
    const moving = vm("t", "moving", { mac: "52:54:00:00:00:99", statusMac: MAC });
    const taker = vm("t", "taker", { mac: MAC, created: "2024-01-01T00:00:00Z" });
    assert.match(identityRefusal(taker, [moving])?.message ?? "", /used by VirtualMachine moving/);
  });

  it("claims what the VM runs with: status UUID over spec, spec MAC over status", () => {
    const v = vm("t", "v", { uuid: UUID, statusUuid: UUID, mac: MAC, statusMac: "52:54:00:00:00:01" });
    assert.deepEqual(
      claimedIdentities(v).map((c) => [c.kind, c.value, c.assigned]),
      [
        ["uuid", UUID, true],
        ["mac", MAC, false],
      ],
    );
  });
});

describe("the node's identity check", () => {
  const ctx = (domainHolding: NodeIdentityContext["domainHolding"], vms: VirtualMachine[] = []) => ({
    clusterId: "c1",
    nodeName: "n1",
    vmsSharing: () => vms,
    placedHere: (ns: string, name: string) =>
      vms.some((o) => o.metadata.namespace === ns && o.metadata.name === name),
    domainHolding,
  });

  it("reads the MACs of a domain's interfaces", () => {
    const xml = `<domain><devices><interface type='network'><mac address='52:54:00:AA:bb:01'/></interface>
      <interface type="bridge"><mac address="52:54:00:aa:bb:02"/></interface></devices></domain>`;
    assert.deepEqual(domainMacs(xml), ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]);
  });

  it("refuses a value a domain here uses, naming no other tenant nor an unmanaged domain", async () => {
    const v = vm("t", "v", { uuid: UUID });
    const other = await nodeIdentityRefusal(
      v,
      ctx(async (_vm, claims) => ({
        claim: claims[0]!,
        owner: { cluster: "c1", namespace: "u", name: "hidden" },
      })),
    );
    assert.match(other?.message ?? "", /in use in another namespace/);
    assert.doesNotMatch(other?.message ?? "", /hidden/);
    const foreign = await nodeIdentityRefusal(
      v,
      ctx(async (_vm, claims) => ({ claim: claims[0]! })),
    );
    assert.match(
      foreign?.message ?? "",
      /in use by a libvirt domain on node n1 that this operator does not manage/,
    );
    const sameNs = await nodeIdentityRefusal(
      v,
      ctx(async (_vm, claims) => ({
        claim: claims[0]!,
        owner: { cluster: "c1", namespace: "t", name: "gone" },
      })),
    );
    assert.match(sameNs?.message ?? "", /used by VirtualMachine gone/);
  });

  it("leaves the choice between VMs placed here to the holder rule", async () => {
    const domainOf =
      (name: string): NodeIdentityContext["domainHolding"] =>
      async (_vm, claims) => ({ claim: claims[0]!, owner: { cluster: "c1", namespace: "t", name } });
    // Both carry the UUID in status (an earlier version let that happen) and the newer one's
    // domain is here: the older VM still holds it, the newer one yields.
    const holder = vm("t", "holder", { statusUuid: UUID, created: "2025-01-01T00:00:00Z" });
    const copy = vm("t", "copy", { statusUuid: UUID, created: "2025-03-01T00:00:00Z" });
    assert.equal(await nodeIdentityRefusal(holder, ctx(domainOf("copy"), [holder, copy])), undefined);
    assert.match(
      (await nodeIdentityRefusal(copy, ctx(domainOf("holder"), [holder, copy])))?.message ?? "",
      /used by VirtualMachine holder/,
    );
  });
});
