// The kubectl plugin as users run it: the real kubectl with `kubectl-vm` on PATH, against the
// test stack, as the admin or as a ServiceAccount with only the rights a role gives it.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { installPlugin } from "../../src/cmd/local/plugin-install.ts";
import { cachedBinary } from "../../src/cmd/local/tools.ts";
import { KUBECONFIG, kubectl } from "./stack.ts";

export interface PluginRun {
  stdout: string;
  stderr: string;
  /** The exit code (kubectl passes the plugin's on). */
  code: number;
  /** Wall time of the call, milliseconds. */
  ms: number;
}

let binDir: Promise<string> | undefined;

/** A directory holding kubectl-vm and kubectl_complete-vm for this checkout (made once). */
export function pluginBinDir(): Promise<string> {
  binDir ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubectl-vm-"));
    await installPlugin(dir);
    return dir;
  })();
  return binDir;
}

/** Runs `kubectl ARGS` with the plugin on PATH and KUBECONFIG set; never throws on exit codes. */
export async function runKubectl(
  args: string[],
  options: { kubeconfig?: string; input?: string; timeoutMs?: number } = {},
): Promise<PluginRun> {
  const dir = await pluginBinDir();
  const env = {
    ...process.env,
    PATH: `${dir}:${process.env.PATH}`,
    KUBECONFIG: options.kubeconfig ?? KUBECONFIG,
  };
  const started = performance.now();
  return new Promise((resolve) => {
    const child = execFile(
      cachedBinary("kubectl"),
      args,
      { env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ stdout, stderr, code, ms: performance.now() - started });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** `kubectl vm ARGS` (see runKubectl). */
export function kubectlVm(
  args: string[],
  options: { kubeconfig?: string; input?: string; timeoutMs?: number } = {},
): Promise<PluginRun> {
  return runKubectl(["vm", ...args], options);
}

/**
 * A kubeconfig for ServiceAccount NAME of NAMESPACE, bound (in that namespace) to CLUSTER_ROLE
 * (edit, view, …): a token from the API server, the cluster's CA, nothing of the admin's.
 */
export async function serviceAccountKubeconfig(
  namespace: string,
  name: string,
  clusterRole: string,
): Promise<string> {
  const apply = (args: string[]) =>
    kubectl([...args, "--dry-run=client", "-o", "yaml"]).then(({ stdout }) =>
      kubectl(["apply", "--server-side", "-f", "-"], stdout),
    );
  await apply(["create", "serviceaccount", name, "-n", namespace]);
  await apply([
    "create",
    "rolebinding",
    `${name}-${clusterRole}`,
    `--clusterrole=${clusterRole}`,
    `--serviceaccount=${namespace}:${name}`,
    "-n",
    namespace,
  ]);
  const { stdout: token } = await kubectl(["create", "token", name, "-n", namespace, "--duration=2h"]);
  const admin = yaml.load((await kubectl(["config", "view", "--raw", "-o", "yaml"])).stdout) as {
    clusters: Array<{ name: string; cluster: Record<string, string> }>;
  };
  const cluster = admin.clusters[0];
  if (!cluster) throw new Error(`no cluster in ${KUBECONFIG}`);
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [cluster],
    users: [{ name, user: { token: token.trim() } }],
    contexts: [{ name, context: { cluster: cluster.name, user: name, namespace } }],
    "current-context": name,
  };
  const path = join(mkdtempSync(join(tmpdir(), `kubeconfig-${name}-`)), "config");
  writeFileSync(path, yaml.dump(config), { mode: 0o600 });
  return path;
}
