// Leader election: of two controllers one leads; when it dies the other takes the Lease over
// and reconciles.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import yaml from "js-yaml";
import {
  controllerEnv,
  controllerKubeconfig,
  ensureOperatorNamespace,
  OPERATOR_NAMESPACE,
} from "../../src/cmd/local/operator.ts";
import { runningPid, startDaemon, stopDaemon } from "../../src/cmd/local/processes.ts";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";
import { applyVm, isPrintable, waitForVm } from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";
import { StallProxy } from "../support/stall-proxy.ts";

/** When NAME's log (a daemon of the test stack; appended across runs) first said MESSAGE after AFTER. */
function logTime(name: string, message: string, after: number): number {
  const lines = readFileSync(join(TEST_STACK.stateDir, "logs", `${name}.log`), "utf8").split("\n");
  for (const line of lines) {
    if (!line.includes(message)) continue;
    const at = Date.parse((JSON.parse(line) as { time: string }).time);
    if (!Number.isNaN(at) && at >= after) return at;
  }
  throw new Error(`${name} never logged "${message}"`);
}

const CONTROLLERS = ["controller-a", "controller-b"];
/** The second test's pair: the leader reaches the API server through a proxy that can go silent. */
const STALLED = ["controller-c", "controller-d"];
/** The third test's candidate, beside a holder whose clock is an hour slow. */
const SKEWED = "controller-e";
let ns = "";

async function holder(): Promise<string> {
  const { stdout } = await kubectl([
    "get",
    "lease",
    "libvirt-operator-controller",
    "-n",
    OPERATOR_NAMESPACE,
    "-o",
    "jsonpath={.spec.holderIdentity}",
  ]).catch(() => ({ stdout: "" }));
  return stdout;
}

async function waitForHolder(check: (h: string) => boolean, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const h = await holder();
    if (check(h)) return h;
    if (Date.now() > deadline) throw new Error(`lease holder stayed "${h}"`);
    await sleep(250);
  }
}

before(async () => {
  ns = await testNamespace("leader-test");
  await ensureOperatorNamespace(KUBECONFIG);
  // Both under the controller's ServiceAccount, as the chart's replicas run.
  const own = await controllerKubeconfig(TEST_STACK.stateDir, KUBECONFIG);
  for (const [i, name] of CONTROLLERS.entries()) {
    await startDaemon(TEST_STACK.stateDir, {
      name,
      command: process.execPath,
      args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
      env: controllerEnv(own, name, 19390 + i),
    });
  }
});

after(async () => {
  for (const name of [...CONTROLLERS, ...STALLED, SKEWED]) await stopDaemon(TEST_STACK.stateDir, name);
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=30s"]).catch(() => undefined);
});

