// The baseline of make bench-scale, the work the operator cannot avoid, done without it:
//  - a bare client writing the same VirtualMachines and one status each (server-side apply, as
//    the operator writes status) through the same API server, then deleting them;
//  - raw libvirt define + start (then destroy + undefine) of the same domains, spread over as
//    many test-driver hypervisors as there are nodes, with the agent's workers per hypervisor;
//  - the floor: the API requests the operator makes for each VM (the placement write, both
//    Events, the finalizer's removal) sent by a bare client, as fast as the API server takes them.
//    What the operator's run takes beyond the floor is its daemons' own cost.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  API_VERSION,
  DOMAIN_FINALIZER,
  GROUP,
  NODE_LABEL,
  VERSION,
  VirtualMachineKind,
} from "../src/api/names.ts";
import { runningPid } from "../src/cmd/local/processes.ts";
import {
  encodePlacement,
  PLACEMENT_ANNOTATION,
  type PlacedInterface,
} from "../src/controllers/vm-placement.ts";
import { offerTestDriverDomains, parseCapabilities } from "../src/hypervisor/capabilities.ts";
import { type DomainRef, DomainUndefineFlags, LibvirtClient } from "../src/hypervisor/libvirt/index.ts";
import { fitTestDriver } from "../src/hypervisor/test-driver.ts";
import { loadKubeconfig } from "../src/kube/kubeconfig.ts";
import { type AnyObject, applyStatus, connectKube, patchMetadata, recordEvent } from "../src/runtime/kube.ts";
import { testNodeXml } from "../test/support/nodes.ts";
import { libvirtdPid, processFigures } from "./scale-probe.ts";
import { KUBECONFIG, rawDomainXml, STACK } from "./stack.ts";
import { inPool, type Summary, summarize } from "./stats.ts";

/** One part of the baseline: wall time for all of them, and each one's latency (ms). */
export interface PartFigures {
  seconds: number;
  latencyMs: Summary;
  /** CPU the API server, etcd and libvirtd spent meanwhile. */
  apiServerCpuSeconds?: number;
  etcdCpuSeconds?: number;
  libvirtdCpuSeconds?: number;
}

/** PART, with what the bench stack's API server and etcd, and the host's libvirtd, spent on it. */
async function withDaemonCpu(part: () => Promise<PartFigures>): Promise<PartFigures> {
  const pids = () => [
    runningPid(STACK.stateDir, "kube-apiserver"),
    runningPid(STACK.stateDir, "etcd"),
    libvirtdPid(),
  ];
  const cpu = () => pids().map((pid) => processFigures(pid).cpuSeconds);
  const before = cpu();
  const figures = await part();
  const [apiServer, etcd, libvirtd] = cpu().map((after, i) => after - before[i]!);
  return { ...figures, apiServerCpuSeconds: apiServer, etcdCpuSeconds: etcd, libvirtdCpuSeconds: libvirtd };
}

async function timedPart<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>) {
  const latencies: number[] = [];
  const started = performance.now();
  await inPool(items, concurrency, async (item) => {
    const t = performance.now();
    await fn(item);
    latencies.push(performance.now() - t);
  });
  return { seconds: (performance.now() - started) / 1000, latencyMs: summarize(latencies) };
}

/** A node no agent runs as: no agent sees the floor's VMs, though they are labelled as placed. */
export const FLOOR_NODE = "bench-floor-nowhere";

/**
 * Creates a VirtualMachine per name in NAMESPACE (SPEC) and applies STATUS to each, CONCURRENCY
 * at a time; then deletes them. Nothing may act on them meanwhile (the caller stops the
 * controller; no agent sees a VM the controller has not labelled for its node).
 *
 * FLOOR: each VM also gets what the operator writes besides (the controller's placement write
 * and its Scheduled Event, the agent's Started Event; on delete, the finalizer's removal), in the
 * order the operator sends them, placed on FLOOR_NODE.
 */
