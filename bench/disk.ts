// make bench (disks): a blank 10 GiB sparse qcow2 VMDisk, create → Ready, and a clone of it,
// create → Ready (seen through a watch), next to libvirt doing the same directly (our client,
// the same volume XML) and qemu-img on a file in the same directory, in the same run.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Watch } from "@kubernetes/client-node";
import { API_VERSION, GROUP, VERSION } from "../src/api/names.ts";
import type { VMDisk } from "../src/api/vmdisk.ts";
import { kubectl } from "../src/cmd/local/kube.ts";
import { stackDown } from "../src/cmd/local/stack.ts";
import { run } from "../src/cmd/local/tools.ts";
import { LibvirtClient } from "../src/hypervisor/libvirt/index.ts";
import { volumeXml } from "../src/hypervisor/storage/volume.ts";
import { apiClient, freshStack, KUBECONFIG, NS, progress, STACK } from "./stack.ts";
import { summarize, table } from "./stats.ts";

const RUNS = Number(process.env.BENCH_DISK_RUNS ?? 10);
const SIZE = 10 * 2 ** 30;
/** The agent's default pool in the local/bench stack. */
const POOL = "libvirt-operator";

/** Creates the VMDisk and resolves with its create → Ready latency (ms). */
async function operatorCreate(name: string, source?: Record<string, unknown>): Promise<number> {
  const { kc, api } = await apiClient("vmdisks");
  let started = 0;
  let done: (ms: number) => void = () => undefined;
  const ready = new Promise<number>((r) => {
    done = r;
  });
  const watch = await new Watch(kc).watch(
    `/apis/${GROUP}/${VERSION}/namespaces/${NS}/vmdisks`,
    { fieldSelector: `metadata.name=${name}` },
    (_type: string, disk: VMDisk) => {
      if (disk.status?.phase === "Ready" && started) done(performance.now() - started);
      if (disk.status?.phase === "Illegal") throw new Error(`${name}: ${JSON.stringify(disk.status)}`);
    },
    () => undefined,
  );
  started = performance.now();
  await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: "vmdisks",
    body: {
      apiVersion: API_VERSION,
      kind: "VMDisk",
      metadata: { name, namespace: NS },
      spec: { provisionedSize: "10Gi", format: "qcow2", sparse: true, ...(source ? { source } : {}) },
    },
  });
  const ms = await Promise.race([
    ready,
    sleep(120_000).then(() => Promise.reject(new Error(`${name} not Ready`))),
  ]);
  watch.abort();
  return ms;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main() {
  progress("starting the bench stack");
  await freshStack();
  const libvirt = await LibvirtClient.connect({ uri: "qemu:///system" });
  try {
    await kubectl(KUBECONFIG, ["create", "namespace", NS]);
    const pool = await libvirt.lookupStoragePool(POOL);
    const dir = /<path>([^<]+)<\/path>/.exec(await libvirt.storagePoolXml(pool))?.[1] ?? "";
    const samples = {
      opCreate: [] as number[],
      opClone: [] as number[],
      lvCreate: [] as number[],
      lvClone: [] as number[],
      imgCreate: [] as number[],
      imgClone: [] as number[],
    };
    for (let i = 0; i < RUNS; i++) {
      progress(`run ${i + 1}/${RUNS}`);
      samples.opCreate.push(await operatorCreate(`blank-${i}`));
      samples.opClone.push(await operatorCreate(`clone-${i}`, { disk: { name: `blank-${i}` } }));

      const xml = (name: string) =>
        volumeXml({ name, format: "qcow2", capacityBytes: SIZE, allocationBytes: 0 });
      let vol: Awaited<ReturnType<typeof libvirt.createVolume>> | undefined;
      samples.lvCreate.push(
        await timed(async () => (vol = await libvirt.createVolume(pool, xml(`raw-${i}.qcow2`)))),
      );
      let copy: typeof vol;
      samples.lvClone.push(
        await timed(async () => (copy = await libvirt.cloneVolume(pool, xml(`raw-copy-${i}.qcow2`), vol!))),
      );
      await libvirt.deleteVolume(copy!);
      await libvirt.deleteVolume(vol!);

      const file = join(dir, `img-${i}.qcow2`);
      samples.imgCreate.push(
        await timed(() => run("qemu-img", ["create", "-q", "-f", "qcow2", file, String(SIZE)])),
      );
      samples.imgClone.push(
        await timed(() => run("qemu-img", ["convert", "-f", "qcow2", "-O", "qcow2", file, `${file}.copy`])),
      );
      rmSync(file, { force: true });
      rmSync(`${file}.copy`, { force: true });
    }
    await kubectl(KUBECONFIG, ["delete", "vmdisk", "--all", "-n", NS, "--wait=true", "--timeout=300s"]);

    const rows: (string | number)[][] = [];
    const lines: string[] = [];
    for (const [what, op, lv, img] of [
      ["create blank 10 GiB sparse qcow2", samples.opCreate, samples.lvCreate, samples.imgCreate],
      ["clone it", samples.opClone, samples.lvClone, samples.imgClone],
    ] as const) {
      const o = summarize([...op]);
      const l = summarize([...lv]);
      const q = summarize([...img]);
      rows.push([`${what}: operator (VMDisk → Ready)`, o.count, o.p50, o.p99]);
      rows.push([`${what}: libvirt (our client)`, l.count, l.p50, l.p99]);
      rows.push([`${what}: qemu-img`, q.count, q.p50, q.p99]);
      lines.push(
        `${what}: operator/libvirt p50 ${(o.p50 / l.p50).toFixed(1)}x (+${(o.p50 - l.p50).toFixed(0)} ms), ` +
          `operator/qemu-img p50 ${(o.p50 / q.p50).toFixed(1)}x (+${(o.p50 - q.p50).toFixed(0)} ms)`,
      );
    }
    console.log("\nVMDisk benchmark (ms)\n");
    console.log(table(["path", "runs", "p50", "p99"], rows));
    console.log("");
    for (const line of lines) console.log(line);
  } finally {
    await libvirt.close();
    await stackDown(STACK);
  }
}

await main();
process.exit(0);
