// examples/vms-from-template: the Helm chart that writes N VirtualMachines made from one
// VMTemplate (seed 000's create_multiple_from_template), rendered by the real helm binary.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { API_VERSION, HOST_NAME_MAX, RUN_STRATEGIES } from "../../src/api/names.ts";
import { validateSpec } from "../../src/api/validate.ts";
import { VirtualMachineDefinition } from "../../src/api/virtualmachine.ts";
import { cachedBinary, REPO_ROOT, run } from "../../src/cmd/local/tools.ts";

const chart = join(REPO_ROOT, "examples", "vms-from-template");

interface Vm {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: {
    source?: { template?: string };
    description?: string;
    nodeName?: string;
    runStrategy?: string;
  };
}

let dir = "";

/** `helm template` of the chart with VALUES (a values file, so no --set escaping rules apply). */
async function render(values: Record<string, unknown>): Promise<Vm[]> {
  const file = join(dir, `values-${crypto.randomUUID()}.yaml`);
  await writeFile(file, yaml.dump(values));
  const { stdout } = await run(cachedBinary("helm"), ["template", "web", chart, "-n", "tenant", "-f", file]);
  return (yaml.loadAll(stdout) as Vm[]).filter(Boolean);
}

async function renderError(values: Record<string, unknown>): Promise<string> {
  try {
    await render(values);
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`rendered with ${JSON.stringify(values)}`);
}

/** Each doc a VirtualMachine whose spec passes the CRD's schema (the controller's own check). */
function assertValidVms(docs: Vm[]) {
  for (const doc of docs) {
    assert.equal(doc.apiVersion, API_VERSION, doc.metadata.name);
    assert.equal(doc.kind, "VirtualMachine", doc.metadata.name);
    assert.ok(doc.metadata.name.length <= HOST_NAME_MAX, doc.metadata.name);
    assert.deepEqual(validateSpec(VirtualMachineDefinition, doc.spec), [], doc.metadata.name);
  }
}

describe("examples/vms-from-template chart", () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vms-from-template-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("passes helm lint --strict", async () => {
    await run(cachedBinary("helm"), ["lint", "--strict", chart, "--set", "template=small-debian"]);
  });

  it("writes web-5 … web-14 from the template, alternating over the nodes", async () => {
    const docs = await render({
      template: "small-debian",
      name: "web",
      start: 5,
      amount: 10,
      nodes: ["n1", "n2"],
    });
    assertValidVms(docs);
    assert.deepEqual(
      docs.map((d) => d.metadata.name),
      Array.from({ length: 10 }, (_, i) => `web-${5 + i}`),
    );
    assert.deepEqual(
      docs.map((d) => d.spec.nodeName),
      Array.from({ length: 10 }, (_, i) => (i % 2 ? "n2" : "n1")),
    );
    for (const d of docs) {
      assert.equal(d.spec.source?.template, "small-debian", d.metadata.name);
      // Helm puts them in the release's namespace, where the template must be.
      assert.equal(d.metadata.namespace, undefined);
      assert.equal(d.metadata.labels?.["app.kubernetes.io/instance"], "web");
      assert.equal(d.spec.runStrategy, undefined, "the template's runStrategy unless one is given");
    }
  });

  it("writes none for amount 0", async () => {
    assert.deepEqual(await render({ template: "small-debian", name: "web", start: 5, amount: 0 }), []);
  });

  it("leaves placement to the operator without nodes, and names the VMs after the release", async () => {
    const docs = await render({ template: "small-debian", amount: 3 });
    assertValidVms(docs);
    assert.deepEqual(
      docs.map((d) => d.metadata.name),
      ["web-1", "web-2", "web-3"],
    );
    for (const d of docs) assert.equal("nodeName" in d.spec, false, d.metadata.name);
  });

  it("spreads unevenly when the VMs do not divide over the nodes", async () => {
    const docs = await render({ template: "t", name: "db", start: 0, amount: 5, nodes: ["a", "b", "c"] });
    assert.deepEqual(
      docs.map((d) => [d.metadata.name, d.spec.nodeName]),
      [
        ["db-0", "a"],
        ["db-1", "b"],
        ["db-2", "c"],
        ["db-3", "a"],
        ["db-4", "b"],
      ],
    );
  });

  it("quotes what it is given: a description with quotes, a colon and YAML syntax stays one string", async () => {
    const description = `He said "hi": {a: [1, 2]} # not a comment\n- not a list\\n 'single' \u00e9 & <b>`;
    const docs = await render({
      template: "small-debian",
      name: "web",
      amount: 2,
      description,
      runStrategy: "Halted",
      nodes: ["n1"],
    });
    assertValidVms(docs);
    for (const d of docs) {
      assert.equal(d.spec.description, description);
      assert.equal(d.spec.runStrategy, "Halted");
      assert.equal(d.spec.nodeName, "n1");
      assert.deepEqual(Object.keys(d.spec).sort(), ["description", "nodeName", "runStrategy", "source"]);
    }
  });

  it("refuses a missing template, a negative amount, a bad name or node and an unknown runStrategy", async () => {
    assert.match(await renderError({ amount: 1 }), /template: the VMTemplate to make the VMs from/);
    assert.match(await renderError({ template: "t", amount: -1 }), /at '\/amount/);
    assert.match(await renderError({ template: "t", amount: 1.5 }), /at '\/amount/);
    assert.match(await renderError({ template: "t", name: "Web: x" }), /at '\/name/);
    assert.match(await renderError({ template: "t", nodes: ['n1"\nx: y'] }), /at '\/nodes/);
    assert.match(await renderError({ template: "t", runStrategy: "Sometimes" }), /at '\/runStrategy/);
    assert.match(
      await renderError({ template: "t", amonut: 3 }),
      /additional properties 'amonut' not allowed/,
    );
  });

  it("offers the runStrategies the API has", async () => {
    const schema = JSON.parse(await readFile(join(chart, "values.schema.json"), "utf8")) as {
      properties: { runStrategy: { enum: string[] } };
    };
    assert.deepEqual(schema.properties.runStrategy.enum, ["", ...RUN_STRATEGIES]);
  });
});
