// Where the set-up scripts put the binaries, and running them.
import { execFile } from "node:child_process";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");
export const CACHE_DIR = process.env.LIBVIRT_OPERATOR_CACHE ?? join(homedir(), ".cache", "libvirt-operator");
export const CACHE_BIN = join(CACHE_DIR, "bin");

/** Path of a binary built by scripts/setup/kube-binaries.sh (test tools: test-tools.sh). */
export type CachedBinary =
  | "etcd"
  | "kube-apiserver"
  | "kube-controller-manager"
  | "kube-scheduler"
  | "kubectl"
  | "kubelet"
  | "kube-proxy"
  | "crictl"
  | "helm"
  | "kstatus"
  | "argocd-health";

export function cachedBinary(name: CachedBinary): string {
  return join(CACHE_BIN, name);
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; rejects with its stderr in the message when it fails. */
export async function run(
  file: string,
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = execFileAsync(file, args, {
    env: options.env ?? process.env,
    timeout: options.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (options.input !== undefined) {
    child.child.stdin?.end(options.input);
  }
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr };
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    const said = e.stderr?.trim() || e.stdout?.trim() || e.message;
    throw new Error(`${file} ${args.join(" ")} failed: ${said}`, { cause: err });
  }
}
