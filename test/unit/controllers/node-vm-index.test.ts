// The agent's index of who holds what on its node (node/node-vm-index.ts): its checks, given
// only the VMs the index finds, judge exactly as they would with every VM on the node.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import fc from "fast-check";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { addressConflicts } from "../../../src/controllers/node/address-claims.ts";
import { NodeVmIndex } from "../../../src/controllers/node/node-vm-index.ts";
import { identityRefusal } from "../../../src/controllers/vm-identities.ts";
import type { WatchVerb } from "../../../src/runtime/watch.ts";

type Vm = VirtualMachine & KubernetesObject;

/** An informer's cache and handlers, driven by hand. */
class FakeInformer {
  readonly objects = new Map<string, Vm>();
  private readonly handlers: Record<WatchVerb, Array<(vm: Vm) => void>> = { add: [], update: [], delete: [] };
  on(verb: WatchVerb, cb: (vm: Vm) => void) {
    this.handlers[verb].push(cb);
  }
  put(vm: Vm) {
    const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
    const verb = this.objects.has(key) ? "update" : "add";
    this.objects.set(key, vm);
    for (const cb of this.handlers[verb]) cb(vm);
  }
  remove(vm: Vm) {
    this.objects.delete(`${vm.metadata.namespace}/${vm.metadata.name}`);
    for (const cb of this.handlers.delete) cb(vm);
  }
  get = (name: string, namespace: string) => this.objects.get(`${namespace}/${name}`);
}

const UUIDS = ["0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"];
const MACS = ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"];
const V4 = ["10.0.0.5", "10.0.0.6"];
const V6 = ["fd00::5", "fd00:0:0:0:0:0:0:5", "fd00::6"];

const vmArb = fc.record({
  namespace: fc.constantFrom("alice", "bob"),
  name: fc.constantFrom("a", "b", "c", "d"),
  created: fc.constantFrom("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
  specUuid: fc.option(fc.constantFrom(...UUIDS), { nil: undefined }),
  specMac: fc.option(fc.constantFrom(...MACS), { nil: undefined }),
  placedUuid: fc.option(fc.constantFrom(...UUIDS), { nil: undefined }),
  placedMac: fc.option(fc.constantFrom(...MACS), { nil: undefined }),
  network: fc.constantFrom("default", "other"),
  ipv4: fc.option(fc.constantFrom(...V4), { nil: undefined }),
  ipv6: fc.option(fc.constantFrom(...V6), { nil: undefined }),
});

type Gen = typeof vmArb extends fc.Arbitrary<infer T> ? T : never;

function vmOf(v: Gen): Vm {
  return {
    metadata: {
      namespace: v.namespace,
      name: v.name,
      uid: `${v.namespace}-${v.name}`,
      creationTimestamp: v.created,
    },
    spec: {
      memory: "64Mi",
      ...(v.specUuid ? { uuid: v.specUuid } : {}),
      interfaces: [{ name: "default", network: "default", ...(v.specMac ? { macAddress: v.specMac } : {}) }],
    },
    status: {
      nodeName: "n1",
      ...(v.placedUuid ? { uuid: v.placedUuid } : {}),
      interfaces: [
        {
          name: "default",
          network: v.network,
          ...(v.placedMac ? { mac: v.placedMac } : {}),
          ...(v.ipv4 ? { ipv4: v.ipv4 } : {}),
          ...(v.ipv6 ? { ipv6: v.ipv6 } : {}),
        },
      ],
    },
  } as unknown as Vm;
}

describe("the node's index of who holds what", () => {
  it("gives the identity and address checks the same verdicts as every VM on the node would", () => {
    fc.assert(
      fc.property(fc.array(vmArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 4 }), (vms, drops) => {
        const informer = new FakeInformer();
        const index = new NodeVmIndex(informer, informer.get);
        // Added, changed (a later VM of the same name), some deleted: the index follows each.
        for (const v of vms) informer.put(vmOf(v));
        for (const d of drops) {
          const all = [...informer.objects.values()];
          if (all.length) informer.remove(all[d % all.length]!);
        }
        const all = [...informer.objects.values()];
        for (const v of [...all, ...vms.map(vmOf)]) {
          const found = index.sharing(v);
          assert.deepEqual(identityRefusal(v, found), identityRefusal(v, all));
          const key = (c: ReturnType<typeof addressConflicts>[number]) =>
            `${c.holder.metadata.namespace}/${c.holder.metadata.name} ${c.theirs.host.ip}`;
          assert.deepEqual(
            addressConflicts(v, found).map(key).sort(),
            addressConflicts(v, all).map(key).sort(),
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it("finds only the VMs sharing something, and forgets a deleted one", () => {
    const informer = new FakeInformer();
    const index = new NodeVmIndex(informer, informer.get);
    const a = vmOf({
      namespace: "alice",
      name: "a",
      created: "2026-01-01T00:00:00Z",
      specUuid: undefined,
      specMac: undefined,
      placedUuid: UUIDS[0],
      placedMac: MACS[0],
      network: "default",
      ipv4: "10.0.0.5",
      ipv6: undefined,
    });
    const b = vmOf({
      namespace: "bob",
      name: "b",
      created: "2026-01-01T00:00:00Z",
      specUuid: undefined,
      specMac: undefined,
      placedUuid: UUIDS[1],
      placedMac: MACS[1],
      network: "default",
      ipv4: "10.0.0.6",
      ipv6: undefined,
    });
    informer.put(a);
    informer.put(b);
    const thief = vmOf({
      namespace: "bob",
      name: "c",
      created: "2026-02-01T00:00:00Z",
      specUuid: undefined,
      specMac: undefined,
      placedUuid: undefined,
      placedMac: MACS[2],
      network: "default",
      ipv4: "10.0.0.5",
      ipv6: undefined,
    });
    assert.deepEqual(
      index.sharing(thief).map((v) => v.metadata.name),
      ["a"],
    );
    informer.remove(a);
    assert.deepEqual(index.sharing(thief), []);
    assert.deepEqual(
      index.sharing(b).map((v) => v.metadata.name),
      ["b"],
      "a VM finds itself",
    );
  });
});
