// The Helm chart: lints, renders what users expect, installs into the real API server with
// least-privilege RBAC (the controller in a "restricted" namespace, the privileged agent in a
// namespace of its own), and keeps the CRDs on uninstall when asked.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { crdName } from "../../src/api/crd.ts";
import { KINDS } from "../../src/api/index.ts";
import { DOMAIN_FINALIZER, NODE_LABEL, VOLUME_FINALIZER } from "../../src/api/names.ts";
import { RELEASE as STACK_RELEASE } from "../../src/cmd/local/identities.ts";
import {
  CAPACITY_ANNOTATION,
  HEARTBEAT_LEASE_PREFIX,
  hypervisorLabel,
} from "../../src/controllers/node-facts.ts";
import {
  agentNs,
  assertAgentIn,
  chart,
  fullname,
  helm,
  type K8sObject,
  ns,
  podSpec,
  release,
  render,
} from "../support/chart.ts";
import { kubectl, kubectlError } from "../support/stack.ts";

describe("helm chart (rendered)", () => {
  it("passes helm lint --strict", async () => {
    await helm(["lint", "--strict", chart]);
  });

  it("renders every CRD, kept on uninstall by default", async () => {
    const crds = (await render()).filter((o) => o.kind === "CustomResourceDefinition");
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), KINDS.map(crdName).sort());
    for (const c of crds) assert.equal(c.metadata.annotations?.["helm.sh/resource-policy"], "keep");
  });

  it("crds.enabled=false leaves the CRDs out; crds.keep=false drops the keep policy", async () => {
    assert.equal(
      (await render("crds.enabled=false")).filter((o) => o.kind === "CustomResourceDefinition").length,
      0,
    );
    const crds = (await render("crds.keep=false")).filter((o) => o.kind === "CustomResourceDefinition");
    assert.equal(crds.length, KINDS.length);
    for (const c of crds) assert.equal(c.metadata.annotations?.["helm.sh/resource-policy"], undefined);
  });

  it("runs the agent only on labelled nodes, privileged and as root; nothing else as root", async () => {
    const objects = await render();
    const agent = podSpec(objects, "DaemonSet");
    assert.deepEqual(agent.nodeSelector, { "vm.libvirt-operator.io/enabled": "true" });
    assert.equal(agent.containers[0]?.securityContext?.privileged, true);
    assert.equal(agent.containers[0]?.securityContext?.runAsUser, 0);
    assert.equal(agent.containers[0]?.securityContext?.runAsNonRoot, false);
    const controller = podSpec(objects, "Deployment");
    assert.equal(controller.securityContext?.runAsNonRoot, true);
    assert.notEqual(controller.securityContext?.runAsUser, 0);
    assert.deepEqual(controller.containers[0]?.securityContext?.capabilities, { drop: ["ALL"] });
    assert.equal(controller.containers[0]?.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(
      objects.filter((o) => o.spec?.template).map((o) => o.kind),
      ["DaemonSet", "Deployment"],
    );
  });

  it("puts the agent in a privileged namespace of its own, the controller in the release namespace", async () => {
    const objects = await render("metrics.serviceMonitor.enabled=true");
    assertAgentIn(objects, agentNs);
    const created = objects.filter((o) => o.kind === "Namespace");
    assert.deepEqual(
      created.map((o) => o.metadata.name),
      [agentNs],
    );
    for (const mode of ["enforce", "audit", "warn"])
      assert.equal(created[0]?.metadata.labels?.[`pod-security.kubernetes.io/${mode}`], "privileged", mode);
    // The controller: its leader Lease in the release namespace, only reads of the heartbeats.
    const role = (name: string) => objects.find((o) => o.kind === "Role" && o.metadata.name === name);
    assert.deepEqual(role(`${fullname}-controller-heartbeats`)?.rules, [
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "list", "watch"] },
    ]);
    assert.deepEqual(role(`${fullname}-controller-leader`)?.rules?.[0]?.verbs, [
      "get",
      "list",
      "watch",
      "create",
      "update",
    ]);
  });

  it("agent.namespace names another namespace; with agent.createNamespace=false none is created", async () => {
    const objects = await render(
      "metrics.serviceMonitor.enabled=true",
      "agent.namespace=vm-agents",
      "agent.createNamespace=false",
    );
    assertAgentIn(objects, "vm-agents");
    assert.equal(objects.filter((o) => o.kind === "Namespace").length, 0);
    const same = await render(`agent.namespace=${ns}`).then(
      () => "",
      (err: Error) => err.message,
    );
    assert.match(same, /agent\.namespace is the release namespace: set agent\.createNamespace=false/);
  });

  it("renders ServiceMonitors and a PrometheusRule only when asked", async () => {
    const kinds = (objs: K8sObject[]) => objs.map((o) => o.kind);
    assert.ok(!kinds(await render()).includes("ServiceMonitor"));
    const rendered = await render(
      "metrics.serviceMonitor.enabled=true",
      "metrics.prometheusRule.enabled=true",
    );
    const withMonitoring = kinds(rendered);
    assert.equal(withMonitoring.filter((k) => k === "ServiceMonitor").length, 2);
    assert.ok(withMonitoring.includes("PrometheusRule"));
    // The VM's own namespace label must survive the target's (the operator's namespace).
    for (const monitor of rendered.filter((o) => o.kind === "ServiceMonitor")) {
      const endpoints = (monitor.spec as { endpoints: Array<{ honorLabels?: boolean }> }).endpoints;
      assert.ok(
        endpoints.every((e) => e.honorLabels === true),
        JSON.stringify(monitor),
      );
    }
  });

  it("the agent's policies name the operator's own label, finalizers, annotation and Lease", async () => {
    const policies = JSON.stringify((await render()).filter((o) => o.kind === "ValidatingAdmissionPolicy"));
    for (const name of [
      NODE_LABEL,
      DOMAIN_FINALIZER,
      VOLUME_FINALIZER,
      CAPACITY_ANNOTATION,
      hypervisorLabel(""),
      HEARTBEAT_LEASE_PREFIX,
      "authentication.kubernetes.io/node-name",
    ])
      assert.ok(policies.includes(name), `${name} in the agent's policies`);
  });

  it("tenant roles aggregate into view, edit and admin, without any subresource", async () => {
    const roles = (await render()).filter(
      (o) => o.kind === "ClusterRole" && o.metadata.name.includes("-tenant-"),
    ) as Array<
      K8sObject & {
        metadata: { labels: Record<string, string> };
        rules: Array<{ resources: string[]; verbs: string[] }>;
      }
    >;
    const aggregatesTo = (role: string) =>
      roles.filter((r) => r.metadata.labels[`rbac.authorization.k8s.io/aggregate-to-${role}`] === "true");
    assert.deepEqual(
      aggregatesTo("view").flatMap((r) => r.rules.flatMap((rule) => rule.verbs)),
      ["get", "list", "watch"],
    );
    assert.ok(aggregatesTo("edit").some((r) => r.rules.some((rule) => rule.verbs.includes("create"))));
    assert.equal(aggregatesTo("admin").length, 2);
    const resources = roles.flatMap((r) => r.rules.flatMap((rule) => rule.resources));
    assert.deepEqual(
      resources.filter((res) => res.includes("/")),
      [],
    );
  });

  it("values.schema.json rejects a misspelt value, naming it", async () => {
    const message = await render("agent.nodeSelektor.x=y").then(
      () => "",
      (err: Error) => err.message,
    );
    assert.match(message, /nodeSelektor/);
  });

  it("imports: allowed networks and the maximum reach the agent; a malformed CIDR or size is rejected", async () => {
    const env = (objects: K8sObject[]) =>
      Object.fromEntries(
        (podSpec(objects, "DaemonSet").containers[0]?.env ?? []).map((e) => [e.name, e.value]),
      );
    const defaults = env(await render());
    assert.equal(defaults.IMAGE_IMPORT_ALLOWED_NETWORKS, "");
    assert.equal(defaults.IMAGE_MAX_BYTES, "64Gi");
    const set = env(
      await render(
        "agent.imageImport.allowedNetworks={10.20.0.0/16,fd00::/8}",
        "agent.imageImport.maxBytes=8Gi",
      ),
    );
    assert.equal(set.IMAGE_IMPORT_ALLOWED_NETWORKS, "10.20.0.0/16,fd00::/8");
    assert.equal(set.IMAGE_MAX_BYTES, "8Gi");
    for (const bad of [
      "agent.imageImport.allowedNetworks={10.0.0/8}",
      "agent.imageImport.allowedNetworks={10.0.0.0/33}",
    ]) {
      const message = await render(bad).then(
        () => "",
        (err: Error) => err.message,
      );
      assert.match(message, /\/agent\/imageImport\/allowedNetworks\/0.*does not match pattern/, bad);
    }
    const size = await render("agent.imageImport.maxBytes=lots").then(
      () => "",
      (err: Error) => err.message,
    );
    assert.match(size, /\/agent\/imageImport\/maxBytes.*does not match pattern/);
    await helm([
      "lint",
      "--strict",
      chart,
      "--set",
      "agent.imageImport.allowedNetworks={127.0.0.0/8,::1/128}",
    ]);
  });
});

