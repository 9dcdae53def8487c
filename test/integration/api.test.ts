// The API as the real kube-apiserver serves it: examples apply, bad input is rejected with
// a message naming the field, and kubectl explain shows our descriptions.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { KINDS } from "../../src/api/index.ts";
import { API_VERSION, HOST_NAME_MAX, VirtualMachineKind } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { StatusWriter } from "../../src/controllers/status-writer.ts";
import { loadKubeconfig } from "../../src/kube/kubeconfig.ts";
import { connectKube } from "../../src/runtime/kube.ts";
import { KUBECONFIG, kubectl, kubectlError, testNamespace, toYaml } from "../support/stack.ts";

const examplesDir = join(import.meta.dirname, "..", "..", "examples");
let ns = "";

before(async () => {
  ns = await testNamespace("api-test");
});

// Nothing of ours may linger for the operator tests that run later in this stack.
after(async () => {
  await kubectl([
    "delete",
    "virtualmachines,vmdisks,vmsnapshots,vmrestores,vmtemplates",
    "--all",
    "-n",
    ns,
    "--wait=true",
  ]);
});

/** Every leaf of EXPECTED is present with the same value in ACTUAL (the server adds defaults). */
function assertContains(actual: unknown, expected: unknown, path = "") {
  if (expected !== null && typeof expected === "object") {
    assert.ok(actual !== null && typeof actual === "object", `${path} missing`);
    for (const [k, v] of Object.entries(expected)) {
      assertContains((actual as Record<string, unknown>)[k], v, `${path}.${k}`);
    }
  } else {
    assert.equal(actual, expected, path);
  }
}

describe("examples", () => {
  it("every file in examples/ applies server-side and reads back", async () => {
    const files = (await readdir(examplesDir)).filter((f) => f.endsWith(".yaml"));
    assert.ok(files.length >= 5);
    for (const file of files) {
      const text = await readFile(join(examplesDir, file), "utf8");
      await kubectl(["apply", "--server-side", "-n", ns, "-f", "-"], text);
      for (const doc of yaml.loadAll(text) as Array<{
        kind: string;
        metadata: { name: string };
        spec: unknown;
      }>) {
        const { stdout } = await kubectl(["get", "-n", ns, `${doc.kind}/${doc.metadata.name}`, "-o", "json"]);
        assertContains(JSON.parse(stdout).spec, doc.spec, `${file} ${doc.kind}/${doc.metadata.name} spec`);
      }
    }
    const { stdout } = await kubectl(["get", "libvirt", "-n", ns, "-o", "name"]);
    assert.ok(
      stdout.split("\n").filter(Boolean).length >= files.length,
      "kubectl get libvirt lists every kind",
    );
  });
});

interface BadCase {
  title: string;
  kind: string;
  spec: Record<string, unknown>;
  /** When set, SPEC is created first and this update must be rejected. */
  update?: Record<string, unknown>;
  name?: string;
  /** The field the message must name, and words that say why. */
  field: string;
  why: RegExp;
}

const vm = (extra: Record<string, unknown> = {}) => ({ memory: "256Mi", hypervisor: "qemu", ...extra });
const disk = (extra: Record<string, unknown> = {}) => ({ provisionedSize: "10Gi", ...extra });
const uuid = "6f1c2a3e-0b7d-4c55-9e3f-2a1b0c9d8e7f";

