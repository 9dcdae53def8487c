// The chart's pods on a real node: the test stack's kubelet (containerd, runc, a CNI bridge,
// kube-proxy) runs the controller Deployment and the agent DaemonSet from images built here
// without Docker; the agent talks to the host's libvirtd through the socket the chart mounts.
// From the previous release (chart and image of PREVIOUS_RELEASE.commit) with a guest running:
// upgrade, VMs applied and deleted with kubectl, rollback, a namespace deleted with its VMs and
// disks, uninstall keeping the CRDs and the guests.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import yaml from "js-yaml";
import { crdName } from "../../src/api/crd.ts";
import { KINDS } from "../../src/api/index.ts";
import { renderIdentities } from "../../src/cmd/local/identities.ts";
import { podNetwork, runtimePaths } from "../../src/cmd/local/node.ts";
import { nodeBusyReason } from "../../src/cmd/local/node-host.ts";
import { OPERATOR_NAMESPACE } from "../../src/cmd/local/operator.ts";
import { stackNodeDown, stackNodeUp } from "../../src/cmd/local/stack.ts";
import { cachedBinary, REPO_ROOT, run } from "../../src/cmd/local/tools.ts";
import { domainNameOf } from "../../src/hypervisor/domain/from-spec.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  applyObject,
  applyVm,
  type getVm,
  isPrintable,
  qemuPid,
  readyCondition,
  virsh,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { currentRelease, PREVIOUS_RELEASE, previousRelease, type Release } from "../support/releases.ts";
import { KUBECONFIG, kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const release = "lvo";
const ns = "lvo-system";
const agentNs = `${ns}-agent`;
const vms = "helm-vms";
const doomed = "helm-doomed";
const node = TEST_STACK.nodeName;
const fullname = `${release}-libvirt-operator`;
const LOST_AFTER_SECONDS = 20;

function helm(args: string[]) {
  return run(cachedBinary("helm"), ["--kubeconfig", KUBECONFIG, ...args], { timeoutMs: 600_000 });
}

/** Seconds since START, one decimal. */
const since = (start: number) => ((Date.now() - start) / 1000).toFixed(1);
const say = (line: string) => process.stderr.write(`    [helm-node] ${line}\n`);

let guest: Guest;
let current: Release;
let previous: Release;
let valuesFile: string;

/** Both releases' pods on this node only (the stack has other, kubelet-less Nodes of tests). */
function values(): Record<string, unknown> {
  const onThisNode = { "kubernetes.io/hostname": node };
  return {
    // The shortest allowed: the lone-agent test below waits for it.
    controller: { nodeSelector: onThisNode, nodeLostAfterSeconds: LOST_AFTER_SECONDS },
    agent: {
      nodeSelector: { "vm.libvirt-operator.io/enabled": "true", ...onThisNode },
      // The test guest's kernel and initrd, named by the VMs' spec.boot.
      mediaDirs: [dirname(guest.kernel)],
      statisticsIntervalSeconds: 5,
    },
  };
}

/**
 * helm --wait is not enough for a DaemonSet on one node: it counts it ready with none of its
 * pods ready (maxUnavailable 1). Both workloads rolled out and ready, as a user waits for them.
 */
async function rolledOut(agentNamespace: string, namespace = ns): Promise<void> {
  await kubectl([
    "rollout",
    "status",
    `deployment/${fullname}-controller`,
    "-n",
    namespace,
    "--timeout=180s",
  ]);
  await kubectl(["rollout", "status", `daemonset/${fullname}-agent`, "-n", agentNamespace, "--timeout=180s"]);
}

async function jsonOf<T>(args: string[]): Promise<T> {
  return JSON.parse((await kubectl([...args, "-o", "json"])).stdout) as T;
}

interface Workload {
  metadata: { generation: number };
  spec: {
    template: { spec: { containers: Array<{ image: string; securityContext?: Record<string, unknown> }> } };
  };
  status: Record<string, number | undefined>;
}

const controllerOf = () => jsonOf<Workload>(["get", "deployment", `${fullname}-controller`, "-n", ns]);
const agentOf = (namespace: string) =>
  jsonOf<Workload>(["get", "daemonset", `${fullname}-agent`, "-n", namespace]);

/** The guest of VM NAME runs as the same QEMU process it did (never restarted). */
function assertSameGuest(namespace: string, name: string, pid: number | undefined, when: string) {
  assert.ok(pid, `${namespace}/${name} had a QEMU process`);
  assert.equal(qemuPid(domainNameOf(namespace, name)), pid, `${namespace}/${name}'s QEMU process ${when}`);
}

async function runningVm(
  namespace: string,
  name: string,
  extra: Record<string, unknown> = {},
): Promise<number> {
  await applyVm(namespace, name, guestVmSpec(guest, { nodeName: node, ...extra }));
  await waitForVm(
    namespace,
    name,
    (vm) => isPrintable("Running")(vm) && readyCondition(vm)?.status === "True",
    "Running and Ready",
    180_000,
  );
  const pid = qemuPid(domainNameOf(namespace, name));
  assert.ok(pid, `${namespace}/${name} runs a QEMU process`);
  return pid;
}

async function domainExists(name: string): Promise<boolean> {
  return virsh("domstate", name).then(
    () => true,
    () => false,
  );
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(500);
  }
}

