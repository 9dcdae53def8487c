// The controller's VM index against the walks over every VM it replaced: over random fleets,
// changed and deleted one VM at a time, every lookup gives what the walk gives.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { diskNamesOf } from "../../../src/controllers/cluster/disk-placement.ts";
import { VmIndex } from "../../../src/controllers/cluster/vm-index.ts";
import { InterfaceAssigner } from "../../../src/controllers/cluster/vm-interfaces.ts";
import { reservesCapacity } from "../../../src/controllers/cluster/vm-reservation.ts";
import { CAPACITY_ANNOTATION } from "../../../src/controllers/node-facts.ts";
import type { Refusal } from "../../../src/controllers/tenant-policy.ts";
import {
  claimedIdentities,
  describeHolder,
  heldIdentities,
  identityRefusal,
  identityRefusalFrom,
  inUseRefusal,
  waitsForIdentity,
} from "../../../src/controllers/vm-identities.ts";
import { resourcesOf } from "../../../src/hypervisor/domain/from-spec.ts";

type Vm = VirtualMachine & KubernetesObject;

/** A small deterministic random source (mulberry32): a failing seed can be replayed. */
function random(seed: number) {
  let a = seed;
  const next = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const maybe = <T>(p: number, x: () => T): T | undefined => (next() < p ? x() : undefined);
  return { next, pick, maybe };
}

const UUIDS = ["6f1c1a52-1d7e-4c4e-9a55-0e7f1f0e0001", "6F1C1A52-1D7E-4C4E-9A55-0E7F1F0E0002"];
const MACS = ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:AA:00:03"];
const IPS = ["10.0.0.2", "10.0.0.3", "fd00::2", "fd00:0:0::3"];
const STRATEGIES = [undefined, "Always", "Halted", "Manual", "Once", "RerunOnFailure"] as const;
const HV = [undefined, "RUNNING", "HALTED", "PAUSED", "SHUTDOWN"] as const;

/** A VM of a fleet where UUIDs, MACs, addresses, disks and names collide often. */
function randomVm(r: ReturnType<typeof random>, namespace: string, name: string): Vm {
  const nics = Array.from({ length: Math.floor(r.next() * 3) }, (_, i) => ({
    name: `nic${i}`,
    network: r.pick(["default", "other"]),
    ...(r.maybe(0.4, () => ({ macAddress: r.pick(MACS) })) ?? {}),
  }));
  const node = r.maybe(0.6, () => r.pick(["n1", "n2"]));
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      namespace,
      name,
      creationTimestamp: r.pick(["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", undefined]),
      ...(r.maybe(0.1, () => ({ deletionTimestamp: new Date(0) })) ?? {}),
    },
    spec: {
      memory: r.pick(["64Mi", "1Gi"]),
      cpu: { cores: r.pick([1, 2, 4]) },
      ...(r.maybe(0.3, () => ({ uuid: r.pick(UUIDS) })) ?? {}),
      ...(nics.length ? { interfaces: nics } : {}),
      ...(r.maybe(0.8, () => ({ runStrategy: r.pick(STRATEGIES) })) ?? {}),
      disks: r.maybe(0.7, () => [{ name: "root", diskRef: { name: r.pick(["d1", "d2"]) } }]) ?? [],
      ...(r.maybe(0.2, () => ({ source: r.pick([{ snapshot: "s1" }, { template: "t1" }]) })) ?? {}),
    },
    status: {
      ...(node ? { nodeName: node } : {}),
      ...(r.maybe(0.4, () => ({ uuid: r.pick(UUIDS) })) ?? {}),
      ...(r.maybe(0.5, () => ({ hypervisorStatus: r.pick(HV) })) ?? {}),
      ...(r.maybe(0.5, () => ({
        interfaces: nics.map((n) => ({
          name: n.name,
          network: n.network,
          ...(r.maybe(0.6, () => ({ mac: r.pick(MACS).toLowerCase() })) ?? {}),
          ...(r.maybe(0.5, () => ({ ipv4: r.pick(IPS) })) ?? {}),
        })),
      })) ?? {}),
      ...(r.maybe(0.3, () => ({
        conditions: [
          {
            type: "Admitted",
            status: r.pick(["True", "False"]),
            reason: r.pick(["MacAddressInUse", "UuidInUse", "NetworkNotAllowed"]),
            message: "",
            lastTransitionTime: "2025-01-01T00:00:00Z",
          },
        ],
      })) ?? {}),
      ...(r.maybe(0.1, () => ({ clonedFrom: { snapshot: "s1" }, template: { name: "t1" } })) ?? {}),
      ...(r.maybe(0.2, () => ({ disks: [{ name: "root", path: r.pick(["/p/d1", "/p/d3"]) }] })) ?? {}),
    },
  } as unknown as Vm;
}

const keyOf = (vm: Vm) => `${vm.metadata?.namespace}/${vm.metadata?.name}`;

