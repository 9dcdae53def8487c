// A kubeconfig user's exec credential plugin (aws eks get-token, gke-gcloud-auth-plugin,
// kubelogin, Pinniped…), run as kubectl runs it: the kubeconfig's args and env,
// KUBERNETES_EXEC_INFO saying whether someone can answer a prompt (and the cluster, when the
// stanza asks), its ExecCredential read from stdout and kept until it expires. Ours rather than
// client-node's because a plugin that hangs must be stopped at its deadline — its children too —
// not left running behind us, and a client certificate it gives must be renewed like a token.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { type KubeCluster, KubeconfigError } from "./kubeconfig.ts";

/** The `exec` stanza of a kubeconfig user, as far as running it goes. */
export interface ExecConfig {
  command: string;
  args: string[];
  env: Array<{ name: string; value: string }>;
  apiVersion: string;
  /** Never: no prompts; IfAvailable (default): when a terminal is there; Always: needs one. */
  interactiveMode: "Never" | "IfAvailable" | "Always";
  provideClusterInfo: boolean;
  installHint?: string;
}

/** What a plugin answered: a bearer token, a client certificate, or both. */
export interface ExecCredential {
  token?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  /** When it stops being good (ms since the epoch); never, when the plugin says nothing. */
  expiresAt?: number;
}

/** How the plugin is run: whether a person at a terminal may answer it, and for how long. */
export interface ExecRun {
  /** stdin and stderr are the terminal's (a login prompt, a device code to visit). */
  interactive: boolean;
  deadlineMs: number;
  /** The cluster, for a stanza with provideClusterInfo. */
  cluster?: KubeCluster;
}

/** A credential this close to expiring is asked for again (the request would outlive it). */
const EXPIRY_MARGIN_MS = 10_000;
/** More than any plugin's answer needs; a runaway one is stopped, not buffered. */
const MAX_OUTPUT_BYTES = 1 << 20;
/** A plugin that failed is not run again for this long (each request would start one). */
const FAILURE_HOLD_MS = 5_000;
/** After the plugin exits, how long a child of it holding its stdout may keep us waiting. */
const DRAIN_MS = 200;

const MODES = new Set(["Never", "IfAvailable", "Always"]);

/** Pure: the exec stanza of a kubeconfig user, checked; a clear error when unusable. */
export function execConfigOf(exec: unknown): ExecConfig {
  const e = (exec ?? {}) as Record<string, unknown>;
  if (typeof e.command !== "string" || !e.command)
    throw new KubeconfigError("the kubeconfig user's exec plugin names no command");
  const mode =
    typeof e.interactiveMode === "string" && MODES.has(e.interactiveMode) ? e.interactiveMode : "IfAvailable";
  return {
    command: e.command,
    args: Array.isArray(e.args) ? e.args.map(String) : [],
    env: Array.isArray(e.env)
      ? (e.env as Array<Record<string, unknown>>).map((v) => ({
          name: String(v.name),
          value: String(v.value ?? ""),
        }))
      : [],
    apiVersion:
      typeof e.apiVersion === "string" && e.apiVersion ? e.apiVersion : "client.authentication.k8s.io/v1",
    interactiveMode: mode as ExecConfig["interactiveMode"],
    provideClusterInfo: e.provideClusterInfo === true,
    ...(typeof e.installHint === "string" && e.installHint ? { installHint: e.installHint } : {}),
  };
}

/** Pure: KUBERNETES_EXEC_INFO for the plugin. */
export function execInfo(config: ExecConfig, run: Pick<ExecRun, "interactive" | "cluster">): string {
  const c = run.cluster;
  const ca = c?.["certificate-authority-data"] ?? caFileData(c?.["certificate-authority"]);
  const cluster = c && {
    server: c.server,
    ...(c["tls-server-name"] ? { "tls-server-name": c["tls-server-name"] } : {}),
    ...(c["insecure-skip-tls-verify"] === true ? { "insecure-skip-tls-verify": true } : {}),
    ...(ca ? { "certificate-authority-data": ca } : {}),
  };
  return JSON.stringify({
    apiVersion: config.apiVersion,
    kind: "ExecCredential",
    spec: { interactive: run.interactive, ...(config.provideClusterInfo && cluster ? { cluster } : {}) },
  });
}

function caFileData(file: string | undefined): string | undefined {
  try {
    return file ? readFileSync(file).toString("base64") : undefined;
  } catch {
    return undefined;
  }
}

