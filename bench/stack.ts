// The bench stack (its own ports and state, apart from make local and the tests) and the
// pieces every benchmark uses: progress lines, one warmed-up API client, the test guest and
// the domain XML the agent would define, for the raw libvirt runs.
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { localNodeName } from "../src/cmd/local/kube.ts";
import {
  compileOperator,
  describeBuild,
  type OperatorBuild,
  operatorBuild,
} from "../src/cmd/local/operator-build.ts";
import { kubeconfigPath, type StackConfig, stackDown, stackUp } from "../src/cmd/local/stack.ts";
import { REPO_ROOT, run } from "../src/cmd/local/tools.ts";
import type { HostCapabilities } from "../src/hypervisor/capabilities.ts";
import { domainDefinitionFor } from "../src/hypervisor/domain/from-spec.ts";
import { buildDomainXml, type DiskDevice } from "../src/hypervisor/domain/xml.ts";

// BENCH_STACK_SLOT=N (default 0) gives the stack ports of its own (30000 + 100·N on, clear of
// the test stacks' and make local's) and its own state directory, so two benchmarks (or two
// worktrees) can run side by side.
const SLOT = Number(process.env.BENCH_STACK_SLOT ?? 0);
const port = (base: number, offset: number) => (SLOT ? 30_000 + 100 * SLOT + offset : base);

export const STACK: StackConfig = {
  stateDir: join(REPO_ROOT, ".local", SLOT ? `bench-stack-${SLOT}` : "bench-stack"),
  ports: {
    etcdClient: port(23792, 0),
    etcdPeer: port(23802, 1),
    apiserver: port(16445, 2),
    controllerManager: port(17252, 3),
    scheduler: port(17262, 4),
    controllerMetrics: port(19290, 5),
    // Test-driver nodes of a bench take the ports after this one.
    agentMetrics: port(19291, 10),
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

/**
 * The benches measure what ships: the controller and the agents run the JavaScript the image
 * runs (tsc -p tsconfig.build.json, compiled into STATE_DIR/dist: a bench beside it keeps its
 * own) unless OPERATOR_BUILD=ts asks for the sources.
 */
export function benchOperatorBuild(stateDir = STACK.stateDir): Promise<OperatorBuild> {
  prepared ??= (async () => {
    process.env.OPERATOR_BUILD ||= "js";
    const build = operatorBuild();
    if (build === "js") {
      process.env.OPERATOR_DIST = join(stateDir, "dist");
      await compileOperator(process.env.OPERATOR_DIST);
    }
    progress(`controller and agents: ${describeBuild(build)} (OPERATOR_BUILD=${build})`);
    return build;
  })();
  return prepared;
}
/** Compiled once per bench run. */
let prepared: Promise<OperatorBuild> | undefined;

/** A fresh bench stack: an empty etcd, then everything started (the build the benches run). */
export async function freshStack(): Promise<void> {
  await benchOperatorBuild();
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

export interface Guest {
  kernel: string;
  initrd: string;
}

/** The TCG test guest (scripts/setup/guest.sh), built when missing. */
export async function guestFiles(): Promise<Guest> {
  const { stdout } = await run("bash", [join(REPO_ROOT, "scripts", "setup", "guest.sh")], {
    timeoutMs: 600_000,
  });
  const dir = stdout.trim().split("\n").at(-1)!;
  return { kernel: join(dir, "vmlinuz"), initrd: join(dir, "initramfs.img") };
}

/**
 * The XML the agent would define for a VM with SPEC, as domain <NS>_raw-NAME owned by no cluster
 * of ours (the agents leave it alone): the raw libvirt side of a comparison. Without GUEST no
 * kernel is booted; a NIC is kept only with a MAC in inputs.macs (by interface name).
 */
export function rawDomainXml(
  host: HostCapabilities,
  name: string,
  spec: Record<string, unknown>,
  guest: Guest | undefined,
  inputs: { disks?: DiskDevice[]; consoleLog?: string; macs?: Record<string, string> } = {},
): string {
  return buildDomainXml(
    domainDefinitionFor(
      {
        apiVersion: API_VERSION,
        kind: "VirtualMachine",
        metadata: { name: `raw-${name}`, namespace: NS, uid: name },
        spec,
      } as VirtualMachine,
      {
        cluster: "bench",
        uuid: crypto.randomUUID(),
        macs: inputs.macs ?? {},
        disks: inputs.disks ?? [],
        ...(inputs.consoleLog ? { consoleLog: inputs.consoleLog } : {}),
        ...(guest ? { media: { kernel: guest.kernel, initrd: guest.initrd } } : {}),
      },
    ),
    host,
  );
}
