// The local cluster's real node: containerd (the CRI runtime, Debian's, with runc), the kubelet
// and kube-proxy, so pods run here in network namespaces of their own, with addresses on a bridge
// of this stack's, and reach Services — the chart's controller and agent among them. Everything
// lives under <stateDir>/node; stopNode stops the pods through the CRI (their networks torn down)
// and removes the mounts, the bridge and the cgroups the node made.
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Pki } from "./certs.ts";
import { ensureClientCert } from "./certs.ts";
import { type KubePorts, kubectl, writeKubeconfig } from "./kube.ts";
import {
  cniConflist,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
  type NodeRuntimePaths,
  type PodNetwork,
} from "./node-configs.ts";
import {
  cgroupDirs,
  mayCleanHost,
  releaseNodeLock,
  removeCgroup,
  removeKubeChains,
  restoreSysctls,
  setSysctls,
  takeNodeLock,
  unmountUnder,
} from "./node-host.ts";
import { runningPid, startDaemon, stopDaemon, waitUntil } from "./processes.ts";
import { cachedBinary, REPO_ROOT, run } from "./tools.ts";

export interface NodePorts {
  /** The kubelet's HTTPS port (logs, exec) and healthz port. */
  kubelet: number;
  kubeletHealthz: number;
  proxyHealthz: number;
  proxyMetrics: number;
}

export interface NodeSettings {
  /** The stack's pod network: subnet 10.244.<index>.0/24 on bridge lvo-pods<index>. */
  index: number;
  ports: NodePorts;
}

/** Where the Debian package puts the CNI plugins (bridge, host-local, portmap). */
const CNI_BIN_DIR = "/usr/lib/cni";
export const PAUSE_IMAGE_REPOSITORY = "localhost/libvirt-operator/pause";

export function podNetwork(stateDir: string, index: number): PodNetwork & { gateway: string } {
  return {
    name: `libvirt-operator-pods-${index}`,
    bridge: `lvo-pods${index}`,
    subnet: `10.244.${index}.0/24`,
    gateway: `10.244.${index}.1`,
    ipamDataDir: join(nodeDir(stateDir), "cni", "ipam"),
  };
}

function nodeDir(stateDir: string): string {
  return join(stateDir, "node");
}

export function runtimePaths(stateDir: string): NodeRuntimePaths {
  const dir = nodeDir(stateDir);
  return {
    root: join(dir, "containerd", "root"),
    state: join(dir, "containerd", "state"),
    socket: join(dir, "containerd", "containerd.sock"),
    cniBinDir: CNI_BIN_DIR,
    cniConfDir: join(dir, "cni", "net.d"),
  };
}

/** The cgroup (under every hierarchy) the stack's kubelet puts its pods in. */
function cgroupRoot(index: number): string {
  return `/libvirt-operator-node-${index}`;
}

/** ctr against this node's containerd, in the namespace the CRI uses. */
export function ctr(stateDir: string, args: string[], timeoutMs = 120_000) {
  return run("ctr", ["--address", runtimePaths(stateDir).socket, "--namespace", "k8s.io", ...args], {
    timeoutMs,
  });
}

/** The manifest digest of an OCI layout tarball (its index.json's first manifest). */
async function tarballDigest(tar: string): Promise<string> {
  const { stdout } = await run("tar", ["-xOf", tar, "--wildcards", "*index.json"]);
  const digest = (JSON.parse(stdout) as { manifests?: Array<{ digest?: string }> }).manifests?.[0]?.digest;
  if (!digest) throw new Error(`${tar} holds no image manifest`);
  return digest;
}

/**
 * Imports the OCI image tarball TAR as REFERENCE unless the node has exactly that image under
 * it already (a rebuilt image keeps its tag, so the digest decides).
 */
export async function importImage(stateDir: string, tar: string, reference: string): Promise<void> {
  const { stdout } = await ctr(stateDir, ["images", "ls"]);
  const digest = await tarballDigest(tar);
  if (stdout.split("\n").some((line) => line.startsWith(`${reference} `) && line.includes(digest))) return;
  const base = reference.slice(0, reference.lastIndexOf(":"));
  await ctr(stateDir, ["images", "import", "--base-name", base, tar], 300_000);
}

