// The agent's admission (node/vm-admission.ts): its identity check and its media check are asked
// side by side (both only read), and what they say keeps its order: an identity refusal first.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { admitOnNode, type NodeAdmissionContext } from "../../../src/controllers/node/vm-admission.ts";
import { tenancyDefaultsFromEnv, tenantPolicy } from "../../../src/controllers/tenant-policy.ts";

const UUID = "6f1c0a53-8f0e-4a8e-9d0b-3f4b2f0c9e11";

const vm: VirtualMachine = {
  apiVersion: "vm.libvirt-operator.io/v1alpha1",
  kind: "VirtualMachine",
  metadata: { name: "vm", namespace: "ns", uid: "u1", generation: 1 },
  // A kernel outside every media directory: the media check refuses it.
  spec: { memory: "1Gi", boot: { kernel: "/etc/vmlinuz" } },
  status: { nodeName: "n1", uuid: UUID },
};

function context(holderAfterMs: number | undefined, started: string[]): NodeAdmissionContext {
  return {
    policyOf: () => tenantPolicy(undefined, tenancyDefaultsFromEnv({})),
    identities: {
      clusterId: "c1",
      nodeName: "n1",
      vmsSharing: () => [],
      placedHere: () => false,
      domainHolding: async (_vm, claims) => {
        started.push("identity");
        if (holderAfterMs === undefined) return undefined;
        // Slower than the media check: the refusals must not come in the order they are found.
        await sleep(holderAfterMs);
        return { claim: claims[0]!, owner: { cluster: "other", namespace: "x", name: "y" } };
      },
    },
    media: {
      nodeName: "n1",
      mediaDirs: ["/srv/media"],
      importDirs: [],
      agentStateDirs: [],
      poolDirs: async () => {
        started.push("media");
        return [];
      },
      libvirt: undefined as never,
      diskNamed: () => undefined,
      defaultPool: "default",
    },
    dhcpHosts: async () => [],
  };
}

describe("agent admission", () => {
  it("asks the identity and media checks at once, and refuses for the identity first", async () => {
    const started: string[] = [];
    const admission = admitOnNode(vm, context(30, started));
    // Both asked before either answered.
    await sleep(5);
    assert.deepEqual(started.sort(), ["identity", "media"]);
    const got = await admission;
    assert.ok("refused" in got);
    assert.match(got.refused.message, new RegExp(UUID));
  });

  it("refuses for the identity even when the media lookup failed meanwhile; the failure counts otherwise", async () => {
    const failing = (holderAfterMs: number | undefined) => {
      const ctx = context(holderAfterMs, []);
      ctx.media.poolDirs = async () => {
        throw new Error("libvirt: pool vanished");
      };
      return ctx;
    };
    const refused = await admitOnNode(vm, failing(30));
    assert.ok("refused" in refused);
    assert.match(refused.refused.message, new RegExp(UUID));
    await assert.rejects(admitOnNode(vm, failing(undefined)), /pool vanished/);
  });

  it("refuses for the media when the identity is free", async () => {
    const got = await admitOnNode(vm, context(undefined, []));
    assert.ok("refused" in got);
    assert.equal(got.refused.field, "spec.boot.kernel");
    assert.match(got.refused.message, /not inside a media directory/);
  });

  it("refuses an address another VM on the node holds, before anything reaches libvirt", async () => {
    const withAddress = (name: string, created: string): VirtualMachine => ({
      ...vm,
      metadata: { ...vm.metadata, name, uid: name, creationTimestamp: created },
      spec: { memory: "1Gi" },
      status: {
        nodeName: "n1",
        interfaces: [
          { name: "default", network: "default", mac: `52:54:00:00:00:0${name.length}`, ipv4: "10.0.0.5" },
        ],
      },
    });
    const holder = withAddress("holder", "2026-01-01T00:00:00Z");
    const late = withAddress("late", "2026-02-01T00:00:00Z");
    const ctx = context(undefined, []);
    ctx.identities.vmsSharing = () => [holder, late];
    const asked: string[] = [];
    ctx.dhcpHosts = async (network) => {
      asked.push(network);
      return [];
    };
    const got = await admitOnNode(late, ctx);
    assert.ok("refused" in got);
    assert.equal(got.refused.reason, "AddressInUse");
    assert.match(
      got.refused.message,
      /10\.0\.0\.5 on network default is already used by VirtualMachine holder/,
    );
    assert.deepEqual(asked, ["default"], "libvirt's reservations asked only for the network in question");
    const admitted = await admitOnNode(holder, ctx);
    assert.ok("admitted" in admitted, JSON.stringify(admitted));
  });
});
