// The cluster's own controllers in the local stack (kube-controller-manager and kube-scheduler,
// no operator): they run under their own identities and survive a second start, ResourceQuota
// counts our kinds, the garbage collector follows ownerReferences, and a deleted namespace is
// emptied and goes away.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { API_VERSION, GROUP } from "../../src/api/names.ts";
import { CONTROLLER_MANAGER, componentKubeconfig, SCHEDULER } from "../../src/cmd/local/control-plane.ts";
import { kubectl as kubectlWith } from "../../src/cmd/local/kube.ts";
import { runningPid } from "../../src/cmd/local/processes.ts";
import { stackUp } from "../../src/cmd/local/stack.ts";
import { kubectl, kubectlError, TEST_STACK, testNamespace, toYaml } from "../support/stack.ts";

const COUNT_VMS = `count/virtualmachines.${GROUP}`;
// Halted: nothing needs to run, and the operator does not run in this file anyway.
const VM_SPEC = { hypervisor: "qemu", memory: "256Mi", runStrategy: "Halted" };
const DISK_SPEC = { provisionedSize: "1Gi" };
const namespaces: string[] = [];

async function namespace(name: string): Promise<string> {
  if (!namespaces.includes(name)) namespaces.push(name);
  return testNamespace(name);
}

// Nothing of ours may linger for the operator tests that run later in this stack.
after(async () => {
  for (const ns of namespaces) {
    await kubectl(["delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=60s"]);
  }
});

function object(kind: string, namespace: string, name: string, rest: Record<string, unknown> = {}) {
  const apiVersion = kind === "ConfigMap" || kind === "ResourceQuota" ? "v1" : API_VERSION;
  return { apiVersion, kind, metadata: { name, namespace }, ...rest };
}

async function create(obj: unknown): Promise<void> {
  await kubectl(["create", "-f", "-"], toYaml(obj));
}

async function getJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  return JSON.parse((await kubectl(["get", ...args, "-o", "json"])).stdout) as T;
}

async function gone(args: string[]): Promise<boolean> {
  return /NotFound|not found/.test(await kubectlError(["get", ...args]));
}

