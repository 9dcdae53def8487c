// The plugin's connection to the API server, set up the way kubectl does it: --kubeconfig or
// $KUBECONFIG (a list of files) or ~/.kube/config, --context or the current one, and -n or the
// context's namespace or "default". It talks over node:https (kube/http.ts): loading
// @kubernetes/client-node alone takes about a second, twice what a whole write may take.
// Errors are printed in kubectl's words.

import { type CustomObjects, customObjectsApi } from "../kube/apis.ts";
import { HttpApi, REQUEST_DEADLINE_MS } from "../kube/http.ts";
import { kubeconfigFiles, loadKubeconfig } from "../kube/kubeconfig.ts";
import type { GlobalOptions } from "./args.ts";

export interface PluginClient {
  /** The plugin writes no status: it leaves that to the operator. */
  custom: Omit<CustomObjects, "patchNamespacedCustomObjectStatus">;
  /** A GET of any API path (namespaces for completion). */
  get(path: string): Promise<unknown>;
  namespace: string;
  /** Ends the kept-alive connection so the process exits at once. */
  close(): void;
}

/** The namespace kubectl would use: the flag, else the context's, else "default". */
export function resolveNamespace(flag: string | undefined, contextNamespace: string | undefined): string {
  return flag || contextNamespace || "default";
}

export async function connect(
  global: Pick<GlobalOptions, "kubeconfig" | "context" | "namespace">,
  deadlineMs = REQUEST_DEADLINE_MS,
): Promise<PluginClient> {
  const config = loadKubeconfig(kubeconfigFiles(global.kubeconfig), global.context);
  // At a terminal, an exec credential plugin may ask the user (a login, a second factor), as under kubectl.
  const api = await HttpApi.connect(config, { deadlineMs, interactive: Boolean(process.stdin.isTTY) });
  return {
    custom: customObjectsApi(api),
    get: (path) => api.request("GET", path),
    namespace: resolveNamespace(global.namespace, config.context.namespace),
    close: () => api.close(),
  };
}
