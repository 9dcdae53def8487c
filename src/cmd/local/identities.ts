// The operator's own identities in the local stack, as a cluster install has them: the chart's
// ServiceAccounts, RBAC, tenant roles and the agent's admission policies, rendered from the chart
// itself (the controller's in the release namespace, the agent's in the agent's namespace,
// agentNamespace), and kubeconfigs holding tokens from the TokenRequest API. The agent's token is bound
// to its Node object, so the API server knows which node it speaks for
// (request.userInfo.extra["authentication.kubernetes.io/node-name"], see agent-policy.yaml).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import yaml from "js-yaml";
import { kubectl } from "./kube.ts";
import { cachedBinary, REPO_ROOT, run } from "./tools.ts";

/** The release name the stack renders the chart with: its fullname is then "libvirt-operator". */
export const RELEASE = "libvirt-operator";
export const CHART_DIR = join(REPO_ROOT, "helm", "libvirt-operator");

/** The chart's templates that make identities and permissions (no workloads, no CRDs). */
export const IDENTITY_TEMPLATES = [
  "serviceaccounts.yaml",
  "rbac-controller.yaml",
  "rbac-agent.yaml",
  "metadata-policy.yaml",
  "agent-policy.yaml",
  "tenant-roles.yaml",
];

/**
 * One year. Decision: the stack mints a fresh token every time it starts a controller or an
 * agent, so a long life only matters to a stack left running: when the token ends, the API
 * server answers 401 to everything that process asks, its informers and writes fail (logged),
 * and restarting the operator (`make local-down local`, or a test's startOperator) mints new
 * ones. A node-bound token also ends when its Node object is deleted.
 */
export const TOKEN_LIFETIME = "8760h";

export type Component = "controller" | "agent";

export function serviceAccountName(component: Component): string {
  return `${RELEASE}-${component}`;
}

/**
 * The namespace the chart puts the node agent in for release namespace NAMESPACE when
 * agent.namespace is left empty (its default): its ServiceAccount and heartbeat Leases live there.
 */
export function agentNamespace(namespace: string): string {
  return `${namespace}-agent`;
}

/** The namespace of COMPONENT's ServiceAccount, for the chart rendered for release namespace NAMESPACE. */
export function serviceAccountNamespace(namespace: string, component: Component): string {
  return component === "agent" ? agentNamespace(namespace) : namespace;
}

/** The username the API server gives a token of COMPONENT's ServiceAccount (NAMESPACE: the release's). */
export function serviceAccountUser(namespace: string, component: Component): string {
  return `system:serviceaccount:${serviceAccountNamespace(namespace, component)}:${serviceAccountName(component)}`;
}

/** The identity templates, rendered by the chart's own Helm for the release namespace. */
export async function renderIdentities(namespace: string): Promise<string> {
  const only = IDENTITY_TEMPLATES.flatMap((t) => ["--show-only", `templates/${t}`]);
  const { stdout } = await run(cachedBinary("helm"), [
    "template",
    RELEASE,
    CHART_DIR,
    "-n",
    namespace,
    ...only,
  ]);
  return stdout;
}

const applied = new Map<string, Promise<void>>();

/**
 * Applies the rendered identities once per API server and process (the release namespace and
 * the agent's must exist), then waits until the agent's policies are in force: the API server loads admission
 * policies a moment after they are stored, and an agent started before would be unchecked.
 */
export function applyIdentities(adminKubeconfig: string, namespace: string): Promise<void> {
  let done = applied.get(adminKubeconfig);
  if (!done) {
    done = (async () => {
      const rendered = await renderIdentities(namespace);
      await kubectl(
        adminKubeconfig,
        ["apply", "--server-side", "--force-conflicts", "--field-manager=local-stack", "-f", "-"],
        rendered,
      );
      await waitForAgentPolicies(adminKubeconfig, namespace);
    })();
    done.catch(() => applied.delete(adminKubeconfig));
    applied.set(adminKubeconfig, done);
  }
  return done;
}

/**
 * Polls with a dry run the last policy and binding the chart renders: the agent of node
 * "policy-probe" creating a Lease other than its heartbeat must be refused. Policies and
 * bindings reach the API server's admission in the order they were stored.
 */
async function waitForAgentPolicies(adminKubeconfig: string, namespace: string): Promise<void> {
  const lease = {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name: "policy-probe-not-a-heartbeat", namespace: agentNamespace(namespace) },
  };
  const args = [
    "create",
    "--dry-run=server",
    "-f",
    "-",
    "--as",
    serviceAccountUser(namespace, "agent"),
    "--as-user-extra",
    "authentication.kubernetes.io/node-name=policy-probe",
  ];
  const deadline = Date.now() + 30_000;
  let said = "";
  while (Date.now() < deadline) {
    said = await kubectl(adminKubeconfig, args, JSON.stringify(lease)).then(
      () => "created",
      (err: Error) => err.message,
    );
    if (said.includes("may write only its heartbeat Lease")) return;
    await sleep(200);
  }
  throw new Error(`the agent's admission policies never took effect; the probe Lease got: ${said}`);
}

/**
 * A token of COMPONENT's ServiceAccount (of the chart rendered for release namespace NAMESPACE)
 * from the TokenRequest API, bound to NODE when given.
 */
export async function requestToken(
  adminKubeconfig: string,
  namespace: string,
  component: Component,
  node?: string,
): Promise<string> {
  const bound = node ? ["--bound-object-kind=Node", `--bound-object-name=${node}`] : [];
  const { stdout } = await kubectl(adminKubeconfig, [
    "create",
    "token",
    serviceAccountName(component),
    "-n",
    serviceAccountNamespace(namespace, component),
    `--duration=${TOKEN_LIFETIME}`,
    ...bound,
  ]);
  return stdout.trim();
}

interface KubeconfigFile {
  clusters: Array<{ name: string; cluster: Record<string, unknown> }>;
}

/** A kubeconfig for the admin kubeconfig's cluster that authenticates with TOKEN. */
export async function writeTokenKubeconfig(
  adminKubeconfig: string,
  path: string,
  user: string,
  token: string,
): Promise<void> {
  const admin = yaml.load(await readFile(adminKubeconfig, "utf8")) as KubeconfigFile;
  const cluster = admin.clusters[0];
  if (!cluster) throw new Error(`${adminKubeconfig} names no cluster`);
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [cluster],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: cluster.name, user } }],
    "current-context": user,
  };
  await writeFile(path, yaml.dump(config), { mode: 0o600 });
}

/**
 * The kubeconfig COMPONENT runs with: the chart's identities applied, a fresh token of its
 * ServiceAccount (the agent's bound to the Node NODE, which must exist), in STATEDIR/identities.
 */
export async function identityKubeconfig(
  stateDir: string,
  adminKubeconfig: string,
  namespace: string,
  component: Component,
  node?: string,
): Promise<string> {
  if (component === "agent" && !node) throw new Error("an agent's token must be bound to its Node");
  await applyIdentities(adminKubeconfig, namespace);
  const dir = join(stateDir, "identities");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, node ? `${component}-${node}.kubeconfig` : `${component}.kubeconfig`);
  const token = await requestToken(adminKubeconfig, namespace, component, node);
  await writeTokenKubeconfig(adminKubeconfig, path, serviceAccountName(component), token);
  return path;
}
