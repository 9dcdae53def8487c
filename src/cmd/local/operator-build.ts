// Which build of the controller and the node agent a local process runs. The image and the chart
// run JavaScript compiled by tsc (tsconfig.build.json, dist/): Node's type stripping costs each
// process ~25 MiB of RSS (its bundle and wasm). The dev and test stacks run the sources (no build
// step in the edit loop) unless OPERATOR_BUILD=js; the benches run what ships (bench/stack.ts).
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT, run } from "./tools.ts";

export type OperatorBuild = "ts" | "js";
export type OperatorProcess = "controller" | "agent";

/** Where tsconfig.build.json puts the compiled processes (ignored by git, rebuilt from scratch). */
export const DIST_DIR = join(REPO_ROOT, "dist");

/**
 * OPERATOR_DIST: the compiled build a stack runs, default dist/ (make build). A bench compiles
 * into its stack's state directory, so benches side by side never rebuild each other's.
 */
export function operatorDistDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.OPERATOR_DIST || DIST_DIR;
}

/** OPERATOR_BUILD: "ts" (default: the sources, type stripped) or "js" (dist/, as the image ships). */
export function operatorBuild(env: NodeJS.ProcessEnv = process.env): OperatorBuild {
  const value = env.OPERATOR_BUILD || "ts";
  if (value !== "ts" && value !== "js") throw new Error(`OPERATOR_BUILD=${value}: expected ts or js`);
  return value;
}

/** The entry point of NAME in BUILD: this checkout's source, or the compiled one in DIST. */
export function operatorEntry(name: OperatorProcess, build: OperatorBuild, dist = operatorDistDir()): string {
  return build === "js" ? join(dist, "cmd", `${name}.js`) : join(REPO_ROOT, "src", "cmd", `${name}.ts`);
}

/** How a report names BUILD. */
export function describeBuild(build: OperatorBuild): string {
  return build === "js" ? "compiled JavaScript (tsconfig.build.json)" : "TypeScript sources (type stripping)";
}

/**
 * Compiles the controller and the agent into OUT_DIR (dist/) from scratch, so no file of a
 * removed source is left behind: tsc emits only, the types are tsconfig.json's check (make lint).
 * About 2 s. OUT_DIR must be inside the checkout: the emitted modules find node_modules and
 * package.json ("type": "module") by walking up.
 */
export async function compileOperator(outDir = DIST_DIR): Promise<void> {
  await rm(outDir, { recursive: true, force: true });
  await run(process.execPath, [
    join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc"),
    "-p",
    join(REPO_ROOT, "tsconfig.build.json"),
    "--outDir",
    outDir,
  ]);
}
