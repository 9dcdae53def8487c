// A kubeconfig user's exec credential plugin (aws eks get-token, gke-gcloud-auth-plugin,
// kubelogin…), run as kubectl runs it: the kubeconfig's args and env, KUBERNETES_EXEC_INFO
// saying nobody answers prompts, its ExecCredential read from stdout and kept until it expires.
// Ours rather than client-node's because a plugin that hangs (a login prompt nobody answers)
// must be killed at its deadline, not left running behind us.
import { execFile } from "node:child_process";
import { KubeconfigError } from "./kubeconfig.ts";

/** The `exec` stanza of a kubeconfig user, as far as running it goes. */
export interface ExecConfig {
  command: string;
  args?: string[];
  env?: Array<{ name: string; value: string }>;
  apiVersion?: string;
}

/** What a plugin answered: a bearer token, a client certificate, or both. */
export interface ExecCredential {
  token?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  /** When it stops being good (ms since the epoch); never, when the plugin says nothing. */
  expiresAt?: number;
}

/** A credential this close to expiring is asked for again (the request would outlive it). */
const EXPIRY_MARGIN_MS = 10_000;
/** More than any plugin's answer needs; a runaway one is stopped, not buffered. */
const MAX_OUTPUT_BYTES = 1 << 20;

/** Pure: the exec stanza of a kubeconfig user, checked; a clear error when unusable. */
export function execConfigOf(exec: unknown): ExecConfig {
  const e = (exec ?? {}) as Record<string, unknown>;
  if (typeof e.command !== "string" || !e.command)
    throw new KubeconfigError("the kubeconfig user's exec plugin names no command");
  const args = Array.isArray(e.args) ? e.args.map(String) : [];
  const env = Array.isArray(e.env)
    ? (e.env as Array<Record<string, unknown>>).map((v) => ({
        name: String(v.name),
        value: String(v.value ?? ""),
      }))
    : [];
  return {
    command: e.command,
    args,
    env,
    ...(typeof e.apiVersion === "string" ? { apiVersion: e.apiVersion } : {}),
  };
}

/** Pure: the plugin's stdout read as an ExecCredential. */
export function parseExecCredential(stdout: string): ExecCredential {
  let doc: { status?: Record<string, unknown> };
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new Error("the kubeconfig's credential plugin did not print an ExecCredential (not JSON)");
  }
  const s = doc?.status ?? {};
  const text = (v: unknown) => (typeof v === "string" && v ? v : undefined);
  const token = text(s.token);
  const cert = text(s.clientCertificateData);
  const key = text(s.clientKeyData);
  if (!token && !(cert && key))
    throw new Error(
      "the kubeconfig's credential plugin gave neither a token nor a client certificate and key",
    );
  const expiry = text(s.expirationTimestamp);
  const expiresAt = expiry ? Date.parse(expiry) : undefined;
  return {
    ...(token ? { token } : {}),
    ...(cert && key ? { clientCertificateData: cert, clientKeyData: key } : {}),
    ...(expiresAt !== undefined && Number.isFinite(expiresAt) ? { expiresAt } : {}),
  };
}

/** Runs the plugin, killing it at DEADLINEMS; its answer, or why there is none. */
export function runExecPlugin(config: ExecConfig, deadlineMs: number): Promise<ExecCredential> {
  const apiVersion = config.apiVersion ?? "client.authentication.k8s.io/v1";
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...Object.fromEntries((config.env ?? []).map((v) => [v.name, v.value])),
    KUBERNETES_EXEC_INFO: JSON.stringify({
      apiVersion,
      kind: "ExecCredential",
      spec: { interactive: false },
    }),
  };
  return new Promise((resolve, reject) => {
    execFile(
      config.command,
      config.args ?? [],
      { env, timeout: deadlineMs, killSignal: "SIGKILL", maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true },
      (err, stdout, stderr) => {
        if ((err as { code?: unknown } | null)?.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER")
          return reject(new Error("the kubeconfig's credential plugin printed more than 1 MiB"));
        if (err?.killed && err.signal === "SIGKILL")
          return reject(
            new Error(`the kubeconfig's credential plugin did not answer within ${deadlineMs / 1000} s`),
          );
        if (err) {
          const said = String(stderr).trim().slice(-500);
          return reject(new Error(`the kubeconfig's credential plugin failed: ${said || err.message}`));
        }
        try {
          resolve(parseExecCredential(String(stdout)));
        } catch (e) {
          reject(e);
        }
      },
    ).stdin?.end();
  });
}

/** The plugin's credential, asked for again only when it has (nearly) expired. */
export class ExecCredentials {
  private held?: ExecCredential;
  private readonly config: ExecConfig;
  private readonly deadlineMs: number;

  constructor(config: ExecConfig, deadlineMs: number) {
    this.config = config;
    this.deadlineMs = deadlineMs;
  }

  async get(now = Date.now()): Promise<ExecCredential> {
    const held = this.held;
    if (held && (held.expiresAt === undefined || held.expiresAt - EXPIRY_MARGIN_MS > now)) return held;
    this.held = await runExecPlugin(this.config, this.deadlineMs);
    return this.held;
  }

  /** The server refused it: ask the plugin again next time. */
  forget(): void {
    this.held = undefined;
  }
}
