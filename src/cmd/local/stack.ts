// The embedded local stack: what `make local` starts and `make local-down` stops.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { LibvirtClient, ListNetworks, NetworkXmlFlags } from "../../hypervisor/libvirt/index.ts";
import { parseNetworkPools } from "../../hypervisor/network.ts";
import { ensurePki } from "./certs.ts";
import { startControlPlane } from "./control-plane.ts";
import { type KubePorts, kubectl, localNodeName, registerNode, startKubernetes } from "./kube.ts";
import { startLibvirt } from "./libvirt.ts";
import { type NodeSettings, podNetwork, startNode, stopNode } from "./node.ts";
import { type OperatorPorts, startOperator } from "./operator.ts";
import { recordedDaemons, runningSupervisor, stopDaemon } from "./processes.ts";
import { describeRestarts, RESTART_BACKOFF } from "./supervise-policy.ts";

/** An IPv6 pool for the network, so VMs get an IPv4 and an IPv6 address (seed 001). */
const IPV6_POOL =
  "<ip family='ipv6' address='fd00:7a1:0:1::1' prefix='64'>" +
  "<dhcp><range start='fd00:7a1:0:1::100' end='fd00:7a1:0:1::1ff'/></dhcp></ip>";

/** VMs get their NICs on this libvirt network; make sure it is active and has both pools. */
async function ensureNetwork(name: string): Promise<void> {
  const libvirt = await LibvirtClient.connect({ uri: "qemu:///system" });
  try {
    let net = await libvirt.lookupNetwork(name);
    let active = (await libvirt.listNetworks(ListNetworks.Active)).some((n) => n.name === name);
    const xml = await libvirt.networkXml(net, NetworkXmlFlags.Inactive);
    if (!parseNetworkPools(xml).ipv6) {
      net = await libvirt.defineNetwork(xml.replace("</network>", `${IPV6_POOL}</network>`));
      if (active) {
        await libvirt.destroyNetwork(net);
        active = false;
      }
    }
    if (!active) await libvirt.startNetwork(net);
  } finally {
    await libvirt.close();
  }
}

export interface StackConfig {
  /** Holds pki/, etcd/, logs/, pids/ and the kubeconfig. */
  stateDir: string;
  ports: KubePorts & OperatorPorts;
  libvirt: boolean;
  /** Start the controller and node agent from this checkout (needs libvirt). */
  operator: boolean;
  /**
   * Run etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the controller and the
   * agent each under a supervisor that restarts them with backoff when they exit (`make local`).
   * libvirtd and virtlogd are not: guests outlive them, but a supervisor that dies takes its
   * daemon along, and the host's hypervisor services should not hang on ours. Test stacks
   * leave it off: tests kill daemons on purpose and look at what happens while they are gone
   * (test/integration/supervision.test.ts starts supervised ones of its own).
   */
  supervise?: boolean;
  nodeName: string;
  /**
   * A real node (containerd, kubelet, kube-proxy) for nodeName, so the chart's pods run here.
   * With it the API server also listens where pods reach it (the node's pod bridge).
   */
  node?: NodeSettings;
  /** Start the node with the stack (make local); a test stack starts it when a test needs it. */
  startNode?: boolean;
}

export const LOCAL_STACK: StackConfig = {
  stateDir: join(import.meta.dirname, "..", "..", "..", ".local"),
  ports: {
    etcdClient: 23790,
    etcdPeer: 23800,
    apiserver: 16443,
    controllerManager: 17250,
    scheduler: 17260,
    controllerMetrics: 19090,
    agentMetrics: 19091,
  },
  libvirt: true,
  operator: true,
  supervise: true,
  nodeName: localNodeName(),
  node: {
    index: 0,
    ports: { kubelet: 20250, kubeletHealthz: 20248, proxyHealthz: 20256, proxyMetrics: 20249 },
  },
  startNode: true,
};

export function kubeconfigPath(config: StackConfig): string {
  return join(config.stateDir, "kubeconfig");
}

// Stop order: what depends on others goes first.
const STOP_ORDER = [
  "agent",
  "controller",
  "kube-scheduler",
  "kube-controller-manager",
  "kube-apiserver",
  "etcd",
  "libvirtd",
  "virtlogd",
];

function progress(message: string) {
  process.stderr.write(`==> ${message}\n`);
}

