// Liveness: an agent whose libvirt stops answering (a hung daemon, a path that drops packets)
// fails /healthz — a call stuck past its deadline, then libvirt unreachable too long — and
// recovers by itself once libvirt answers again. The agent runs on libvirt's test driver
// behind a proxy that can go silent.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { registerNode } from "../../src/cmd/local/kube.ts";
import { startAgent } from "../../src/cmd/local/operator.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { DEFAULT_SOCKET } from "../../src/hypervisor/libvirt/uri.ts";
import { testNodeXml } from "../support/nodes.ts";
import { KUBECONFIG, kubectl, TEST_STACK } from "../support/stack.ts";
import { StallProxy } from "../support/stall-proxy.ts";

const NODE = "liveness-node";
const DAEMON = `agent-${NODE}`;
const PORT = TEST_STACK.ports.agentMetrics + 15;
let dir = "";
let proxy: StallProxy;

async function healthz(): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${PORT}/healthz`, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: await res.text() };
}

async function waitForHealth(
  status: number,
  timeoutMs: number,
): Promise<{ status: number; body: string; after: number }> {
  const started = Date.now();
  let last = { status: 0, body: "" };
  while (Date.now() - started < timeoutMs) {
    last = await healthz().catch((err: Error) => ({ status: -1, body: err.message }));
    if (last.status === status) return { ...last, after: (Date.now() - started) / 1000 };
    await sleep(500);
  }
  throw new Error(`/healthz never answered ${status}; last ${last.status} ${last.body}`);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "lvo-liveness-"));
  const config = join(dir, "node.xml");
  await writeFile(config, testNodeXml(9, 4, 8 * 2 ** 30));
  proxy = new StallProxy(join(dir, "libvirt.sock"), DEFAULT_SOCKET);
  await proxy.listen();
  await registerNode(KUBECONFIG, NODE);
  await stopDaemon(TEST_STACK.stateDir, DAEMON);
  await startAgent(TEST_STACK.stateDir, KUBECONFIG, {
    daemon: DAEMON,
    nodeName: NODE,
    metricsPort: PORT,
    libvirtUri: `test+unix://${config}?socket=${proxy.path}`,
    env: {
      LIBVIRT_TEST_DRIVER: "true",
      LIBVIRT_UNREACHABLE_SECONDS: "5",
      STUCK_WORKER_SECONDS: "5",
      STORAGE_POOL_PATH: join(dir, "pool"),
      IMAGE_IMPORT_DIRS: join(dir, "images"),
      CONSOLE_LOG_DIR: join(dir, "console"),
    },
  });
});

after(async () => {
  proxy?.resume();
  await stopDaemon(TEST_STACK.stateDir, DAEMON);
  await kubectl(["delete", "node", NODE, "--ignore-not-found"]).catch(() => undefined);
  await proxy?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("liveness", () => {
  it("fails while libvirt does not answer, and recovers when it does", async () => {
    assert.equal((await healthz()).status, 200);
    proxy.stall();
    const down = await waitForHealth(503, 90_000);
    process.stderr.write(
      `    /healthz failed ${down.after.toFixed(1)} s after libvirt went silent: ${down.body}\n`,
    );
    proxy.resume();
    const up = await waitForHealth(200, 60_000);
    process.stderr.write(`    /healthz recovered ${up.after.toFixed(1)} s after libvirt answered again\n`);
  });
});
