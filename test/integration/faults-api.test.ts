// Fault injection on the API side. (a) 100 conflicting spec updates to one VM from 10 clients at
// once, each a read-modify-write that the API server rejects with 409 when another got in first
// (the client reads again and retries): the VM converges to the last write — its domain's memory
// too — and nothing is left failing. (b) kube-apiserver and etcd both frozen (SIGSTOP) for 60 s
// with VMs running on a test-driver node: the guests still run afterwards and a new VM is placed
// and runs within 60 s of the resume. The controller runs supervised here, as `make local` runs
// it: it exits when it loses its leader Lease during the freeze and its supervisor restarts it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { startController } from "../../src/cmd/local/operator.ts";
import { logFile, runningPid, runningSupervisor, stopDaemon } from "../../src/cmd/local/processes.ts";
import { placedNode } from "../../src/controllers/vm-placement.ts";
import { httpStatus } from "../../src/runtime/kube.ts";
import { seconds, within } from "../support/faults.ts";
import {
  domainsOn,
  startTestNodes,
  stopTestNodes,
  TEST_NODE_GROUP_LABEL,
  type TestNode,
} from "../support/nodes.ts";
import {
  applyVm,
  getVm,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForVm,
} from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

let ns = "";
let nodes: TestNode[] = [];
/** Frozen processes, resumed by after() should a test fail while they are stopped. */
const frozen = new Set<number>();

const CONTENDED = "contended";
const MiB = 2 ** 20;

/** A client of its own (its own connections), as another controller or user would be. */
function apiClient(): CustomObjectsApi {
  const kc = new KubeConfig();
  kc.loadFromFile(KUBECONFIG);
  return kc.makeApiClient(CustomObjectsApi);
}