async function pauseImage(): Promise<{ tar: string; reference: string }> {
  const { stdout } = await run("bash", [join(REPO_ROOT, "scripts", "image", "pause-image.sh")], {
    timeoutMs: 300_000,
  });
  const tar = stdout.trim().split("\n").at(-1) ?? "";
  const tag = /pause-([0-9a-f]+)\.tar$/.exec(tar)?.[1];
  if (!tag) throw new Error(`pause-image.sh printed no image: ${stdout}`);
  return { tar, reference: `${PAUSE_IMAGE_REPOSITORY}:${tag}` };
}

async function nodeReady(kubeconfig: string, nodeName: string): Promise<boolean> {
  const { stdout } = await kubectl(kubeconfig, [
    "get",
    "node",
    nodeName,
    "-o",
    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
  ]);
  return stdout.trim() === "True";
}

export interface NodeStart {
  stateDir: string;
  /** The admin kubeconfig (waiting for the node to be Ready). */
  kubeconfig: string;
  nodeName: string;
  node: NodeSettings;
  pki: Pki;
  apiPorts: KubePorts;
  supervise?: boolean;
}

/**
 * A kubeconfig in the node's directory for COMPONENT, authenticating as USER (in GROUP) with a
 * client certificate of the stack's CA made once.
 */
async function clientKubeconfig(
  s: NodeStart,
  component: string,
  user: string,
  group?: string,
): Promise<string> {
  const certName = component === "kubelet" ? `kubelet-${s.nodeName}` : component;
  const cert = await ensureClientCert(s.pki, certName, `${group ? `/O=${group}` : ""}/CN=${user}`);
  const path = join(nodeDir(s.stateDir), `${component}.kubeconfig`);
  await writeKubeconfig(path, s.apiPorts, s.pki, { name: user, ...cert });
  return path;
}

/** Starts containerd, the kubelet and kube-proxy (those not running yet); waits for Ready. */
export async function startNode(s: NodeStart): Promise<void> {
  const dir = nodeDir(s.stateDir);
  const paths = runtimePaths(s.stateDir);
  const net = podNetwork(s.stateDir, s.node.index);
  for (const d of [paths.root, paths.state, paths.cniConfDir, net.ipamDataDir, join(dir, "kubelet")]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
  }
  const pause = await pauseImage();
  await writeFile(join(dir, "containerd.toml"), containerdConfig(paths, pause.reference));
  await writeFile(join(paths.cniConfDir, "10-pods.conflist"), cniConflist(net));
  await takeNodeLock(s.stateDir);
  await setSysctls(dir);
  for (const d of await cgroupDirs(cgroupRoot(s.node.index))) await mkdir(d, { recursive: true });

  const containerdPid = await startDaemon(s.stateDir, {
    name: "containerd",
    supervise: s.supervise,
    command: "containerd",
    args: ["--config", join(dir, "containerd.toml")],
  });
  await waitUntil("containerd", () => ctr(s.stateDir, ["version"], 5_000).then(() => true), {
    timeoutMs: 30_000,
    stateDir: s.stateDir,
    daemon: "containerd",
    pid: containerdPid,
  });
  await importImage(s.stateDir, pause.tar, pause.reference);

  const kubeletKubeconfig = await clientKubeconfig(s, "kubelet", `system:node:${s.nodeName}`, "system:nodes");
  await writeFile(
    join(dir, "kubelet.yaml"),
    kubeletConfig({
      socket: paths.socket,
      port: s.node.ports.kubelet,
      healthzPort: s.node.ports.kubeletHealthz,
      clientCAFile: s.pki.caCert,
      cgroupRoot: cgroupRoot(s.node.index),
      podLogsDir: join(dir, "pod-logs"),
    }),
  );
  const kubeletPid = await startDaemon(s.stateDir, {
    name: "kubelet",
    supervise: s.supervise,
    command: cachedBinary("kubelet"),
    args: [
      `--config=${join(dir, "kubelet.yaml")}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--hostname-override=${s.nodeName}`,
      `--root-dir=${join(dir, "kubelet")}`,
      `--cert-dir=${join(dir, "kubelet-pki")}`,
      "--v=1",
    ],
  });

  const proxyKubeconfig = await clientKubeconfig(s, "kube-proxy", "system:kube-proxy");
  await writeFile(
    join(dir, "kube-proxy.yaml"),
    kubeProxyConfig({
      kubeconfig: proxyKubeconfig,
      nodeName: s.nodeName,
      clusterCIDR: net.subnet,
      healthzPort: s.node.ports.proxyHealthz,
      metricsPort: s.node.ports.proxyMetrics,
    }),
  );
  const proxyPid = await startDaemon(s.stateDir, {
    name: "kube-proxy",
    supervise: s.supervise,
    command: cachedBinary("kube-proxy"),
    args: [`--config=${join(dir, "kube-proxy.yaml")}`, "--v=1"],
  });
  await waitUntil(
    "kube-proxy",
    async () => (await fetch(`http://127.0.0.1:${s.node.ports.proxyHealthz}/healthz`)).ok,
    { timeoutMs: 60_000, stateDir: s.stateDir, daemon: "kube-proxy", pid: proxyPid },
  );
  await waitUntil(`node ${s.nodeName} Ready`, () => nodeReady(s.kubeconfig, s.nodeName), {
    timeoutMs: 120_000,
    stateDir: s.stateDir,
    daemon: "kubelet",
    pid: kubeletPid,
  });
  // A kubelet registers its node tainted not-ready; node-lifecycle-controller lifts the taint
  // once the node is Ready, but it is off in this stack (control-plane.ts says why).
  await kubectl(s.kubeconfig, [
    "taint",
    "node",
    s.nodeName,
    "node.kubernetes.io/not-ready:NoSchedule-",
  ]).catch((err: Error) => {
    if (!/not found/.test(err.message)) throw err;
  });
}

