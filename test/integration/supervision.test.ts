// Restarts of the operator's processes, both ways they happen. The chart's: the controller exits
// non-zero when it loses its leader Lease and its Deployment restarts the container (liveness
// and readiness probes). The local stack's: each daemon runs under a supervisor
// (src/cmd/local/supervise.ts) that restarts it with backoff and logs why — after a SIGKILL, and
// after kube-apiserver froze long enough for the controller to lose its Lease. Stopping goes
// through the supervisor, so nothing is restarted during teardown, and a supervisor killed
// outright takes its daemon along. The VMs go to a test-driver node whose agent is supervised
// too (no guest needed).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { registerNode } from "../../src/cmd/local/kube.ts";
import {
  AGENT_NAMESPACE,
  controllerEnv,
  controllerKubeconfig,
  OPERATOR_NAMESPACE,
  startAgent,
  startController,
} from "../../src/cmd/local/operator.ts";
import {
  isAlive,
  logFile,
  runningPid,
  runningSupervisor,
  stopDaemon,
} from "../../src/cmd/local/processes.ts";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";
import { heartbeatLeaseName } from "../../src/controllers/node-facts.ts";
import { placedNode } from "../../src/controllers/vm-placement.ts";
import { testNodeXml } from "../support/nodes.ts";
import { applyVm, waitForVm } from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const LEASE = "libvirt-operator-controller";
const CONTROLLER = "controller";
/** The controller as its chart runs it: no supervisor, our child. It leads first; "supervised" stands by. */
const CHART_REPLICA = "chart-replica";
const NODE = "supervised-node";
const AGENT = `agent-${NODE}`;
let ns = "";
let dir = "";
let chartReplica: ChildProcess | undefined;
let chartReplicaOutput = "";
let chartReplicaExit: Promise<{ code: number | null; signal: string | null }>;
let frozenApiserver: number | undefined;
/** When the supervised controller was started, as a standby. */
let standbySince = 0;

interface LogLine {
  time: string;
  msg: string;
  component?: string;
  [field: string]: unknown;
}

/** JSON lines of DAEMON's log (its own and its supervisor's) written at or after SINCE. */
function daemonLog(since: number, daemon = CONTROLLER): LogLine[] {
  return readFileSync(logFile(TEST_STACK.stateDir, daemon), "utf8")
    .split("\n")
    .flatMap((line) => {
      try {
        const entry = JSON.parse(line) as LogLine;
        return Date.parse(entry.time) >= since ? [entry] : [];
      } catch {
        return [];
      }
    });
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** Whether the supervised controller logged that it leads, at or after SINCE. */
function leaderSince(since: number): boolean {
  return daemonLog(since).some((l) => l.component === "controller" && l.msg === "became leader");
}

async function controllerReady(): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${TEST_STACK.ports.controllerMetrics}/readyz`).catch(
    () => undefined,
  );
  return res?.status === 200;
}

/** Applies a VM for the test node and returns how long until the controller placed it. */
async function placedAfter(name: string): Promise<number> {
  const started = Date.now();
  await applyVm(ns, name, {
    memory: "64Mi",
    hypervisor: "qemu",
    runStrategy: "Halted",
    nodeSelector: { "kubernetes.io/hostname": NODE },
  });
  const vm = await waitForVm(ns, name, (v) => Boolean(v && placedNode(v)), "placed", 60_000);
  assert.equal(vm ? placedNode(vm) : undefined, NODE);
  return Date.now() - started;
}

/** Sets the controller Lease's holder, renewed now (as a candidate that just took it). */
async function leaseHeldBy(identity: string) {
  await kubectl(
    ["apply", "--server-side", "--force-conflicts", "--field-manager=supervision-test", "-f", "-"],
    JSON.stringify({
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: LEASE, namespace: OPERATOR_NAMESPACE },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: 15,
        renewTime: new Date().toISOString().replace("Z", "000Z"),
      },
    }),
  );
}

/** The chart's way: a plain child process, leading at once (the Lease names it already). */
async function startChartReplica() {
  // A copy: startController rewrites the controller's kubeconfig while this one loads it.
  const kubeconfig = join(dir, "chart-replica.kubeconfig");
  await copyFile(await controllerKubeconfig(TEST_STACK.stateDir, KUBECONFIG), kubeconfig);
  await leaseHeldBy(CHART_REPLICA);
  const child = spawn(process.execPath, [join(REPO_ROOT, "src", "cmd", "controller.ts")], {
    env: controllerEnv(kubeconfig, CHART_REPLICA, TEST_STACK.ports.agentMetrics + 12),
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d: Buffer) => (chartReplicaOutput += d.toString()));
  child.stderr.on("data", (d: Buffer) => (chartReplicaOutput += d.toString()));
  chartReplicaExit = new Promise((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  chartReplica = child;
}

/** An agent on libvirt's test driver for its own Node, supervised. */
async function startSupervisedAgent() {
  const config = join(dir, "node.xml");
  await writeFile(config, testNodeXml(41, 8, 16 * 2 ** 30));
  await registerNode(KUBECONFIG, NODE);
  await startAgent(TEST_STACK.stateDir, KUBECONFIG, {
    daemon: AGENT,
    nodeName: NODE,
    metricsPort: TEST_STACK.ports.agentMetrics + 11,
    libvirtUri: `test+unix://${config}`,
    env: {
      LIBVIRT_TEST_DRIVER: "true",
      STORAGE_POOL_PATH: join(dir, "pool"),
      IMAGE_IMPORT_DIRS: join(dir, "images"),
      CONSOLE_LOG_DIR: join(dir, "console"),
    },
    supervise: true,
  });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

