// make bench (templates): ten VMs made from one VMTemplate, created at once, create → Running
// through a watch, next to raw libvirt making ten linked clones of the same base image with
// qemu-img and defining + starting them (the same domain XML, our client), in the same run.
// 128 MiB TCG guests booting the test guest's kernel, each with one linked-clone disk.
import { rmSync } from "node:fs";
import { copyFile, mkdtemp } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type KubeConfig, Watch } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { kubectl } from "../src/cmd/local/kube.ts";
import { stackDown } from "../src/cmd/local/stack.ts";
import { run } from "../src/cmd/local/tools.ts";
import { parseCapabilities } from "../src/hypervisor/capabilities.ts";
import { DomainUndefineFlags, LibvirtClient, type StoragePoolRef } from "../src/hypervisor/libvirt/index.ts";
import {
  apiClient,
  freshStack,
  type Guest,
  guestFiles,
  KUBECONFIG,
  NS,
  progress,
  rawDomainXml,
  STACK,
} from "./stack.ts";
import { summarize, table } from "./stats.ts";

const VMS = Number(process.env.BENCH_TEMPLATE_VMS ?? 10);
const RUNS = Number(process.env.BENCH_TEMPLATE_RUNS ?? 3);
/** Measure raw libvirt only: its figures when the operator side is broken. */
const RAW_ONLY = process.env.BENCH_TEMPLATE_RAW_ONLY === "1";
/** The agent's default pool in the local/bench stack; raw overlays go there too. */
const POOL = "libvirt-operator";
const TEMPLATE = "tpl";
const IMAGE_SIZE = "256M";
const IMAGE_DATA = "32M";
/** Names this benchmark gives domains and volumes, ours and raw libvirt's (shared libvirtd). */
const OURS = new RegExp(`^${NS}_(raw-)?${TEMPLATE}-`);

function hardware(guest: Guest) {
  return {
    hypervisor: "qemu",
    memory: "128Mi",
    cpu: { cores: 1 },
    interfaces: [],
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1" },
    shutdown: { gracePeriodSeconds: 0 },
  };
}

/** A qcow2 base with data in it, in a directory the agent may import from. */
async function makeBaseImage(dir: string): Promise<string> {
  const path = join(dir, "base.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", path, IMAGE_SIZE]);
  await run("qemu-io", ["-f", "qcow2", "-c", `write -P 0x5a 0 ${IMAGE_DATA}`, path]);
  return path;
}

async function poolDir(libvirt: LibvirtClient, pool: StoragePoolRef): Promise<string> {
  const path = /<path>([^<]+)<\/path>/.exec(await libvirt.storagePoolXml(pool))?.[1];
  if (!path) throw new Error(`pool ${POOL} has no directory`);
  return path;
}

/** Domains and volumes of this benchmark that a run cut short left (they would refuse new ones). */
async function removeLeftovers(libvirt: LibvirtClient) {
  const pool = await libvirt.lookupStoragePool(POOL);
  for (const dom of await libvirt.listAllDomains()) {
    if (!OURS.test(dom.name)) continue;
    await libvirt.destroyDomain(dom).catch(() => undefined);
    await libvirt.undefineDomain(dom, DomainUndefineFlags.ManagedSave).catch(() => undefined);
  }
  // Raw overlays are made by qemu-img, not libvirt: a refresh lists them as volumes.
  await libvirt.refreshStoragePool(pool);
  for (const vol of await libvirt.listVolumes(pool))
    if (OURS.test(vol.name))
      await libvirt.deleteVolume(vol).catch((err: unknown) => progress(`cleanup ${vol.name}: ${err}`));
}

