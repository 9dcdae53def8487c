// What one cluster VM reconcile decides, timed per VM with 100 and with 1000 VMs in the cache:
// the walks over every VM that the controller did before the VM index (HEAD 461d8b0's code,
// kept below as it was) against the index (cluster/vm-index.ts) and the real reconciler's own
// lookups. Pure code on fake listers: no API server, no libvirt.
//   node bench/cluster-index.ts [--json FILE]   (BENCH_FILL_ONLY=1: only the fleet-filling table)
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { KubernetesObject, V1Node } from "@kubernetes/client-node";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import type { VMDisk } from "../src/api/vmdisk.ts";
import { usesDisk } from "../src/controllers/cluster/disk-placement.ts";
import { ClusterDiskReconciler } from "../src/controllers/cluster/disk-reconciler.ts";
import { KeyIndex } from "../src/controllers/cluster/key-index.ts";
import type { ClusterIndexes } from "../src/controllers/cluster/object-indexes.ts";
import { type NodeView, place } from "../src/controllers/cluster/placement.ts";
import { clusterRefusal } from "../src/controllers/cluster/vm-admission.ts";
import { VmIndex } from "../src/controllers/cluster/vm-index.ts";
import type { InterfaceAssigner } from "../src/controllers/cluster/vm-interfaces.ts";
import { ClusterVmReconciler } from "../src/controllers/cluster/vm-reconciler.ts";
import { capacityNeed } from "../src/controllers/cluster/vm-reservation.ts";
import { CAPACITY_ANNOTATION, NODE_ENABLED_LABEL } from "../src/controllers/node-facts.ts";
import { tenancyDefaultsFromEnv, tenantPolicy } from "../src/controllers/tenant-policy.ts";
import { effectiveVms } from "../src/controllers/vm-clone.ts";
import { waitsForIdentity } from "../src/controllers/vm-identities.ts";
import type { Kube } from "../src/runtime/kube.ts";
import { createLogger } from "../src/runtime/logging.ts";
import * as head from "./cluster-index-head.ts";
import { table } from "./stats.ts";

type Vm = VirtualMachine & KubernetesObject;
type Disk = VMDisk & KubernetesObject;

const NODES = 10;
/** Each figure is the best of this many runs: other work on the machine only ever adds time. */
const RUNS = 5;
const SIZES = [100, 1000];
const NS = "bench";
const TENANCY = tenancyDefaultsFromEnv({});
const POOL = { ipv4: { start: "10.0.0.2", end: "10.0.255.254" } };

function nodes(): V1Node[] {
  return Array.from({ length: NODES }, (_, i) => ({
    metadata: {
      name: `node-${i}`,
      labels: { [NODE_ENABLED_LABEL]: "true" },
      annotations: {
        [CAPACITY_ANNOTATION]: JSON.stringify({
          cpus: 64,
          memoryBytes: 2 ** 40,
          hypervisors: ["qemu"],
          networks: { default: POOL },
        }),
      },
    },
  }));
}

/** VM I as the controller left it: placed, its UUID, MAC and address given; a third Halted. */
function placedVm(i: number): Vm {
  const ip = `10.0.${Math.floor((i + 2) / 256)}.${(i + 2) % 256}`;
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      namespace: NS,
      name: `vm-${i}`,
      uid: randomUUID(),
      creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() as never,
      labels: { "vm.libvirt-operator.io/node": `node-${i % NODES}` },
    },
    spec: {
      memory: "64Mi",
      cpu: { cores: 1 },
      runStrategy: i % 3 === 0 ? "Halted" : "Always",
      disks: [{ name: "root", diskRef: { name: `vm-${i}-root` } }],
    },
    status: {
      nodeName: `node-${i % NODES}`,
      uuid: randomUUID(),
      interfaces: [{ name: "default", network: "default", mac: mac(i), ipv4: ip }],
      hypervisorStatus: i % 3 === 0 ? "HALTED" : "RUNNING",
      printableStatus: i % 3 === 0 ? "Stopped" : "Running",
      disks: [{ name: "root", path: `/var/lib/libvirt/images/vm-${i}-root.qcow2` }],
    },
  } as unknown as Vm;
}

const mac = (i: number) =>
  `52:54:00:${[16, 8, 0].map((s) => ((i >> s) & 255).toString(16).padStart(2, "0")).join(":")}`;