export async function stackUp(config: StackConfig): Promise<void> {
  for (const sub of ["pids", "logs", "etcd"]) {
    await mkdir(join(config.stateDir, sub), { recursive: true, mode: 0o700 });
  }
  const kubeconfig = kubeconfigPath(config);
  const supervise = config.supervise ?? false;
  const started = Date.now();
  progress(`etcd :${config.ports.etcdClient} and kube-apiserver :${config.ports.apiserver}`);
  const reach = config.node
    ? { advertiseAddress: podNetwork(config.stateDir, config.node.index).gateway }
    : {};
  const pki = await startKubernetes(config.stateDir, config.ports, kubeconfig, supervise, reach);
  // After the CRDs: the garbage collector and the quota controller find our kinds at their
  // first discovery instead of at the next periodic resync (30 s).
  progress(
    `kube-controller-manager :${config.ports.controllerManager} and kube-scheduler :${config.ports.scheduler}`,
  );
  await startControlPlane(config.stateDir, config.ports, pki, supervise);
  progress(`node ${config.nodeName} registered`);
  await registerNode(kubeconfig, config.nodeName);
  if (config.libvirt) {
    const { started: ours } = await startLibvirt(config.stateDir);
    progress(ours ? "libvirtd started" : "libvirtd already running; left as it is");
    await ensureNetwork("default");
  }
  if (config.node && config.startNode) await stackNodeUp(config);
  if (config.operator) {
    await startOperator(config.stateDir, kubeconfig, config.nodeName, config.ports, supervise);
    progress(
      `controller :${config.ports.controllerMetrics} and node agent :${config.ports.agentMetrics} running`,
    );
  }
  if (supervise) await reportSupervision(config.stateDir);
  progress(`stack up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

/** Starts the stack's node (kubelet, containerd, kube-proxy) on a stack that is up. */
export async function stackNodeUp(config: StackConfig): Promise<void> {
  if (!config.node) throw new Error("this stack has no node configured");
  const started = Date.now();
  progress(`node ${config.nodeName}: containerd, kubelet :${config.node.ports.kubelet}, kube-proxy`);
  await startNode({
    stateDir: config.stateDir,
    kubeconfig: kubeconfigPath(config),
    nodeName: config.nodeName,
    node: config.node,
    pki: await ensurePki(join(config.stateDir, "pki")),
    apiPorts: config.ports,
    supervise: config.supervise ?? false,
  });
  progress(`node ${config.nodeName} Ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

/**
 * Stops the stack's node on a stack that stays up, and gives its Node back the status the
 * stack registers it with (none): a Node whose kubelet is gone but whose last status shows
 * capacity takes pods that then never run and never finish deleting (nothing confirms it), so
 * a chart installed later would hang in `helm uninstall --wait`.
 */
export async function stackNodeDown(config: StackConfig): Promise<string[]> {
  if (!config.node) return [];
  const stopped = await stopNode(config.stateDir, config.node);
  const kubeless = { status: { capacity: null, allocatable: null, conditions: null } };
  await kubectl(kubeconfigPath(config), [
    "patch",
    "node",
    config.nodeName,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify(kubeless),
  ]);
  return stopped;
}

/** Which daemons are supervised and how often each was restarted (on a stack already up, too). */
async function reportSupervision(stateDir: string): Promise<void> {
  const supervised = (await recordedDaemons(stateDir)).flatMap((name) => {
    const state = runningSupervisor(stateDir, name);
    return state ? [state] : [];
  });
  const { firstDelayMs, maxDelayMs, resetAfterMs } = RESTART_BACKOFF;
  progress(
    `supervised (restarted when they exit, after ${firstDelayMs / 1000} s doubling to ${maxDelayMs / 1000} s, ` +
      `reset after ${resetAfterMs / 1000} s up): ${supervised.map((s) => s.daemon).join(", ")}`,
  );
  for (const state of supervised) if (state.restarts > 0) progress(describeRestarts(state));
}

export async function stackDown(config: StackConfig): Promise<string[]> {
  const stopped: string[] = [];
  // Before the operator: the chart's pods stop through the kubelet's runtime, not by their pids.
  if (config.node) stopped.push(...(await stopNode(config.stateDir, config.node)));
  const recorded = await recordedDaemons(config.stateDir);
  const ordered = [
    ...STOP_ORDER.filter((n) => recorded.includes(n)),
    ...recorded.filter((n) => !STOP_ORDER.includes(n)),
  ];
  for (const name of ordered) {
    if (await stopDaemon(config.stateDir, name)) stopped.push(name);
  }
  return stopped;
}
