// A bounded soak of faults (make soak-faults; not in make test): random operations from a
// seeded generator over test-driver nodes — VMs created, deleted, started, stopped and changed,
// the controller and agents killed, agents frozen past the lost-node limit — and after every
// step the invariants: every VM converges (its generation observed, Running or Stopped as its
// runStrategy says, no NodeLost), a deleted VM goes (no finalizer stuck), and no VM has a
// domain on a node other than its own. SOAK_SECONDS (default 1200), SOAK_SEED (default: random,
// printed; the same seed replays the same operations).
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { startController } from "../../src/cmd/local/operator.ts";
import { runningPid, stopDaemon } from "../../src/cmd/local/processes.ts";
import {
  domainsOn,
  startTestNodes,
  stopTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../support/nodes.ts";
import { applyVm } from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 1200);
const SEED = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const LOST_AFTER_SECONDS = 20;
const MAX_VMS = 12;
const CONVERGE_MS = 120_000;
const PREFIX = "soak";
let ns = "";
let nodes: TestNode[] = [];
let controllers = 0;

/** mulberry32: small, seedable, good enough to pick operations. */
function generator(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The operation ROLL (0 … total weight) lands on. */
function weighted<T extends [string, number, unknown]>(ops: readonly T[], roll: number): T {
  let left = roll;
  for (const op of ops) {
    left -= op[1];
    if (left < 0) return op;
  }
  return ops[ops.length - 1]!;
}

async function vms(): Promise<VirtualMachine[]> {
  const { stdout } = await kubectl(["get", "vm", "-n", ns, "-o", "json"]);
  return (JSON.parse(stdout) as { items: VirtualMachine[] }).items;
}

function agentPid(node: TestNode): number | undefined {
  return runningPid(TEST_STACK.stateDir, `agent-${node.nodeName}`);
}

async function restartController() {
  controllers++;
  // A new identity, as a new pod would have: it waits for the dead one's lease to expire.
  await startController(
    TEST_STACK.stateDir,
    KUBECONFIG,
    `soak-${controllers}`,
    TEST_STACK.ports.controllerMetrics,
  );
}

/** What is wrong now, or undefined when every invariant holds. */
async function violations(): Promise<string | undefined> {
  const all = await vms();
  const seen = await Promise.all(nodes.map((n) => domainsOn(n)));
  for (const vm of all) {
    const key = `${ns}/${vm.metadata.name}`;
    const where = nodes.filter((_, i) => seen[i]!.has(key)).map((n) => n.nodeName);
    if (where.length > 1) return `${key} has domains on ${where.join(", ")}`;
    if (vm.metadata.deletionTimestamp) return `${key} is still Terminating`;
    const s = vm.status;
    if (s?.observedGeneration !== vm.metadata.generation)
      return `${key} observedGeneration ${s?.observedGeneration} of ${vm.metadata.generation}`;
    const want = vm.spec.runStrategy === "Halted" ? "Stopped" : "Running";
    if (s?.printableStatus !== want) return `${key} is ${s?.printableStatus}, not ${want}`;
    if (s.conditions?.some((c) => c.type === "NodeLost" && c.status === "True")) return `${key} NodeLost`;
    if (where.length === 1 && where[0] !== s.nodeName)
      return `${key} runs on ${where[0]}, placed on ${s.nodeName}`;
    if (where.length === 0) return `${key} has no domain on ${s.nodeName}`;
  }
  const names = new Set(all.map((vm) => `${ns}/${vm.metadata.name}`));
  for (const [i, keys] of seen.entries())
    for (const key of keys)
      if (key.startsWith(`${ns}/`) && !names.has(key))
        return `${key} is deleted but has a domain on ${nodes[i]!.nodeName}`;
  return undefined;
}

async function converge(): Promise<number> {
  const started = Date.now();
  let last: string | undefined;
  while (Date.now() - started < CONVERGE_MS) {
    last = await violations();
    if (!last) return Date.now() - started;
    await sleep(500);
  }
  throw new Error(`not converged after ${CONVERGE_MS} ms: ${last}`);
}

before(async () => {
  ns = await testNamespace("soak");
  process.env.NODE_LOST_AFTER_SECONDS = String(LOST_AFTER_SECONDS);
  process.env.STATISTICS_INTERVAL_SECONDS = "1";
  await restartController();
  nodes = await startTestNodes(3, { prefix: PREFIX });
});

after(async () => {
  for (const node of nodes) {
    const pid = agentPid(node);
    if (pid) process.kill(pid, "SIGCONT");
  }
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await stopTestNodes(nodes);
  await stopDaemon(TEST_STACK.stateDir, "controller");
});

it(`random operations and faults for ${SECONDS} s (seed ${SEED}) keep every invariant`, async () => {
  process.stderr.write(`# soak seed ${SEED} (SOAK_SEED=${SEED} replays it), ${SECONDS} s\n`);
  const random = generator(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const counts = new Map<string, { n: number; ms: number[] }>();
  let serial = 0;
  const names = async () => (await vms()).map((vm) => vm.metadata.name);

  const operations: Array<[string, number, () => Promise<void>]> = [
    [
      "create VM",
      25,
      async () => {
        if ((await names()).length >= MAX_VMS) return;
        await applyVm(ns, `vm-${++serial}`, {
          hypervisor: "qemu",
          memory: "64Mi",
          runStrategy: random() < 0.75 ? "Always" : "Halted",
          nodeSelector: { [TEST_NODE_GROUP_LABEL]: PREFIX },
        });
      },
    ],
    [
      "delete VM",
      12,
      async () => {
        const all = await names();
        if (all.length) await kubectl(["delete", "vm", pick(all), "-n", ns, "--wait=false"]);
      },
    ],
    [
      "start or stop",
      15,
      async () => {
        const all = await vms();
        if (!all.length) return;
        const vm = pick(all);
        const next = vm.spec.runStrategy === "Halted" ? "Always" : "Halted";
        await kubectl([
          "patch",
          "vm",
          vm.metadata.name,
          "-n",
          ns,
          "--type=merge",
          "-p",
          JSON.stringify({ spec: { runStrategy: next } }),
        ]);
      },
    ],
    [
      "10 conflicting writers",
      6,
      async () => {
        const all = await names();
        if (!all.length) return;
        const name = pick(all);
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            kubectl([
              "patch",
              "vm",
              name,
              "-n",
              ns,
              "--type=merge",
              "-p",
              JSON.stringify({ spec: { memory: `${64 + 16 * i}Mi` } }),
            ]),
          ),
        );
      },
    ],
    [
      "kill the controller",
      8,
      async () => {
        const pid = runningPid(TEST_STACK.stateDir, "controller");
        if (pid) process.kill(pid, "SIGKILL");
        await sleep(random() * 3000);
        await stopDaemon(TEST_STACK.stateDir, "controller");
        await restartController();
      },
    ],
    [
      "kill an agent",
      8,
      async () => {
        const node = pick(nodes);
        const pid = agentPid(node);
        if (pid) process.kill(pid, "SIGKILL");
        await sleep(random() * 3000);
        await node.restart();
      },
    ],
    [
      "freeze an agent",
      8,
      async () => {
        const node = pick(nodes);
        const pid = agentPid(node);
        if (!pid) return;
        process.kill(pid, "SIGSTOP");
        // Sometimes past the lost-node limit: its VMs go Unknown and come back.
        await sleep(2000 + random() * (LOST_AFTER_SECONDS + 15) * 1000);
        process.kill(pid, "SIGCONT");
      },
    ],
  ];
  const total = operations.reduce((n, [, w]) => n + w, 0);
  const end = Date.now() + SECONDS * 1000;
  let steps = 0;
  while (Date.now() < end) {
    const [label, , run] = weighted(operations, random() * total);
    steps++;
    await run();
    let ms: number;
    try {
      ms = await converge();
    } catch (err) {
      throw new Error(`step ${steps} (${label}, seed ${SEED}): ${(err as Error).message}`);
    }
    const c = counts.get(label) ?? { n: 0, ms: [] };
    c.n++;
    c.ms.push(ms);
    counts.set(label, c);
  }
  process.stderr.write(`# ${steps} steps, every invariant held after each\n`);
  for (const [label, c] of [...counts].sort()) {
    const sorted = [...c.ms].sort((x, y) => x - y);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    process.stderr.write(
      `#   ${label.padEnd(24)} ${String(c.n).padStart(4)} times, converged p50 ${at(0.5)} ms, max ${at(1)} ms\n`,
    );
  }
  assert.ok(steps > 0);
});
