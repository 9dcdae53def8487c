// The plugin's copy of the names it shares with the operator is the operator's (src/cli/contract.ts
// keeps them apart from src/api only to load fast).
import assert from "node:assert/strict";
import { it } from "node:test";
import * as common from "../../src/api/common.ts";
import * as vm from "../../src/api/virtualmachine.ts";
import * as snapshots from "../../src/api/vmsnapshot.ts";
import * as contract from "../../src/cli/contract.ts";

it("every name the plugin uses equals src/api's", () => {
  const api: Record<string, unknown> = { ...common, ...vm, ...snapshots };
  for (const [name, value] of Object.entries(contract)) assert.deepEqual(value, api[name], name);
});

it("the plugin modules import nothing from src/api but types", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const dir = new URL("../../src/cli/", import.meta.url);
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const text = readFileSync(new URL(file, dir), "utf8");
    for (const m of text.matchAll(/^import (.*) from "\.\.\/api\/[^"]+";$/gm))
      assert.match(m[1] ?? "", /^type /, `${file}: ${m[0]} loads TypeBox on every call`);
  }
});