/** Raw libvirt: per VM, qemu-img makes a linked clone of BASE, then define + start; all at once. */
async function rawRun(libvirt: LibvirtClient, dir: string, base: string, names: string[], guest: Guest) {
  const host = parseCapabilities(await libvirt.capabilities());
  const clone: number[] = [];
  const total = await Promise.all(
    names.map(async (name) => {
      const t = performance.now();
      const path = join(dir, `${NS}_raw-${name}-root.qcow2`);
      await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", path]);
      clone.push(performance.now() - t);
      const disk = { name: "root", path, format: "qcow2" as const, bus: "virtio" as const, target: "vda" };
      const xml = rawDomainXml(host, name, hardware(guest), guest, { disks: [disk] });
      await libvirt.startDomain(await libvirt.defineDomain(xml));
      return performance.now() - t;
    }),
  );
  for (const name of names) {
    const dom = await libvirt.lookupDomainByName(`${NS}_raw-${name}`);
    await libvirt.destroyDomain(dom).catch(() => undefined);
    await libvirt.undefineDomain(dom, DomainUndefineFlags.ManagedSave);
    rmSync(join(dir, `${NS}_raw-${name}-root.qcow2`), { force: true });
  }
  return { total, clone };
}

type Status = {
  phase?: string;
  printableStatus?: string;
  bases?: { phase?: string }[];
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
};
type Obj = { metadata: { name: string }; status?: Status };

function stalled(o: Obj): boolean {
  return (
    o.status?.phase === "Failed" ||
    !!o.status?.conditions?.some((c) => c.type === "Stalled" && c.status === "True")
  );
}

/**
 * Calls ON_OBJECT with each object PATH's watch sends, starting the watch again whenever it
 * ends: the client gives up on a watch after 30 s without an event, and a VM waiting for its
 * disk can be quiet that long. A new watch lists every object first, so nothing is missed.
 */
async function keepWatching<T>(
  kc: KubeConfig,
  path: string,
  query: Record<string, string>,
  onObject: (o: T) => void,
): Promise<() => void> {
  let stopped = false;
  let current: AbortController | undefined;
  const start = async (): Promise<void> => {
    current = await new Watch(kc).watch(
      path,
      query,
      (_type: string, o: T) => onObject(o),
      () => {
        if (!stopped) setTimeout(() => void start().catch(() => undefined), 100);
      },
    );
  };
  await start();
  return () => {
    stopped = true;
    current?.abort();
  };
}

/** The template, created and imported onto this node ahead of any VM (prefetchNodes); create → Ready (ms). */
async function createTemplate(image: string, guest: Guest): Promise<number> {
  const { kc, api } = await apiClient("vmtemplates");
  let last: Obj | undefined;
  let started = 0;
  let finish: (ms: number) => void = () => undefined;
  let fail: (err: Error) => void = () => undefined;
  const ready = new Promise<number>((resolve, reject) => {
    [finish, fail] = [resolve, reject];
  });
  const stop = await keepWatching<Obj>(
    kc,
    `/apis/${GROUP}/${VERSION}/namespaces/${NS}/vmtemplates`,
    { fieldSelector: `metadata.name=${TEMPLATE}` },
    (o) => {
      last = o;
      const bases = o.status?.bases ?? [];
      // Ready with its base there: the template may say Ready before a prefetch ends.
      if (o.status?.phase === "Ready" && bases.length > 0 && bases.every((b) => b.phase === "Ready"))
        finish(performance.now() - started);
      else if (stalled(o)) fail(new Error(`VMTemplate ${TEMPLATE}: ${JSON.stringify(o.status)}`));
    },
  );
  const timer = setTimeout(
    () => fail(new Error(`VMTemplate ${TEMPLATE} not Ready in 5 minutes: ${JSON.stringify(last?.status)}`)),
    300_000,
  );
  started = performance.now();
  await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: "vmtemplates",
    body: {
      apiVersion: API_VERSION,
      kind: "VMTemplate",
      metadata: { name: TEMPLATE, namespace: NS },
      spec: {
        template: { ...hardware(guest), disks: [{ name: "root", size: "256Mi", format: "qcow2", image }] },
        prefetchNodes: [STACK.nodeName],
      },
    },
  });
  try {
    return await ready;
  } finally {
    clearTimeout(timer);
    stop();
  }
}