/** HEAD 461d8b0's identityRefusal: the first VM in list order that holds a value before VM. */
function oldIdentityRefusal(vm: Vm, others: readonly Vm[]): Refusal | undefined {
  const created = (v: Vm) => {
    const ms = Date.parse(String(v.metadata?.creationTimestamp ?? ""));
    return Number.isNaN(ms) ? Number.POSITIVE_INFINITY : ms;
  };
  const precedes = (o: Vm, oa: boolean, v: Vm, va: boolean) =>
    oa !== va ? oa : created(o) !== created(v) ? created(o) < created(v) : keyOf(o) < keyOf(v);
  for (const claim of claimedIdentities(vm)) {
    for (const other of others) {
      if (keyOf(other) === keyOf(vm)) continue;
      const held = heldIdentities(other).find((h) => h.kind === claim.kind && h.value === claim.value);
      if (held && precedes(other, held.assigned, vm, claim.assigned))
        return inUseRefusal(
          claim,
          describeHolder(vm, other.metadata?.namespace ?? "", other.metadata?.name ?? ""),
        );
    }
  }
  return undefined;
}

/** Every lookup of INDEX against a walk over FLEET. */
function assertAgrees(index: VmIndex, fleet: Map<string, Vm>, r: ReturnType<typeof random>) {
  const vms = [...fleet.values()];
  const sorted = (xs: Iterable<string>) => [...xs].sort();
  for (const vm of vms) {
    const key = keyOf(vm);
    const byIndex = identityRefusalFrom(vm, index.holdersOf);
    const shuffled = [...vms].sort(() => r.next() - 0.5);
    assert.deepEqual(byIndex, identityRefusal(vm, shuffled), `identity verdict of ${key}`);
    const old = oldIdentityRefusal(vm, shuffled);
    assert.equal(byIndex?.field, old?.field, `refused field of ${key}`);
    assert.equal(byIndex?.reason, old?.reason, `refusal reason of ${key}`);
    // The old walk names whichever holder it met first: met first, the one named now.
    const named = byIndex?.message.match(/used by VirtualMachine (\S+);/)?.[1];
    if (named) {
      const first = vms.filter(
        (v) => v.metadata?.name === named && v.metadata?.namespace === vm.metadata?.namespace,
      );
      assert.deepEqual(oldIdentityRefusal(vm, [...first, ...shuffled]), byIndex);
    }
    for (const mac of MACS.map((m) => m.toLowerCase())) {
      const walk = vms.some(
        (o) =>
          keyOf(o) !== key &&
          ((o.status?.interfaces ?? []).some((i) => i.mac?.toLowerCase() === mac) ||
            (o.spec.interfaces ?? []).some((i) => i.macAddress?.toLowerCase() === mac)),
      );
      assert.equal(index.macTaken(mac, key), walk, `MAC ${mac} besides ${key}`);
    }
    for (const [network, ip, spelled] of [
      ["default", "10.0.0.2", "10.0.0.2"],
      ["other", "fd00::3", "fd00:0:0::3"],
    ] as const) {
      const walk = vms.some(
        (o) =>
          keyOf(o) !== key &&
          (o.status?.interfaces ?? []).some(
            (i) => i.network === network && (i.ipv4 === ip || i.ipv4 === spelled),
          ),
      );
      assert.equal(index.addressTaken(network, ip, key), walk, `${ip} on ${network} besides ${key}`);
    }
  }
  for (const node of ["n1", "n2"]) {
    const placed = vms.filter((v) => v.status?.nodeName === node && reservesCapacity(v));
    const sum = (except?: string) =>
      placed
        .filter((v) => keyOf(v) !== except)
        .reduce(
          (a, v) => ({
            cpus: a.cpus + resourcesOf(v).cpus,
            memoryBytes: a.memoryBytes + resourcesOf(v).memoryBytes,
          }),
          { cpus: 0, memoryBytes: 0 },
        );
    assert.deepEqual(index.allocatedOn(node), sum(), `allocated on ${node}`);
    const some = vms[0];
    if (some) assert.deepEqual(index.allocatedOn(node, keyOf(some)), sum(keyOf(some)));
  }
  assert.deepEqual(
    sorted(index.waitingForIdentity()),
    sorted(vms.filter((v) => waitsForIdentity(v, "Admitted")).map(keyOf)),
  );
  const unplaced = vms.filter((v) => !v.status?.nodeName && !v.metadata?.deletionTimestamp);
  assert.deepEqual(sorted(index.unplacedKeys()), sorted(unplaced.map(keyOf)));
  for (const ns of ["a", "b"]) {
    const inNs = vms.filter((v) => v.metadata?.namespace === ns);
    assert.deepEqual(
      sorted(index.clonesOf(ns, "s1")),
      sorted(inNs.filter((v) => v.spec.source?.snapshot === "s1" && !v.status?.clonedFrom).map(keyOf)),
    );
    assert.deepEqual(
      sorted(index.madeFrom(ns, "t1")),
      sorted(inNs.filter((v) => v.spec.source?.template === "t1" && !v.status?.template).map(keyOf)),
    );
    assert.deepEqual(
      sorted(index.unplacedUsersOf(ns, "d1")),
      sorted(
        unplaced.filter((v) => v.metadata?.namespace === ns && diskNamesOf(v).includes("d1")).map(keyOf),
      ),
    );
    assert.deepEqual(
      sorted(index.diskUsers(ns, "d1", "/p/d1")),
      sorted(
        vms
          .filter(
            (v) =>
              (v.metadata?.namespace === ns && diskNamesOf(v).includes("d1")) ||
              (v.status?.disks ?? []).some((d) => d.path === "/p/d1"),
          )
          .map(keyOf),
      ),
    );
  }
}

