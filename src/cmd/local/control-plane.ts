// kube-controller-manager and kube-scheduler on loopback, each with its own client certificate
// and kubeconfig, so they act under their bootstrap RBAC identities (system:kube-controller-manager,
// system:kube-scheduler) as in a kubeadm cluster — not as admin.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Pki } from "./certs.ts";
import { httpOk, type KubePorts, writeKubeconfig } from "./kube.ts";
import { startDaemon, waitUntil } from "./processes.ts";
import { cachedBinary } from "./tools.ts";

export const CONTROLLER_MANAGER = "kube-controller-manager";
export const SCHEDULER = "kube-scheduler";

/**
 * Every default controller of kube-controller-manager (namespace deletion, garbage collection,
 * ResourceQuota usage, service accounts and their tokens, kube-root-ca.crt, CSR signing,
 * Deployments, Jobs …) except node-lifecycle-controller.
 *
 * Decision: node-lifecycle-controller stays off in this stack because there is no kubelet. The
 * stack creates this host's Node itself and nothing posts its status or renews its Lease, so
 * the controller would mark the node NotReady/Unknown after its grace period and taint it
 * node.kubernetes.io/unreachable (NoSchedule, NoExecute) — a judgement about a kubelet that
 * does not exist, not about this host. When a real node joins (a kubelet reporting status, as
 * in a cluster install), the controller belongs back on.
 *
 * Nothing else needs switching off: the cloud controllers (cloud-node-lifecycle, node-route,
 * service-lb) skip themselves with one log line when no cloud provider is set, node-ipam does
 * nothing without --allocate-node-cidrs, and the rest log no errors without a kubelet.
 */
const CONTROLLERS = ["*", "-node-lifecycle-controller"].join(",");

/** The kubeconfig COMPONENT runs with, in the stack's state directory. */
export function componentKubeconfig(stateDir: string, component: string): string {
  return join(stateDir, `${component}.kubeconfig`);
}

/** One of the two: its daemon name, HTTPS port, client-and-serving certificate, own flags. */
interface Component {
  name: "kube-controller-manager" | "kube-scheduler";
  port: number;
  cert: string;
  key: string;
  args: string[];
}

/** kube-controller-manager's own flags (the shared ones are in startComponent). */
function controllerManagerArgs(pki: Pki): string[] {
  return [
    `--controllers=${CONTROLLERS}`,
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
  ];
}

/** Writes the component's kubeconfig (its own user) and starts it unless it already runs. */
async function startComponent(
  stateDir: string,
  ports: KubePorts,
  pki: Pki,
  c: Component,
  supervise: boolean,
): Promise<number> {
  const kubeconfig = componentKubeconfig(stateDir, c.name);
  await writeKubeconfig(kubeconfig, ports, pki, { name: `system:${c.name}`, cert: c.cert, key: c.key });
  return startDaemon(stateDir, {
    name: c.name,
    supervise,
    command: cachedBinary(c.name),
    args: [
      `--kubeconfig=${kubeconfig}`,
      // Authentication and authorization of requests to its own HTTPS port go to the API server
      // (TokenReview, SubjectAccessReview) as this same user; /healthz is always allowed.
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      // Client certificates are checked against our CA file. Looking the CAs up in the
      // extension-apiserver-authentication ConfigMap instead would log "missing content for CA
      // bundle" over and over: the API server runs without a front proxy (no requestheader CA).
      `--client-ca-file=${pki.caCert}`,
      "--authentication-skip-lookup=true",
      "--bind-address=127.0.0.1",
      `--secure-port=${c.port}`,
      `--tls-cert-file=${c.cert}`,
      `--tls-private-key-file=${c.key}`,
      // One instance per stack: no Lease to take, no wait for a previous holder's to expire.
      "--leader-elect=false",
      "--profiling=false",
      "--v=1",
      ...c.args,
    ],
  });
}

/**
 * Starts both (unless they already run; restarted when they exit if SUPERVISE) once the API
 * server is ready; waits for their /healthz.
 */
export async function startControlPlane(
  stateDir: string,
  ports: KubePorts,
  pki: Pki,
  supervise = false,
): Promise<void> {
  const components: Component[] = [
    {
      name: CONTROLLER_MANAGER,
      port: ports.controllerManager,
      cert: pki.controllerManagerCert,
      key: pki.controllerManagerKey,
      args: controllerManagerArgs(pki),
    },
    { name: SCHEDULER, port: ports.scheduler, cert: pki.schedulerCert, key: pki.schedulerKey, args: [] },
  ];
  const ca = await readFile(pki.caCert);
  await Promise.all(
    components.map(async (c) => {
      const pid = await startComponent(stateDir, ports, pki, c, supervise);
      const tls = { ca, cert: await readFile(c.cert), key: await readFile(c.key) };
      await waitUntil(c.name, () => httpOk(`https://127.0.0.1:${c.port}/healthz`, tls), {
        timeoutMs: 60_000,
        stateDir,
        daemon: c.name,
        pid,
      });
    }),
  );
}
