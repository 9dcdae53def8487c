// The operator's own processes in the local stack: controller and node agent, started from
// this checkout under their own ServiceAccounts, with the chart's RBAC and admission policies
// (identities.ts), never with the admin kubeconfig. As the chart runs them, the controller is in
// OPERATOR_NAMESPACE and the agents in AGENT_NAMESPACE, where their heartbeat Leases are.
import { join } from "node:path";
import { agentNamespace, identityKubeconfig } from "./identities.ts";
import { kubectl } from "./kube.ts";
import { operatorBuild, operatorEntry } from "./operator-build.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { CACHE_DIR } from "./tools.ts";

/**
 * Node's flags as the chart gives them (agent-daemonset.yaml, controller-deployment.yaml): V8's
 * young generation capped, and V8 tuned for a small heap rather than peak speed.
 */
const CHART_NODE_FLAGS = ["--max-semi-space-size=4", "--optimize-for-size"];

/** The release namespace: the controller's ServiceAccount and its leader election Lease. */
export const OPERATOR_NAMESPACE = "libvirt-operator";
/** The agent's namespace (the chart's default for that release): its ServiceAccount, the heartbeat Leases. */
export const AGENT_NAMESPACE = agentNamespace(OPERATOR_NAMESPACE);

export interface OperatorPorts {
  controllerMetrics: number;
  agentMetrics: number;
}

async function ready(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
  return res?.status === 200;
}

/** The controller's namespace and the agents' (both made by a cluster install). */
export async function ensureOperatorNamespace(kubeconfig: string): Promise<void> {
  const list = {
    apiVersion: "v1",
    kind: "List",
    items: [OPERATOR_NAMESPACE, AGENT_NAMESPACE].map((name) => ({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name },
    })),
  };
  await kubectl(kubeconfig, ["apply", "--server-side", "-f", "-"], JSON.stringify(list));
}

function operatorEnv(kubeconfig: string, namespace: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KUBECONFIG: kubeconfig,
    POD_NAMESPACE: namespace,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
  };
}

/** The environment of a controller running with KUBECONFIG (its own), as the chart sets it. */
export function controllerEnv(kubeconfig: string, podName: string, metricsPort: number): NodeJS.ProcessEnv {
  return {
    ...operatorEnv(kubeconfig, OPERATOR_NAMESPACE),
    AGENT_NAMESPACE,
    POD_NAME: podName,
    METRICS_PORT: String(metricsPort),
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
  // Node's own flags for the agents, e.g. --heapsnapshot-signal (make bench-scale's BENCH_HEAP_SNAPSHOT).
  const nodeArgs = (process.env.AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const pid = await startDaemon(stateDir, {
    name: options.daemon,
    supervise: options.supervise,
    command: process.execPath,
    // As the chart runs it (agent-daemonset.yaml): V8's young generation capped; dist/ with OPERATOR_BUILD=js.
    args: [...CHART_NODE_FLAGS, ...nodeArgs, operatorEntry("agent", operatorBuild())],
    env: {
      ...operatorEnv(own, AGENT_NAMESPACE),
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
  // Node's own flags for the controller alone, e.g. --cpu-prof (make bench-scale's BENCH_PROFILE).
  const nodeArgs = (process.env.CONTROLLER_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const pid = await startDaemon(stateDir, {
    name: "controller",
    supervise,
    command: process.execPath,
    // As the chart runs it (controller-deployment.yaml): V8's young generation capped; dist/ with OPERATOR_BUILD=js.
    args: [...CHART_NODE_FLAGS, ...nodeArgs, operatorEntry("controller", operatorBuild())],
    env: controllerEnv(own, podName, metricsPort),
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