describe("the VM index", () => {
  it("gives the walk's answers over random fleets, changed and deleted one VM at a time", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = random(seed);
      const index = new VmIndex();
      const fleet = new Map<string, Vm>();
      const names = Array.from({ length: 12 }, (_, i) => `vm${i}`);
      for (let step = 0; step < 60; step++) {
        const vm = randomVm(r, r.pick(["a", "b"]), r.pick(names));
        if (r.next() < 0.2) {
          fleet.delete(keyOf(vm));
          index.forget(keyOf(vm));
        } else {
          fleet.set(keyOf(vm), vm);
          index.observe(vm);
        }
        if (step % 10 === 9) assertAgrees(index, fleet, r);
      }
    }
  });

  it("names the holder that comes first, whatever order the VMs are in", () => {
    const vm = (name: string, created: string, statusMac?: string) =>
      ({
        metadata: { namespace: "t", name, creationTimestamp: created },
        spec: { memory: "64Mi", interfaces: [{ name: "n", macAddress: MACS[0] }] },
        status: statusMac ? { interfaces: [{ name: "n", network: "default", mac: statusMac }] } : {},
      }) as unknown as Vm;
    const assigned = vm("assigned", "2025-03-01T00:00:00Z", MACS[0]);
    const older = vm("older", "2025-01-01T00:00:00Z");
    const taker = vm("taker", "2025-02-01T00:00:00Z");
    for (const order of [
      [older, assigned],
      [assigned, older],
    ])
      assert.match(identityRefusal(taker, order)?.message ?? "", /used by VirtualMachine assigned;/);
  });

  it("a VM stopping, going or moving frees room on its node, and says so", () => {
    const freed: string[] = [];
    const index = new VmIndex();
    index.onRoomFreed((node) => freed.push(node));
    const vm = (runStrategy: string, node: string, hypervisorStatus?: string) =>
      ({
        metadata: { namespace: "t", name: "v" },
        spec: { memory: "1Gi", cpu: { cores: 2 }, runStrategy },
        status: { nodeName: node, ...(hypervisorStatus ? { hypervisorStatus } : {}) },
      }) as unknown as Vm;
    index.observe(vm("Always", "n1"));
    assert.deepEqual(index.allocatedOn("n1"), { cpus: 2, memoryBytes: 2 ** 30 });
    index.observe(vm("Halted", "n1", "RUNNING")); // told to stop, still running: still there
    assert.deepEqual(freed, []);
    index.observe(vm("Halted", "n1", "HALTED"));
    assert.deepEqual([freed, index.allocatedOn("n1")], [["n1"], { cpus: 0, memoryBytes: 0 }]);
    index.observe(vm("Always", "n2"));
    index.forget("t/v");
    assert.deepEqual([freed, index.allocatedOn("n2")], [["n1", "n2"], { cpus: 0, memoryBytes: 0 }]);
  });
});

describe("interfaces from the index", () => {
  const pools = { default: { ipv4: { start: "10.0.0.2", end: "10.0.3.254" } } };
  const node = {
    metadata: {
      name: "n1",
      annotations: {
        [CAPACITY_ANNOTATION]: JSON.stringify({
          cpus: 1,
          memoryBytes: 2 ** 30,
          hypervisors: ["qemu"],
          networks: pools,
        }),
      },
    },
  };
  const bare = (name: string) =>
    ({ metadata: { namespace: "t", name }, spec: { memory: "64Mi" } }) as unknown as Vm;

  it("hands out the lowest free address and a MAC no VM has, the freed address again once let go", () => {
    const index = new VmIndex();
    const nics = new InterfaceAssigner(index, { get: () => node as never });
    const placed = new Map<string, Vm>();
    const place = (name: string) => {
      const vm = bare(name);
      const interfaces = nics.interfaces(vm, "n1");
      const done = { ...vm, status: { nodeName: "n1", interfaces } } as Vm;
      index.observe(done);
      placed.set(name, done);
      return interfaces[0]!;
    };
    const first = Array.from({ length: 300 }, (_, i) => place(`vm${i}`));
    assert.deepEqual(
      first.slice(0, 3).map((i) => i.ipv4),
      ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
    );
    assert.equal(first[299]?.ipv4, "10.0.1.45");
    assert.equal(new Set(first.map((i) => i.mac)).size, 300);
    // vm7 goes: its address is the lowest free one again, for the next VM.
    index.forget("t/vm7");
    nics.release("t/vm7");
    assert.equal(place("late").ipv4, "10.0.0.9");
    assert.equal(place("later").ipv4, "10.0.1.46");
    // A placed VM keeps its address on every later look.
    assert.deepEqual(nics.interfaces(placed.get("vm5")!, "n1"), placed.get("vm5")!.status?.interfaces);
  });
});
