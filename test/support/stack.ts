// The stack the integration tests run against: its own ports and state directory, so it
// never collides with `make local`. test/integration/global-setup.ts starts and stops it.
import { join } from "node:path";
import yaml from "js-yaml";
import { kubectl as kubectlWith, localNodeName } from "../../src/cmd/local/kube.ts";
import { kubeconfigPath, type StackConfig } from "../../src/cmd/local/stack.ts";
import { REPO_ROOT } from "../../src/cmd/local/tools.ts";

// TEST_STACK_SLOT=N gives a second stack (other ports, other state) for running tests beside
// another run on the same machine; libvirtd is shared, each stack's agent owns only its own
// cluster's domains.
const SLOT = Number(process.env.TEST_STACK_SLOT ?? 0);
const port = (base: number) => base + SLOT * 20;

export const TEST_STACK: StackConfig = {
  stateDir: join(REPO_ROOT, ".local", SLOT ? `test-stack-${SLOT}` : "test-stack"),
  ports: {
    etcdClient: port(23791),
    etcdPeer: port(23801),
    apiserver: port(16444),
    controllerManager: port(17251),
    scheduler: port(17261),
    controllerMetrics: port(19190),
    agentMetrics: port(19191),
  },
  operator: false,
  libvirt: true,
  nodeName: localNodeName(),
  // Started only by the tests that run pods (test/integration/helm-node.test.ts).
  node: {
    index: SLOT + 1,
    ports: {
      kubelet: port(20350),
      kubeletHealthz: port(20348),
      proxyHealthz: port(20356),
      proxyMetrics: port(20349),
    },
  },
  startNode: false,
};

export const KUBECONFIG = kubeconfigPath(TEST_STACK);

export function kubectl(args: string[], input?: string) {
  return kubectlWith(KUBECONFIG, args, input);
}

/** Runs kubectl and returns its error output (the API server's message) or "" when it succeeded. */
export async function kubectlError(args: string[], input?: string): Promise<string> {
  try {
    await kubectl(args, input);
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}

export function toYaml(obj: unknown): string {
  return yaml.dump(obj);
}

/** A namespace of its own for each test file, created once. */
export async function testNamespace(name: string): Promise<string> {
  await kubectl(["create", "namespace", name, "--dry-run=client", "-o", "yaml"]).then(({ stdout }) =>
    kubectl(["apply", "--server-side", "-f", "-"], stdout),
  );
  return name;
}
