// The plugin's connection to the API server, set up the way kubectl does it: --kubeconfig or
// $KUBECONFIG (a list of files) or ~/.kube/config, --context or the current one, and -n or the
// context's namespace or "default". Errors are printed in kubectl's words.
import type { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { GlobalOptions } from "./args.ts";

export interface PluginClient {
  kc: KubeConfig;
  custom: CustomObjectsApi;
  namespace: string;
}

/** A failure the user caused or can fix; printed as "error: …" (kubectl's prefix). */
export class PluginError extends Error {
  override name = "PluginError";
}

/** The namespace kubectl would use: the flag, else the context's, else "default". */
export function resolveNamespace(flag: string | undefined, contextNamespace: string | undefined): string {
  return flag || contextNamespace || "default";
}

export async function connect(global: GlobalOptions): Promise<PluginClient> {
  // Loaded here, not at the top: help and usage errors should not pay for the client library.
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  if (global.kubeconfig) kc.loadFromFile(global.kubeconfig);
  else kc.loadFromDefault();
  if (global.context) {
    if (!kc.getContextObject(global.context))
      throw new PluginError(`context "${global.context}" does not exist`);
    kc.setCurrentContext(global.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new PluginError(
      "no cluster configured: set KUBECONFIG, pass --kubeconfig, or create ~/.kube/config (kubectl config view shows it)",
    );
  }
  const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
  return {
    kc,
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    namespace: resolveNamespace(global.namespace, contextNamespace),
  };
}

/** Kubernetes Status body of a failed request, as far as we read it. */
interface StatusBody {
  kind?: string;
  reason?: string;
  message?: string;
}

function statusBody(body: unknown): StatusBody | undefined {
  if (typeof body === "string") {
    try {
      return statusBody(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  return body && typeof body === "object" ? (body as StatusBody) : undefined;
}

/**
 * The line kubectl prints for ERR: "Error from server (Reason): message" for an answer of the
 * API server, "error: message" for anything else (usage, connection, kubeconfig).
 */
export function formatError(err: unknown): string {
  if (err && typeof err === "object" && "code" in err && "body" in err && typeof err.code === "number") {
    const status = statusBody(err.body);
    const message = status?.message || `the server answered HTTP ${err.code}`;
    return status?.reason
      ? `Error from server (${status.reason}): ${message}`
      : `Error from server: ${message}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Error && "code" in err && err.code === "ECONNREFUSED") {
    return `error: the connection to the server was refused - did you specify the right host or port? (${message})`;
  }
  return `error: ${message}`;
}