/** One update: read, change spec.memory, write back under the resourceVersion read (409 → again). */
async function updateMemory(api: CustomObjectsApi, memoryMi: number, conflicts: { count: number }) {
  const at = { group: GROUP, version: VERSION, namespace: ns, plural: "virtualmachines", name: CONTENDED };
  for (let attempt = 0; attempt < 100; attempt++) {
    const vm = (await api.getNamespacedCustomObject(at)) as VirtualMachine;
    const body = {
      metadata: { resourceVersion: vm.metadata.resourceVersion },
      spec: { memory: `${memoryMi}Mi` },
    };
    try {
      await api.patchNamespacedCustomObject(
        { ...at, body },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      return;
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
      conflicts.count++;
    }
  }
  throw new Error(`update to ${memoryMi}Mi: still conflicting after 100 attempts`);
}

/** The memory of NAMESPACE/NAME's domain on the system libvirtd, in bytes. */
async function domainMemory(name: string): Promise<number> {
  const xml = await virsh("dumpxml", "--inactive", `${ns}_${name}`);
  const m = /<memory unit='KiB'>(\d+)<\/memory>/.exec(xml);
  return Number(m?.[1]) * 1024;
}

function testNodeVm(runStrategy = "Always") {
  return {
    memory: "64Mi",
    hypervisor: "qemu",
    runStrategy,
    nodeSelector: { [TEST_NODE_GROUP_LABEL]: "faults-api" },
  };
}

before(async () => {
  ns = await testNamespace("faults-api");
  await startTestOperator();
  nodes = await startTestNodes(1, { prefix: "faults-api" });
});

after(async () => {
  for (const pid of frozen) process.kill(pid, "SIGCONT");
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=90s"]).catch(() => undefined);
  await stopTestNodes(nodes);
  await kubectl(["delete", "node", ...nodes.map((n) => n.nodeName), "--ignore-not-found"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

describe("faults on the API side", () => {
  it("100 conflicting spec updates from 10 clients: the VM converges to the last one written", async () => {
    await applyVm(ns, CONTENDED, {
      memory: "64Mi",
      hypervisor: "qemu",
      runStrategy: "Halted",
      nodeSelector: { "kubernetes.io/hostname": TEST_STACK.nodeName },
    });
    await waitForVm(ns, CONTENDED, isPrintable("Stopped"), "Stopped", 60_000);
    const conflicts = { count: 0 };
    const started = Date.now();
    const generationBefore = (await getVm(ns, CONTENDED))!.metadata.generation!;
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, async (_, client) => {
        const api = apiClient();
        for (let i = 0; i < 10; i++) await updateMemory(api, 65 + client * 10 + i, conflicts);
      }),
    );
    const updated = Date.now();
    assert.deepEqual(
      results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason)),
      [],
      "every client's updates went through",
    );
    const vm = (await getVm(ns, CONTENDED))!;
    assert.equal(vm.metadata.generation, generationBefore + 100, "100 updates, each a new generation");
    const last = vm.spec.memory;
    const converged = await within(async () => {
      const v = await getVm(ns, CONTENDED);
      const failed = v?.status?.conditions?.some((c) => c.type === "Failure" && c.status === "True");
      return (
        v?.status?.observedGeneration === v?.metadata.generation &&
        !failed &&
        (await domainMemory(CONTENDED)) === Number.parseInt(String(last), 10) * MiB
      );
    }, 60_000);
    process.stderr.write(
      `# 100 updates from 10 clients in ${seconds(updated - started)} (${conflicts.count} conflicts retried); ` +
        `converged to memory ${last} ${converged === undefined ? "never" : `${seconds(converged)} after the last`}\n`,
    );
    assert.ok(
      converged !== undefined,
      `the VM and its domain at the last generation, memory ${last}: ${JSON.stringify((await getVm(ns, CONTENDED))?.status)}`,
    );
    assert.equal((await getVm(ns, CONTENDED))?.spec.memory, last, "nobody wrote after the clients");
  });

  it("kube-apiserver and etcd frozen for 60 s: guests still run, a new VM is placed and runs within 60 s", async () => {
    // The local stack's way: the controller under a supervisor that restarts it when it exits.
    await stopDaemon(TEST_STACK.stateDir, "controller");
    await startController(
      TEST_STACK.stateDir,
      KUBECONFIG,
      "faults-api",
      TEST_STACK.ports.controllerMetrics,
      true,
    );
    await Promise.all(["before-1", "before-2"].map((n) => applyVm(ns, n, testNodeVm())));
    for (const n of ["before-1", "before-2"])
      await waitForVm(ns, n, isPrintable("Running"), "Running", 60_000);
    await within(async () => (await domainsOn(nodes[0]!)).has(`${ns}/before-2`), 30_000);
    const agentBefore = runningPid(TEST_STACK.stateDir, "agent");
    const controllerBefore = runningPid(TEST_STACK.stateDir, "controller");

    const etcd = runningPid(TEST_STACK.stateDir, "etcd");
    const apiserver = runningPid(TEST_STACK.stateDir, "kube-apiserver");
    assert.ok(etcd && apiserver, "the test stack's etcd and kube-apiserver run");
    for (const pid of [apiserver, etcd]) {
      process.kill(pid, "SIGSTOP");
      frozen.add(pid);
    }
    await sleep(60_000);
    for (const pid of [etcd, apiserver]) {
      process.kill(pid, "SIGCONT");
      frozen.delete(pid);
    }
    const resumedAt = Date.now();

    // A new VM, applied as soon as the API server answers again.
    await within(async () => (await kubectl(["get", "--raw", "/readyz"])).stdout.trim() === "ok", 60_000);
    const answering = Date.now() - resumedAt;
    await applyVm(ns, "after", testNodeVm());
    const placedAndRunning = await within(async () => {
      const vm = await getVm(ns, "after");
      return vm?.status?.printableStatus === "Running";
    }, 60_000);
    const total = Date.now() - resumedAt;
    const controllerLog = readFileSync(logFile(TEST_STACK.stateDir, "controller"), "utf8");
    const restarts = [...controllerLog.matchAll(/"msg":"controller (exited|killed)[^"]*"/g)].map((m) => m[0]);
    process.stderr.write(
      `# API server + etcd frozen 60 s: answering ${seconds(answering)} after the resume; new VM ` +
        `${placedAndRunning === undefined ? "NOT running within 60 s" : `placed and Running ${seconds(total)} after the resume`}; ` +
        `controller ${runningPid(TEST_STACK.stateDir, "controller") === controllerBefore ? "kept running" : `restarted by its supervisor (${restarts.at(-1) ?? "?"})`}, ` +
        `agent ${runningPid(TEST_STACK.stateDir, "agent") === agentBefore ? "kept running" : "gone"}\n`,
    );
    assert.ok(placedAndRunning !== undefined, "the new VM placed and Running within 60 s of the resume");
    assert.ok(runningSupervisor(TEST_STACK.stateDir, "controller"), "the controller's supervisor runs");
    for (const n of ["before-1", "before-2"]) {
      const vm = await getVm(ns, n);
      assert.equal(vm?.status?.printableStatus, "Running", `${n} still Running`);
      assert.equal(vm ? placedNode(vm) : undefined, nodes[0]!.nodeName, `${n} not moved`);
    }
    const seen = await within(async () => {
      const on = await domainsOn(nodes[0]!);
      return ["before-1", "before-2", "after"].every((n) => on.has(`${ns}/${n}`));
    }, 30_000);
    assert.ok(seen !== undefined, "the node's hypervisor runs all three");
  });
});
