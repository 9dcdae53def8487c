// make bench (snapshots): VMSnapshot create → Succeeded (disk-only and with memory) and VMRestore
// create → Succeeded of the memory snapshot, seen through a watch, on one running 128 MiB TCG
// guest per method — Internal (a qcow2 VMDisk) and VolumeCopy (a raw one) — next to libvirt doing
// the same on a domain of its own (the same domain XML, our client) in the same run.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Watch } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import { kubectl } from "../src/cmd/local/kube.ts";
import { stackDown } from "../src/cmd/local/stack.ts";
import { snapshotMemoryDirOf } from "../src/controllers/node/media-paths.ts";
import { internalSnapshotXml, type SnapshotPlan } from "../src/controllers/node/snapshot-plan.ts";
import { parseCapabilities } from "../src/hypervisor/capabilities.ts";
import { parseLiveDevices } from "../src/hypervisor/domain/xml.ts";
import {
  DomainSaveRestoreFlags,
  DomainUndefineFlags,
  LibvirtClient,
  SnapshotCreateFlags,
  SnapshotRevertFlags,
  type StoragePoolRef,
  unlessNotFound,
} from "../src/hypervisor/libvirt/index.ts";
import { volumeNameOf, volumeXml } from "../src/hypervisor/storage/volume.ts";
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

const RUNS = Number(process.env.BENCH_SNAPSHOT_RUNS ?? 5);
/** The agent's default pool in the local/bench stack. */
const POOL = "libvirt-operator";
const DISK_SIZE = 64 * 2 ** 20; // provisionedSize 64Mi
const TARGET_MS = 150;
const CONSOLE_DIR = process.env.CONSOLE_LOG_DIR ?? "/var/log/libvirt/qemu";
const BOOTED = "LIBVIRT-OPERATOR-GUEST-BOOTED uptime=";
/** Where the agent keeps memory images; the raw side writes its own next to them. */
const MEMORY_DIR = snapshotMemoryDirOf(process.env);
const METHODS = [
  { vm: "q", format: "qcow2", method: "Internal" },
  { vm: "r", format: "raw", method: "VolumeCopy" },
] as const;
type Case = (typeof METHODS)[number];
const OPS = ["snapshot, disk-only", "snapshot, with memory", "restore of the memory snapshot"] as const;

function vmSpec(guest: Guest, disk?: string): Record<string, unknown> {
  return {
    hypervisor: "qemu",
    memory: "128Mi",
    cpu: { cores: 1 },
    interfaces: [],
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1" },
    shutdown: { gracePeriodSeconds: 0 },
    ...(disk ? { disks: [{ name: "data", diskRef: { name: disk } }] } : {}),
  };
}

type Status = { phase?: string; printableStatus?: string; conditions?: { type: string; message?: string }[] };
type Obj = { status?: Status };

/** Creates KIND NAME and resolves with its create → DONE latency (ms), seen through a watch. */
async function createUntil(kind: string, name: string, spec: object, done: (o: Obj) => boolean) {
  const plural = `${kind.toLowerCase()}s`;
  const { kc, api } = await apiClient(plural);
  let started = 0;
  let finish: (ms: number) => void = () => undefined;
  let fail: (err: Error) => void = () => undefined;
  const reached = new Promise<number>((resolve, reject) => {
    [finish, fail] = [resolve, reject];
  });
  const timer = setTimeout(() => fail(new Error(`${kind} ${name}: not there in 5 minutes`)), 300_000);
  const watch = await new Watch(kc).watch(
    `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${plural}`,
    { fieldSelector: `metadata.name=${name}` },
    (_type: string, o: Obj) => {
      if (!started) return;
      if (done(o)) finish(performance.now() - started);
      else if (o.status?.phase === "Failed") fail(new Error(`${kind} ${name}: ${JSON.stringify(o.status)}`));
    },
    () => undefined,
  );
  started = performance.now();
  await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural,
    body: { apiVersion: API_VERSION, kind, metadata: { name, namespace: NS }, spec },
  });
  try {
    return await reached;
  } finally {
    clearTimeout(timer);
    watch.abort();
  }
}