/** Pure: the plugin's stdout read as the ExecCredential of API version APIVERSION. */
export function parseExecCredential(stdout: string, apiVersion: string): ExecCredential {
  let doc: { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new Error("the kubeconfig's credential plugin did not print an ExecCredential (not JSON)");
  }
  if (
    (doc?.apiVersion !== undefined && doc.apiVersion !== apiVersion) ||
    (doc?.kind ?? "ExecCredential") !== "ExecCredential"
  )
    throw new Error(
      `the kubeconfig's credential plugin answered ${String(doc?.apiVersion)} ${String(doc?.kind)}, not the ${apiVersion} ExecCredential asked for`,
    );
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

/**
 * Runs the plugin in a process group of its own; at the deadline the whole group is killed (a
 * wrapper script's children too). Its answer, or why there is none — naming the command, never
 * its arguments (they may hold a client secret).
 */
export function runExecPlugin(config: ExecConfig, run: ExecRun): Promise<ExecCredential> {
  const who = `the kubeconfig's credential plugin (${basename(config.command)})`;
  if (config.interactiveMode === "Always" && !run.interactive)
    return Promise.reject(
      new Error(`${who} needs a terminal to ask its questions (interactiveMode: Always)`),
    );
  const interactive = run.interactive && config.interactiveMode !== "Never";
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...Object.fromEntries(config.env.map((v) => [v.name, v.value])),
    KUBERNETES_EXEC_INFO: execInfo(config, { ...run, interactive }),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(config.command, config.args, {
      env,
      detached: true,
      stdio: [interactive ? "inherit" : "ignore", "pipe", interactive ? "inherit" : "pipe"],
      windowsHide: true,
    });
    const out: Buffer[] = [];
    let outBytes = 0;
    let errText = "";
    let settled = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    // Were we to exit meanwhile (Ctrl-C), the plugin's group goes with us.
    process.once("exit", killGroup);
    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      process.removeListener("exit", killGroup);
      child.stdout?.destroy();
      child.stderr?.destroy();
      if (err) return reject(err);
      try {
        resolve(parseExecCredential(Buffer.concat(out).toString("utf8"), config.apiVersion));
      } catch (e) {
        reject(e);
      }
    };
    const deadline = setTimeout(() => {
      killGroup();
      finish(new Error(`${who} did not answer within ${run.deadlineMs / 1000} s`));
    }, run.deadlineMs);
    child.stdout?.on("data", (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes <= MAX_OUTPUT_BYTES) return void out.push(chunk);
      killGroup();
      finish(new Error(`${who} printed more than 1 MiB`));
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      errText = (errText + chunk.toString("utf8")).slice(-2000);
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      const hint = err.code === "ENOENT" && config.installHint ? `\n${config.installHint}` : "";
      finish(new Error(`${who} could not be run: ${err.code ?? err.message}${hint}`));
    });
    child.on("exit", (code, signal) => {
      if (code !== 0) {
        const said = errText.trim().slice(-500);
        const how = signal ? `was stopped by ${signal}` : `failed (exit code ${code})`;
        return finish(new Error(`${who} ${how}${said ? `: ${said}` : ""}`));
      }
      // Its answer is in once stdout ends; a child of it holding stdout open does not keep us.
      const drained = setTimeout(() => finish(undefined), DRAIN_MS);
      child.stdout?.once("end", () => {
        clearTimeout(drained);
        finish(undefined);
      });
      if (!child.stdout || child.stdout.readableEnded) {
        clearTimeout(drained);
        finish(undefined);
      }
    });
  });
}

/**
 * The plugin's credential, asked for again only when it has (nearly) expired or the server
 * refused it: one run at a time however many requests ask, and a failure held for a moment.
 */
export class ExecCredentials {
  private held?: ExecCredential;
  private pending?: Promise<ExecCredential>;
  private failure?: { error: unknown; until: number };
  private readonly config: ExecConfig;
  private readonly run: ExecRun;

  constructor(config: ExecConfig, run: ExecRun) {
    this.config = config;
    this.run = run;
  }

  get(now = Date.now()): Promise<ExecCredential> {
    const held = this.held;
    if (held && (held.expiresAt === undefined || held.expiresAt - EXPIRY_MARGIN_MS > now))
      return Promise.resolve(held);
    if (this.pending) return this.pending;
    if (this.failure && now < this.failure.until) return Promise.reject(this.failure.error);
    const pending = runExecPlugin(this.config, this.run).then(
      (credential) => {
        this.held = credential;
        this.failure = undefined;
        return credential;
      },
      (error: unknown) => {
        this.failure = { error, until: Date.now() + FAILURE_HOLD_MS };
        throw error;
      },
    );
    this.pending = pending;
    void pending.then(
      () => this.clearPending(pending),
      () => this.clearPending(pending),
    );
    return pending;
  }

  /** The server refused USED: ask the plugin again next time (unless a newer one came meanwhile). */
  forget(used: ExecCredential): void {
    if (this.held === used) this.held = undefined;
  }

  private clearPending(p: Promise<ExecCredential>) {
    if (this.pending === p) this.pending = undefined;
  }
}
