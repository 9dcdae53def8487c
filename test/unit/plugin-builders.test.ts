import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
  type VirtualMachine,
} from "../../src/api/virtualmachine.ts";
import { UsageError } from "../../src/cli/args.ts";
import {
  buildRestore,
  buildSnapshot,
  buildVmsFromTemplate,
  powerPatch,
  statusRow,
} from "../../src/cli/builders.ts";
import { formatError, resolveNamespace } from "../../src/cli/client.ts";
import { helpText } from "../../src/cli/help.ts";

const now = new Date("2025-03-04T05:06:07.890Z");
const vm = (runStrategy?: VirtualMachine["spec"]["runStrategy"]): VirtualMachine => ({
  apiVersion: "vm.libvirt-operator.io/v1alpha1",
  kind: "VirtualMachine",
  metadata: { name: "web", namespace: "ns", creationTimestamp: "2025-03-04T04:06:07Z" },
  spec: runStrategy ? { runStrategy } : {},
});

describe("power patches", () => {
  const stamp = now.toISOString();
  it("Manual VMs get start/stop requests as annotations", () => {
    assert.deepEqual(powerPatch("start", vm("Manual"), now), {
      metadata: { annotations: { [START_ANNOTATION]: stamp } },
    });
    assert.deepEqual(powerPatch("stop", vm("Manual"), now), {
      metadata: { annotations: { [STOP_ANNOTATION]: stamp } },
    });
  });
  it("other strategies: stop sets Halted, start turns Halted into Always (like virtctl)", () => {
    assert.deepEqual(powerPatch("stop", vm(), now), { spec: { runStrategy: "Halted" } });
    assert.deepEqual(powerPatch("stop", vm("RerunOnFailure"), now), { spec: { runStrategy: "Halted" } });
    assert.deepEqual(powerPatch("start", vm("Halted"), now), { spec: { runStrategy: "Always" } });
    assert.throws(() => powerPatch("start", vm("Always"), now), UsageError);
    assert.throws(() => powerPatch("stop", vm("Halted"), now), UsageError);
  });
  it("restart annotates, pause/unpause set spec.paused", () => {
    assert.deepEqual(powerPatch("restart", vm(), now), {
      metadata: { annotations: { [RESTART_ANNOTATION]: stamp } },
    });
    assert.deepEqual(powerPatch("pause", vm(), now), { spec: { paused: true } });
    assert.deepEqual(powerPatch("unpause", vm(), now), { spec: { paused: false } });
  });
});

describe("objects the verbs create", () => {
  it("snapshot: named after the VM and the time unless --name", () => {
    const s = buildSnapshot("web", "ns", { memory: true, sticky: false }, now);
    assert.equal(s.metadata.name, "web-20250304-050607");
    assert.deepEqual(s.spec, { vmName: "web", memory: true });
    assert.equal(buildSnapshot("web", "ns", { name: "s1" }, now).metadata.name, "s1");
  });
  it("restore", () => {
    const r = buildRestore("web", "s1", "ns", now);
    assert.deepEqual(r.spec, { vmName: "web", snapshotName: "s1" });
    assert.equal(r.metadata.name, "web-restore-20250304-050607");
  });
  it("create-from-template: N VMs from START, round-robin over nodes", () => {
    const vms = buildVmsFromTemplate({
      template: "t",
      name: "web",
      namespace: "ns",
      amount: 3,
      start: 5,
      nodes: ["n1", "n2"],
      description: "d",
    });
    assert.deepEqual(
      vms.map((v) => v.metadata.name),
      ["web-5", "web-6", "web-7"],
    );
    assert.deepEqual(
      vms.map((v) => v.spec.nodeName),
      ["n1", "n2", "n1"],
    );
    assert.deepEqual(vms[0]?.spec, { source: { template: "t" }, description: "d", nodeName: "n1" });
    assert.equal(vms[0]?.metadata.labels?.["app.kubernetes.io/instance"], "web");
    assert.equal(
      buildVmsFromTemplate({ template: "t", name: "a", namespace: "ns", amount: 1, start: 1, nodes: [] })[0]
        ?.spec.nodeName,
      undefined,
    );
    assert.throws(
      () =>
        buildVmsFromTemplate({ template: "t", name: "a", namespace: "ns", amount: 0, start: 1, nodes: [] }),
      UsageError,
    );
  });
});

describe("status rows", () => {
  it("name, status, node, addresses, status change, age", () => {
    const v = vm("Always");
    v.status = {
      printableStatus: "Running",
      nodeName: "n1",
      interfaces: [{ name: "a", ipv4: "10.0.0.2" }, { name: "b" }, { name: "c", ipv4: "10.0.1.2" }],
      statusChangedAt: "2025-03-04T05:00:00Z",
    };
    assert.deepEqual(statusRow(v, now), ["web", "Running", "n1", "10.0.0.2,10.0.1.2", "6m7s", "60m"]);
    assert.equal(statusRow(v, now, true)[6], "Always");
  });
});

describe("client helpers", () => {
  it("namespace: flag, else context's, else default", () => {
    assert.equal(resolveNamespace("a", "b"), "a");
    assert.equal(resolveNamespace(undefined, "b"), "b");
    assert.equal(resolveNamespace(undefined, undefined), "default");
  });
  it("errors print like kubectl's", () => {
    const notFound = {
      code: 404,
      body: JSON.stringify({
        kind: "Status",
        reason: "NotFound",
        message: 'virtualmachines.vm.libvirt-operator.io "x" not found',
      }),
    };
    assert.equal(
      formatError(notFound),
      'Error from server (NotFound): virtualmachines.vm.libvirt-operator.io "x" not found',
    );
    assert.equal(
      formatError({ code: 403, body: { reason: "Forbidden", message: "no" } }),
      "Error from server (Forbidden): no",
    );
    assert.equal(formatError(new Error("boom")), "error: boom");
  });
});

describe("help", () => {
  it("lists every verb and explains one", () => {
    assert.match(helpText(), /create-from-template/);
    assert.match(helpText("stop"), /runStrategy Halted/);
    assert.throws(() => helpText("bogus"), UsageError);
  });
});