const succeeded = (o: Obj) => o.status?.phase === "Succeeded";
const running = (o: Obj) => o.status?.printableStatus === "Running";

async function remove(kind: string, name: string) {
  await kubectl(KUBECONFIG, ["delete", kind, name, "-n", NS, "--wait=true", "--timeout=120s"]);
}

async function get(plural: string, name: string): Promise<Obj> {
  const { api } = await apiClient(plural);
  return api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural, name });
}

async function waitRunning(vm: string) {
  for (let t = Date.now(); !running(await get("virtualmachines", vm)); await sleep(100))
    if (Date.now() - t > 120_000) throw new Error(`VM ${vm} is not Running after its restore`);
}

/** The agent's own duration of snapshot NAME ("taken in N ms" in its Ready condition). */
async function agentMs(name: string): Promise<number> {
  const ready = (await get("vmsnapshots", name)).status?.conditions?.find((x) => x.type === "Ready");
  return Number(/taken in (\d+) ms/.exec(ready?.message ?? "")?.[1] ?? Number.NaN);
}

async function waitForConsole(path: string, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(existsSync(path) && readFileSync(path, "utf8").includes(BOOTED))) {
    if (Date.now() > deadline) throw new Error(`${path}: the guest did not boot`);
    await sleep(250);
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  return fn().then(() => performance.now() - t);
}

/**
 * The raw side: domain <NS>_raw-VM, defined with the XML the agent would give the VM, on a
 * volume of its own, driven the way snapshot-take.ts and snapshot-restore.ts drive libvirt.
 */
async function rawTwin(libvirt: LibvirtClient, pool: StoragePoolRef, c: Case, guest: Guest) {
  const lv = libvirt;
  const name = `${NS}_raw-${c.vm}`;
  const own = volumeNameOf(NS, `raw-${c.vm}-data`, c.format);
  const volXml = (vol: string) =>
    volumeXml({ name: vol, format: c.format, capacityBytes: DISK_SIZE, allocationBytes: 0 });
  const path = await lv.volumePath(await lv.createVolume(pool, volXml(own)));
  const disk = { name: "data", path, format: c.format, bus: "virtio" as const, target: "vda" };
  const consoleLog = join(CONSOLE_DIR, `${name}-console.log`);
  rmSync(consoleLog, { force: true });
  const host = parseCapabilities(await lv.capabilities());
  const xml = rawDomainXml(host, c.vm, vmSpec(guest), guest, { disks: [disk], consoleLog });
  const dom = await lv.startDomain(await lv.defineDomain(xml));
  const domainDisks = parseLiveDevices(await lv.domainXml(dom)).disks;
  const planned = Object.values(domainDisks).map((d) => ({ ...d, vmDisk: d.name, pool: POOL, volume: own }));
  const plan: SnapshotPlan = {
    method: "Internal",
    why: "",
    disks: planned.map((d) => ({ ...d, format: c.format, copyVolume: "" })),
    skipped: [],
  };

  /** One snapshot, timed, and how to restore it (timed) and remove it. */
  async function snapshot(i: number, memory: boolean) {
    if (c.format === "qcow2") {
      const xml = internalSnapshotXml(
        `bench-${i}-${memory ? "mem" : "disk"}`,
        "bench",
        plan,
        domainDisks,
        true,
      );
      let snap: Awaited<ReturnType<LibvirtClient["createSnapshot"]>>;
      const ms = await timed(
        async () => (snap = await lv.createSnapshot(dom, xml, SnapshotCreateFlags.Atomic)),
      );
      const flags = SnapshotRevertFlags.Running | SnapshotRevertFlags.Force;
      return {
        ms,
        // The same work as the operator's restore: the guest is stopped first (grace 0: forced).
        restore: () =>
          timed(async () => {
            await lv.destroyDomain(dom);
            await lv.revertToSnapshot(snap, flags);
          }),
        remove: () => lv.deleteSnapshot(snap),
      };
    }
    const image = join(MEMORY_DIR, `${name}_snap-${i}.mem`);
    const copy = volumeNameOf(NS, `raw-${c.vm}-data-snap${i}`, c.format);
    await mkdir(MEMORY_DIR, { recursive: true, mode: 0o700 });
    const ms = await timed(async () => {
      await lv.domainSaveFlags(dom, image, null, 0);
      await lv.cloneVolume(pool, volXml(copy), await lv.lookupVolume(pool, own));
      await lv.domainRestoreFlags(image, null, DomainSaveRestoreFlags.Running);
      if (!memory) rmSync(image);
    });
    const restore = () =>
      timed(async () => {
        await lv.destroyDomain(dom);
        await lv.deleteVolume(await lv.lookupVolume(pool, own));
        await lv.cloneVolume(pool, volXml(own), await lv.lookupVolume(pool, copy));
        await lv.domainRestoreFlags(image, null, DomainSaveRestoreFlags.Running);
      });
    const remove = async () => {
      rmSync(image, { force: true });
      await lv.deleteVolume(await lv.lookupVolume(pool, copy));
    };
    return { ms, restore, remove };
  }
  return { consoleLog, snapshot };
}