describe("helm install into the real API server", () => {
  before(async () => {
    // Pod Security "restricted" on the release namespace proves the controller needs no privilege;
    // the chart makes the agent's namespace, privileged.
    await kubectl(["create", "namespace", ns]);
    await kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"]);
    // The test stack installed the CRDs with kubectl; the chart takes them over.
    await helm(["install", release, chart, "-n", ns, "--take-ownership", "--wait=false"]);
  });

  after(async () => {
    await helm(["uninstall", release, "-n", ns]).catch(() => undefined);
  });

  it("creates the controller and the agent, each with its service account in its namespace", async () => {
    const names = async (namespace: string) =>
      (await kubectl(["get", "deploy,daemonset,serviceaccount", "-n", namespace, "-o", "name"])).stdout
        .split("\n")
        .filter((n) => n.includes(fullname));
    assert.deepEqual(await names(ns), [
      `deployment.apps/${fullname}-controller`,
      `serviceaccount/${fullname}-controller`,
    ]);
    assert.deepEqual(await names(agentNs), [
      `daemonset.apps/${fullname}-agent`,
      `serviceaccount/${fullname}-agent`,
    ]);
    const labels = JSON.parse(
      (await kubectl(["get", "namespace", agentNs, "-o", "jsonpath={.metadata.labels}"])).stdout,
    ) as Record<string, string>;
    assert.equal(labels["pod-security.kubernetes.io/enforce"], "privileged");
  });

  const can = async (who: "controller" | "agent", verb: string, resource: string, namespace = ns) => {
    const as = `system:serviceaccount:${who === "agent" ? agentNs : ns}:${fullname}-${who}`;
    // "kind/status" means the subresource (kubectl would read it as an object name).
    const [res = resource, sub] = resource.split("/");
    const args = [
      "auth",
      "can-i",
      verb,
      res,
      "-n",
      namespace,
      "--as",
      as,
      ...(sub ? [`--subresource=${sub}`] : []),
    ];
    const out = await kubectl(args).then(
      (r) => r.stdout,
      (err: Error) => err.message,
    );
    return /^yes/m.test(out);
  };

  it("grants the controller what it calls and nothing more", async () => {
    assert.ok(await can("controller", "patch", "virtualmachines.vm.libvirt-operator.io", "default"));
    assert.ok(await can("controller", "patch", "virtualmachines.vm.libvirt-operator.io/status", "default"));
    assert.ok(await can("controller", "list", "nodes"));
    assert.ok(await can("controller", "watch", "namespaces"));
    // Its leader Lease in its namespace; the agents' heartbeats only read, in theirs.
    assert.ok(await can("controller", "update", "leases.coordination.k8s.io"));
    assert.ok(!(await can("controller", "update", "leases.coordination.k8s.io", "kube-system")));
    assert.ok(await can("controller", "watch", "leases.coordination.k8s.io", agentNs));
    assert.ok(!(await can("controller", "update", "leases.coordination.k8s.io", agentNs)));
    // It creates and deletes none of our objects, and sets no owner references that block deletion.
    assert.ok(await can("controller", "create", "vmsnapshots.vm.libvirt-operator.io", "default"));
    assert.ok(!(await can("controller", "create", "vmrestores.vm.libvirt-operator.io", "default")));
    assert.ok(!(await can("controller", "delete", "virtualmachines.vm.libvirt-operator.io", "default")));
    assert.ok(
      !(await can("controller", "update", "virtualmachines.vm.libvirt-operator.io/finalizers", "default")),
    );
    assert.ok(!(await can("controller", "patch", "nodes")));
    assert.ok(!(await can("controller", "get", "secrets")));
    assert.ok(!(await can("controller", "create", "pods")));
  });

  it("grants the agent status writes and node patches, not deletes", async () => {
    assert.ok(await can("agent", "patch", "virtualmachines.vm.libvirt-operator.io/status", "default"));
    assert.ok(await can("agent", "patch", "nodes"));
    assert.ok(await can("agent", "update", "leases.coordination.k8s.io", agentNs));
    assert.ok(!(await can("agent", "update", "leases.coordination.k8s.io")));
    assert.ok(await can("agent", "get", "namespaces"));
    assert.ok(!(await can("agent", "update", "virtualmachines.vm.libvirt-operator.io/scale", "default")));
    assert.ok(await can("agent", "patch", "vmsnapshots.vm.libvirt-operator.io/status", "default"));
    assert.ok(!(await can("agent", "delete", "vmsnapshots.vm.libvirt-operator.io", "default")));
    assert.ok(!(await can("agent", "create", "vmrestores.vm.libvirt-operator.io", "default")));
    assert.ok(!(await can("agent", "patch", "nodes/status")));
    assert.ok(!(await can("agent", "delete", "virtualmachines.vm.libvirt-operator.io", "default")));
    assert.ok(!(await can("agent", "delete", "nodes")));
    assert.ok(!(await can("agent", "get", "secrets")));
  });

  it("the agent's patches need its node name and may remove its finalizer only", async () => {
    // Impersonation stands in for the agent's node-bound token here; agent-reach.test.ts uses a real one.
    // One operator per cluster: the test stack's own install guards its finalizers against every
    // other identity, this release's agent included. Its binding goes for this test (the next
    // test file's operator applies it again).
    await kubectl([
      "delete",
      "validatingadmissionpolicybinding",
      `${STACK_RELEASE}-operator-metadata`,
      "--ignore-not-found",
      "--wait=true",
    ]);
    const node = "policy-node";
    const vm = {
      apiVersion: "vm.libvirt-operator.io/v1alpha1",
      kind: "VirtualMachine",
      metadata: {
        name: "policy-probe",
        namespace: ns,
        labels: { [NODE_LABEL]: node },
        finalizers: [DOMAIN_FINALIZER],
      },
      // Pinned to a node that does not exist: no controller of a later test places it.
      spec: { memory: "64Mi", runStrategy: "Halted", nodeName: node },
    };
    await kubectl(["apply", "--server-side", "-f", "-"], JSON.stringify(vm));
    const agent = ["--as", `system:serviceaccount:${agentNs}:${fullname}-agent`];
    const patch = (p: unknown, as: string[]) =>
      kubectlError(["patch", "vm", "policy-probe", "-n", ns, "--type=merge", "-p", JSON.stringify(p), ...as]);
    const onNode = [...agent, "--as-user-extra", `authentication.kubernetes.io/node-name=${node}`];
    try {
      // Policies reach admission a moment after they change: the removed binding too. When several
      // policies deny, the API server names only one, so any request may still meet the old binding.
      const deadline = Date.now() + 30_000;
      const settled = async (p: unknown, as: string[]) => {
        let answer = await patch(p, as);
        while (/added and removed by the operator/.test(answer) && Date.now() < deadline) {
          await sleep(250);
          answer = await patch(p, as);
        }
        return answer;
      };
      assert.match(
        await settled({ metadata: { finalizers: null } }, agent),
        /must authenticate with a token bound/,
      );
      assert.match(await patch({ spec: { memory: "2Gi" } }, onNode), /the node agent may not change spec/);
      assert.match(await patch({ metadata: { labels: { x: "y" } } }, onNode), /may not change labels/);
      assert.equal(await settled({ metadata: { finalizers: null } }, onNode), "");
    } finally {
      await patch({ metadata: { finalizers: null } }, []);
      await kubectl(["delete", "vm", "policy-probe", "-n", ns, "--ignore-not-found"]);
    }
  });

  it("the controller pod passes Pod Security restricted; the agent pod only in its own namespace", async () => {
    const objects = await render();
    // The agent's ServiceAccount is not in the release namespace: its probe there runs as "default".
    const pod = (kind: string, name: string, namespace: string, serviceAccountName?: string) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace },
        spec: { ...podSpec(objects, kind), ...(serviceAccountName ? { serviceAccountName } : {}) },
      });
    const dryRun = ["create", "--dry-run=server", "-f", "-"];
    assert.equal(await kubectlError(dryRun, pod("Deployment", "controller-probe", ns)), "");
    assert.match(
      await kubectlError(dryRun, pod("DaemonSet", "agent-probe", ns, "default")),
      /violates PodSecurity "restricted.*privileged/,
    );
    assert.equal(await kubectlError(dryRun, pod("DaemonSet", "agent-probe", agentNs)), "");
  });

  it("uninstall removes the workloads and the agent's namespace, and keeps the CRDs (crds.keep)", async () => {
    await helm(["uninstall", release, "-n", ns, "--wait"]);
    const { stdout } = await kubectl(["get", "deploy,daemonset", "-n", ns, "-o", "name"]);
    assert.equal(stdout.trim(), "");
    await kubectl(["wait", "--for=delete", `namespace/${agentNs}`, "--timeout=60s"]);
    for (const def of KINDS) await kubectl(["get", "crd", crdName(def)]);
  });
});
