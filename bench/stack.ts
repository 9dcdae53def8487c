// The bench stack (its own ports and state, apart from make local and the tests) and the
// pieces every benchmark uses: progress lines and one warmed-up API client.
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../src/api/common.ts";
import { localNodeName } from "../src/cmd/local/kube.ts";
import { kubeconfigPath, type StackConfig, stackDown, stackUp } from "../src/cmd/local/stack.ts";
import { REPO_ROOT, run } from "../src/cmd/local/tools.ts";

export const STACK: StackConfig = {
  stateDir: join(REPO_ROOT, ".local", "bench-stack"),
  ports: {
    etcdClient: 23792,
    etcdPeer: 23802,
    apiserver: 16445,
    controllerManager: 17252,
    scheduler: 17262,
    controllerMetrics: 19290,
    agentMetrics: 19291,
  },
  libvirt: true,
  operator: true,
  nodeName: localNodeName(),
};
export const KUBECONFIG = kubeconfigPath(STACK);
export const NS = "bench";

export function progress(msg: string) {
  process.stderr.write(`==> ${msg}\n`);
}

/** A fresh bench stack: an empty etcd, then everything started. */
export async function freshStack(): Promise<void> {
  await stackDown(STACK);
  await run("rm", ["-rf", join(STACK.stateDir, "etcd")]);
  await stackUp(STACK);
}

let client: { kc: KubeConfig; api: CustomObjectsApi } | undefined;

/** One API client for every run, warmed up, so no run pays for a TLS handshake. */
export async function apiClient(plural: string): Promise<{ kc: KubeConfig; api: CustomObjectsApi }> {
  if (!client) {
    const kc = new KubeConfig();
    kc.loadFromFile(KUBECONFIG);
    client = { kc, api: kc.makeApiClient(CustomObjectsApi) };
  }
  await client.api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural });
  return client;
}
