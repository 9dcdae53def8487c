// Extra VM nodes for tests and benchmarks, on libvirt's test driver: each is a node agent of
// its own with its own Node object, metrics port and in-memory hypervisor. The hypervisor is a
// config-file URI (test+unix:///…/node.xml): libvirtd opens a fresh, private test driver state
// for every such connection, where test:///default would be one state shared by all of them.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { XMLBuilder } from "fast-xml-parser";
import { PREFIX } from "../../src/api/names.ts";
import { kubectl, NODE_ENABLED_LABEL } from "../../src/cmd/local/kube.ts";
import {
  AGENT_NAMESPACE,
  ensureOperatorNamespace,
  startAgent,
  startController,
} from "../../src/cmd/local/operator.ts";
import { logFile, stopDaemon } from "../../src/cmd/local/processes.ts";
import { kubeconfigPath, type StackConfig } from "../../src/cmd/local/stack.ts";
import { heartbeatLeaseName } from "../../src/controllers/node-facts.ts";
import { within } from "./faults.ts";
import { TEST_STACK } from "./stack.ts";

/** Every test node carries this label, valued with its group's prefix: a nodeSelector for them. */
export const TEST_NODE_GROUP_LABEL = `test.${PREFIX}group`;

export interface TestNode {
  nodeName: string;
  /** The agent's libvirt URI; another connection to it sees a fresh hypervisor, not this one. */
  uri: string;
  metricsPort: number;
  /** The agent's log (pino JSON lines), begun afresh by startTestNodes. */
  log: string;
  /** Starts its agent again (after a kill), on the same hypervisor config; ready when it returns. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  /** Node names are <prefix>-1, <prefix>-2 …; also the value of TEST_NODE_GROUP_LABEL. */
  prefix: string;
  /** The stack the agents join (state directory, kubeconfig, ports); the test stack by default. */
  stack?: StackConfig;
  /**
   * Metrics port of the first node, the next ones count up. By default the ports after the
   * stack's agent: a test stack slot has 18 free ones there before the next slot's.
   */
  firstMetricsPort?: number;
  /** What each node's hypervisor offers; 8 CPUs and 16 GiB by default. */
  cpus?: number;
  memoryBytes?: number;
  /** More labels on every Node object. */
  labels?: Record<string, string>;
  /** Name of each node's NAT network ("default" by default). */
  network?: string;
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  format: true,
  suppressEmptyNode: true,
});

/**
 * The test driver's config file: the node's CPUs and memory and a `default` network with an
 * IPv4 and an IPv6 DHCP pool (a subnet of its own per node, so addresses tell nodes apart).
 * The agent defines its storage pool itself: the test driver keeps pools and volumes in memory.
 */
export function testNodeXml(index: number, cpus: number, memoryBytes: number, network = "default"): string {
  const net = index % 256;
  const node = {
    network: {
      name: network,
      forward: { "@_mode": "nat" },
      bridge: { "@_name": `lvotest${net}` },
      ip: [
        {
          "@_address": `10.250.${net}.1`,
          "@_netmask": "255.255.255.0",
          dhcp: { range: { "@_start": `10.250.${net}.2`, "@_end": `10.250.${net}.254` } },
        },
        {
          "@_family": "ipv6",
          "@_address": `fd00:7a1:250:${net.toString(16)}::1`,
          "@_prefix": 64,
          dhcp: {
            range: {
              "@_start": `fd00:7a1:250:${net.toString(16)}::100`,
              "@_end": `fd00:7a1:250:${net.toString(16)}::1ff`,
            },
          },
        },
      ],
    },
    cpu: { mhz: 3000, model: "x86_64", active: cpus, nodes: 1, sockets: 1, cores: cpus, threads: 1 },
    memory: Math.floor(memoryBytes / 1024),
  };
  return builder.build({ node }) as string;
}

function nodeObject(name: string, labels: Record<string, string>) {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      labels: {
        [NODE_ENABLED_LABEL]: "true",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        ...labels,
      },
    },
  };
}

