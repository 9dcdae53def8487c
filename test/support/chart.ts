// The chart as the Helm tests see it: one release ("lvo" in namespace helm-test) rendered or
// installed with the chart's own Helm, and where its objects belong.
import assert from "node:assert/strict";
import { join } from "node:path";
import yaml from "js-yaml";
import { agentNamespace } from "../../src/cmd/local/identities.ts";
import { cachedBinary, REPO_ROOT, run } from "../../src/cmd/local/tools.ts";
import { KUBECONFIG } from "./stack.ts";

export const chart = join(REPO_ROOT, "helm", "libvirt-operator");
export const release = "lvo";
export const ns = "helm-test";
/** Where the chart puts the agent by default; the local stack assumes the same (identities.ts). */
export const agentNs = agentNamespace(ns);
export const fullname = `${release}-libvirt-operator`;

export interface K8sObject {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Record<string, unknown> & { template?: { spec: PodSpec } };
  subjects?: Array<{ name: string; namespace: string }>;
  rules?: Array<{ resources: string[]; verbs: string[] }>;
}
export interface PodSpec {
  securityContext?: Record<string, unknown>;
  nodeSelector?: Record<string, string>;
  containers: Array<{
    securityContext?: Record<string, unknown>;
    env?: Array<{ name: string; value?: string }>;
  }>;
}

export function helm(args: string[]) {
  return run(cachedBinary("helm"), ["--kubeconfig", KUBECONFIG, ...args], { timeoutMs: 180_000 });
}

export async function render(...set: string[]): Promise<K8sObject[]> {
  const { stdout } = await helm(["template", release, chart, "-n", ns, ...set.flatMap((s) => ["--set", s])]);
  return (yaml.loadAll(stdout) as K8sObject[]).filter(Boolean);
}

export function podSpec(objects: K8sObject[], kind: string): PodSpec {
  const found = objects.find((o) => o.kind === kind);
  assert.ok(found?.spec?.template, `${kind} rendered`);
  return found.spec.template.spec;
}

/** The namespace of each namespaced object, by "Kind/name". */
function namespaces(objects: K8sObject[]): Record<string, string | undefined> {
  return Object.fromEntries(objects.map((o) => [`${o.kind}/${o.metadata.name}`, o.metadata.namespace]));
}

/** The agent's namespaced objects (metrics.serviceMonitor.enabled for its ServiceMonitor). */
const AGENT_OBJECTS = [
  `ServiceAccount/${fullname}-agent`,
  `DaemonSet/${fullname}-agent`,
  `Role/${fullname}-agent-heartbeat`,
  `RoleBinding/${fullname}-agent-heartbeat`,
  `Service/${fullname}-agent-metrics`,
  `ServiceMonitor/${fullname}-agent`,
  // The controller reads the heartbeats where the agents write them.
  `Role/${fullname}-controller-heartbeats`,
  `RoleBinding/${fullname}-controller-heartbeats`,
];
const CONTROLLER_OBJECTS = [
  `ServiceAccount/${fullname}-controller`,
  `Deployment/${fullname}-controller`,
  `Role/${fullname}-controller-leader`,
  `RoleBinding/${fullname}-controller-leader`,
  `Service/${fullname}-controller-metrics`,
  `ServiceMonitor/${fullname}-controller`,
];

/** Checks where the agent's and the controller's objects render, and whom the policies name. */
export function assertAgentIn(objects: K8sObject[], agentNamespace: string) {
  const where = namespaces(objects);
  for (const name of AGENT_OBJECTS) assert.equal(where[name], agentNamespace, name);
  for (const name of CONTROLLER_OBJECTS) assert.equal(where[name], ns, name);
  const binding = objects.find(
    (o) => o.kind === "ClusterRoleBinding" && o.metadata.name === `${fullname}-agent`,
  );
  assert.deepEqual(
    binding?.subjects?.map((s) => s.namespace),
    [agentNamespace],
  );
  const controllerReads = objects.find(
    (o) => o.kind === "RoleBinding" && o.metadata.name === `${fullname}-controller-heartbeats`,
  );
  assert.deepEqual(controllerReads?.subjects, [
    { kind: "ServiceAccount", name: `${fullname}-controller`, namespace: ns },
  ]);
  const env = podSpec(objects, "Deployment").containers[0]?.env ?? [];
  assert.equal(env.find((e) => e.name === "AGENT_NAMESPACE")?.value, agentNamespace);
  const agentUser = `system:serviceaccount:${agentNamespace}:${fullname}-agent`;
  const policies = objects.filter((o) => o.kind === "ValidatingAdmissionPolicy");
  assert.equal(policies.length, 5);
  for (const policy of policies)
    assert.ok(
      JSON.stringify(policy).includes(`'${agentUser}'`),
      `${policy.metadata.name} names ${agentUser}`,
    );
}