function diskOf(vm: Vm): Disk {
  const name = `${vm.metadata?.name}-root`;
  return {
    metadata: { namespace: NS, name },
    spec: { provisionedSize: "1Gi" },
    status: {
      nodeName: vm.status?.nodeName,
      path: `/var/lib/libvirt/images/${name}.qcow2`,
      attachedTo: [vm.metadata?.name],
    },
  } as unknown as Disk;
}

/** An informer cache over FLEET, as client-node's ListWatch gives it. */
function lister<T extends KubernetesObject>(fleet: Map<string, T>) {
  return {
    get: (name: string, namespace?: string) => fleet.get(`${namespace}/${name}`),
    list: (namespace?: string) =>
      [...fleet.values()].filter((o) => namespace === undefined || o.metadata?.namespace === namespace),
  };
}

// A collection before each timed run: one side's garbage is not collected on the other's time.
setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;

/**
 * Milliseconds of this thread's CPU (user and system): what other processes on a busy machine
 * do takes wall-clock time from a run, not CPU time.
 */
function cpuMs(): number {
  const { user, system } = process.threadCpuUsage();
  return (user + system) / 1000;
}

/** CPU time one timed run lasts at least: the clock's ticks may be 4 ms or more apart. */
const RUN_MS = 100;

/**
 * Microseconds of CPU per call of FN, called ROUNDS times at a go until a run lasted RUN_MS;
 * the best of RUNS runs (the least disturbed).
 */
function timePerCall(rounds: number, fn: (i: number) => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < RUNS; run++) {
    collect();
    const t = cpuMs();
    let calls = 0;
    while (cpuMs() - t < RUN_MS) for (let i = 0; i < rounds; i++) fn(calls++);
    best = Math.min(best, ((cpuMs() - t) * 1000) / calls);
  }
  return best;
}

interface Row {
  what: string;
  vms: number;
  scanUs: number;
  indexUs: number;
}