/** Creates VMs NAMES from the template at once; each one's create → Running latency (ms). */
async function operatorRun(names: string[]): Promise<number[]> {
  const { kc, api } = await apiClient("virtualmachines");
  const created = new Map<string, number>();
  const running = new Map<string, number>();
  const where = { group: GROUP, version: VERSION, namespace: NS, plural: "virtualmachines" };
  let done: () => void = () => undefined;
  const allRunning = new Promise<void>((r) => {
    done = r;
  });
  const stop = await keepWatching<VirtualMachine>(
    kc,
    `/apis/${GROUP}/${VERSION}/namespaces/${NS}/virtualmachines`,
    {},
    (vm) => {
      const name = vm.metadata.name;
      if (vm.status?.printableStatus === "Running" && created.has(name) && !running.has(name)) {
        running.set(name, performance.now());
        if (names.every((n) => running.has(n))) done();
      }
    },
  );
  // All at once, as `helm install` of examples/vms-from-template sends them.
  await Promise.all(
    names.map(async (name) => {
      created.set(name, performance.now());
      await api.createNamespacedCustomObject({
        ...where,
        body: {
          apiVersion: API_VERSION,
          kind: "VirtualMachine",
          metadata: { name, namespace: NS },
          spec: { source: { template: TEMPLATE }, description: "bench/template.ts" },
        },
      });
    }),
  );
  // Aborted once all run, so that no late rejection ends a later run.
  const deadline = new AbortController();
  const timeout = sleep(300_000, undefined, { signal: deadline.signal }).then(async () => {
    // What the API server holds now, not the last event the watch saw.
    const late = [];
    for (const name of names.filter((n) => !running.has(n))) {
      const vm = (await api.getNamespacedCustomObject({ ...where, name })) as VirtualMachine;
      const conditions = (vm.status?.conditions ?? []).map(
        (c) => `${c.type}=${c.status} ${c.reason}: ${c.message}`,
      );
      late.push(`${name}: ${vm.status?.printableStatus ?? "no status"}; ${conditions.join("; ")}`);
    }
    throw new Error(`VMs not Running in 5 minutes:\n  ${late.join("\n  ")}`);
  });
  timeout.catch(() => undefined);
  try {
    await Promise.race([allRunning, timeout]);
  } finally {
    deadline.abort();
    stop();
  }
  return names.map((n) => running.get(n)! - created.get(n)!);
}

/** Deletes every VM, then waits until their own VMDisks (the clones) are gone too. */
async function deleteVms() {
  await kubectl(KUBECONFIG, ["delete", "vm", "--all", "-n", NS, "--wait=true", "--timeout=300s"]);
  const { api } = await apiClient("vmdisks");
  for (const t = Date.now(); ; await sleep(250)) {
    const { items } = (await api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: "vmdisks",
    })) as { items: { metadata: { ownerReferences?: { kind: string }[] } }[] };
    if (!items.some((d) => d.metadata.ownerReferences?.some((o) => o.kind === "VirtualMachine"))) return;
    if (Date.now() - t > 300_000) throw new Error("the VMs' disks are not gone after 5 minutes");
  }
}

