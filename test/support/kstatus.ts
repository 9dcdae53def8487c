// What kstatus (upstream sigs.k8s.io/cli-utils and Flux's fork) says about an object, through
// the checker that scripts/setup/test-tools.sh builds: GitOps tools judge our resources with this
// Go code, so tests ask it rather than re-implementing its rules.
import { access, constants } from "node:fs/promises";
import { cachedBinary, run } from "../../src/cmd/local/tools.ts";

export interface KstatusVerdict {
  status: string;
  message: string;
}

export interface KstatusResult {
  kind: string;
  namespace: string;
  name: string;
  upstream: KstatusVerdict;
  flux: KstatusVerdict;
}

export const KSTATUS_BIN = cachedBinary("kstatus");

/** kstatus' verdicts on each object, in input order. */
export async function kstatusMany(objs: readonly unknown[], timeoutMs = 30_000): Promise<KstatusResult[]> {
  // A missing binary would otherwise surface as a bare ENOENT; say how to get it.
  await access(KSTATUS_BIN, constants.X_OK).catch((err: unknown) => {
    throw new Error(`${KSTATUS_BIN} is missing: run scripts/setup/test-tools.sh (make deps)`, { cause: err });
  });
  const { stdout } = await run(KSTATUS_BIN, [], { input: JSON.stringify(objs), timeoutMs });
  const results = stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as KstatusResult);
  if (results.length !== objs.length) {
    throw new Error(`kstatus answered ${results.length} lines for ${objs.length} objects`);
  }
  return results;
}

/** kstatus' verdicts on one object. */
export async function kstatus(obj: unknown, timeoutMs?: number): Promise<KstatusResult> {
  const [result] = await kstatusMany([obj], timeoutMs);
  return result!;
}
