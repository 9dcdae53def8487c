import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import yaml from "js-yaml";
import { KINDS } from "../../src/api/index.ts";
import { validateSpec } from "../../src/api/validate.ts";
import { VirtualMachineDefinition } from "../../src/api/virtualmachine.ts";
import { VMSnapshotDefinition } from "../../src/api/vmsnapshot.ts";

const examplesDir = join(import.meta.dirname, "..", "..", "examples");

describe("validateSpec", () => {
  it("accepts every example", async () => {
    // Plain YAML files only: a chart (examples/vms-from-template) has its own test.
    for (const file of (await readdir(examplesDir)).filter((f) => f.endsWith(".yaml"))) {
      const docs = yaml.loadAll(await readFile(join(examplesDir, file), "utf8")) as Array<{
        kind: string;
        spec: unknown;
      }>;
      for (const doc of docs) {
        const def = KINDS.find((k) => k.kind === doc.kind);
        assert.ok(def, `${file}: unknown kind ${doc.kind}`);
        assert.deepEqual(validateSpec(def, doc.spec), [], `${file} ${doc.kind}`);
      }
    }
  });

  it("names each bad field", () => {
    const errors = validateSpec(VirtualMachineDefinition, {
      memory: "0Gi",
      cpu: { cores: 0 },
      hypervisor: "xen",
      interfaces: [{ name: "eth0", macAddress: "zz" }],
    });
    assert.deepEqual(errors.sort(), [
      "spec.cpu.cores: must be >= 1",
      "spec.hypervisor: must be one of kvm, qemu",
      'spec.interfaces.0.macAddress: must match pattern "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"',
      "spec.memory: must be a positive quantity such as 1Gi, 512Mi or integer bytes",
    ]);
  });

  it("reports a missing required field", () => {
    assert.deepEqual(validateSpec(VMSnapshotDefinition, {}), ["spec.vmName: Required value"]);
  });
});
