// The objects the verbs create, the help text, and kubectl's error lines.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../../src/cli/args.ts";
import {
  buildClone,
  buildRestore,
  buildSnapshot,
  buildTemplateFromVm,
  buildVmsFromTemplate,
  splitList,
} from "../../src/cli/builders.ts";
import { resolveNamespace } from "../../src/cli/client.ts";
import { VERBS } from "../../src/cli/commands.ts";
import { formatError, PluginError } from "../../src/cli/errors.ts";
import { helpText } from "../../src/cli/help.ts";

const now = new Date("2025-03-04T05:06:07.890Z");

describe("objects the verbs create", () => {
  it("snapshot: named after the VM and the time unless --name; only the options given", () => {
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
  it("clone: a VM with spec.source.snapshot and nothing else", () => {
    const c = buildClone("web-test", "s1", "ns");
    assert.deepEqual(c.spec, { source: { snapshot: "s1" } });
    assert.deepEqual([c.kind, c.metadata.name, c.metadata.namespace], ["VirtualMachine", "web-test", "ns"]);
  });
  it("set-as-template: a VMTemplate with spec.source.vmName", () => {
    assert.deepEqual(buildTemplateFromVm("gold", "web", "ns").spec, { source: { vmName: "web" } });
    assert.deepEqual(buildTemplateFromVm("gold", "web", "ns", "d").spec, {
      description: "d",
      source: { vmName: "web" },
    });
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
    assert.equal(vms[0]?.metadata.labels?.["vm.libvirt-operator.io/batch"], "web");
    const one = buildVmsFromTemplate({
      template: "t",
      name: "a",
      namespace: "ns",
      amount: 1,
      start: 1,
      nodes: [],
    });
    assert.deepEqual(one[0]?.spec, { source: { template: "t" } });
    assert.throws(
      () =>
        buildVmsFromTemplate({ template: "t", name: "a", namespace: "ns", amount: 0, start: 1, nodes: [] }),
      UsageError,
    );
  });
  it("splitList drops blanks", () => assert.deepEqual(splitList(" a, b,,c "), ["a", "b", "c"]));
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
    assert.equal(
      formatError({ code: 502, body: "<html>" }),
      "Error from server: the server answered HTTP 502",
    );
    assert.equal(formatError(new PluginError("boom")), "error: boom");
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    assert.match(formatError(refused), /^error: the connection to the server was refused/);
  });
});

describe("help", () => {
  it("lists every verb and says what writes spec", () => {
    const all = helpText();
    for (const verb of VERBS) assert.ok(all.includes(`  ${verb.name} `), verb.name);
    assert.match(all, /Argo CD or Flux/);
  });
  it("explains each verb: usage, GitOps, examples; flags where it has them", () => {
    for (const verb of VERBS) {
      const text = helpText(verb.name.split(" "));
      assert.match(text, /GitOps: /, verb.name);
      assert.match(text, new RegExp(`kubectl vm ${verb.name}`), verb.name);
      assert.match(text, /Examples:\n {2}kubectl vm /, verb.name);
      for (const flag of Object.keys(verb.flags))
        assert.ok(text.includes(`--${flag}`), `${verb.name} --${flag}`);
    }
    assert.match(helpText(["stop"]), /runStrategy Halted/);
    assert.match(helpText(["freeze"]), /not a file-system freeze: see fsfreeze/);
    assert.match(helpText(["fsfreeze"]), /Not the same as freeze/);
    assert.match(helpText(["pause"]), /Changes spec: Argo CD and Flux see drift/);
    assert.match(helpText(["restart"]), /annotations only/);
  });
  it("a group's help shows each sub-verb", () => {
    const disk = helpText(["disk"]);
    for (const sub of ["attach", "activate", "deactivate", "detach"])
      assert.match(disk, new RegExp(`kubectl vm disk ${sub}`));
  });
  it("an unknown verb is a usage error", () => {
    assert.throws(() => helpText(["bogus"]), UsageError);
    assert.throws(() => helpText(["disk", "spin"]), UsageError);
  });
});