describe("controller leader election", () => {
  it("one controller leads; when it dies the other takes over and reconciles", async () => {
    const first = await waitForHolder((h) => CONTROLLERS.includes(h), 30_000);
    const other = CONTROLLERS.find((c) => c !== first)!;
    await sleep(3000);
    assert.equal(await holder(), first, "the leader keeps renewing; the other waits");
    // Both Ready, the standby too: a rolling upgrade waits for that.
    for (const [i, name] of CONTROLLERS.entries()) {
      const res = await fetch(`http://127.0.0.1:${19390 + i}/readyz`);
      assert.equal(res.status, 200, `${name} (${name === first ? "leader" : "standby"}) is Ready`);
    }

    process.kill(runningPid(TEST_STACK.stateDir, first)!, "SIGKILL");
    const started = Date.now();
    await waitForHolder((h) => h === other, 30_000);
    assert.ok(Date.now() - started < 25_000, "taken over within the lease duration and a retry");

    await applyVm(ns, "led", { memory: "64Mi", hypervisor: "qemu", nodeName: "no-such-node" });
    await waitForVm(ns, "led", isPrintable("ErrorUnschedulable"), "reconciled by the new leader", 30_000);
  });

  it("a leader whose requests hang stops leading before a standby takes over", async () => {
    for (const name of CONTROLLERS) await stopDaemon(TEST_STACK.stateDir, name);
    const own = await controllerKubeconfig(TEST_STACK.stateDir, KUBECONFIG);
    const proxy = new StallProxy(TEST_STACK.ports.apiserver + 7, TEST_STACK.ports.apiserver);
    await proxy.listen();
    const viaProxy = join(TEST_STACK.stateDir, "controller-via-proxy.kubeconfig");
    const config = yaml.load(readFileSync(own, "utf8")) as {
      clusters: Array<{ cluster: { server: string } }>;
    };
    for (const c of config.clusters) c.cluster.server = `https://127.0.0.1:${proxy.path}`;
    writeFileSync(viaProxy, yaml.dump(config), { mode: 0o600 });
    const start = (name: string, kubeconfig: string, port: number) =>
      startDaemon(TEST_STACK.stateDir, {
        name,
        command: process.execPath,
        args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
        env: controllerEnv(kubeconfig, name, port),
      });
    try {
      // The lease was freed or expires; the proxied one takes it first, then the direct one waits.
      await start("controller-c", viaProxy, 19392);
      await waitForHolder((h) => h === "controller-c", 40_000);
      await start("controller-d", own, 19393);
      await sleep(3000);
      assert.equal(await holder(), "controller-c");

      proxy.stall();
      const stalledAt = Date.now();
      await waitForHolder((h) => h === "controller-d", 40_000);
      const lost = logTime("controller-c", "lost leadership", stalledAt);
      const became = logTime("controller-d", "became leader", stalledAt);
      process.stderr.write(
        `    leader stalled: it stopped leading ${((lost - stalledAt) / 1000).toFixed(1)} s later, the standby led ${((became - stalledAt) / 1000).toFixed(1)} s later\n`,
      );
      assert.ok(lost < became, "the stalled leader stopped acting before the standby began");

      // What the stalled leader sent arrives late: it must not take the lease back.
      proxy.resume();
      await sleep(3000);
      assert.equal(await holder(), "controller-d");
    } finally {
      await proxy.close();
    }
  });

  it("a holder with a slow clock that keeps renewing keeps the lease; once it stops, it is taken", async () => {
    for (const name of STALLED) await stopDaemon(TEST_STACK.stateDir, name);
    // A holder an hour behind: every renewTime it writes is long past by our clock.
    const renewAsGhost = (i: number) =>
      kubectl(
        ["apply", "--server-side", "--force-conflicts", "--field-manager=ghost", "-f", "-"],
        JSON.stringify({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: "libvirt-operator-controller", namespace: OPERATOR_NAMESPACE },
          spec: {
            holderIdentity: "ghost",
            leaseDurationSeconds: 15,
            renewTime: new Date(Date.now() - 3_600_000 + i).toISOString().replace("Z", "000Z"),
          },
        }),
      );
    await renewAsGhost(0);
    const own = await controllerKubeconfig(TEST_STACK.stateDir, KUBECONFIG);
    await startDaemon(TEST_STACK.stateDir, {
      name: SKEWED,
      command: process.execPath,
      args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
      env: controllerEnv(own, SKEWED, 19394),
    });
    for (let i = 1; i <= 10; i++) {
      await sleep(2000);
      await renewAsGhost(i);
      assert.equal(await holder(), "ghost", `the renewing holder lost the lease after ${2 * i} s`);
    }
    const stoppedAt = Date.now();
    await waitForHolder((h) => h === SKEWED, 40_000);
    const waited = (Date.now() - stoppedAt) / 1000;
    process.stderr.write(`    taken ${waited.toFixed(1)} s after the slow holder stopped renewing\n`);
    assert.ok(waited >= 14, `taken after ${waited} s: before the lease duration had passed by our clock`);
  });
});
