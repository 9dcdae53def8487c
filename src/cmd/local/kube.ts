// etcd + kube-apiserver on loopback, an admin kubeconfig, our CRDs and a Node for this host.
import { readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { hostname } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { crdName } from "../../api/crd.ts";
import { KINDS } from "../../api/index.ts";
import { PREFIX } from "../../api/names.ts";
import { ensurePki, type Pki } from "./certs.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { cachedBinary, REPO_ROOT, run } from "./tools.ts";

export interface KubePorts {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
  /** Secure (HTTPS) ports of kube-controller-manager and kube-scheduler, on 127.0.0.1. */
  controllerManager: number;
  scheduler: number;
}

/** The label that marks nodes allowed to run VMs (the agent DaemonSet selects on it). */
export const NODE_ENABLED_LABEL = `${PREFIX}enabled`;

/** This host's name as a Kubernetes Node name (lower-case DNS subdomain). */
export function localNodeName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/^[-.]+|[-.]+$/g, "");
  return name || "localhost";
}

export async function httpOk(url: string, tls?: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<boolean> {
  if (!tls) return (await fetch(url).catch(() => undefined))?.ok ?? false;
  return new Promise((resolve) => {
    const req = request(url, { ...tls, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.end();
  });
}

export async function startEtcd(stateDir: string, ports: KubePorts, supervise = false): Promise<void> {
  const client = `http://127.0.0.1:${ports.etcdClient}`;
  const peer = `http://127.0.0.1:${ports.etcdPeer}`;
  const pid = await startDaemon(stateDir, {
    name: "etcd",
    supervise,
    command: cachedBinary("etcd"),
    args: [
      "--name=local",
      `--data-dir=${join(stateDir, "etcd")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=local=${peer}`,
      "--listen-metrics-urls=",
      "--log-level=warn",
      // A throwaway development store: durability is not worth an fsync per write here.
      "--unsafe-no-fsync",
    ],
  });
  await waitUntil("etcd", () => httpOk(`${client}/health`), {
    timeoutMs: 30_000,
    stateDir,
    daemon: "etcd",
    pid,
  });
}

/**
 * Where pods reach the API server: with a real node, the address of its pod bridge (the pods'
 * gateway), published as the `kubernetes` Service's endpoint; without one, loopback only.
 */
export interface ApiserverReach {
  advertiseAddress?: string;
}

export async function startApiserver(
  stateDir: string,
  ports: KubePorts,
  pki: Pki,
  supervise = false,
  reach: ApiserverReach = {},
): Promise<void> {
  const pid = await startDaemon(stateDir, {
    name: "kube-apiserver",
    supervise,
    command: cachedBinary("kube-apiserver"),
    args: [
      `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
      // With a node, all addresses: the pods' gateway is one of this host's (client certificates
      // or tokens are needed for anything beyond discovery, as on any cluster).
      `--bind-address=${reach.advertiseAddress ? "0.0.0.0" : "127.0.0.1"}`,
      `--advertise-address=${reach.advertiseAddress ?? "127.0.0.1"}`,
      `--secure-port=${ports.apiserver}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--cert-dir=${pki.dir}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      "--service-cluster-ip-range=10.96.0.0/24",
      // Node: a kubelet (system:node:<name>) reads and writes only what its pods need, and
      // NodeRestriction keeps it to its own Node object, as kubeadm sets up.
      "--authorization-mode=Node,RBAC",
      "--enable-admission-plugins=NodeRestriction",
      // kubectl logs/exec reach the kubelet as the admin user.
      `--kubelet-client-certificate=${pki.adminCert}`,
      `--kubelet-client-key=${pki.adminKey}`,
      "--allow-privileged=true",
      // KUBE_APISERVER_PROFILING=1 (a benchmark's choice): /debug/pprof for go tool pprof.
      `--profiling=${process.env.KUBE_APISERVER_PROFILING === "1"}`,
      "--v=1",
    ],
  });
  const tls = {
    ca: await readFile(pki.caCert),
    cert: await readFile(pki.adminCert),
    key: await readFile(pki.adminKey),
  };
  await waitUntil("kube-apiserver", () => httpOk(`https://127.0.0.1:${ports.apiserver}/readyz`, tls), {
    timeoutMs: 90_000,
    stateDir,
    daemon: "kube-apiserver",
    pid,
  });
}

/** A kubeconfig for the local API server; the admin user unless USER names another client cert. */
export async function writeKubeconfig(
  path: string,
  ports: KubePorts,
  pki: Pki,
  user: { name: string; cert: string; key: string } = {
    name: "admin",
    cert: pki.adminCert,
    key: pki.adminKey,
  },
): Promise<void> {
  const b64 = async (f: string) => (await readFile(f)).toString("base64");
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "libvirt-operator-local",
        cluster: {
          server: `https://127.0.0.1:${ports.apiserver}`,
          "certificate-authority-data": await b64(pki.caCert),
        },
      },
    ],
    users: [
      {
        name: user.name,
        user: {
          "client-certificate-data": await b64(user.cert),
          "client-key-data": await b64(user.key),
        },
      },
    ],
    contexts: [
      { name: "libvirt-operator-local", context: { cluster: "libvirt-operator-local", user: user.name } },
    ],
    "current-context": "libvirt-operator-local",
  };
  await writeFile(path, yaml.dump(config), { mode: 0o600 });
}

export function kubectl(kubeconfig: string, args: string[], input?: string) {
  return run(
    cachedBinary("kubectl"),
    ["--kubeconfig", kubeconfig, ...args],
    input === undefined ? {} : { input },
  );
}

export async function installCrds(kubeconfig: string): Promise<void> {
  await kubectl(kubeconfig, ["apply", "--server-side", "--force-conflicts", "-f", join(REPO_ROOT, "crds")]);
  const names = KINDS.map((k) => `crd/${crdName(k)}`);
  await kubectl(kubeconfig, ["wait", "--for=condition=Established", "--timeout=60s", ...names]);
}

/** The Node object a kubelet would register; there is no kubelet in the local stack. */
export async function registerNode(kubeconfig: string, nodeName: string): Promise<void> {
  const node = {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: nodeName,
      labels: {
        [NODE_ENABLED_LABEL]: "true",
        "kubernetes.io/hostname": nodeName,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
      },
    },
  };
  await kubectl(
    kubeconfig,
    ["apply", "--server-side", "--field-manager=local-stack", "-f", "-"],
    JSON.stringify(node),
  );
}

/**
 * etcd, kube-apiserver (restarted when they exit if SUPERVISE), the admin kubeconfig and our
 * CRDs; returns the PKI they use.
 */
export async function startKubernetes(
  stateDir: string,
  ports: KubePorts,
  kubeconfig: string,
  supervise = false,
  reach: ApiserverReach = {},
): Promise<Pki> {
  const pki = await ensurePki(join(stateDir, "pki"));
  await startEtcd(stateDir, ports, supervise);
  await startApiserver(stateDir, ports, pki, supervise, reach);
  await writeKubeconfig(kubeconfig, ports, pki);
  await installCrds(kubeconfig);
  return pki;
}