/** Both sides, RUNS times, then the figures. */
async function measure(libvirt: LibvirtClient, image: string, guest: Guest) {
  const pool = await libvirt.lookupStoragePool(POOL);
  const dir = await poolDir(libvirt, pool);
  const samples = { op: [] as number[], raw: [] as number[], clone: [] as number[] };
  let templateMs = Number.NaN;
  await removeLeftovers(libvirt);
  await kubectl(KUBECONFIG, ["create", "namespace", NS]);
  // The bases, before any VM on either side: a copy of the image into the pool.
  const base = join(dir, `${NS}_raw-${TEMPLATE}-base.qcow2`);
  const t = performance.now();
  await copyFile(image, base);
  const baseCopyMs = performance.now() - t;
  if (!RAW_ONLY) {
    progress(`VMTemplate ${TEMPLATE}, its base imported onto ${STACK.nodeName}`);
    templateMs = await createTemplate(image, guest);
  }
  const figures = (ms: number[]) =>
    `p50 ${summarize(ms).p50.toFixed(0)} ms, max ${summarize(ms).max.toFixed(0)} ms`;
  for (let i = 0; i < RUNS; i++) {
    progress(`run ${i + 1}/${RUNS}: ${VMS} VMs, raw libvirt${RAW_ONLY ? "" : ", then the operator"}`);
    // Each path runs alone: no guest of the other one is booting on the same CPUs meanwhile.
    const names = Array.from({ length: VMS }, (_, k) => `${TEMPLATE}-${i}-${k}`);
    const raw = await rawRun(libvirt, dir, base, names, guest);
    samples.raw.push(...raw.total);
    samples.clone.push(...raw.clone);
    progress(`raw libvirt: ${figures(raw.total)}`);
    if (RAW_ONLY) continue;
    const op = await operatorRun(names);
    samples.op.push(...op);
    progress(`operator: ${figures(op)}`);
    await deleteVms();
  }
  if (!RAW_ONLY) {
    progress("cleaning up");
    await kubectl(KUBECONFIG, ["delete", "vmtemplate", TEMPLATE, "-n", NS, "--wait=true", "--timeout=300s"]);
  }

  const [o, r, c] = [summarize(samples.op), summarize(samples.raw), summarize(samples.clone)];
  console.log(
    `\nVMTemplate benchmark (${VMS} VMs at once × ${RUNS} runs, 128 MiB TCG guests, one linked-clone ` +
      `disk on a ${IMAGE_SIZE} qcow2 base holding ${IMAGE_DATA}; create → Running through a watch; ms)\n`,
  );
  console.log(
    table(
      ["path", "VMs", "p50", "p99"],
      [
        ["operator, VM from the template", o.count, o.p50, o.p99],
        ["raw libvirt, qemu-img linked clone + define + start", r.count, r.p50, r.p99],
        ["  of which qemu-img create -b base", c.count, c.p50, c.p99],
      ],
    ),
  );
  console.log("");
  if (!RAW_ONLY)
    console.log(
      `per VM: operator overhead p50 ${(o.p50 - r.p50).toFixed(0)} ms, p99 ${(o.p99 - r.p99).toFixed(0)} ms ` +
        `(ratio p50 ${(o.p50 / r.p50).toFixed(2)}x, p99 ${(o.p99 / r.p99).toFixed(2)}x)`,
    );
  console.log(
    `the base, once: VMTemplate create → Ready with its base imported ${templateMs.toFixed(0)} ms; ` +
      `raw copy of the image into the pool ${baseCopyMs.toFixed(0)} ms`,
  );
}

async function main() {
  const guest = await guestFiles();
  // 2 host CPUs here; ten one-vCPU guests at once need the room.
  process.env.CPU_OVERCOMMIT ??= "16";
  process.env.MEDIA_DIRS ??= dirname(guest.kernel);
  const work = await mkdtemp("/var/tmp/lvo-bench-template-");
  // The template's image is imported by the agent, only from its import directories.
  process.env.IMAGE_IMPORT_DIRS = work;
  let libvirt: LibvirtClient | undefined;
  try {
    const image = await makeBaseImage(work);
    progress("starting the bench stack");
    await freshStack();
    libvirt = await LibvirtClient.connect({ uri: "qemu:///system" });
    await measure(libvirt, image, guest);
  } finally {
    // The agent first, so that nothing it still reconciles comes back.
    await stackDown(STACK);
    if (libvirt) {
      await removeLeftovers(libvirt).catch((err: unknown) => progress(`cleanup: ${err}`));
      await libvirt.close();
    }
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
// Keep-alive sockets of the API client would hold the process open.
process.exit(0);
