// What the node agent's checks of one VM cost before its domain is defined — is any UUID, MAC
// or address it wants held by another VM on the node — with 100 and with 1000 VMs placed there:
// given every VM on the node (as the agent did before its index) against given the few the
// index (controllers/node/node-vm-index.ts) finds. Pure code on a fake informer: no API server,
// no libvirt.
//   node bench/node-index.ts
import { availableParallelism, loadavg } from "node:os";
import type { KubernetesObject } from "@kubernetes/client-node";
import { NODE_LABEL } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { addressConflicts } from "../src/controllers/node/address-claims.ts";
import { NodeVmIndex } from "../src/controllers/node/node-vm-index.ts";
import { identityRefusal } from "../src/controllers/vm-identities.ts";
import { encodePlacement, PLACEMENT_ANNOTATION } from "../src/controllers/vm-placement.ts";
import type { WatchVerb } from "../src/runtime/watch.ts";
import { table } from "./stats.ts";

type Vm = VirtualMachine & KubernetesObject;

const SIZES = [100, 1000];
/** Each figure is the best of this many runs: other work on the machine only ever adds time. */
const RUNS = 5;
const NODE = "node-0";

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** The Ith VM placed on the node, as the controller leaves it: UUID, MAC and addresses recorded. */
function placedVm(i: number): Vm {
  const uid = `uid-${i}`;
  const placement = {
    nodeName: NODE,
    uuid: `${hex(i, 8)}-0000-4000-8000-000000000000`,
    interfaces: [
      {
        name: "default",
        network: "default",
        mac: `52:54:00:${hex((i >> 16) & 255, 2)}:${hex((i >> 8) & 255, 2)}:${hex(i & 255, 2)}`,
        ipv4: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        ipv6: `fd00::${hex(i, 4)}`,
      },
    ],
  };
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      name: `vm-${i}`,
      namespace: `tenant-${i % 10}`,
      uid,
      creationTimestamp: new Date(1_700_000_000_000 + i * 1000).toISOString(),
      labels: { [NODE_LABEL]: NODE },
      annotations: { [PLACEMENT_ANNOTATION]: encodePlacement(placement, uid) },
    },
    spec: { memory: "64Mi", interfaces: [{ name: "default", network: "default" }] },
  } as unknown as Vm;
}

/** An informer's cache and handlers, filled by hand. */
function informerOf(vms: readonly Vm[]) {
  const objects = new Map(vms.map((v) => [`${v.metadata?.namespace}/${v.metadata?.name}`, v]));
  const handlers: Array<(vm: Vm) => void> = [];
  return {
    on(verb: WatchVerb, cb: (vm: Vm) => void) {
      if (verb === "add") handlers.push(cb);
    },
    fill() {
      for (const vm of objects.values()) for (const cb of handlers) cb(vm);
    },
    get: (name: string, namespace: string) => objects.get(`${namespace}/${name}`),
  };
}

/** VMs judged per run, spread over the node's (each as the one starting). */
const JUDGED = 50;

/** Best wall time per VM, in µs, of CHECK run over JUDGED of VMS. */
function perVmMicros(vms: readonly Vm[], check: (vm: Vm) => unknown): number {
  const judged = Array.from({ length: JUDGED }, (_, i) => vms[Math.floor((i * vms.length) / JUDGED)]!);
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < RUNS; run++) {
    const t = performance.now();
    for (const vm of judged) check(vm);
    best = Math.min(best, ((performance.now() - t) * 1000) / judged.length);
  }
  return best;
}

const rows: string[][] = [];
const figures: Record<number, { scanMicros: number; indexMicros: number }> = {};
for (const n of SIZES) {
  const vms = Array.from({ length: n }, (_, i) => placedVm(i));
  const informer = informerOf(vms);
  const index = new NodeVmIndex(informer, informer.get);
  informer.fill();
  const scanMicros = perVmMicros(vms, (vm) => [identityRefusal(vm, vms), addressConflicts(vm, vms)]);
  const indexMicros = perVmMicros(vms, (vm) => {
    const sharing = index.sharing(vm);
    return [identityRefusal(vm, sharing), addressConflicts(vm, sharing)];
  });
  figures[n] = { scanMicros, indexMicros };
  rows.push([
    String(n),
    scanMicros.toFixed(0),
    indexMicros.toFixed(0),
    `×${(scanMicros / indexMicros).toFixed(0)}`,
  ]);
}

console.log(
  `\nNode agent: checking one VM's UUID, MAC and addresses against the VMs on its node (best of ${RUNS}; ` +
    `${availableParallelism()} CPUs, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")})\n`,
);
console.log(
  table(["VMs on the node", "every VM, µs per VM", "by the index, µs per VM", "index faster"], rows),
);
const [small, big] = SIZES.map((n) => figures[n]!);
if (small && big)
  console.log(
    `\nper-VM cost, ${SIZES[0]} → ${SIZES[1]} VMs on the node: every VM ×${(big.scanMicros / small.scanMicros).toFixed(1)}, ` +
      `the index ×${(big.indexMicros / small.indexMicros).toFixed(1)} (independent of the node's VMs: ${big.indexMicros <= small.indexMicros * 1.5 ? "met" : "NOT met"})`,
  );
