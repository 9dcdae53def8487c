// The operator's own processes in the local stack: controller and node agent, started from
// this checkout under their own ServiceAccounts, with the chart's RBAC and admission policies
// (identities.ts), never with the admin kubeconfig.
import { join } from "node:path";
import { identityKubeconfig } from "./identities.ts";
import { kubectl } from "./kube.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { CACHE_DIR, REPO_ROOT } from "./tools.ts";

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
  /** Restarted with backoff whenever it exits (processes.ts, supervise.ts). */
  supervise?: boolean;
}

/**
 * Starts a node agent (unless its daemon already runs) and waits until it is ready. It runs
 * with a token bound to its Node, which must be registered first; KUBECONFIG is the admin's,
 * used only to set up that identity.
 */
export async function startAgent(stateDir: string, kubeconfig: string, options: AgentOptions): Promise<void> {
  await ensureOperatorNamespace(kubeconfig);
  const own = await identityKubeconfig(stateDir, kubeconfig, OPERATOR_NAMESPACE, "agent", options.nodeName);
  const pid = await startDaemon(stateDir, {
    name: options.daemon,
    supervise: options.supervise,
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "agent.ts")],
    env: {
      ...operatorEnv(own),
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

/** The kubeconfig a controller runs with: a token of its ServiceAccount (KUBECONFIG is the admin's). */
export async function controllerKubeconfig(stateDir: string, kubeconfig: string): Promise<string> {
  await ensureOperatorNamespace(kubeconfig);
  return identityKubeconfig(stateDir, kubeconfig, OPERATOR_NAMESPACE, "controller");
}

/**
 * Starts the controller (unless its daemon already runs) under its own ServiceAccount and waits
 * until it is ready. Supervised, it is restarted whenever it exits — as it does when it loses
 * its leader Lease, which a Deployment answers by restarting the container.
 */
export async function startController(
  stateDir: string,
  kubeconfig: string,
  podName: string,
  metricsPort: number,
  supervise = false,
): Promise<void> {
  const own = await controllerKubeconfig(stateDir, kubeconfig);
  const pid = await startDaemon(stateDir, {
    name: "controller",
    supervise,
    command: process.execPath,
    args: [join(REPO_ROOT, "src", "cmd", "controller.ts")],
    env: { ...operatorEnv(own), METRICS_PORT: String(metricsPort), POD_NAME: podName },
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
  supervise = false,
): Promise<void> {
  await ensureOperatorNamespace(kubeconfig);
  await Promise.all([
    startController(stateDir, kubeconfig, `local-${nodeName}`, ports.controllerMetrics, supervise),
    startAgent(stateDir, kubeconfig, {
      daemon: "agent",
      supervise,
      nodeName,
      metricsPort: ports.agentMetrics,
      libvirtUri: "qemu:///system",
      // Host media only from these (examples/vm-direct-kernel.yaml and the test guest's kernel).
      env: { MEDIA_DIRS: process.env.MEDIA_DIRS ?? `/var/lib/libvirt/boot:${join(CACHE_DIR, "guest")}` },
    }),
  ]);
}
