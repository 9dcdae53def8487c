// What Argo CD says about an object's health with our check (src/argocd/health.lua), through
// the runner scripts/setup/test-tools.sh builds from test/tools/argocd-health: gopher-lua, the
// interpreter Argo CD uses, with Argo CD's calling convention (global `obj`, only the package,
// base and table libraries, a 1 s limit, the returned table validated as Argo CD does).
import { access, constants } from "node:fs/promises";
import { HEALTH_SCRIPT } from "../../src/argocd/render.ts";
import { cachedBinary, run } from "../../src/cmd/local/tools.ts";

export type ArgoHealthStatus = "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";

export interface ArgoHealth {
  status: ArgoHealthStatus;
  message: string;
  /** Set when the script failed: Argo CD then shows Unknown with this message. */
  error?: string;
}

export const ARGOCD_HEALTH_BIN = cachedBinary("argocd-health");

/** Argo CD's health of each object under SCRIPT (ours by default), in input order. */
export async function argoHealthMany(
  objs: readonly unknown[],
  script = HEALTH_SCRIPT,
  timeoutMs = 30_000,
): Promise<ArgoHealth[]> {
  await access(ARGOCD_HEALTH_BIN, constants.X_OK).catch((err: unknown) => {
    throw new Error(`${ARGOCD_HEALTH_BIN} is missing: run scripts/setup/test-tools.sh (make deps)`, {
      cause: err,
    });
  });
  const { stdout } = await run(ARGOCD_HEALTH_BIN, [script], { input: JSON.stringify(objs), timeoutMs });
  const results = stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as ArgoHealth);
  if (results.length !== objs.length) {
    throw new Error(`argocd-health answered ${results.length} lines for ${objs.length} objects`);
  }
  return results;
}

/** Argo CD's health of one object under SCRIPT (ours by default). */
export async function argoHealth(obj: unknown, script?: string): Promise<ArgoHealth> {
  const [result] = await argoHealthMany([obj], script);
  return result!;
}