/** Starts COUNT test nodes (agents in parallel) and returns once every agent is ready. */
export async function startTestNodes(count: number, options: TestNodeOptions): Promise<TestNode[]> {
  const stack = options.stack ?? TEST_STACK;
  const kubeconfig = kubeconfigPath(stack);
  const firstPort = options.firstMetricsPort ?? stack.ports.agentMetrics + 1;
  const labels = { [TEST_NODE_GROUP_LABEL]: options.prefix, ...options.labels };
  const names = Array.from({ length: count }, (_, i) => `${options.prefix}-${i + 1}`);
  await ensureOperatorNamespace(kubeconfig);
  // The Nodes first, as a kubelet would register them; the agents publish onto them.
  const list = { apiVersion: "v1", kind: "List", items: names.map((n) => nodeObject(n, labels)) };
  await kubectl(
    kubeconfig,
    ["apply", "--server-side", "--field-manager=test-nodes", "-f", "-"],
    JSON.stringify(list),
  );

  const started = await Promise.allSettled(
    names.map(async (nodeName, i): Promise<TestNode> => {
      const dir = await mkdtemp(join(tmpdir(), `${nodeName}-`));
      const config = join(dir, "node.xml");
      await writeFile(
        config,
        testNodeXml(i + 1, options.cpus ?? 8, options.memoryBytes ?? 16 * 2 ** 30, options.network),
      );
      const daemon = `agent-${nodeName}`;
      const launch = () =>
        startAgent(stack.stateDir, kubeconfig, {
          daemon,
          nodeName,
          metricsPort: firstPort + i,
          libvirtUri: `test+unix://${config}`,
          env: {
            LIBVIRT_TEST_DRIVER: "true",
            STORAGE_POOL_PATH: join(dir, "pool"),
            IMAGE_IMPORT_DIRS: join(dir, "images"),
            CONSOLE_LOG_DIR: join(dir, "console"),
          },
        });
      const node: TestNode = {
        nodeName,
        uri: `test+unix://${config}`,
        metricsPort: firstPort + i,
        log: logFile(stack.stateDir, daemon),
        restart: async () => {
          await stopDaemon(stack.stateDir, daemon);
          await launch();
        },
        stop: () => stopTestNode(stack, daemon, nodeName, dir),
      };
      // An agent of an earlier run that died with its test would hold the name and the port.
      await stopDaemon(stack.stateDir, daemon);
      await rm(node.log, { force: true });
      try {
        await launch();
      } catch (err) {
        await node.stop();
        throw err;
      }
      return node;
    }),
  );
  const nodes = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw failed.reason;
  }
  return nodes;
}

/** Stops the agent, then deletes its Node, heartbeat Lease and config directory. */
async function stopTestNode(stack: StackConfig, daemon: string, nodeName: string, dir: string) {
  const kubeconfig = kubeconfigPath(stack);
  await stopDaemon(stack.stateDir, daemon);
  await kubectl(kubeconfig, ["delete", "node", nodeName, "--ignore-not-found", "--wait=false"]);
  await kubectl(kubeconfig, [
    "delete",
    "lease",
    heartbeatLeaseName(nodeName),
    "-n",
    AGENT_NAMESPACE,
    "--ignore-not-found",
  ]);
  await rm(dir, { recursive: true, force: true });
}

export async function stopTestNodes(nodes: readonly TestNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop()));
}

/**
 * The VMs (namespace/name) placed on the node whose domains run there, from the per-VM series its
 * agent exports from libvirt's statistics (as fresh as its STATISTICS_INTERVAL_SECONDS, taken
 * from this process's environment). This is the only view from outside: virsh or a LibvirtClient
 * on the node's URI would open a hypervisor of its own. A VM placed elsewhere is not listed even
 * while its domain still runs here: a fence shows in the agent's log and a Fenced Event instead.
 */
export async function domainsOn(node: TestNode): Promise<Set<string>> {
  const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  const seen = new Set<string>();
  for (const m of text.matchAll(/^libvirt_operator_vm_cpu_seconds_total\{([^}]*)\}/gm)) {
    const labels = Object.fromEntries(
      [...(m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]),
    );
    seen.add(`${labels.namespace}/${labels.name}`);
  }
  return seen;
}

/** The agent's log entries with message MSG, parsed. */
export async function agentLogEntries(node: TestNode, msg: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(node.log, "utf8").catch(() => "");
  return text.split("\n").flatMap((line) => {
    if (!line.includes(msg)) return [];
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      return entry.msg === msg ? [entry] : [];
    } catch {
      return [];
    }
  });
}

/**
 * The test file NAME's controller alone (this host's agent plays no part) and COUNT test nodes
 * it can place on: it places only on nodes whose heartbeat it has seen, so each agent's Lease is
 * in the API server first, and a moment more lets the controller's watch bring it.
 */
export async function startControllerAndTestNodes(
  name: string,
  count: number,
  options: TestNodeOptions,
): Promise<TestNode[]> {
  const stack = options.stack ?? TEST_STACK;
  const kubeconfig = kubeconfigPath(stack);
  await startController(stack.stateDir, kubeconfig, name, stack.ports.controllerMetrics);
  const nodes = await startTestNodes(count, options);
  for (const node of nodes)
    await kubectl(kubeconfig, ["get", "lease", heartbeatLeaseName(node.nodeName), "-n", AGENT_NAMESPACE]);
  await sleep(1_000);
  return nodes;
}

/** Deletes KINDS in NAMESPACE (their finalizers need the agents), then stops the nodes and the controller. */
export async function stopControllerAndTestNodes(
  nodes: readonly TestNode[],
  namespace: string,
  kinds: readonly string[] = ["vm"],
  stack: StackConfig = TEST_STACK,
): Promise<void> {
  const kubeconfig = kubeconfigPath(stack);
  for (const kind of kinds)
    await kubectl(kubeconfig, [
      "delete",
      kind,
      "--all",
      "-n",
      namespace,
      "--wait=true",
      "--timeout=60s",
    ]).catch(() => undefined);
  await stopTestNodes(nodes);
  await stopDaemon(stack.stateDir, "controller");
}

/**
 * Whether NODE's agent logs that it fenced DOMAIN within TIMEOUT_MS (a fence is the old node's
 * own work, ordered with nothing the new node or the API server shows).
 */
export async function fenceLogged(node: TestNode, domain: string, timeoutMs: number): Promise<boolean> {
  const logged = async () => (await agentLogEntries(node, "domain fenced")).some((e) => e.domain === domain);
  return (await within(logged, timeoutMs)) !== undefined;
}