function measure(size: number): Row[] {
  const fleet = new Map<string, Vm>();
  const disks = new Map<string, Disk>();
  const index = new VmIndex();
  for (let i = 0; i < size; i++) {
    const vm = placedVm(i);
    fleet.set(`${NS}/${vm.metadata?.name}`, vm);
    index.observe(vm);
    const d = diskOf(vm);
    disks.set(`${NS}/${d.metadata?.name}`, d);
  }
  const vmCache = lister(fleet);
  const vms = effectiveVms(vmCache);
  const nodeList = nodes();
  const nodeCache = lister(new Map(nodeList.map((n) => [`undefined/${n.metadata?.name}`, n])));
  const diskCache = lister(disks);
  const diskIdx = {
    attachedTo: new KeyIndex(),
    byPath: new KeyIndex(),
    linkedTo: new KeyIndex(),
    beingMadeFrom: new KeyIndex(),
  };
  for (const d of disks.values()) {
    const key = `${NS}/${d.metadata?.name}`;
    diskIdx.attachedTo.set(
      key,
      (d.status?.attachedTo ?? []).map((v) => `${NS}/${v}`),
    );
    diskIdx.byPath.set(key, d.status?.path ? [d.status.path] : []);
  }
  const indexes = { vms: index, disks: diskIdx, snapshots: {} } as unknown as ClusterIndexes;
  const kube = {} as Kube;
  const log = createLogger("bench-cluster-index");
  log.level = "silent";
  const heartbeats = { fresh: () => true, silentMs: () => 0, heardRenewing: () => true };
  const book = { vmNodes: new Map<string, string>(), diskNodes: new Map<string, string>() };
  const common = { kube, vms, nodes: nodeCache, heartbeats, disks: diskCache, book, log } as const;
  const reconciler = new ClusterVmReconciler({
    ...common,
    index,
    policy: { cpuOvercommit: 8 },
    namespaces: { get: () => undefined, list: () => [] },
    tenancy: TENANCY,
  } as never);
  const inside = reconciler as unknown as { nodeViews(key: string): NodeView[]; nics: InterfaceAssigner };
  const diskReconciler = new ClusterDiskReconciler({
    ...common,
    indexes,
    namespaces: { get: () => undefined, list: () => [] },
    tenancy: TENANCY,
    storageOvercommit: 1,
  } as never);
  const policy = tenantPolicy(undefined, TENANCY);
  const sample = (i: number) => placedVm((i * 7919) % size);
  const samples = Array.from({ length: 64 }, (_, i) => fleet.get(`${NS}/vm-${(i * 7919) % size}`)!);
  const rounds = size >= 1000 ? 20 : 100;
  const newVm = (i: number) => {
    const v = placedVm(size + i);
    return { ...v, status: {} } as Vm;
  };
  const request = (vm: Vm) => ({ hypervisor: "qemu", ...capacityNeed(vm), networks: ["default"] });

  const rows: Row[] = [];
  const row = (what: string, scan: (i: number) => void, idx: (i: number) => void) =>
    rows.push({ what, vms: size, scanUs: timePerCall(rounds, scan), indexUs: timePerCall(rounds, idx) });

  row(
    "identity check (clusterRefusal)",
    (i) => head.clusterRefusal(samples[i % 64]!, { policy, vms: vms.list() }),
    (i) => clusterRefusal(samples[i % 64]!, { policy, holdersOf: index.holdersOf }),
  );
  row(
    "node views with allocations",
    (i) => head.nodeViews(vms.list(), nodeList, `${NS}/vm-${i % size}`),
    (i) => inside.nodeViews(`${NS}/vm-${i % size}`),
  );
  const headNics = new head.InterfaceAssigner(vms, nodeCache);
  row(
    "interfaces of a placed VM",
    (i) => headNics.interfaces(samples[i % 64]!, samples[i % 64]!.status!.nodeName!),
    (i) => inside.nics.interfaces(samples[i % 64]!, samples[i % 64]!.status!.nodeName!),
  );
  row(
    "placing a new VM (refusal, views, place, interfaces)",
    (i) => {
      const vm = newVm(i);
      head.clusterRefusal(vm, { policy, vms: vms.list() });
      const r = place(request(vm), head.nodeViews(vms.list(), nodeList, keyOf(vm)), { cpuOvercommit: 8 });
      if ("node" in r) headNics.interfaces(vm, r.node);
      headNics.release(keyOf(vm));
    },
    (i) => {
      const vm = newVm(i);
      clusterRefusal(vm, { policy, holdersOf: index.holdersOf });
      const r = place(request(vm), inside.nodeViews(keyOf(vm)), { cpuOvercommit: 8 });
      if ("node" in r) inside.nics.interfaces(vm, r.node);
      inside.nics.release(keyOf(vm));
    },
  );
  row(
    "VM event fan-out (identity waiters, unplaced, disks)",
    (i) => {
      vms.list().filter((v) => waitsForIdentity(v, "Admitted"));
      vms.list().filter((v) => !v.status?.nodeName && !v.metadata?.deletionTimestamp);
      const vm = samples[i % 64]!;
      diskCache.list(NS).filter((d) => usesDisk(vm, d) || d.status?.attachedTo?.includes(vm.metadata!.name!));
    },
    (i) => {
      reconciler.waitingForIdentity();
      reconciler.unplacedKeys();
      diskReconciler.keysForVm(samples[i % 64]!);
    },
  );
  row(
    "a disk's users (disk reconcile)",
    (i) => {
      const d = disks.get(`${NS}/vm-${(i * 7919) % size}-root`)!;
      vms.list(NS).filter((v) => usesDisk(v, d));
    },
    (i) => {
      const d = disks.get(`${NS}/vm-${(i * 7919) % size}-root`)!;
      index
        .diskUsers(NS, d.metadata!.name!, d.status?.path)
        .flatMap((k) => vms.get(k.split("/")[1]!, NS) ?? [])
        .filter((v) => usesDisk(v, d));
    },
  );
  rows.push({
    what: "index upkeep per VM event (observe)",
    vms: size,
    scanUs: 0,
    indexUs: timePerCall(rounds, (i) => index.observe(fleet.get(keyOf(sample(i)))!)),
  });
  return rows;
}

const keyOf = (vm: Vm) => `${vm.metadata?.namespace}/${vm.metadata?.name}`;

