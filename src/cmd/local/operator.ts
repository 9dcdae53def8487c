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

/** The namespace the agents' heartbeat Leases (and a cluster install) live in. */
export async function ensureOperatorNamespace(kubeconfig: string): Promise<void> {
  await kubectl(kubeconfig, [
    "create",
    "namespace",
    OPERATOR_NAMESPACE,
    "--dry-run=client",
    "-o",
    "yaml",
  ]).then(({ stdout }) => kubectl(kubeconfig, ["apply", "--server-side", "-f", "-"], stdout));
}

function operatorEnv(kubeconfig: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KUBECONFIG: kubeconfig,
    POD_NAMESPACE: OPERATOR_NAMESPACE,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
  };
}

export interface AgentOptions {
  /** Name of the daemon (its pid and log files in the state directory). */
  daemon: string;
  nodeName: string;
  metricsPort: number;
  libvirtUri: string;
  /** More environment for this agent (test driver, storage pool, …). */
  env?: Record<string, string>;
}

/** Starts a node agent (unless its daemon already runs) and waits until it is ready. */
export async function startAgent(stateDir: string, kubeconfig: string, options: AgentOptions): Promise<void> {
  const pid = await startDaemon(stateDir, {
    name: options.daemon,
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "agent.ts")],
    env: {
      ...operatorEnv(kubeconfig),
      METRICS_PORT: String(options.metricsPort),
      NODE_NAME: options.nodeName,
      LIBVIRT_URI: options.libvirtUri,
      ...options.env,
    },
  });
  await waitUntil(options.daemon, () => ready(options.metricsPort), {
    timeoutMs: 60_000,
    stateDir,
    daemon: options.daemon,
    pid,
  });
}

/** Starts the controller (unless its daemon already runs) and waits until it is ready. */
export async function startController(
  stateDir: string,
  kubeconfig: string,
  podName: string,
  metricsPort: number,
): Promise<void> {
  await ensureOperatorNamespace(kubeconfig);
  const pid = await startDaemon(stateDir, {
    name: "controller",
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
    env: { ...operatorEnv(kubeconfig), METRICS_PORT: String(metricsPort), POD_NAME: podName },
  });
  await waitUntil("controller", () => ready(metricsPort), {
    timeoutMs: 60_000,
    stateDir,
    daemon: "controller",
    pid,
  });
}

export async function startOperator(
  stateDir: string,
  kubeconfig: string,
  nodeName: string,
  ports: OperatorPorts,
): Promise<void> {
  await ensureOperatorNamespace(kubeconfig);
  await Promise.all([
    startController(stateDir, kubeconfig, `local-${nodeName}`, ports.controllerMetrics),
    startAgent(stateDir, kubeconfig, {
      daemon: "agent",
      nodeName,
      metricsPort: ports.agentMetrics,
      libvirtUri: "qemu:///system",
    }),
  ]);
}