const BAD: BadCase[] = [
  {
    title: "a name too long for the node's files",
    kind: "VirtualMachine",
    name: "a".repeat(240),
    spec: vm(),
    field: "metadata.name",
    why: new RegExp(`at most ${HOST_NAME_MAX} characters.*255-byte limit`),
  },
  {
    title: "a name too long for the node's files",
    kind: "VMDisk",
    name: "d".repeat(HOST_NAME_MAX + 1),
    spec: disk(),
    field: "metadata.name",
    why: new RegExp(`at most ${HOST_NAME_MAX} characters`),
  },
  {
    title: "unknown hypervisor",
    kind: "VirtualMachine",
    spec: vm({ hypervisor: "xen" }),
    field: "spec.hypervisor",
    why: /Unsupported value: "xen"/,
  },
  {
    title: "unknown runStrategy",
    kind: "VirtualMachine",
    spec: vm({ runStrategy: "Sometimes" }),
    field: "spec.runStrategy",
    why: /Unsupported value/,
  },
  {
    title: "zero cores",
    kind: "VirtualMachine",
    spec: vm({ cpu: { cores: 0 } }),
    field: "spec.cpu.cores",
    why: /greater than or equal to 1/,
  },
  {
    title: "negative cores",
    kind: "VirtualMachine",
    spec: vm({ cpu: { cores: -2 } }),
    field: "spec.cpu.cores",
    why: /greater than or equal to 1/,
  },
  {
    title: "zero memory",
    kind: "VirtualMachine",
    spec: vm({ memory: 0 }),
    field: "spec.memory",
    why: /greater than or equal to 1/,
  },
  {
    title: "negative memory quantity",
    kind: "VirtualMachine",
    spec: vm({ memory: "-1Gi" }),
    field: "spec.memory",
    why: /should match/,
  },
  {
    title: "memory that is no quantity",
    kind: "VirtualMachine",
    spec: vm({ memory: "lots" }),
    field: "spec.memory",
    why: /should match/,
  },
  {
    title: "missing memory",
    kind: "VirtualMachine",
    spec: { hypervisor: "qemu" },
    field: "spec.memory",
    why: /Required value/,
  },
  {
    title: "unknown field",
    kind: "VirtualMachine",
    spec: vm({ colour: "blue" }),
    field: "spec.colour",
    why: /field not declared in schema|unknown field/,
  },
  {
    title: "malformed uuid",
    kind: "VirtualMachine",
    spec: vm({ uuid: "not-a-uuid" }),
    field: "spec.uuid",
    why: /should match/,
  },
  {
    title: "changing uuid",
    kind: "VirtualMachine",
    spec: vm({ uuid }),
    update: vm({ uuid: uuid.replace("6f", "7f") }),
    field: "spec.uuid",
    why: /immutable/,
  },
  {
    title: "adding uuid later",
    kind: "VirtualMachine",
    spec: vm(),
    update: vm({ uuid }),
    field: "spec.uuid",
    why: /cannot be added or removed/,
  },
  {
    title: "unknown disk bus",
    kind: "VirtualMachine",
    spec: vm({ disks: [{ name: "root", diskRef: { name: "d" }, bus: "usb" }] }),
    field: "spec.disks[0].bus",
    why: /Unsupported value: "usb"/,
  },
  {
    title: "malformed MAC",
    kind: "VirtualMachine",
    spec: vm({ interfaces: [{ name: "eth0", macAddress: "52:54:00:zz:00:01" }] }),
    field: "spec.interfaces[0].macAddress",
    why: /should match/,
  },
  {
    title: "two sources",
    kind: "VirtualMachine",
    spec: vm({ source: { template: "t", snapshot: "s" } }),
    field: "spec.source",
    why: /exactly one of template or snapshot/,
  },
  {
    title: "changing source",
    kind: "VirtualMachine",
    spec: vm({ source: { template: "t" } }),
    update: vm({ source: { template: "u" } }),
    field: "spec.source",
    why: /immutable/,
  },
  {
    title: "negative grace period",
    kind: "VirtualMachine",
    spec: vm({ shutdown: { gracePeriodSeconds: -1 } }),
    field: "spec.shutdown.gracePeriodSeconds",
    why: /greater than or equal to 0/,
  },
  {
    title: "cputune period too short",
    kind: "VirtualMachine",
    spec: vm({ cpu: { cputune: { period: 10 } } }),
    field: "spec.cpu.cputune.period",
    why: /greater than or equal to 1000/,
  },
  {
    title: "zero disk size",
    kind: "VMDisk",
    spec: disk({ provisionedSize: "0" }),
    field: "spec.provisionedSize",
    why: /should match/,
  },
  {
    title: "shrinking a disk",
    kind: "VMDisk",
    spec: disk(),
    update: disk({ provisionedSize: "5Gi" }),
    field: "spec.provisionedSize",
    why: /can only grow/,
  },
  {
    title: "unknown disk format",
    kind: "VMDisk",
    spec: disk({ format: "vmdk" }),
    field: "spec.format",
    why: /Unsupported value: "vmdk"/,
  },
  {
    title: "changing disk format",
    kind: "VMDisk",
    spec: disk({ format: "qcow2" }),
    update: disk({ format: "raw" }),
    field: "spec.format",
    why: /immutable/,
  },
  {
    title: "pool name with a path",
    kind: "VMDisk",
    spec: disk({ storagePool: "../etc" }),
    field: "spec.storagePool",
    why: /should match/,
  },
  {
    title: "image from ftp",
    kind: "VMDisk",
    spec: disk({ source: { image: { url: "ftp://example.org/x.img" } } }),
    field: "spec.source.image.url",
    why: /should match/,
  },
  {
    title: "two disk sources",
    kind: "VMDisk",
    spec: disk({ source: { blank: {}, disk: { name: "a" } } }),
    field: "spec.source",
    why: /at most one/,
  },
  {
    title: "changing what a snapshot holds",
    kind: "VMSnapshot",
    spec: { vmName: "web", memory: true },
    update: { vmName: "web", memory: false },
    field: "spec.memory",
    why: /immutable/,
  },
  {
    title: "adding to a snapshot later",
    kind: "VMSnapshot",
    spec: { vmName: "web" },
    update: { vmName: "web", consistent: true },
    field: "spec.consistent",
    why: /cannot be added or removed/,
  },
  {
    title: "a snapshot of another VM",
    kind: "VMSnapshot",
    spec: { vmName: "web" },
    update: { vmName: "db" },
    field: "spec.vmName",
    why: /immutable/,
  },
  {
    title: "a snapshot deadline that is no duration",
    kind: "VMSnapshot",
    spec: { vmName: "web", failureDeadline: "5 minutes" },
    field: "spec.failureDeadline",
    why: /should match/,
  },
  {
    title: "a display name with a slash",
    kind: "VMSnapshot",
    spec: { vmName: "web", displayName: "Before_Upgrade/2" },
    field: "spec.displayName",
    why: /should match/,
  },
  {
    title: "snapshot without vmName",
    kind: "VMSnapshot",
    spec: { memory: true },
    field: "spec.vmName",
    why: /Required value/,
  },
  {
    title: "restore to a badly named snapshot",
    kind: "VMRestore",
    spec: { vmName: "web", snapshotName: "bad/name" },
    field: "spec.snapshotName",
    why: /should match/,
  },
  {
    title: "template with both template and source",
    kind: "VMTemplate",
    spec: { template: { memory: "1Gi" }, source: { vmName: "web" } },
    field: "spec",
    why: /exactly one of template or source/,
  },
  {
    title: "template disk of size zero",
    kind: "VMTemplate",
    spec: { template: { memory: "1Gi", disks: [{ name: "root", size: 0 }] } },
    field: "spec.template.disks[0].size",
    why: /greater than or equal to 1/,
  },
  {
    title: "template shape without memory",
    kind: "VMTemplate",
    spec: { template: { hypervisor: "qemu" } },
    field: "spec.template.memory",
    why: /Required value/,
  },
  {
    title: "prefetch nodes for a template made from a VM",
    kind: "VMTemplate",
    spec: { source: { vmName: "web" }, prefetchNodes: ["n1"] },
    field: "spec.prefetchNodes",
    why: /spec.template/,
  },
  {
    title: "a template name too long to label its bases",
    kind: "VMTemplate",
    name: "t".repeat(64),
    spec: { template: { memory: "1Gi" } },
    field: "metadata.name",
    why: /at most 63 characters/,
  },
  {
    title: "a raw linked clone",
    kind: "VMDisk",
    spec: { provisionedSize: "1Gi", format: "raw", source: { disk: { name: "base", linked: true } } },
    field: "spec.format",
    why: /linked clone/,
  },
];