/**
 * Stops the node: the kubelet (nothing restarts pods), every pod through the CRI (CNI teardown
 * frees its address and iptables rules), kube-proxy, containerd; unmounts what the node mounted.
 * Then, unless another stack's node runs (it would own them), the KUBE-* chains, the bridge, the
 * pod cgroups and the host settings the node changed. Safe when nothing of it runs.
 */
export async function stopNode(stateDir: string, node: NodeSettings): Promise<string[]> {
  const dir = nodeDir(stateDir);
  if (!existsSync(dir)) return [];
  const stopped: string[] = [];
  if (await stopDaemon(stateDir, "kubelet")) stopped.push("kubelet");
  const paths = runtimePaths(stateDir);
  if (runningPid(stateDir, "containerd")) {
    await run(
      cachedBinary("crictl"),
      ["--runtime-endpoint", `unix://${paths.socket}`, "rmp", "--all", "--force"],
      { timeoutMs: 120_000 },
    ).catch((err) => process.stderr.write(`note: stopping the node's pods through the CRI failed: ${err}\n`));
  }
  if (await stopDaemon(stateDir, "kube-proxy")) stopped.push("kube-proxy");
  const host = mayCleanHost(stateDir);
  // Whatever of the pods outlived the CRI (and its shims) dies with the node's cgroups.
  if (host) await removeCgroup(cgroupRoot(node.index));
  if (await stopDaemon(stateDir, "containerd")) stopped.push("containerd");
  // Shims of containers the CRI could not stop outlive containerd; each names its address.
  const address = paths.socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await run("pkill", ["-KILL", "-f", `containerd-shim-runc-v2 .*-address ${address}( |$)`]).catch(
    () => undefined,
  );
  await unmountUnder(dir);
  const net = podNetwork(stateDir, node.index);
  if (host) {
    await removeKubeChains();
    await run("ip", ["link", "delete", net.bridge]).catch(() => undefined);
    await restoreSysctls(dir);
    await releaseNodeLock(stateDir);
  }
  await rm(net.ipamDataDir, { recursive: true, force: true });
  return stopped;
}
