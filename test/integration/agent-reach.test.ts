// The node agent's reach and the tenants' roles, tried against the real API server with real
// tokens: the agent's from the TokenRequest API bound to its Node (as the local stack runs it),
// a tenant's ServiceAccount bound to the built-in `edit` role. The chart's RBAC and admission
// policies are applied from the chart itself (src/cmd/local/identities.ts).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  API_VERSION,
  DISK_PROTECTION_FINALIZER,
  DOMAIN_FINALIZER,
  NODE_LABEL,
  VOLUME_FINALIZER,
} from "../../src/api/names.ts";
import { applyIdentities, requestToken } from "../../src/cmd/local/identities.ts";
import { registerNode } from "../../src/cmd/local/kube.ts";
import {
  AGENT_NAMESPACE,
  ensureOperatorNamespace,
  OPERATOR_NAMESPACE,
} from "../../src/cmd/local/operator.ts";
import { heartbeatLeaseName } from "../../src/controllers/node-facts.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const NODE_A = "reach-a";
const NODE_B = "reach-b";
const GROUP_PATH = `/apis/${API_VERSION}`;
const LEADER_LEASE = "libvirt-operator-controller";
let ns = "";
let agentToken = "";

interface Answer {
  status: number;
  message: string;
  body: Record<string, unknown>;
}