/** A fleet of SIZE VMs placed one at a time from nothing: the total, both ways. */
function fill(size: number): { scanMs: number; indexMs: number } {
  const nodeList = nodes();
  const nodeCache = lister(new Map(nodeList.map((n) => [`undefined/${n.metadata?.name}`, n])));
  const policy = tenantPolicy(undefined, TENANCY);
  const run = (indexed: boolean) => {
    const fleet = new Map<string, Vm>();
    const vms = effectiveVms(lister(fleet));
    const index = new VmIndex();
    const reconciler = new ClusterVmReconciler({
      kube: {} as Kube,
      vms,
      index,
      nodes: nodeCache,
      heartbeats: { fresh: () => true, silentMs: () => 0, heardRenewing: () => true },
      policy: { cpuOvercommit: 8 },
      disks: lister(new Map()),
      book: { vmNodes: new Map(), diskNodes: new Map() },
      namespaces: { get: () => undefined, list: () => [] },
      tenancy: TENANCY,
      log: createLogger("bench-cluster-index"),
    } as never);
    const inside = reconciler as unknown as { nodeViews(key: string): NodeView[]; nics: InterfaceAssigner };
    const headNics = new head.InterfaceAssigner(vms, nodeCache);
    collect();
    const t = cpuMs();
    for (let i = 0; i < size; i++) {
      const fresh = { ...placedVm(i), status: {} } as Vm;
      const key = keyOf(fresh);
      const req = { hypervisor: "qemu", ...capacityNeed(fresh), networks: ["default"] };
      let interfaces: unknown;
      let node = "";
      if (indexed) {
        clusterRefusal(fresh, { policy, holdersOf: index.holdersOf });
        const r = place(req, inside.nodeViews(key), { cpuOvercommit: 8 });
        node = "node" in r ? r.node : "";
        interfaces = inside.nics.interfaces(fresh, node);
      } else {
        head.clusterRefusal(fresh, { policy, vms: vms.list() });
        const r = place(req, head.nodeViews(vms.list(), nodeList, key), { cpuOvercommit: 8 });
        node = "node" in r ? r.node : "";
        interfaces = headNics.interfaces(fresh, node);
      }
      const placed = { ...fresh, status: { nodeName: node, uuid: randomUUID(), interfaces } } as Vm;
      fleet.set(key, placed);
      index.observe(placed);
    }
    return cpuMs() - t;
  };
  // The best of a few fills, each way.
  const best = (indexed: boolean) => Math.min(...[1, 2, 3].map(() => run(indexed)));
  return { scanMs: best(false), indexMs: best(true) };
}

const all = process.env.BENCH_FILL_ONLY ? [] : SIZES.flatMap((n) => measure(n));
const byWhat = new Map<string, Row[]>();
for (const r of all) byWhat.set(r.what, [...(byWhat.get(r.what) ?? []), r]);
process.stdout.write(
  `\nPer call, µs of CPU (best of ${RUNS} runs; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")} on ${availableParallelism()} CPUs); the walks are HEAD 461d8b0's code\n\n`,
);
process.stdout.write(
  `${table(
    [
      "what",
      ...SIZES.flatMap((n) => [`walk@${n}`, `index@${n}`]),
      `walk ${SIZES[1]}/${SIZES[0]}`,
      `index ${SIZES[1]}/${SIZES[0]}`,
    ],
    [...byWhat].map(([what, rs]) => {
      const [a, b] = [rs[0]!, rs[1]!];
      return [
        what,
        ...rs.flatMap((r) => [r.scanUs || "-", r.indexUs]),
        a.scanUs ? b.scanUs / a.scanUs : "-",
        b.indexUs / a.indexUs,
      ];
    }),
  )}\n`,
);
const fills = SIZES.map((n) => ({ vms: n, ...fill(n) }));
process.stdout.write(
  "\nPlacing a fleet one VM at a time from none (decisions only), ms of CPU, best of 3\n\n",
);
process.stdout.write(
  `${table(
    ["vms", "walk total", "index total", "walk per VM", "index per VM", "walk/index"],
    fills.map((f) => [f.vms, f.scanMs, f.indexMs, f.scanMs / f.vms, f.indexMs / f.vms, f.scanMs / f.indexMs]),
  )}\n`,
);
const jsonAt = process.argv.indexOf("--json");
if (jsonAt > 0 && process.argv[jsonAt + 1])
  writeFileSync(process.argv[jsonAt + 1]!, `${JSON.stringify({ perCall: all, fill: fills }, null, 2)}\n`);
