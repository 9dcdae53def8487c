// How a client reaches and proves itself to the API server of a kubeconfig context: TLS options,
// and what authenticates each request — a token (a file's read again: projected service account
// tokens rotate), basic auth, a client certificate, an exec credential plugin (exec-credential.ts;
// its token or certificate renewed as it expires), or a legacy auth provider through client-node.
import { readFileSync } from "node:fs";
import type { RequestOptions } from "node:https";
import { type ExecCredential, ExecCredentials, execConfigOf } from "./exec-credential.ts";
import type { ResolvedConfig } from "./kubeconfig.ts";

/** How long a credential plugin may take to answer when nobody can answer its prompts. */
const EXEC_DEADLINE_MS = 30_000;
/** … and when a person at a terminal may (a login, a second factor). */
const INTERACTIVE_EXEC_DEADLINE_MS = 5 * 60_000;
/** Credentials that may change (a rotated token file, an auth provider) are read again this often. */
const AUTH_REFRESH_MS = 60_000;

export type Headers = Record<string, string>;

/** What authenticates one request: headers, and a client certificate when it changes over time. */
export interface AuthParts {
  headers: Headers;
  cert?: string;
  key?: string;
}

export interface Auth {
  get(): Promise<AuthParts>;
  /** The server refused USED (401): the next request gets fresh credentials. */
  invalidate(used: AuthParts): void;
}

function fileOrData(data: string | undefined, file: string | undefined): Buffer | undefined {
  if (data) return Buffer.from(data, "base64");
  if (file) return readFileSync(file);
  return undefined;
}

/** Authentication headers, read again now and then when they may change, and after a 401. */
class AuthHeaders implements Auth {
  private cached?: { at: number; parts: Promise<AuthParts> };
  private readonly read: () => Promise<Headers> | Headers;
  private readonly changes: boolean;

  constructor(read: () => Promise<Headers> | Headers, changes: boolean) {
    this.read = read;
    this.changes = changes;
  }

  get(now = Date.now()): Promise<AuthParts> {
    if (!this.cached || (this.changes && now - this.cached.at >= AUTH_REFRESH_MS)) {
      const parts = Promise.resolve()
        .then(this.read)
        .then((headers) => ({ headers }));
      const entry = { at: now, parts };
      this.cached = entry;
      parts.catch(() => {
        if (this.cached === entry) this.cached = undefined;
      });
    }
    return this.cached.parts;
  }

  invalidate(): void {
    if (this.changes) this.cached = undefined;
  }
}

/** An exec plugin's credential for each request: its token and certificate as they are now. */
class ExecAuth implements Auth {
  private readonly credentials: ExecCredentials;
  /** The parts made of each credential (and back), so a 401 forgets only the credential it refused. */
  private readonly parts = new WeakMap<ExecCredential, AuthParts>();
  private readonly credentialOf = new WeakMap<AuthParts, ExecCredential>();

  constructor(credentials: ExecCredentials) {
    this.credentials = credentials;
  }

  async get(): Promise<AuthParts> {
    const c = await this.credentials.get();
    let parts = this.parts.get(c);
    if (!parts) {
      parts = {
        headers: c.token ? { Authorization: `Bearer ${c.token}` } : {},
        // A certificate in the request's options: the https agent pools connections per certificate.
        ...(c.clientCertificateData && c.clientKeyData
          ? { cert: c.clientCertificateData, key: c.clientKeyData }
          : {}),
      };
      this.parts.set(c, parts);
      this.credentialOf.set(parts, c);
    }
    return parts;
  }

  invalidate(used: AuthParts): void {
    const c = this.credentialOf.get(used);
    if (c) this.credentials.forget(c);
  }
}

/** TLS options and authentication for the context: from the kubeconfig, an exec plugin, or client-node for auth providers. */
export async function connectionOptions(
  config: ResolvedConfig,
  credentialDeadlineMs: number | undefined,
  interactive = false,
): Promise<{ options: RequestOptions; auth: Auth }> {
  const { cluster, user } = config;
  const url = new URL(cluster.server);
  const base: RequestOptions = {
    // An IPv6 literal comes bracketed in a URL, not in a host name to connect to.
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port || (url.protocol === "https:" ? 443 : 80),
    protocol: url.protocol,
  };
  const ca = fileOrData(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const tls: RequestOptions = {
    ...(ca ? { ca } : {}),
    ...(cluster["tls-server-name"] ? { servername: cluster["tls-server-name"] } : {}),
    // Only a real true turns verification off (a YAML "false" string must not).
    rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
  };
  if (user.exec) {
    const deadlineMs =
      credentialDeadlineMs ?? (interactive ? INTERACTIVE_EXEC_DEADLINE_MS : EXEC_DEADLINE_MS);
    const credentials = new ExecCredentials(execConfigOf(user.exec), { interactive, deadlineMs, cluster });
    return { options: { ...base, ...tls }, auth: new ExecAuth(credentials) };
  }
  const deadlineMs = credentialDeadlineMs ?? EXEC_DEADLINE_MS;
  if (user["auth-provider"]) {
    // Rare (the legacy oidc/gcp/azure providers), and the library knows them: loaded only here.
    const { KubeConfig } = await import("@kubernetes/client-node");
    const kc = new KubeConfig();
    if (config.files.length === 1 && config.files[0]) kc.loadFromFile(config.files[0]);
    else kc.loadFromDefault();
    kc.setCurrentContext(config.contextName);
    const apply = async () => {
      const applied: RequestOptions = { headers: {} };
      // A provider that hangs fails like a request that does.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`the kubeconfig's auth provider did not answer within ${deadlineMs / 1000} s`)),
          deadlineMs,
        );
      });
      try {
        await Promise.race([kc.applyToHTTPSOptions(applied), late]);
      } finally {
        clearTimeout(timer);
      }
      return applied;
    };
    const first = await apply();
    const clientCert = first.cert && first.key ? { cert: first.cert, key: first.key } : {};
    const auth = new AuthHeaders(async () => ({ ...((await apply()).headers as Headers) }), true);
    return { options: { ...base, ...tls, ...clientCert }, auth };
  }
  const cert = fileOrData(user["client-certificate-data"], user["client-certificate"]);
  const key = fileOrData(user["client-key-data"], user["client-key"]);
  const tokenFile = user.token ? undefined : user.tokenFile;
  const auth = new AuthHeaders((): Headers => {
    // A token file is read again each time: a projected service account token rotates.
    const token = user.token ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
    if (token) return { Authorization: `Bearer ${token}` };
    if (user.username !== undefined)
      return {
        Authorization: `Basic ${Buffer.from(`${user.username}:${user.password ?? ""}`).toString("base64")}`,
      };
    return {};
  }, tokenFile !== undefined);
  return { options: { ...base, ...tls, ...(cert ? { cert } : {}), ...(key ? { key } : {}) }, auth };
}