before(async () => {
  const started = Date.now();
  ns = await testNamespace("supervision");
  dir = await mkdtemp(join(tmpdir(), "lvo-supervision-"));
  // Left by an earlier run that died with its test.
  await Promise.all([CONTROLLER, AGENT].map((d) => stopDaemon(TEST_STACK.stateDir, d)));
  await startChartReplica();
  standbySince = Date.now();
  // Started together (two cores): the supervised controller stands by while the chart's leads.
  await Promise.all([
    startSupervisedAgent(),
    startController(TEST_STACK.stateDir, KUBECONFIG, "supervised", TEST_STACK.ports.controllerMetrics, true),
  ]);
  await kubectl(["get", "lease", heartbeatLeaseName(NODE), "-n", AGENT_NAMESPACE]);
  process.stderr.write(`# two controllers and a supervised agent up in ${seconds(Date.now() - started)}\n`);
});

after(async () => {
  if (frozenApiserver) process.kill(frozenApiserver, "SIGCONT");
  chartReplica?.kill("SIGKILL");
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=false"]).catch(() => undefined);
  await Promise.all([CONTROLLER, AGENT].map((d) => stopDaemon(TEST_STACK.stateDir, d)));
  await kubectl(["delete", "node", NODE, "--ignore-not-found", "--wait=false"]).catch(() => undefined);
  await kubectl(["delete", "lease", heartbeatLeaseName(NODE), "-n", AGENT_NAMESPACE, "--ignore-not-found"]);
  await rm(dir, { recursive: true, force: true });
});

