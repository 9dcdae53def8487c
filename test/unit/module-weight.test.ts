// What each process loads. The names every process shares with the CRDs come from
// src/api/names.ts, which imports nothing but types; the schemas (TypeBox, every kind built at
// load) are for the CRD generator and the validators only: they would cost each controller and
// node agent ~4 MiB of memory and each `kubectl vm` command ~150 ms. The node agent does not load
// the snapshot schedule's cron parser (and its date library) either. And no process imports
// node:http or node:https as ESM (src/kube/node-http.ts says why).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, resolve } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");

/**
 * Every module FILE loads when run, as "src/…" paths, package names and the node: modules it
 * imports as ESM (imports of types only are erased).
 */
function loads(file: string, seen = new Set<string>()): Set<string> {
  const path = resolve(SRC, file);
  const text = readFileSync(path, "utf8");
  const statements =
    /^(?:import|export)\s+(?!type\s)(?:[^;]*?\sfrom\s+)?"([^"]+)";$|(?<!typeof )\bimport\("([^"]+)"\)/gms;
  for (const m of text.matchAll(statements)) {
    const spec = m[1] ?? m[2] ?? "";
    if (spec.startsWith("node:") || builtinModules.includes(spec)) {
      seen.add(spec.startsWith("node:") ? spec : `node:${spec}`);
      continue;
    }
    if (!spec.startsWith(".")) {
      seen.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec));
      continue;
    }
    const target = resolve(dirname(path), spec).slice(SRC.length + 1);
    if (seen.has(`src/${target}`)) continue;
    seen.add(`src/${target}`);
    loads(target, seen);
  }
  return seen;
}

it("src/api/names.ts imports nothing but types", () => {
  for (const m of readFileSync(resolve(SRC, "api/names.ts"), "utf8").matchAll(
    /^import (.*) from "[^"]+";$/gm,
  ))
    assert.match(m[1] ?? "", /^type /, m[0]);
});

it("the node agent loads no schema, no cron parser and no ESM node:http(s)", () => {
  const agent = loads("cmd/agent.ts");
  assert.ok(
    agent.has("src/api/names.ts") && agent.has("prom-client"),
    "the walk follows the agent's imports",
  );
  for (const heavy of [
    "@sinclair/typebox",
    "ajv",
    "cron-parser",
    "src/api/virtualmachine.ts",
    "src/api/common.ts",
    "node:http",
    "node:https",
  ])
    assert.ok(!agent.has(heavy), `the agent loads ${heavy}`);
});

it("the controller and kubectl vm load no schema and no ESM node:http(s)", () => {
  for (const entry of ["cmd/controller.ts", "cmd/kubectl-vm.ts", "cmd/kubectl-vm-complete.ts"]) {
    const modules = loads(entry);
    assert.ok(modules.has("src/api/names.ts"), `the walk follows ${entry}'s imports`);
    for (const heavy of ["@sinclair/typebox", "ajv", "src/api/virtualmachine.ts", "node:http", "node:https"])
      assert.ok(!modules.has(heavy), `${entry} loads ${heavy}`);
  }
});