/** Polls CHECK until it holds; fails naming WHAT after TIMEOUTMS. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs / 1000}s`);
    await sleep(250);
  }
  return Date.now() - started;
}

async function quotaStatus(
  ns: string,
): Promise<{ hard?: Record<string, string>; used?: Record<string, string> }> {
  return (await getJson<{ status?: object }>(["resourcequota", "vms", "-n", ns])).status ?? {};
}

describe("kube-controller-manager and kube-scheduler", () => {
  it("authenticate as their own users, not as admin", async () => {
    for (const component of [CONTROLLER_MANAGER, SCHEDULER]) {
      const kubeconfig = componentKubeconfig(TEST_STACK.stateDir, component);
      const { stdout } = await kubectlWith(kubeconfig, ["auth", "whoami", "-o", "json"]);
      const { userInfo } = (
        JSON.parse(stdout) as { status: { userInfo: { username: string; groups?: string[] } } }
      ).status;
      assert.equal(userInfo.username, `system:${component}`);
      assert.ok(!userInfo.groups?.includes("system:masters"), `${component} is no cluster admin`);
    }
  });

  it("keep running when the stack is started again", async () => {
    const pids = () => [CONTROLLER_MANAGER, SCHEDULER].map((n) => runningPid(TEST_STACK.stateDir, n));
    const before = pids();
    assert.ok(
      before.every((p) => p !== undefined),
      "both run",
    );
    await stackUp(TEST_STACK);
    assert.deepEqual(pids(), before);
  });
});

describe("ResourceQuota", () => {
  it("counts VirtualMachines: two are accepted, the API server refuses the third", async () => {
    const ns = await namespace("quota-test");
    await create(object("ResourceQuota", ns, "vms", { spec: { hard: { [COUNT_VMS]: "2" } } }));
    // Quota admission refuses every VM until the quota controller has filled in status.hard.
    await eventually("the quota controller fills in status.hard", async () => {
      return (await quotaStatus(ns)).hard?.[COUNT_VMS] === "2";
    });
    await create(object("VirtualMachine", ns, "vm-1", { spec: VM_SPEC }));
    await create(object("VirtualMachine", ns, "vm-2", { spec: VM_SPEC }));
    const refused = await kubectlError(
      ["create", "-f", "-"],
      toYaml(object("VirtualMachine", ns, "vm-3", { spec: VM_SPEC })),
    );
    const c = COUNT_VMS.replaceAll(".", "\\.");
    assert.match(
      refused,
      new RegExp(`forbidden: exceeded quota: vms, requested: ${c}=1, used: ${c}=2, limited: ${c}=2`),
    );
    assert.ok(await gone(["virtualmachine", "vm-3", "-n", ns]), "vm-3 was not created");

    // Admission only ever adds; giving usage back after a delete is the quota controller's recount.
    await kubectl(["delete", "virtualmachine", "vm-1", "-n", ns, "--wait=true"]);
    await eventually("the quota controller counts one VM after a delete", async () => {
      return (await quotaStatus(ns)).used?.[COUNT_VMS] === "1";
    });
    await create(object("VirtualMachine", ns, "vm-3", { spec: VM_SPEC }));
  });
});

describe("garbage collector", () => {
  it("deletes a ConfigMap whose owner was deleted", async () => {
    const ns = await namespace("gc-test");
    await create(object("ConfigMap", ns, "owner", { data: { a: "1" } }));
    const uid = (await getJson<{ metadata: { uid: string } }>(["configmap", "owner", "-n", ns])).metadata.uid;
    const dependent = object("ConfigMap", ns, "dependent", { data: { b: "2" } });
    (dependent.metadata as Record<string, unknown>).ownerReferences = [
      { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid },
    ];
    await create(dependent);
    await kubectl(["delete", "configmap", "owner", "-n", ns]);
    await eventually("the dependent ConfigMap is gone", () => gone(["configmap", "dependent", "-n", ns]));
  });

  it("foreground deletion of a VM deletes the VMDisk it owns first, then the VM", async () => {
    const ns = await namespace("gc-test");
    await create(object("VirtualMachine", ns, "owner", { spec: VM_SPEC }));
    const uid = (await getJson<{ metadata: { uid: string } }>(["virtualmachine", "owner", "-n", ns])).metadata
      .uid;
    const disk = object("VMDisk", ns, "owned", { spec: DISK_SPEC });
    (disk.metadata as Record<string, unknown>).ownerReferences = [
      {
        apiVersion: API_VERSION,
        kind: "VirtualMachine",
        name: "owner",
        uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ];
    await create(disk);
    // Foreground: the VM waits (finalizer foregroundDeletion) until the collector has deleted
    // the disk; without a garbage collector it would stay forever.
    await kubectl(["delete", "virtualmachine", "owner", "-n", ns, "--cascade=foreground", "--wait=false"]);
    await eventually("the owned VMDisk is gone", () => gone(["vmdisk", "owned", "-n", ns]));
    await eventually("the VM is gone", () => gone(["virtualmachine", "owner", "-n", ns]));
  });
});

describe("namespace deletion", () => {
  it("empties a namespace of objects without finalizers and removes it within a minute", async () => {
    const ns = await namespace("ns-delete-test");
    await create(object("ConfigMap", ns, "settings", { data: { a: "1" } }));
    await create(object("ResourceQuota", ns, "vms", { spec: { hard: { [COUNT_VMS]: "5" } } }));
    await eventually("the quota controller fills in status.hard", async () => {
      return (await quotaStatus(ns)).hard?.[COUNT_VMS] === "5";
    });
    await create(object("VirtualMachine", ns, "vm", { spec: VM_SPEC }));
    await create(object("VMDisk", ns, "disk", { spec: DISK_SPEC }));
    for (const r of ["virtualmachine/vm", "vmdisk/disk"]) {
      const { metadata } = await getJson<{ metadata: { finalizers?: string[] } }>([r, "-n", ns]);
      assert.deepEqual(metadata.finalizers ?? [], [], `${r} has no finalizers (no operator runs here)`);
    }
    await kubectl(["delete", "namespace", ns, "--wait=false"]);
    const took = await eventually("the namespace is gone", () => gone(["namespace", ns]), 60_000);
    process.stderr.write(`# namespace ${ns} deleted in ${(took / 1000).toFixed(1)}s\n`);
  });
});