describe("bad manifests are rejected by the API server, naming the field", () => {
  BAD.forEach((c, i) => {
    it(`${c.kind}: ${c.title}`, async () => {
      const obj = (spec: Record<string, unknown>) =>
        toYaml({
          apiVersion: API_VERSION,
          kind: c.kind,
          metadata: { name: c.name ?? `bad-${i}`, namespace: ns },
          spec,
        });
      const apply = ["apply", "--server-side", "--field-manager=test", "-f", "-"];
      if (c.update) {
        assert.equal(await kubectlError(apply, obj(c.spec)), "", "the original object is valid");
      }
      const message = await kubectlError(apply, obj(c.update ?? c.spec));
      assert.notEqual(message, "", "the API server accepted it");
      assert.ok(message.includes(c.field), `message names ${c.field}: ${message}`);
      assert.match(message, c.why);
    });
  });
});

it("a snapshot's sticky flag changes after creation, and its deadline defaults to 5m", async () => {
  const obj = (sticky: boolean) =>
    toYaml({
      apiVersion: API_VERSION,
      kind: "VMSnapshot",
      metadata: { name: "keep-me", namespace: ns },
      spec: { vmName: "web", displayName: "Before_Upgrade.1", sticky },
    });
  const apply = ["apply", "--server-side", "--field-manager=test", "-f", "-"];
  assert.equal(await kubectlError(apply, obj(false)), "");
  assert.equal(await kubectlError(apply, obj(true)), "");
  const { stdout } = await kubectl(["get", "vmsnapshot", "keep-me", "-n", ns, "-o", "json"]);
  const spec = JSON.parse(stdout).spec;
  assert.equal(spec.sticky, true);
  assert.equal(spec.failureDeadline, "5m");
  await kubectl(["delete", "vmsnapshot", "keep-me", "-n", ns, "--wait=true", "--timeout=30s"]);
});

