// The operator's own processes in the local stack: controller and node agent, started from
// this checkout with the admin kubeconfig (a cluster install uses the chart's RBAC instead).
import { join } from "node:path";
import { kubectl } from "./kube.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { REPO_ROOT } from "./tools.ts";

export const OPERATOR_NAMESPACE = "libvirt-operator";

export interface OperatorPorts {
  controllerMetrics: number;
  agentMetrics: number;
}

async function ready(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
  return res?.status === 200;
}

export async function startOperator(
  stateDir: string,
  kubeconfig: string,
  nodeName: string,
  ports: OperatorPorts,
): Promise<void> {
  await kubectl(kubeconfig, [
    "create",
    "namespace",
    OPERATOR_NAMESPACE,
    "--dry-run=client",
    "-o",
    "yaml",
  ]).then(({ stdout }) => kubectl(kubeconfig, ["apply", "--server-side", "-f", "-"], stdout));
  const env = {
    ...process.env,
    KUBECONFIG: kubeconfig,
    POD_NAMESPACE: OPERATOR_NAMESPACE,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
  };
  const controllerPid = await startDaemon(stateDir, {
    name: "controller",
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
    env: { ...env, METRICS_PORT: String(ports.controllerMetrics), POD_NAME: `local-${nodeName}` },
  });
  const agentPid = await startDaemon(stateDir, {
    name: "agent",
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "agent.ts")],
    env: {
      ...env,
      METRICS_PORT: String(ports.agentMetrics),
      NODE_NAME: nodeName,
      LIBVIRT_URI: "qemu:///system",
    },
  });
  await waitUntil("controller", () => ready(ports.controllerMetrics), {
    timeoutMs: 60_000,
    stateDir,
    daemon: "controller",
    pid: controllerPid,
  });
  await waitUntil("agent", () => ready(ports.agentMetrics), {
    timeoutMs: 60_000,
    stateDir,
    daemon: "agent",
    pid: agentPid,
  });
}
