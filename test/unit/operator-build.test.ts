// The compiled controller and agent (tsconfig.build.json), which the image and the chart run:
// tsc emits every module they import with .js specifiers that resolve, and both processes load
// the whole module graph and reach their start-up checks (ESM links every import before the
// entry point runs), as node dist/cmd/*.js does in the image.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  compileOperator,
  operatorBuild,
  operatorDistDir,
  operatorEntry,
} from "../../src/cmd/local/operator-build.ts";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".js"))
    .map((f) => join(dir, f));
}

/** The relative module specifiers of a compiled module: static imports, re-exports, import(). */
function relativeSpecifiers(code: string): string[] {
  const found: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)["'](\.{1,2}\/[^"']+)["']/gm))
    found.push(m[1]!);
  return found;
}

/** The entry points the chart's templates start (their `args`). */
function chartEntries(): string[] {
  const templates = join(REPO_ROOT, "helm", "libvirt-operator", "templates");
  const entries: string[] = [];
  for (const file of ["controller-deployment.yaml", "agent-daemonset.yaml"]) {
    const text = readFileSync(join(templates, file), "utf8");
    const args = /args: \[([^\]]*)\]/.exec(text)?.[1];
    assert.ok(args, `${file} has no args`);
    const entry = args
      .split(",")
      .map((a) => a.trim().replace(/^"|"$/g, ""))
      .at(-1)!;
    entries.push(entry);
  }
  return entries;
}

describe("OPERATOR_BUILD and OPERATOR_DIST", () => {
  it("run the sources unless js is asked for, from dist/ unless another build is named; anything else is refused", () => {
    assert.equal(operatorBuild({}), "ts");
    assert.equal(operatorBuild({ OPERATOR_BUILD: "" }), "ts");
    assert.equal(operatorBuild({ OPERATOR_BUILD: "js" }), "js");
    assert.throws(() => operatorBuild({ OPERATOR_BUILD: "dist" }), /OPERATOR_BUILD=dist: expected ts or js/);
    assert.equal(operatorEntry("agent", "ts", "/d"), join(REPO_ROOT, "src", "cmd", "agent.ts"));
    assert.equal(operatorEntry("controller", "js", "/d"), "/d/cmd/controller.js");
    assert.equal(operatorDistDir({}), join(REPO_ROOT, "dist"));
    assert.equal(operatorDistDir({ OPERATOR_DIST: "/s/dist" }), "/s/dist");
  });
});

describe("the compiled controller and agent (tsconfig.build.json)", { timeout: 120_000 }, () => {
  // Inside the checkout (ignored): the modules find node_modules and "type": "module" above them.
  let out = "";
  before(async () => {
    mkdirSync(join(REPO_ROOT, ".local"), { recursive: true });
    out = await mkdtemp(join(REPO_ROOT, ".local", "build-check-"));
    await compileOperator(out);
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  it("emits both entry points and every module they import, with .js specifiers that resolve", () => {
    const files = jsFiles(out);
    assert.ok(existsSync(join(out, "cmd", "controller.js")) && existsSync(join(out, "cmd", "agent.js")));
    // Only what the processes import: no local-stack tooling, no plugin, no .ts left behind.
    assert.deepEqual(readdirSync(join(out, "cmd")).sort(), ["agent.js", "controller.js"]);
    assert.equal(
      readdirSync(out, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).length,
      0,
    );
    let specifiers = 0;
    for (const file of files) {
      for (const spec of relativeSpecifiers(readFileSync(file, "utf8"))) {
        specifiers++;
        const where = relative(out, file);
        assert.ok(spec.endsWith(".js"), `${where} imports ${spec}`);
        assert.ok(existsSync(resolve(dirname(file), spec)), `${where} imports ${spec}, not emitted`);
      }
    }
    assert.ok(specifiers > files.length, `only ${specifiers} relative imports in ${files.length} modules`);
  });

  it("the chart starts entry points the build emits", () => {
    for (const entry of chartEntries()) {
      assert.match(entry, /^dist\/cmd\/\w+\.js$/);
      assert.ok(existsSync(join(out, relative("dist", entry))), `${entry} not emitted`);
    }
  });

  it("the agent loads and stops at its start-up check with one fatal line", () => {
    const run = spawnSync(process.execPath, [join(out, "cmd", "agent.js")], {
      env: { ...process.env, IMAGE_IMPORT_ALLOWED_NETWORKS: "10.0.0/8", KUBECONFIG: "/nonexistent" },
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(run.status, 1, run.stderr);
    const line = JSON.parse(run.stdout.trim());
    assert.equal(line.level, "fatal");
    assert.equal(line.component, "agent");
    assert.equal(line.variable, "IMAGE_IMPORT_ALLOWED_NETWORKS");
    assert.equal(run.stderr, "");
  });

  it("the controller loads and stops when its kubeconfig is missing", () => {
    const run = spawnSync(process.execPath, [join(out, "cmd", "controller.js")], {
      env: { ...process.env, KUBECONFIG: "/nonexistent" },
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(run.status, 1, run.stderr);
    const line = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
    assert.equal(line.level, "fatal");
    assert.equal(line.component, "controller");
    assert.match(line.err, /ENOENT.*\/nonexistent/);
  });
});
