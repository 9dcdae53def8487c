// Reading kubeconfig the way kubectl does: --kubeconfig, or the files of $KUBECONFIG merged (the
// first to name a cluster, user or context wins), or ~/.kube/config; --context or the current
// one. In a pod without a kubeconfig, the service account's (defaultConfig). @kubernetes/client-node
// does this too, but loading it takes ~0.7 s and ~60 MiB per process; it is still used for users
// that authenticate through a legacy auth provider (see http.ts; exec plugins: exec-credential.ts).
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import yaml from "js-yaml";

export interface KubeCluster {
  server: string;
  "certificate-authority"?: string;
  "certificate-authority-data"?: string;
  "insecure-skip-tls-verify"?: boolean;
  "tls-server-name"?: string;
}

export interface KubeUser {
  token?: string;
  tokenFile?: string;
  "client-certificate"?: string;
  "client-certificate-data"?: string;
  "client-key"?: string;
  "client-key-data"?: string;
  username?: string;
  password?: string;
  exec?: unknown;
  "auth-provider"?: unknown;
}

export interface KubeContext {
  cluster: string;
  user: string;
  namespace?: string;
}

/** One context resolved: what to connect to, as whom, and where file paths are relative to. */
export interface ResolvedConfig {
  /** The kubeconfig files read, in order (client-node needs them for auth providers). */
  files: string[];
  contextName: string;
  context: KubeContext;
  cluster: KubeCluster;
  user: KubeUser;
}

interface ConfigFile {
  clusters?: Array<{ name: string; cluster: KubeCluster }>;
  users?: Array<{ name: string; user: KubeUser }>;
  contexts?: Array<{ name: string; context: KubeContext }>;
  "current-context"?: string;
}

/** A failure the user can fix in their kubeconfig or flags; printed as "error: …". */
export class KubeconfigError extends Error {
  override name = "KubeconfigError";
}

/** The kubeconfig files kubectl would read. */
export function kubeconfigFiles(flag: string | undefined, env = process.env): string[] {
  if (flag) return [flag];
  const list = (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  return list.length ? list : [join(env.HOME ?? homedir(), ".kube", "config")];
}

const FILE_FIELDS = ["certificate-authority", "client-certificate", "client-key", "tokenFile"] as const;

/** Paths inside a kubeconfig are relative to its own directory. */
function absolute<T extends object>(entry: T, dir: string): T {
  const copy = { ...entry } as Record<string, unknown>;
  for (const field of FILE_FIELDS) {
    const value = copy[field];
    if (typeof value === "string" && value && !isAbsolute(value)) copy[field] = join(dir, value);
  }
  return copy as T;
}

/** An exec plugin named by a relative path with a separator (./bin/login) is found beside its kubeconfig, as kubectl does. */
function withExecPath(user: KubeUser, dir: string): KubeUser {
  const exec = user.exec as { command?: unknown } | undefined;
  const command = exec?.command;
  if (typeof command !== "string" || isAbsolute(command) || !command.includes("/")) return user;
  return { ...user, exec: { ...exec, command: join(dir, command) } };
}

/** Merges FILES (first wins) and resolves CONTEXT (or the current one). */
export function loadKubeconfig(files: string[], contextFlag?: string): ResolvedConfig {
  const clusters = new Map<string, KubeCluster>();
  const users = new Map<string, KubeUser>();
  const contexts = new Map<string, KubeContext>();
  let current: string | undefined;
  let read = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      // kubectl skips files of $KUBECONFIG that do not exist; an explicit one must.
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && files.length > 1) continue;
      throw new KubeconfigError(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    read++;
    const doc = (yaml.load(text) ?? {}) as ConfigFile;
    const dir = dirname(file);
    for (const c of doc.clusters ?? [])
      if (!clusters.has(c.name)) clusters.set(c.name, absolute(c.cluster ?? {}, dir) as KubeCluster);
    for (const u of doc.users ?? [])
      if (!users.has(u.name)) users.set(u.name, withExecPath(absolute(u.user ?? {}, dir), dir));
    for (const c of doc.contexts ?? []) if (!contexts.has(c.name)) contexts.set(c.name, c.context);
    current ||= doc["current-context"];
  }
  if (!read) throw new KubeconfigError(`no kubeconfig found (looked at ${files.join(", ")})`);
  const contextName = contextFlag || current;
  if (!contextName)
    throw new KubeconfigError(
      "no context set: pass --context, or set current-context (kubectl config use-context NAME)",
    );
  const context = contexts.get(contextName);
  if (!context) throw new KubeconfigError(`context "${contextName}" does not exist`);
  const cluster = clusters.get(context.cluster);
  if (!cluster?.server)
    throw new KubeconfigError(`cluster "${context.cluster}" of context "${contextName}" has no server`);
  return { files, contextName, context, cluster, user: users.get(context.user) ?? {} };
}

/** Every context the kubeconfig files name (for completing --context); none when unreadable. */
export function contextNames(flag: string | undefined): string[] {
  const names = new Set<string>();
  for (const file of kubeconfigFiles(flag)) {
    try {
      const doc = (yaml.load(readFileSync(file, "utf8")) ?? {}) as ConfigFile;
      for (const c of doc.contexts ?? []) names.add(c.name);
    } catch {
      // a missing or broken file offers no contexts
    }
  }
  return [...names];
}

/** Where Kubernetes mounts a pod's service account. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * The pod's own service account: the API server of KUBERNETES_SERVICE_HOST/PORT, its CA, and
 * the token as a file (projected tokens rotate: http.ts reads it again now and then).
 */
export function inClusterConfig(env = process.env, dir = SERVICE_ACCOUNT_DIR): ResolvedConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset");
  let namespace: string | undefined;
  try {
    namespace = readFileSync(join(dir, "namespace"), "utf8").trim() || undefined;
  } catch {
    // a token without a namespace file still serves
  }
  return {
    files: [],
    contextName: "in-cluster",
    context: { cluster: "in-cluster", user: "in-cluster", ...(namespace ? { namespace } : {}) },
    cluster: {
      server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
      "certificate-authority": join(dir, "ca.crt"),
    },
    user: { tokenFile: join(dir, "token") },
  };
}

/**
 * What a daemon connects with, as client-node's loadFromDefault: $KUBECONFIG, else
 * ~/.kube/config if there is one, else the pod's service account.
 */
export function defaultConfig(env = process.env): ResolvedConfig {
  const files = kubeconfigFiles(undefined, env);
  if (env.KUBECONFIG || files.some((f) => existsSync(f)) || !env.KUBERNETES_SERVICE_HOST)
    return loadKubeconfig(files);
  return inClusterConfig(env);
}