it("a VM and a disk with names of the longest length allowed are accepted", async () => {
  for (const [kind, spec] of [
    ["VirtualMachine", vm()],
    ["VMDisk", disk()],
  ] as const) {
    const name = `${kind.toLowerCase()}-`.padEnd(HOST_NAME_MAX, "x");
    const obj = { apiVersion: API_VERSION, kind, metadata: { name, namespace: ns }, spec };
    assert.equal(await kubectlError(["apply", "--server-side", "-f", "-"], toYaml(obj)), "");
    await kubectl(["delete", kind, name, "-n", ns, "--wait=true"]);
  }
});

describe("kubectl explain", () => {
  const fields: Record<string, string[]> = {
    VirtualMachine: ["spec", "cpu"],
    VMDisk: ["spec", "provisionedSize"],
    VMSnapshot: ["spec", "memory"],
    VMRestore: ["spec", "snapshotName"],
    VMTemplate: ["spec", "template"],
  };
  for (const def of KINDS) {
    it(`${def.singular}.${fields[def.kind]!.join(".")} prints our description`, async () => {
      const path = fields[def.kind]!;
      let schema = def.spec as unknown as { description: string; properties?: Record<string, unknown> };
      for (const p of path.slice(1)) schema = schema.properties![p] as typeof schema;
      const { stdout } = await kubectl(["explain", `${def.singular}.${path.join(".")}`]);
      const firstWords = schema.description.split(" ").slice(0, 4).join(" ");
      assert.ok(
        stdout.replace(/\s+/g, " ").includes(firstWords),
        `explain shows "${firstWords}":\n${stdout}`,
      );
    });
  }

  it("kubectl explain virtualmachine prints the kind's description", async () => {
    const { stdout } = await kubectl(["explain", "virtualmachine"]);
    assert.match(stdout.replace(/\s+/g, " "), /A virtual machine run by libvirt/);
  });
});

describe("status writes guarded by a resourceVersion", () => {
  it("a word said on an older version of the object is refused, and what was written since stands", async () => {
    const kube = await connectKube(undefined, loadKubeconfig([KUBECONFIG]));
    try {
      await kubectl(["apply", "--server-side", "-f", "-"], toYaml(guardedVm()));
      const { stdout } = await kubectl(["get", "vm", "guarded", "-n", ns, "-o", "json"]);
      const judged = JSON.parse(stdout) as VirtualMachine & { metadata: { name: string } };
      const writer = new StatusWriter(kube, { kind: VirtualMachineKind, fieldManager: "api-test-guarded" });
      assert.equal(await writer.writeIfUnchanged(judged, { printableStatus: "Provisioning" }), true);
      // The same version judged again: the object changed since (the write above).
      assert.equal(await writer.writeIfUnchanged(judged, { printableStatus: "Stopped" }), false);
      const after = JSON.parse((await kubectl(["get", "vm", "guarded", "-n", ns, "-o", "json"])).stdout);
      assert.equal(after.status?.printableStatus, "Provisioning");
    } finally {
      kube.http.close();
    }
  });
});

function guardedVm() {
  return {
    apiVersion: API_VERSION,
    kind: "VirtualMachine",
    metadata: { name: "guarded", namespace: ns },
    spec: { memory: "64Mi", runStrategy: "Halted" },
  };
}