describe("restarts of the operator's processes", () => {
  it("the chart's way: it exits non-zero when it loses its Lease, and its Deployment probes it", async () => {
    const deployment = readFileSync(
      join(REPO_ROOT, "helm", "libvirt-operator", "templates", "controller-deployment.yaml"),
      "utf8",
    );
    assert.match(deployment, /^kind: Deployment$/m);
    assert.match(deployment, /livenessProbe:\s*\n\s*httpGet: \{ path: \/healthz, port: metrics \}/);
    assert.match(deployment, /readinessProbe:\s*\n\s*httpGet: \{ path: \/readyz, port: metrics \}/);
    assert.doesNotMatch(deployment, /restartPolicy: (Never|OnFailure)/);

    await until(
      "the chart's controller leading",
      () => chartReplicaOutput.includes('"msg":"became leader"') || undefined,
      30_000,
    );
    assert.ok(!leaderSince(standbySince), "the supervised one, Ready too, stands by");
    // Another candidate takes the Lease (as a standby does once the holder's renewals stop).
    const takenAt = Date.now();
    await leaseHeldBy("usurper");
    const { code, signal } = await Promise.race([
      chartReplicaExit,
      sleep(20_000).then(() => ({ code: null, signal: "still running after 20 s" })),
    ]);
    process.stderr.write(
      `    lost its Lease: exited with code ${code} ${seconds(Date.now() - takenAt)} later\n`,
    );
    assert.equal(signal, null, chartReplicaOutput.slice(-2000));
    assert.equal(code, 1, "a non-zero exit: the kubelet restarts the container");
    assert.match(chartReplicaOutput, /"msg":"lost leadership"/);
    // The usurper is gone: the supervised standby takes over at its next try.
    await kubectl(["delete", "lease", LEASE, "-n", OPERATOR_NAMESPACE]);
  });

  it("the local way: a controller killed (SIGKILL) is restarted by its supervisor and places new VMs", async () => {
    // It took the Lease freed at the end of the previous test.
    await until("the supervised controller leading", () => leaderSince(standbySince) || undefined, 30_000);
    const first = runningPid(TEST_STACK.stateDir, CONTROLLER)!;
    const supervisor = runningSupervisor(TEST_STACK.stateDir, CONTROLLER)!;
    assert.ok(first && supervisor, "the controller and its supervisor run");

    const killedAt = Date.now();
    process.kill(first, "SIGKILL");
    const restarted = await until(
      "the supervisor restarting the controller",
      () => {
        const lines = daemonLog(killedAt - 1000).filter((l) => l.component === "supervisor");
        const exited = lines.find((l) => String(l.msg).startsWith("controller killed by SIGKILL"));
        const started = exited && lines.find((l) => l.msg === "controller started" && l.time >= exited.time);
        return started && { exited, started };
      },
      10_000,
    );
    const delay = Date.parse(restarted.started.time) - Date.parse(restarted.exited.time);
    assert.equal(restarted.exited.attempt, 1);
    assert.equal(restarted.exited.delayMs, 1000);
    const second = runningPid(TEST_STACK.stateDir, CONTROLLER);
    assert.ok(second && second !== first, "a new process");
    assert.equal(
      runningSupervisor(TEST_STACK.stateDir, CONTROLLER)?.pid,
      supervisor.pid,
      "the same supervisor",
    );
    await until("the restarted controller Ready", () => controllerReady() || undefined, 30_000);
    const ready = Date.now() - killedAt;
    const placed = await placedAfter("after-kill");
    process.stderr.write(
      `    SIGKILL: restarted ${seconds(delay)} after the exit, Ready ${seconds(ready)} after the kill, next VM placed in ${seconds(placed)}\n`,
    );
  });

  it("the local way: kube-apiserver frozen for 30 s — the controller exits on its lost Lease, is restarted and places a new VM", async () => {
    const apiserver = runningPid(TEST_STACK.stateDir, "kube-apiserver");
    assert.ok(apiserver, "the test stack's kube-apiserver runs");
    const pidBefore = runningPid(TEST_STACK.stateDir, CONTROLLER);
    const frozenAt = Date.now();
    process.kill(apiserver, "SIGSTOP");
    frozenApiserver = apiserver;
    await sleep(30_000);
    process.kill(apiserver, "SIGCONT");
    frozenApiserver = undefined;
    const resumedAt = Date.now();

    const placed = await placedAfter("after-freeze");
    const converged = Date.now() - resumedAt;
    const log = daemonLog(frozenAt);
    const lost = log.find((l) => l.msg === "lost leadership");
    const exit = log.find(
      (l) => l.component === "supervisor" && String(l.msg).startsWith("controller exited"),
    );
    process.stderr.write(
      `    frozen 30 s: lost the Lease ${lost ? seconds(Date.parse(lost.time) - frozenAt) : "never"} in, ` +
        `${exit ? `${exit.exit}, restart ${exit.attempt} after ${seconds(Number(exit.delayMs))}` : "no exit"}; ` +
        `new VM placed ${seconds(converged)} after the API server resumed (apply to placed ${seconds(placed)})\n`,
    );
    assert.ok(lost, "the controller stopped leading while the API server was frozen");
    assert.equal(exit?.exit, "exited with code 1", "it exited non-zero, and its supervisor restarted it");
    assert.notEqual(runningPid(TEST_STACK.stateDir, CONTROLLER), pidBefore);
    assert.ok(converged < 60_000);
  });

  it("stopping goes through the supervisor (nothing restarted); a supervisor killed outright takes its daemon along", async () => {
    // While the controller and the agent can still release their finalizers.
    await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=30s"]);
    const daemon = runningPid(TEST_STACK.stateDir, CONTROLLER)!;
    const supervisor = runningSupervisor(TEST_STACK.stateDir, CONTROLLER)!.pid;
    const stoppedAt = Date.now();
    assert.equal(await stopDaemon(TEST_STACK.stateDir, CONTROLLER), true);
    process.stderr.write(
      `    stopDaemon: controller and supervisor gone in ${seconds(Date.now() - stoppedAt)}\n`,
    );
    assert.ok(!isAlive(daemon) && !isAlive(supervisor), "both gone");

    // The agent's supervisor killed outright: the agent ends with it (parent-death signal).
    const agent = runningPid(TEST_STACK.stateDir, AGENT)!;
    const killedAt = Date.now();
    process.kill(runningSupervisor(TEST_STACK.stateDir, AGENT)!.pid, "SIGKILL");
    await until("the agent ending with its supervisor", () => !isAlive(agent) || undefined, 15_000);
    process.stderr.write(
      `    supervisor SIGKILLed: its agent gone ${seconds(Date.now() - killedAt)} later\n`,
    );

    // Longer than the first restart delay: nothing comes back.
    await sleep(2_000);
    assert.equal(runningPid(TEST_STACK.stateDir, CONTROLLER), undefined, "the controller was not restarted");
    assert.equal(runningSupervisor(TEST_STACK.stateDir, CONTROLLER), undefined);
    assert.deepEqual(
      daemonLog(stoppedAt)
        .filter((l) => l.component === "supervisor")
        .map((l) => l.msg),
      ["stopping controller; no more restarts", "controller stopped", "supervisor stopped"],
    );
    assert.equal(runningPid(TEST_STACK.stateDir, AGENT), undefined, "the agent was not restarted");
    assert.deepEqual(
      daemonLog(killedAt, AGENT).filter((l) => l.component === "supervisor"),
      [],
      "its supervisor said nothing more",
    );
  });
});
