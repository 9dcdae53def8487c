// The local cluster's real node: containerd (the CRI runtime, Debian's, with runc), the kubelet
// and kube-proxy, so pods run here in network namespaces of their own, with addresses on a bridge
// of this stack's, and reach Services — the chart's controller and agent among them. Everything
// lives under <stateDir>/node; stopNode stops the pods through the CRI (their networks torn down)
// and removes the mounts, the bridge and the cgroups the node made.
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
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
/** The node's daemons, stopped in this order (pods first, then what runs them). */
export const NODE_DAEMONS = ["kubelet", "kube-proxy", "containerd"] as const;

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

/** The directories of CGROUP in each mounted hierarchy (cgroup v1: one per controller; v2: one). */
async function cgroupDirs(cgroup: string): Promise<string[]> {
  const base = "/sys/fs/cgroup";
  if (existsSync(join(base, "cgroup.controllers"))) return [join(base, cgroup)];
  const entries = await readdir(base, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => join(base, e.name, cgroup));
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

/** Bridged pod traffic passes iptables (Services between pods of the node); forwarding on. */
async function enableForwarding(): Promise<void> {
  for (const [key, value] of [
    ["net/bridge/bridge-nf-call-iptables", "1"],
    ["net/ipv4/ip_forward", "1"],
  ]) {
    const file = join("/proc/sys", key as string);
    if (existsSync(file)) await writeFile(file, value as string);
    else
      process.stderr.write(
        `note: ${file} is missing (br_netfilter not loaded?); pods may not reach Services\n`,
      );
  }
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
  await enableForwarding();
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

  const kubeletCert = await ensureClientCert(
    s.pki,
    `kubelet-${s.nodeName}`,
    `/O=system:nodes/CN=system:node:${s.nodeName}`,
  );
  const kubeletKubeconfig = join(dir, "kubelet.kubeconfig");
  await writeKubeconfig(kubeletKubeconfig, s.apiPorts, s.pki, {
    name: `system:node:${s.nodeName}`,
    ...kubeletCert,
  });
  await writeFile(
    join(dir, "kubelet.yaml"),
    kubeletConfig({
      socket: paths.socket,
      port: s.node.ports.kubelet,
      healthzPort: s.node.ports.kubeletHealthz,
      clientCAFile: s.pki.caCert,
      cgroupRoot: cgroupRoot(s.node.index),
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

  const proxyCert = await ensureClientCert(s.pki, "kube-proxy", "/CN=system:kube-proxy");
  const proxyKubeconfig = join(dir, "kube-proxy.kubeconfig");
  await writeKubeconfig(proxyKubeconfig, s.apiPorts, s.pki, { name: "system:kube-proxy", ...proxyCert });
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

/** Mount points under DIR, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  // Field 5 is the mount point, with spaces and the like written as octal escapes.
  const points = info
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** The iptables chains a kubelet makes for itself (kube-proxy --cleanup removes its own). */
const KUBELET_CHAINS = ["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"];

/** iptables -S quotes arguments with spaces (comments). */
function shellWords(line: string): string[] {
  return (line.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"(.*)"$/, "$1"));
}

async function removeKubeletChains(): Promise<void> {
  for (const tool of ["iptables", "ip6tables"]) {
    for (const table of ["filter", "nat", "mangle"]) {
      const rules = (await run(tool, ["-t", table, "-S"]).catch(() => ({ stdout: "" }))).stdout.split("\n");
      for (const rule of rules.filter(
        (r) => r.startsWith("-A ") && KUBELET_CHAINS.some((c) => r.includes(`-j ${c}`)),
      )) {
        await run(tool, ["-t", table, "-D", ...shellWords(rule).slice(1)]).catch(() => undefined);
      }
      for (const chain of KUBELET_CHAINS.filter((c) => rules.includes(`-N ${c}`))) {
        await run(tool, ["-t", table, "-F", chain]).catch(() => undefined);
        await run(tool, ["-t", table, "-X", chain]).catch(() => undefined);
      }
    }
  }
}

/** Kills every process left in the node's pod cgroups and removes them, deepest first. */
async function removeCgroups(index: number): Promise<void> {
  for (const top of await cgroupDirs(cgroupRoot(index))) {
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = async (d: string) => {
      dirs.push(d);
      for (const e of await readdir(d, { withFileTypes: true }))
        if (e.isDirectory()) await walk(join(d, e.name));
    };
    await walk(top);
    for (const d of dirs.reverse()) {
      const procs = await readFile(join(d, "cgroup.procs"), "utf8").catch(() => "");
      for (const pid of procs.split("\n").filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
      await rmdir(d).catch(() => undefined);
    }
  }
}

/**
 * Stops the node: the kubelet (nothing restarts pods), every pod through the CRI (CNI teardown
 * frees its address and iptables rules), kube-proxy and its rules, containerd; then unmounts
 * what the node mounted, deletes the bridge and the cgroups. Safe when nothing of it runs.
 */
export async function stopNode(stateDir: string, node: NodeSettings): Promise<string[]> {
  const dir = nodeDir(stateDir);
  if (!existsSync(dir)) return [];
  const stopped: string[] = [];
  if (await stopDaemon(stateDir, "kubelet")) {
    stopped.push("kubelet");
    await removeKubeletChains();
  }
  const paths = runtimePaths(stateDir);
  if (runningPid(stateDir, "containerd")) {
    await run(
      cachedBinary("crictl"),
      ["--runtime-endpoint", `unix://${paths.socket}`, "rmp", "--all", "--force"],
      {
        timeoutMs: 120_000,
      },
    ).catch((err) => process.stderr.write(`note: stopping the node's pods through the CRI failed: ${err}\n`));
  }
  if (await stopDaemon(stateDir, "kube-proxy")) {
    stopped.push("kube-proxy");
    await run(cachedBinary("kube-proxy"), ["--cleanup"], { timeoutMs: 60_000 }).catch(() => undefined);
  }
  await removeCgroups(node.index);
  if (await stopDaemon(stateDir, "containerd")) stopped.push("containerd");
  // Shims of containers whose pods the CRI could not stop leave with containerd's address.
  await run("pkill", ["-KILL", "-f", `containerd-shim-runc-v2 .*-address ${paths.socket}`]).catch(
    () => undefined,
  );
  for (const point of await mountsUnder(dir)) {
    await run("umount", [point]).catch(() => run("umount", ["-l", point]).catch(() => undefined));
  }
  const net = podNetwork(stateDir, node.index);
  await run("ip", ["link", "delete", net.bridge]).catch(() => undefined);
  await rm(net.ipamDataDir, { recursive: true, force: true });
  return stopped;
}
