import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Type } from "@sinclair/typebox";
import { CATEGORY, Quantity, StringEnum } from "../../src/api/common.ts";
import { buildCrd, toOpenApi } from "../../src/api/crd.ts";
import { KINDS } from "../../src/api/index.ts";
import { GROUP } from "../../src/api/names.ts";
import { generatedFiles } from "../../src/api/render.ts";

const root = join(import.meta.dirname, "..", "..");

interface Schema {
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  "x-kubernetes-list-type"?: string;
}
interface CrdShape {
  spec: {
    group: string;
    names: { categories: string[]; shortNames: string[] };
    versions: Array<{
      subresources: unknown;
      additionalPrinterColumns: Array<{ name: string }>;
      schema: { openAPIV3Schema: Schema };
    }>;
  };
}

describe("toOpenApi", () => {
  it("turns a quantity into int-or-string with its pattern and minimum", () => {
    const out = toOpenApi(Quantity("Memory."));
    assert.equal(out["x-kubernetes-int-or-string"], true);
    assert.deepEqual(out.anyOf, [{ type: "integer" }, { type: "string" }]);
    assert.equal(out.minimum, 1);
    assert.ok(typeof out.pattern === "string");
    assert.equal(out.type, undefined, "int-or-string must not carry a type");
  });

  it("turns a record into additionalProperties", () => {
    const out = toOpenApi(Type.Record(Type.String(), Type.String(), { description: "labels" }));
    assert.deepEqual(out.additionalProperties, { type: "string" });
    assert.equal(out.patternProperties, undefined);
  });

  it("keeps enums, defaults and required fields", () => {
    const out = toOpenApi(
      Type.Object({
        a: StringEnum(["x", "y"] as const, { default: "x", description: "A." }),
        b: Type.Optional(Type.Integer({ minimum: 0 })),
      }),
    );
    assert.deepEqual(out.required, ["a"]);
    assert.deepEqual((out.properties as Record<string, unknown>).a, {
      type: "string",
      description: "A.",
      enum: ["x", "y"],
      default: "x",
    });
  });

  it("refuses unions a structural schema cannot express", () => {
    assert.throws(
      () => toOpenApi(Type.Union([Type.String(), Type.Boolean()])),
      /unsupported schema construct/,
    );
  });
});

describe("CRDs", () => {
  for (const def of KINDS) {
    it(`${def.kind}: group, category, short names, status subresource, printer columns`, () => {
      const crd = buildCrd(def) as unknown as CrdShape;
      assert.equal(crd.spec.group, GROUP);
      assert.deepEqual(crd.spec.names.categories, [CATEGORY]);
      assert.ok(crd.spec.names.shortNames.length > 0);
      const version = crd.spec.versions[0]!;
      assert.deepEqual(version.subresources, { status: {} });
      assert.ok(version.additionalPrinterColumns.some((c) => c.name === "Age"));
      const status = version.schema.openAPIV3Schema.properties?.status?.properties ?? {};
      assert.equal(status.conditions?.["x-kubernetes-list-type"], "map");
      assert.ok(status.observedGeneration, "every kind reports observedGeneration");
    });

    it(`${def.kind}: every field has a description for kubectl explain`, () => {
      const missing: string[] = [];
      const walk = (schema: Schema, path: string) => {
        if (!schema.description) missing.push(path);
        for (const [name, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${name}`);
        if (schema.items?.properties) walk(schema.items, `${path}[]`);
      };
      walk(toOpenApi(def.spec) as Schema, "spec");
      walk(toOpenApi(def.status) as Schema, "status");
      // Condition items describe themselves; everything else must say what it is.
      assert.deepEqual(missing, []);
    });
  }
});

describe("generated files", () => {
  it("crds/ and the chart's CRD templates match src/api (run make generate)", async () => {
    const drifted: string[] = [];
    for (const [path, content] of generatedFiles()) {
      const onDisk = await readFile(join(root, path), "utf8").catch(() => "<missing>");
      if (onDisk !== content) drifted.push(path);
    }
    assert.deepEqual(drifted, []);
  });

  it("the chart wraps CRDs in crds.enabled and keeps them when crds.keep", () => {
    const chartFiles = [...generatedFiles()].filter(([p]) => p.startsWith("helm/"));
    assert.equal(chartFiles.length, KINDS.length);
    for (const [, content] of chartFiles) {
      assert.match(content, /^\{\{- if \.Values\.crds\.enabled \}\}$/m);
      assert.match(
        content,
        /\{\{- if \.Values\.crds\.keep \}\}\n {2}annotations:\n {4}helm\.sh\/resource-policy: keep/,
      );
    }
  });
});
