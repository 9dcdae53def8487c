// kube-controller-manager and kube-scheduler on loopback, each with its own client certificate
// and kubeconfig, so they act under their bootstrap RBAC identities (system:kube-controller-manager,
// system:kube-scheduler) as in a kubeadm cluster — not as admin.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Pki } from "./certs.ts";
import { httpOk, type KubePorts, writeKubeconfig } from "./kube.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { CACHE_BIN } from "./tools.ts";

export const CONTROLLER_MANAGER = "kube-controller-manager";
export const SCHEDULER = "kube-scheduler";

/**
 * Controllers of kube-controller-manager that stay off here, and why. Everything else runs
 * with its default (`*`): namespace deletion, garbage collection, ResourceQuota usage,
 * service accounts and their tokens, kube-root-ca.crt, CSR signing, Deployments, Jobs …
 */
const DISABLED_CONTROLLERS: Record<string, string> = {
  // This stack has no kubelet: the Node object is created by the stack and nothing posts its
  // status or renews its Lease. The node-lifecycle controller would therefore mark the node
  // NotReady/Unknown after the grace period and taint it node.kubernetes.io/unreachable
  // (NoSchedule and NoExecute), which is not what this host is. When a real node joins (a
  // kubelet reporting status), this controller belongs back on.
  "node-lifecycle-controller": "no kubelet posts Node status here",
};

/** `--controllers` for this stack: every default controller except DISABLED_CONTROLLERS. */
export function controllersFlag(): string {
  return ["*", ...Object.keys(DISABLED_CONTROLLERS).map((c) => `-${c}`)].join(",");
}

function kubeconfigFor(stateDir: string, component: string): string {
  return join(stateDir, `${component}.kubeconfig`);
}

/** Flags both components share: their kubeconfig (also for delegated authn/authz of their own
 * HTTPS port), serving on 127.0.0.1 only with a certificate from our CA, no leader election. */
function commonArgs(kubeconfig: string, port: number, cert: string, key: string): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${port}`,
    `--tls-cert-file=${cert}`,
    `--tls-private-key-file=${key}`,
    // One instance per stack: no Lease to take and no wait for a previous holder's to expire.
    "--leader-elect=false",
    "--profiling=false",
    "--v=1",
  ];
}

async function waitHealthy(stateDir: string, name: string, port: number, pki: Pki, pid: number) {
  const [cert, key] =
    name === CONTROLLER_MANAGER
      ? [pki.controllerManagerCert, pki.controllerManagerKey]
      : [pki.schedulerCert, pki.schedulerKey];
  const tls = { ca: await readFile(pki.caCert), cert: await readFile(cert), key: await readFile(key) };
  await waitUntil(name, () => httpOk(`https://127.0.0.1:${port}/healthz`, tls), {
    timeoutMs: 60_000,
    stateDir,
    daemon: name,
    pid,
  });
}

async function startControllerManager(stateDir: string, ports: KubePorts, pki: Pki): Promise<number> {
  const kubeconfig = kubeconfigFor(stateDir, CONTROLLER_MANAGER);
  await writeKubeconfig(kubeconfig, ports, pki, {
    name: "system:kube-controller-manager",
    cert: pki.controllerManagerCert,
    key: pki.controllerManagerKey,
  });
  return startDaemon(stateDir, {
    name: CONTROLLER_MANAGER,
    command: join(CACHE_BIN, CONTROLLER_MANAGER),
    args: [
      ...commonArgs(kubeconfig, ports.controllerManager, pki.controllerManagerCert, pki.controllerManagerKey),
      `--controllers=${controllersFlag()}`,
      // Each controller acts as its own service account (system:serviceaccount:kube-system:<name>)
      // with its own bootstrap role, as in a real cluster; KCM's own identity only mints their tokens.
      "--use-service-account-credentials=true",
      // Signs legacy service-account token Secrets; the API server verifies with sa.pub.
      `--service-account-private-key-file=${pki.saKey}`,
      // Published into every namespace as the kube-root-ca.crt ConfigMap.
      `--root-ca-file=${pki.caCert}`,
      // The CSR signer: approved CertificateSigningRequests (a kubelet joining later, its
      // serving certificate) are signed by the stack's CA instead of staying Pending forever.
      `--cluster-signing-cert-file=${pki.caCert}`,
      `--cluster-signing-key-file=${pki.caKey}`,
    ],
  });
}

async function startScheduler(stateDir: string, ports: KubePorts, pki: Pki): Promise<number> {
  const kubeconfig = kubeconfigFor(stateDir, SCHEDULER);
  await writeKubeconfig(kubeconfig, ports, pki, {
    name: "system:kube-scheduler",
    cert: pki.schedulerCert,
    key: pki.schedulerKey,
  });
  return startDaemon(stateDir, {
    name: SCHEDULER,
    command: join(CACHE_BIN, SCHEDULER),
    args: commonArgs(kubeconfig, ports.scheduler, pki.schedulerCert, pki.schedulerKey),
  });
}

/** Starts both (unless they already run) once the API server is ready, and waits for /healthz. */
export async function startControlPlane(stateDir: string, ports: KubePorts, pki: Pki): Promise<void> {
  const kcm = await startControllerManager(stateDir, ports, pki);
  const scheduler = await startScheduler(stateDir, ports, pki);
  await Promise.all([
    waitHealthy(stateDir, CONTROLLER_MANAGER, ports.controllerManager, pki, kcm),
    waitHealthy(stateDir, SCHEDULER, ports.scheduler, pki, scheduler),
  ]);
}