export async function bareApiRun(
  api: CustomObjectsApi,
  options: {
    names: readonly string[];
    namespace: string;
    spec: Record<string, unknown>;
    status: Record<string, unknown>;
    concurrency: number;
    floor?: boolean;
  },
): Promise<{ create: PartFigures; delete: PartFigures }> {
  const kube = await connectKube(undefined, loadKubeconfig([KUBECONFIG]));
  const { namespace } = options;
  const where = { group: GROUP, version: VERSION, namespace, plural: VirtualMachineKind.plural };
  const create = await withDaemonCpu(() =>
    timedPart(options.names, options.concurrency, async (name) => {
      const made = (await api.createNamespacedCustomObject({
        ...where,
        body: {
          apiVersion: API_VERSION,
          kind: "VirtualMachine",
          metadata: { name, namespace },
          spec: options.spec,
        },
      })) as AnyObject;
      const status = options.status;
      if (!options.floor) {
        await applyStatus(
          kube,
          VirtualMachineKind,
          { metadata: { name, namespace } },
          "bench-baseline",
          status,
        );
        return;
      }
      const interfaces = (status.interfaces as PlacedInterface[] | undefined) ?? [];
      const placement = { nodeName: FLOOR_NODE, uuid: randomUUID(), interfaces };
      const rv = await patchMetadata(kube, VirtualMachineKind, made, {
        labels: { [NODE_LABEL]: FLOOR_NODE },
        annotations: { [PLACEMENT_ANNOTATION]: encodePlacement(placement, made.metadata.uid) },
        finalizers: [DOMAIN_FINALIZER],
      });
      const placed = { ...made, metadata: { ...made.metadata, resourceVersion: rv } };
      await Promise.all([
        recordEvent(
          kube,
          "bench-floor-controller",
          placed,
          "Normal",
          "Scheduled",
          `placed on node ${FLOOR_NODE}`,
        ),
        applyStatus(kube, VirtualMachineKind, placed, "bench-floor-agent", {
          ...status,
          nodeName: FLOOR_NODE,
          uuid: placement.uuid,
        }),
      ]);
      await recordEvent(kube, "bench-floor-agent", placed, "Normal", "Started", `domain ${name} started`);
    }),
  );
  const del = await withDaemonCpu(() =>
    timedPart(options.names, options.concurrency, async (name) => {
      const deleting = (await api.deleteNamespacedCustomObject({ ...where, name })) as AnyObject;
      if (options.floor) await patchMetadata(kube, VirtualMachineKind, deleting, { finalizers: [] });
    }),
  );
  kube.http.close();
  return { create, delete: del };
}

/** A MAC for the INDEXth raw domain (locally administered, QEMU's prefix). */
function macOf(index: number): string {
  const b = [(index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff];
  return `52:54:00:${b.map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
}

/**
 * Defines and starts a domain per name (the XML the agent would write for SPEC, one NIC per
 * interface as the VM would get) on CONNECTIONS fresh test-driver hypervisors, round robin,
 * IN_FLIGHT calls at a time on each; then destroys and undefines them.
 */
export async function rawLibvirtRun(options: {
  names: readonly string[];
  spec: Record<string, unknown>;
  interfaceNames: readonly string[];
  connections: number;
  inFlight: number;
  cpus: number;
  memoryBytes: number;
}): Promise<{ create: PartFigures; delete: PartFigures }> {
  offerTestDriverDomains(true);
  const dir = await mkdtemp(join(tmpdir(), "bench-scale-raw-"));
  const clients: LibvirtClient[] = [];
  try {
    for (let i = 0; i < options.connections; i++) {
      const config = join(dir, `node-${i}.xml`);
      await writeFile(config, testNodeXml(200 + i, options.cpus, options.memoryBytes));
      const client = await LibvirtClient.connect({ uri: `test+unix://${config}` });
      fitTestDriver(client);
      clients.push(client);
    }
    const host = parseCapabilities(await clients[0]!.capabilities());
    const shares = clients.map((client, c) => ({
      client,
      jobs: options.names.flatMap((name, i) =>
        i % clients.length === c
          ? [
              {
                name,
                xml: rawDomainXml(host, name, options.spec, undefined, {
                  macs: Object.fromEntries(options.interfaceNames.map((n, k) => [n, macOf(i * 8 + k)])),
                }),
              },
            ]
          : [],
      ),
    }));
    const domains = new Map<string, { client: LibvirtClient; dom: DomainRef }>();
    const perConnection = async <T>(
      each: (client: LibvirtClient, job: { name: string; xml: string }) => Promise<T>,
    ) => {
      const latencies: number[] = [];
      const started = performance.now();
      await Promise.all(
        shares.map(({ client, jobs }) =>
          inPool(jobs, options.inFlight, async (job) => {
            const t = performance.now();
            await each(client, job);
            latencies.push(performance.now() - t);
          }),
        ),
      );
      return { seconds: (performance.now() - started) / 1000, latencyMs: summarize(latencies) };
    };
    const create = await withDaemonCpu(() =>
      perConnection(async (client, job) => {
        const dom = await client.defineDomain(job.xml);
        domains.set(job.name, { client, dom: await client.startDomain(dom) });
      }),
    );
    const del = await withDaemonCpu(() =>
      perConnection(async (client, job) => {
        const { dom } = domains.get(job.name)!;
        await client.destroyDomain(dom);
        await client.undefineDomain(dom, DomainUndefineFlags.ManagedSave);
      }),
    );
    return { create, delete: del };
  } finally {
    // Each connection's hypervisor lives as long as the connection: closing drops what is left.
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await rm(dir, { recursive: true, force: true });
  }
}