/** One request to the test stack's API server with TOKEN, as the operator's client makes it. */
function call(
  token: string,
  method: string,
  path: string,
  body?: unknown,
  type = "merge-patch",
): Promise<Answer> {
  const ca = readFileSync(join(TEST_STACK.stateDir, "pki", "ca.crt"));
  const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined)
    headers["Content-Type"] = type === "json" ? "application/json" : `application/${type}+json`;
  return new Promise((resolve, reject) => {
    const req = request(
      `https://127.0.0.1:${TEST_STACK.ports.apiserver}${path}`,
      { method, headers, ca, timeout: 10_000 },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on("end", () => {
          const parsed = (() => {
            try {
              return JSON.parse(text) as Record<string, unknown>;
            } catch {
              return { message: text };
            }
          })();
          resolve({ status: res.statusCode ?? 0, message: String(parsed.message ?? ""), body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const asAgent = (method: string, path: string, body?: unknown, type?: string) =>
  call(agentToken, method, path, body, type);

function assertRefused(answer: Answer, message: RegExp) {
  assert.equal(answer.status, 403, `refused, not ${answer.status}: ${answer.message}`);
  assert.match(answer.message, message);
}

function assertAllowed(answer: Answer) {
  assert.ok(answer.status >= 200 && answer.status < 300, `allowed, not ${answer.status}: ${answer.message}`);
}

const vmPath = (name: string, sub = "") => `${GROUP_PATH}/namespaces/${ns}/virtualmachines/${name}${sub}`;
const leasesPath = (namespace: string) => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;

async function applyAsAdmin(obj: Record<string, unknown>) {
  await kubectl(
    ["apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f", "-"],
    JSON.stringify(obj),
  );
}

function placedVm(name: string, node: string, finalizers: string[] = [DOMAIN_FINALIZER]) {
  return {
    apiVersion: API_VERSION,
    kind: "VirtualMachine",
    metadata: { name, namespace: ns, labels: { [NODE_LABEL]: node }, finalizers },
    spec: { memory: "64Mi", runStrategy: "Halted" },
  };
}

/** A Lease: heartbeats are in the agent's namespace, the controller's leader Lease in its own. */
function lease(name: string, namespace = AGENT_NAMESPACE) {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, namespace },
    spec: { holderIdentity: "someone-else", leaseDurationSeconds: 15 },
  };
}

before(async () => {
  ns = await testNamespace("agent-reach");
  await ensureOperatorNamespace(KUBECONFIG);
  await applyIdentities(KUBECONFIG, OPERATOR_NAMESPACE);
  for (const node of [NODE_A, NODE_B]) await registerNode(KUBECONFIG, node);
  agentToken = await requestToken(KUBECONFIG, OPERATOR_NAMESPACE, "agent", NODE_A);
  await applyAsAdmin(placedVm("on-a", NODE_A, [DOMAIN_FINALIZER, "example.com/keep"]));
  await applyAsAdmin(placedVm("on-b", NODE_B));
  await applyAsAdmin({
    apiVersion: API_VERSION,
    kind: "VMDisk",
    metadata: {
      name: "disk-on-a",
      namespace: ns,
      labels: { [NODE_LABEL]: NODE_A },
      finalizers: [VOLUME_FINALIZER, DISK_PROTECTION_FINALIZER],
    },
    spec: { provisionedSize: "1Gi" },
  });
  await applyAsAdmin(lease(LEADER_LEASE, OPERATOR_NAMESPACE));
  await applyAsAdmin(lease(heartbeatLeaseName(NODE_B)));
});

after(async () => {
  const clear = JSON.stringify({ metadata: { finalizers: null } });
  for (const res of ["vm/on-a", "vm/on-b", "vmdisk/disk-on-a"])
    await kubectl(["patch", res, "-n", ns, "--type=merge", "-p", clear]).catch(() => undefined);
  await kubectl(["delete", "vm,vmdisk", "--all", "-n", ns, "--wait=false"]).catch(() => undefined);
  await kubectl(["delete", "node", NODE_A, NODE_B, "--ignore-not-found", "--wait=false"]);
  await kubectl(["delete", "lease", LEADER_LEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found"]);
  await kubectl([
    "delete",
    "lease",
    heartbeatLeaseName(NODE_A),
    heartbeatLeaseName(NODE_B),
    "-n",
    AGENT_NAMESPACE,
    "--ignore-not-found",
  ]);
});

describe("the node agent's token (bound to Node reach-a)", () => {
  it("carries its node name, which the API server hands to admission", async () => {
    const review = await asAgent(
      "POST",
      "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "SelfSubjectReview",
      },
      "json",
    );
    const user = (review.body.status as { userInfo: { username: string; extra: Record<string, string[]> } })
      .userInfo;
    assert.equal(user.username, `system:serviceaccount:${AGENT_NAMESPACE}:libvirt-operator-agent`);
    assert.deepEqual(user.extra["authentication.kubernetes.io/node-name"], [NODE_A]);
  });

  it("may patch the status of a VM placed on its node", async () => {
    assertAllowed(
      await asAgent("PATCH", vmPath("on-a", "/status"), { status: { printableStatus: "Stopped" } }),
    );
    const { stdout } = await kubectl([
      "get",
      "vm",
      "on-a",
      "-n",
      ns,
      "-o",
      "jsonpath={.status.printableStatus}",
    ]);
    assert.equal(stdout, "Stopped");
  });

  it("may not patch the status of a VM placed on another node", async () => {
    assertRefused(
      await asAgent("PATCH", vmPath("on-b", "/status"), { status: { printableStatus: "Running" } }),
      /node agent of node reach-a may write only VirtualMachines placed on its node .*this one is placed on reach-b/,
    );
  });

  it("may not take another node's VM by relabelling it, nor remove its finalizer", async () => {
    assertRefused(
      await asAgent("PATCH", vmPath("on-b"), { metadata: { labels: { [NODE_LABEL]: NODE_A } } }),
      /placed on reach-b/,
    );
    assertRefused(
      await asAgent("PATCH", vmPath("on-b"), { metadata: { finalizers: null } }),
      /placed on reach-b/,
    );
  });

  it("may not add an ownerReference to its own node's VM", async () => {
    const node = JSON.parse((await kubectl(["get", "node", NODE_A, "-o", "json"])).stdout);
    const owner = { apiVersion: "v1", kind: "Node", name: NODE_A, uid: node.metadata.uid };
    assertRefused(
      await asAgent("PATCH", vmPath("on-a"), { metadata: { ownerReferences: [owner] } }),
      /the node agent may not change ownerReferences/,
    );
  });

  it("may not remove a finalizer that is not its own, nor change spec", async () => {
    assertRefused(
      await asAgent("PATCH", vmPath("on-a"), { metadata: { finalizers: [DOMAIN_FINALIZER] } }),
      /may only remove its own finalizer \(vm\.libvirt-operator\.io\/domain\)/,
    );
    const disk = `${GROUP_PATH}/namespaces/${ns}/vmdisks/disk-on-a`;
    assertRefused(
      await asAgent("PATCH", disk, { metadata: { finalizers: [VOLUME_FINALIZER] } }),
      /may only remove its own finalizer \(vm\.libvirt-operator\.io\/volume\)/,
    );
    assertRefused(await asAgent("PATCH", vmPath("on-a"), { spec: { memory: "4Gi" } }), /may not change spec/);
    // Its own finalizer it may remove (what it does once the volume is gone).
    assertAllowed(await asAgent("PATCH", disk, { metadata: { finalizers: [DISK_PROTECTION_FINALIZER] } }));
  });

  it("may patch only its own Node, and there only what it publishes", async () => {
    const capacity = { metadata: { annotations: { "vm.libvirt-operator.io/capacity": "{}" } } };
    assertAllowed(await asAgent("PATCH", `/api/v1/nodes/${NODE_A}`, capacity));
    assertRefused(
      await asAgent("PATCH", `/api/v1/nodes/${NODE_B}`, capacity),
      /node agent of node reach-a may patch only its own Node, not reach-b/,
    );
    assertRefused(
      await asAgent("PATCH", `/api/v1/nodes/${NODE_A}`, {
        metadata: { labels: { "vm.libvirt-operator.io/enabled": "false" } },
      }),
      /may change only the vm\.libvirt-operator\.io\/hypervisor\.\* labels/,
    );
    assertRefused(
      await asAgent("PATCH", `/api/v1/nodes/${NODE_A}`, { spec: { unschedulable: true } }),
      /may not change a Node's spec/,
    );
  });

  it("may write its own heartbeat Lease, in its namespace only, and no other Lease", async () => {
    const own = lease(heartbeatLeaseName(NODE_A));
    // RBAC: Leases in its own namespace only.
    assertRefused(
      await asAgent(
        "POST",
        leasesPath(OPERATOR_NAMESPACE),
        lease(own.metadata.name, OPERATOR_NAMESPACE),
        "json",
      ),
      new RegExp(`cannot create resource "leases" .*in the namespace "${OPERATOR_NAMESPACE}"`),
    );
    assertAllowed(await asAgent("POST", leasesPath(AGENT_NAMESPACE), own, "json"));
    const current = async (name: string, namespace: string) => {
      const got = JSON.parse((await kubectl(["get", "lease", name, "-n", namespace, "-o", "json"])).stdout);
      got.spec.holderIdentity = NODE_A;
      return got;
    };
    assertRefused(
      await asAgent(
        "PUT",
        `${leasesPath(OPERATOR_NAMESPACE)}/${LEADER_LEASE}`,
        await current(LEADER_LEASE, OPERATOR_NAMESPACE),
        "json",
      ),
      new RegExp(`cannot update resource "leases" .*in the namespace "${OPERATOR_NAMESPACE}"`),
    );
    // The policy: in its namespace, its own heartbeat only.
    const other = heartbeatLeaseName(NODE_B);
    assertRefused(
      await asAgent(
        "PUT",
        `${leasesPath(AGENT_NAMESPACE)}/${other}`,
        await current(other, AGENT_NAMESPACE),
        "json",
      ),
      new RegExp(`may write only its heartbeat Lease ${heartbeatLeaseName(NODE_A)}, not ${other}`),
    );
    assertRefused(
      await asAgent("POST", leasesPath(AGENT_NAMESPACE), lease(LEADER_LEASE), "json"),
      new RegExp(`may write only its heartbeat Lease ${heartbeatLeaseName(NODE_A)}, not ${LEADER_LEASE}`),
    );
  });

  it("a token of the agent's ServiceAccount bound to no node writes nothing", async () => {
    const unbound = await requestToken(KUBECONFIG, OPERATOR_NAMESPACE, "agent");
    assertRefused(
      await call(unbound, "PATCH", vmPath("on-a", "/status"), { status: { printableStatus: "Stopped" } }),
      /must authenticate with a token bound to its Node or Pod/,
    );
  });
});

describe("a tenant bound to the built-in edit role", () => {
  let tenantToken = "";

  before(async () => {
    for (const name of ["tenant-a", "tenant-b"]) await testNamespace(name);
    await kubectl([
      "create",
      "serviceaccount",
      "tenant",
      "-n",
      "tenant-a",
      "--dry-run=client",
      "-o",
      "yaml",
    ]).then(({ stdout }) => kubectl(["apply", "--server-side", "-f", "-"], stdout));
    await kubectl([
      "create",
      "rolebinding",
      "tenant-edit",
      "-n",
      "tenant-a",
      "--clusterrole=edit",
      "--serviceaccount=tenant-a:tenant",
      "--dry-run=client",
      "-o",
      "yaml",
    ]).then(({ stdout }) => kubectl(["apply", "--server-side", "-f", "-"], stdout));
    tenantToken = (await kubectl(["create", "token", "tenant", "-n", "tenant-a"])).stdout.trim();
  });

  after(async () => {
    await kubectl(["delete", "vm", "--all", "-n", "tenant-a", "--wait=false"]).catch(() => undefined);
  });

  it("creates a VirtualMachine in its namespace (the chart's role aggregated into edit)", async () => {
    const vm = {
      apiVersion: API_VERSION,
      kind: "VirtualMachine",
      metadata: { name: "mine", namespace: "tenant-a" },
      spec: { memory: "64Mi", runStrategy: "Halted" },
    };
    // kube-controller-manager aggregates the chart's ClusterRole into edit a moment after it appears.
    const deadline = Date.now() + 30_000;
    let answer = await call(
      tenantToken,
      "POST",
      `${GROUP_PATH}/namespaces/tenant-a/virtualmachines`,
      vm,
      "json",
    );
    while (answer.status === 403 && Date.now() < deadline) {
      await sleep(500);
      answer = await call(
        tenantToken,
        "POST",
        `${GROUP_PATH}/namespaces/tenant-a/virtualmachines`,
        vm,
        "json",
      );
    }
    assert.ok(
      answer.status === 201 || answer.status === 409,
      `created, not ${answer.status}: ${answer.message}`,
    );
  });

  it("cannot place its objects by hand nor strip the operator's finalizers", async () => {
    const vms = `${GROUP_PATH}/namespaces/tenant-a/virtualmachines`;
    const placedVm = (metadata: Record<string, unknown>) =>
      call(
        tenantToken,
        "POST",
        vms,
        {
          apiVersion: API_VERSION,
          kind: "VirtualMachine",
          metadata: { name: "placed", namespace: "tenant-a", ...metadata },
          spec: { memory: "64Mi", runStrategy: "Halted" },
        },
        "json",
      );
    assertRefused(
      await placedVm({ labels: { "vm.libvirt-operator.io/node": "n1" } }),
      /label vm.libvirt-operator.io\/node is set by the operator/,
    );
    // Nor give itself another VM's UUID, MAC or address through the placement record.
    const placement = JSON.stringify({
      nodeName: "n1",
      uuid: "6f1c2b9e-3d4a-4b5c-8d6e-7f8091a2b3c4",
      interfaces: [{ name: "default", mac: "52:54:00:00:00:01", network: "default", ipv4: "192.168.122.2" }],
    });
    assertRefused(
      await placedVm({ annotations: { "vm.libvirt-operator.io/placement": placement } }),
      /annotation vm.libvirt-operator.io\/placement is the operator's record/,
    );
    // Nor make a disk of its own pass for a template's base.
    const disks = `${GROUP_PATH}/namespaces/tenant-a/vmdisks`;
    const forged = (metadata: Record<string, unknown>) =>
      call(
        tenantToken,
        "POST",
        disks,
        {
          apiVersion: API_VERSION,
          kind: "VMDisk",
          metadata: { name: "forged", namespace: "tenant-a", ...metadata },
          spec: { provisionedSize: "1Mi" },
        },
        "json",
      );
    assertRefused(
      await forged({ labels: { "vm.libvirt-operator.io/template": "t" } }),
      /bases are the operator's/,
    );
    assertRefused(
      await forged({
        ownerReferences: [{ apiVersion: API_VERSION, kind: "VMTemplate", name: "t", uid: "0000" }],
      }),
      /bases are the operator's/,
    );
    // The finalizer the controller adds when it places a VM (added here by the admin).
    const finalizers = (list: string[] | null) =>
      kubectl([
        "patch",
        "vm",
        "mine",
        "-n",
        "tenant-a",
        "--type=merge",
        "-p",
        JSON.stringify({ metadata: { finalizers: list } }),
      ]);
    await finalizers(["vm.libvirt-operator.io/domain"]);
    try {
      assertRefused(
        await call(tenantToken, "PATCH", `${vms}/mine`, { metadata: { finalizers: null } }),
        /finalizers are added and removed by the operator/,
      );
      assertRefused(
        await call(tenantToken, "PATCH", `${vms}/mine`, {
          metadata: { labels: { "vm.libvirt-operator.io/node": "n1" } },
        }),
        /label vm.libvirt-operator.io\/node is set by the operator/,
      );
      assertRefused(
        await call(tenantToken, "PATCH", `${vms}/mine`, {
          metadata: { annotations: { "vm.libvirt-operator.io/placement": placement } },
        }),
        /annotation vm.libvirt-operator.io\/placement is the operator's record/,
      );
      assertRefused(
        await call(tenantToken, "PATCH", `${vms}/mine`, {
          metadata: { annotations: { "vm.libvirt-operator.io/placement": "" } },
        }),
        /annotation vm.libvirt-operator.io\/placement is the operator's record/,
      );
      // Its own labels and finalizers stay the tenant's.
      assertAllowed(
        await call(tenantToken, "PATCH", `${vms}/mine`, {
          metadata: {
            labels: { team: "a" },
            finalizers: ["vm.libvirt-operator.io/domain", "example.com/mine"],
          },
        }),
      );
    } finally {
      await finalizers(null);
    }
  });

  it("cannot patch the status of its own VM", async () => {
    assertRefused(
      await call(tenantToken, "PATCH", `${GROUP_PATH}/namespaces/tenant-a/virtualmachines/mine/status`, {
        status: { printableStatus: "Running" },
      }),
      /cannot patch resource "virtualmachines\/status"/,
    );
  });

  it("cannot read anything in another tenant's namespace", async () => {
    for (const path of [
      `${GROUP_PATH}/namespaces/tenant-b/virtualmachines`,
      `${GROUP_PATH}/namespaces/tenant-b/vmdisks`,
      "/api/v1/namespaces/tenant-b/pods",
      "/api/v1/namespaces/tenant-b/secrets",
      "/api/v1/namespaces/tenant-b/configmaps",
    ]) {
      assertRefused(await call(tenantToken, "GET", path), /cannot list resource/);
    }
    // What the API server says it may do there: nothing but asking what it may do.
    const review = await call(
      tenantToken,
      "POST",
      "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
      {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectRulesReview",
        spec: { namespace: "tenant-b" },
      },
      "json",
    );
    const rules = (review.body.status as { resourceRules: Array<{ verbs: string[]; resources?: string[] }> })
      .resourceRules;
    const reads = rules.filter((r) => r.verbs.some((v) => ["get", "list", "watch", "*"].includes(v)));
    assert.deepEqual(reads, [], `no read rule in tenant-b: ${JSON.stringify(rules)}`);
  });
});
