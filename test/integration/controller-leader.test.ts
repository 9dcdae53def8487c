// Leader election: of two controllers one leads; when it dies the other takes the Lease over
// and reconciles.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { controllerKubeconfig, OPERATOR_NAMESPACE } from "../../src/cmd/local/operator.ts";
import { runningPid, startDaemon, stopDaemon } from "../../src/cmd/local/processes.ts";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";
import { applyVm, isPrintable, waitForVm } from "../support/operator.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const CONTROLLERS = ["controller-a", "controller-b"];
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
  await kubectl(["create", "namespace", OPERATOR_NAMESPACE, "--dry-run=client", "-o", "yaml"]).then(
    ({ stdout }) => kubectl(["apply", "--server-side", "-f", "-"], stdout),
  );
  // Both under the controller's ServiceAccount, as the chart's replicas run.
  const own = await controllerKubeconfig(TEST_STACK.stateDir, KUBECONFIG);
  for (const [i, name] of CONTROLLERS.entries()) {
    await startDaemon(TEST_STACK.stateDir, {
      name,
      command: process.execPath,
      args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
      env: {
        ...process.env,
        KUBECONFIG: own,
        POD_NAMESPACE: OPERATOR_NAMESPACE,
        POD_NAME: name,
        METRICS_PORT: String(19390 + i),
      },
    });
  }
});

after(async () => {
  for (const name of CONTROLLERS) await stopDaemon(TEST_STACK.stateDir, name);
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
});