/** What this benchmark made in libvirt, or a run cut short left (it would refuse the new VMs). */
async function removeLeftovers(libvirt: LibvirtClient, pool: StoragePoolRef) {
  for (const vm of METHODS.flatMap((c) => [c.vm, `raw-${c.vm}`])) {
    const dom = await unlessNotFound(libvirt.lookupDomainByName(`${NS}_${vm}`));
    if (!dom) continue;
    await libvirt.destroyDomain(dom).catch(() => undefined);
    await libvirt.undefineDomain(
      dom,
      DomainUndefineFlags.ManagedSave | DomainUndefineFlags.SnapshotsMetadata,
    );
  }
  const ours = new RegExp(`^${NS}_(raw-)?[qr]-data[._-]`);
  for (const vol of await libvirt.listVolumes(pool)) if (ours.test(vol.name)) await libvirt.deleteVolume(vol);
  const images = new RegExp(`^${NS}_(raw-)?[qr]_snap-`);
  if (existsSync(MEMORY_DIR))
    for (const f of readdirSync(MEMORY_DIR)) if (images.test(f)) rmSync(join(MEMORY_DIR, f), { force: true });
}

async function main() {
  const guest = await guestFiles();
  process.env.MEDIA_DIRS ??= dirname(guest.kernel);
  progress("starting the bench stack");
  await freshStack();
  const libvirt = await LibvirtClient.connect({ uri: "qemu:///system" });
  const pool = await libvirt.lookupStoragePool(POOL);
  // samples[method][op]: operator, raw libvirt, and the agent's own "taken in N ms"
  const samples = METHODS.map(() =>
    OPS.map(() => ({ op: [] as number[], raw: [] as number[], agent: [] as number[] })),
  );
  try {
    await removeLeftovers(libvirt, pool);
    await kubectl(KUBECONFIG, ["create", "namespace", NS]);
    progress("one VM per method (qcow2 and raw VMDisk) and its raw libvirt twin, booting");
    const consoles: string[] = [];
    for (const c of METHODS) {
      const log = join(CONSOLE_DIR, `${NS}_${c.vm}-console.log`);
      rmSync(log, { force: true });
      consoles.push(log);
      const ready = (o: Obj) => o.status?.phase === "Ready";
      await createUntil("VMDisk", `${c.vm}-data`, { provisionedSize: "64Mi", format: c.format }, ready);
      await createUntil("VirtualMachine", c.vm, vmSpec(guest, `${c.vm}-data`), running);
    }
    const raws = [];
    for (const c of METHODS) raws.push(await rawTwin(libvirt, pool, c, guest));
    consoles.push(...raws.map((r) => r.consoleLog));
    await Promise.all(consoles.map((log) => waitForConsole(log)));

    for (let i = 0; i < RUNS; i++) {
      progress(`run ${i + 1}/${RUNS}`);
      for (const [m, c] of METHODS.entries()) {
        const s = samples[m]!;
        const raw = raws[m]!;
        // Each path runs alone: operator first, then raw libvirt on its own domain.
        const disk = `${c.vm}-disk-${i}`;
        s[0]!.op.push(await createUntil("VMSnapshot", disk, { vmName: c.vm, memory: false }, succeeded));
        s[0]!.agent.push(await agentMs(disk));
        await remove("vmsnapshot", disk);
        const rawDisk = await raw.snapshot(i, false);
        s[0]!.raw.push(rawDisk.ms);
        await rawDisk.remove();

        const mem = `${c.vm}-mem-${i}`;
        s[1]!.op.push(await createUntil("VMSnapshot", mem, { vmName: c.vm, memory: true }, succeeded));
        s[1]!.agent.push(await agentMs(mem));
        const rawMem = await raw.snapshot(i, true);
        s[1]!.raw.push(rawMem.ms);

        const restore = `${c.vm}-restore-${i}`;
        s[2]!.op.push(
          await createUntil("VMRestore", restore, { vmName: c.vm, snapshotName: mem }, succeeded),
        );
        s[2]!.raw.push(await rawMem.restore());
        // The VM says Running again before the next run; then what this run stored goes.
        await waitRunning(c.vm);
        await remove("vmrestore", restore);
        await remove("vmsnapshot", mem);
        await rawMem.remove();
      }
    }
    progress("cleaning up");
    await kubectl(KUBECONFIG, ["delete", "vm", "--all", "-n", NS, "--wait=true", "--timeout=300s"]);
    await kubectl(KUBECONFIG, ["delete", "vmdisk", "--all", "-n", NS, "--wait=true", "--timeout=300s"]);

    const rows: (string | number)[][] = [];
    const lines: string[] = [];
    for (const [m, c] of METHODS.entries()) {
      for (const [k, what] of OPS.entries()) {
        const { op, raw, agent } = samples[m]![k]!;
        const [o, r] = [summarize(op), summarize(raw)];
        const label = `${c.method} (${c.format}), ${what}`;
        rows.push([`${label}: operator`, o.count, o.p50, o.p99]);
        if (agent.length) {
          const a = summarize(agent);
          rows.push([`${label}: agent's own take ("taken in")`, a.count, a.p50, a.p99]);
        }
        rows.push([`${label}: raw libvirt`, r.count, r.p50, r.p99]);
        const [d50, d99] = [o.p50 - r.p50, o.p99 - r.p99];
        const meets = (d: number) => (d < TARGET_MS ? "meets" : "MISSES");
        lines.push(
          `${label}: operator overhead p50 ${d50.toFixed(0)} ms, p99 ${d99.toFixed(0)} ms ` +
            `(ratio p50 ${(o.p50 / r.p50).toFixed(2)}x) — target < ${TARGET_MS} ms: p50 ${meets(d50)}, p99 ${meets(d99)}`,
        );
      }
    }
    console.log(
      `\nVMSnapshot / VMRestore benchmark (128 MiB TCG guests, ${DISK_SIZE / 2 ** 20} MiB disk; ` +
        "create → Succeeded through a watch; ms)",
    );
    console.log(
      "VMs have shutdown.gracePeriodSeconds 0: a restore forces the guest off at once instead of an ACPI shutdown.\n" +
        "raw libvirt: Internal = createSnapshot (the agent's snapshot XML) / destroy + revertToSnapshot(Running|Force);\n" +
        "VolumeCopy = save → cloneVolume → restore / destroy → volume put back (delete + clone) → restore.\n",
    );
    console.log(table(["path", "runs", "p50", "p99"], rows));
    console.log("");
    for (const line of lines) console.log(line);
  } finally {
    await stackDown(STACK);
    await removeLeftovers(libvirt, pool).catch((err: unknown) => progress(`cleanup: ${err}`));
    await libvirt.close();
  }
}

await main();
// Keep-alive sockets of the API client would hold the process open.
process.exit(0);