// One node per machine: with another stack's node running (make local beside the tests), say so.
describe("helm chart on a real node (kubelet, containerd, kube-proxy)", {
  skip: nodeBusyReason(TEST_STACK.stateDir),
}, () => {
  before(async () => {
    const started = Date.now();
    await stackNodeUp(TEST_STACK);
    say(`node up in ${since(started)} s`);
    guest = await ensureGuest();
    let t = Date.now();
    current = await currentRelease();
    say(
      `image ${current.image.reference}: ${(current.image.bytes / 2 ** 20).toFixed(0)} MiB, built/imported in ${since(t)} s`,
    );
    t = Date.now();
    previous = await previousRelease();
    say(
      `previous image ${previous.image.reference} (${PREVIOUS_RELEASE.commit.slice(0, 7)}) in ${since(t)} s`,
    );
    valuesFile = join(TEST_STACK.stateDir, "helm-node-values.yaml");
    await writeFile(valuesFile, yaml.dump(values()));
    for (const n of [vms, doomed]) await testNamespace(n);
    // One operator per cluster: earlier files applied the stack's own identities for their
    // host-process operators, among them a policy letting only that controller set placement
    // labels and finalizers. This release brings its own; later files apply theirs again.
    await kubectl(
      ["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
      await renderIdentities(OPERATOR_NAMESPACE),
    );
  });

  after(async () => {
    await helm(["uninstall", release, "-n", ns, "--wait", "--timeout=2m"]).catch(() => undefined);
    // Guests the uninstall left running, and objects whose finalizers no agent will remove.
    for (const namespace of [vms, doomed]) {
      for (const kind of ["virtualmachines", "vmdisks"]) {
        const { stdout } = await kubectl(["get", kind, "-n", namespace, "-o", "name"]).catch(() => ({
          stdout: "",
        }));
        for (const obj of stdout.split("\n").filter(Boolean)) {
          const name = obj.split("/")[1]!;
          if (kind === "virtualmachines") {
            await virsh("destroy", domainNameOf(namespace, name)).catch(() => undefined);
            await virsh("undefine", domainNameOf(namespace, name), "--nvram").catch(() => undefined);
          }
          await kubectl([
            "patch",
            obj,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
          ]).catch(() => undefined);
        }
      }
      await kubectl(["delete", "namespace", namespace, "--wait=false", "--ignore-not-found"]).catch(
        () => undefined,
      );
    }
    await kubectl(["delete", "namespace", ns, agentNs, "--wait=false", "--ignore-not-found"]).catch(
      () => undefined,
    );
    await stackNodeDown(TEST_STACK).catch(() => undefined);
  });

  let upPid: number;

  it(`the previous release (chart ${PREVIOUS_RELEASE.version}, its image) installs and runs a guest`, async () => {
    // That chart ran the agent beside the controller: the namespace had to be privileged.
    await kubectl(["create", "namespace", ns]);
    await kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"]);
    const t = Date.now();
    await helm([
      "install",
      release,
      previous.chart,
      "-n",
      ns,
      "-f",
      valuesFile,
      "--take-ownership",
      "--wait",
      "--timeout=5m",
      "--post-renderer",
      join(REPO_ROOT, "test", "support", "post-render-agent-root.ts"),
    ]);
    await rolledOut(ns);
    say(`helm install (previous release) to Ready in ${since(t)} s`);
    assert.equal((await agentOf(ns)).status.numberReady, 1);
    upPid = await runningVm(vms, "up");
  });

  it("helm upgrade to this chart: guests keep running, the controller rolls, the agent moves to its own namespace", async () => {
    const before = await controllerOf();
    const t = Date.now();
    await helm(["upgrade", release, current.chart, "-n", ns, "-f", valuesFile, "--wait", "--timeout=5m"]);
    await rolledOut(agentNs);
    say(`helm upgrade to Ready in ${since(t)} s`);
    const controller = await controllerOf();
    assert.ok(
      controller.metadata.generation > before.metadata.generation,
      "the controller's Deployment changed",
    );
    assert.equal(controller.spec.template.spec.containers[0]!.image, current.image.reference);
    assert.equal(controller.status.updatedReplicas, controller.status.replicas, "rolling update complete");
    assert.equal(controller.status.readyReplicas, controller.status.replicas);
    const agent = await agentOf(agentNs);
    assert.equal(agent.status.numberReady, 1, "the agent runs in its own namespace");
    assert.equal(agent.spec.template.spec.containers[0]!.securityContext?.runAsUser, 0);
    await assert.rejects(agentOf(ns), /NotFound/, "no agent is left in the controller's namespace");
    assertSameGuest(vms, "up", upPid, "after the upgrade");
    // The new agent has the guest: a change to the VM reaches libvirt, and back.
    await applyVm(vms, "up", guestVmSpec(guest, { nodeName: node, paused: true }));
    await waitForVm(vms, "up", isPrintable("Paused"), "Paused by the new agent");
    assert.equal((await virsh("domstate", domainNameOf(vms, "up"))).trim(), "paused");
    await applyVm(vms, "up", guestVmSpec(guest, { nodeName: node }));
    await waitForVm(vms, "up", isPrintable("Running"), "Running again");
    assertSameGuest(vms, "up", upPid, "after a pause under the new agent");
  });

  it("the controller's namespace is Pod Security restricted and still admits the controller", async () => {
    await kubectl(["label", "namespace", ns, "--overwrite", "pod-security.kubernetes.io/enforce=restricted"]);
    await kubectl(["rollout", "restart", `deployment/${fullname}-controller`, "-n", ns]);
    await kubectl(["rollout", "status", `deployment/${fullname}-controller`, "-n", ns, "--timeout=180s"]);
    const { stdout } = await kubectl(["get", "namespace", agentNs, "-o", "jsonpath={.metadata.labels}"]);
    assert.match(stdout, /"pod-security.kubernetes.io\/enforce":"privileged"/);
  });

  it("a VM applied with kubectl boots through the chart's agent; kubectl delete removes its domain", async () => {
    await runningVm(vms, "fresh");
    await kubectl(["delete", "vm", "fresh", "-n", vms, "--timeout=120s"]);
    assert.equal(await domainExists(domainNameOf(vms, "fresh")), false, "the domain is gone");
  });

  it("helm upgrade with new values and helm rollback: rolling updates, the guest untouched", async () => {
    const revision = async () =>
      Number(JSON.parse((await helm(["status", release, "-n", ns, "-o", "json"])).stdout).version);
    const first = await revision();
    await helm([
      "upgrade",
      release,
      current.chart,
      "-n",
      ns,
      "-f",
      valuesFile,
      "--set",
      "controller.logLevel=debug,agent.logLevel=debug",
      "--wait",
      "--timeout=5m",
    ]);
    await rolledOut(agentNs);
    const env = async (get: Promise<Workload>) =>
      JSON.stringify((await get).spec.template.spec.containers[0]);
    assert.match(await env(controllerOf()), /"LOG_LEVEL","value":"debug"/);
    await helm(["rollback", release, String(first), "-n", ns, "--wait", "--timeout=5m"]);
    await rolledOut(agentNs);
    assert.match(await env(agentOf(agentNs)), /"LOG_LEVEL","value":"info"/);
    const controller = await controllerOf();
    assert.equal(controller.status.updatedReplicas, controller.status.replicas);
    assertSameGuest(vms, "up", upPid, "after an upgrade and a rollback");
  });

  it("a namespace with VMs and disks is deleted, and the deletion completes", async () => {
    await applyObject("VMDisk", doomed, "data", { provisionedSize: "16Mi", nodeName: node });
    await runningVm(doomed, "doomed", { disks: [{ name: "data", diskRef: { name: "data" } }] });
    const volume = await waitForObject<{ status?: { path?: string } }>(
      "vmdisk",
      doomed,
      "data",
      (d) => !!d?.status?.path,
      "placed",
    );
    const t = Date.now();
    await kubectl(["delete", "namespace", doomed, "--timeout=180s"]);
    say(`namespace with a running VM and a disk deleted in ${since(t)} s`);
    assert.equal(await domainExists(domainNameOf(doomed, "doomed")), false, "the domain is gone");
    await assert.rejects(run("qemu-img", ["info", volume!.status!.path!]), "the volume is gone");
  });

  it("when the only agent stops, its node's VMs turn Unknown (NodeLost), and recover when it is back", async () => {
    // The controller's leader Lease and the agents' heartbeats live in different namespaces now:
    // silence must still count with no agent renewing anywhere.
    const agent = `daemonset/${fullname}-agent`;
    const away = { spec: { template: { spec: { nodeSelector: { "lvo-test/nowhere": "true" } } } } };
    await kubectl(["patch", agent, "-n", agentNs, "--type=strategic", "-p", JSON.stringify(away)]);
    const t = Date.now();
    const lost = (vm: Awaited<ReturnType<typeof getVm>>) =>
      vm?.status?.conditions?.find((c) => c.type === "NodeLost")?.status === "True";
    await waitForVm(vms, "up", lost, "NodeLost", (LOST_AFTER_SECONDS + 60) * 1000);
    say(
      `the lone agent's VM Unknown ${since(t)} s after the agent was removed (limit ${LOST_AFTER_SECONDS} s)`,
    );
    const back = [{ op: "remove", path: "/spec/template/spec/nodeSelector/lvo-test~1nowhere" }];
    await kubectl(["patch", agent, "-n", agentNs, "--type=json", "-p", JSON.stringify(back)]);
    await rolledOut(agentNs);
    await waitForVm(
      vms,
      "up",
      (vm) => !lost(vm) && readyCondition(vm)?.status === "True",
      "Ready again",
      120_000,
    );
    assertSameGuest(vms, "up", upPid, "while its agent was away");
  });

  it("helm uninstall keeps the CRDs (crds.keep) and leaves guests running", async () => {
    await helm(["uninstall", release, "-n", ns, "--wait"]);
    const { stdout } = await kubectl(["get", "crd", "-o", "name"]);
    for (const kind of KINDS) assert.ok(stdout.includes(crdName(kind)), `${crdName(kind)} kept`);
    assert.ok(await kubectl(["get", "vm", "up", "-n", vms]), "the VM object stays");
    assertSameGuest(vms, "up", upPid, "after uninstall");
    await until(
      "the agent's namespace removed",
      async () =>
        !(await kubectl(["get", "namespace", agentNs]).then(
          () => true,
          () => false,
        )),
      120_000,
    );
  });

  it("helm install again (same release and namespace, restricted): Ready, its agent takes the guest the uninstall left, kubectl delete removes it", async () => {
    // The kept CRDs still name this release as their owner: installing it again adopts them.
    const t = Date.now();
    await helm(["install", release, current.chart, "-n", ns, "-f", valuesFile, "--wait", "--timeout=5m"]);
    await rolledOut(agentNs);
    say(`helm install (this chart) to Ready in ${since(t)} s`);
    await waitForVm(vms, "up", (vm) => readyCondition(vm)?.status === "True", "Ready under the new install");
    assertSameGuest(vms, "up", upPid, "adopted by the new install");
    await kubectl(["delete", "vm", "up", "-n", vms, "--timeout=120s"]);
    assert.equal(await domainExists(domainNameOf(vms, "up")), false, "the domain is gone");
    await helm(["uninstall", release, "-n", ns, "--wait"]);
  });

  it("stopping the node leaves no pod, mount, bridge, cgroup or iptables chain behind", async () => {
    const stateDir = TEST_STACK.stateDir;
    const stopped = await stackNodeDown(TEST_STACK);
    assert.deepEqual(stopped.sort(), ["containerd", "kube-proxy", "kubelet"]);
    const mounts = await readFile("/proc/self/mountinfo", "utf8");
    assert.ok(!mounts.includes(join(stateDir, "node")), "nothing mounted under the node's directory");
    const bridge = podNetwork(stateDir, TEST_STACK.node!.index).bridge;
    await assert.rejects(run("ip", ["link", "show", bridge]), `bridge ${bridge} removed`);
    const { stdout: procs } = await run("ps", ["-eo", "args"]);
    assert.ok(!procs.includes(runtimePaths(stateDir).socket), "no containerd or shim of the node runs");
    const cgroup = `libvirt-operator-node-${TEST_STACK.node!.index}`;
    for (const dir of [`/sys/fs/cgroup/memory/${cgroup}`, `/sys/fs/cgroup/${cgroup}`]) {
      assert.ok(!existsSync(dir), `${dir} removed`);
    }
    // The node held the machine's node lock: every KUBE-* chain was its kubelet's or kube-proxy's.
    const network = podNetwork(stateDir, TEST_STACK.node!.index).name;
    for (const table of ["filter", "nat"]) {
      const { stdout } = await run("iptables", ["-t", table, "-S"]);
      assert.ok(!/KUBE-/.test(stdout), `no kubelet or kube-proxy chain in ${table}`);
      assert.ok(!stdout.includes(network), `no CNI rule of the pods' network in ${table}`);
    }
  });
});
