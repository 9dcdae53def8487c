// Issue 14, "No data lost to missing status", on the real agent and libvirtd with a TCG guest:
// a VM and its disks removed without the agent acting (agent stopped, finalizers stripped, as an
// etcd or Velero restore loses them) leave their domain and volumes on the node, kept and
// reported as orphans; the same manifests applied again without status take them over — the
// same running guest (QEMU pid, uptime and counter go on), the same volumes (inode and data) —
// even with an emptier node there to tempt placement; nothing is duplicated or deleted. A disk
// of the same name in another namespace, or a volume of its name this cluster did not make, is
// never taken.
import assert from "node:assert/strict";
import { rmSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { ORPHANS_ANNOTATION, parseOrphanAnnotation } from "../../src/controllers/orphan-facts.ts";
import {
  consoleText,
  counterBoots,
  counterReadings,
  ensureGuest,
  type Guest,
  guestVmSpec,
} from "../support/guest.ts";
import { startTestNodes, type TestNode } from "../support/nodes.ts";
import {
  agentMetrics,
  applyObject,
  applyVm,
  consoleLogOf,
  getObject,
  getVm,
  isPrintable,
  qemuPid,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";
import { counterImage, firstSector } from "../support/volumes.ts";

const MiB = 2 ** 20;
const POOL = "libvirt-operator";
let guest: Guest;
let ns = "";
let other = "";
let workDir = "";
let started = 0;
const extraNodes: TestNode[] = [];

const disk = (namespace: string, name: string) => getObject<VMDisk>("vmdisk", namespace, name);
const waitForDisk = (
  namespace: string,
  name: string,
  check: (d: VMDisk | undefined) => boolean,
  what: string,
) => waitForObject<VMDisk>("vmdisk", namespace, name, check, what, 120_000);
const ready = (d: VMDisk | undefined) => d?.status?.phase === "Ready";

/** The first sector of a qcow2 volume, up to a NUL (what lvo.counter keeps there). */
async function sectorText(path: string): Promise<string> {
  return (await firstSector(path)).toString("latin1").split("\0")[0]!;
}

const counterSpec = () => ({
  provisionedSize: "16Mi",
  source: { image: { url: join(workDir, "counter.qcow2") } },
});
const copySpec = { provisionedSize: "16Mi", source: { disk: { name: "counter" } } };
const vmSpec = () =>
  guestVmSpec(guest, {
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1 lvo.counter=vda" },
    disks: [{ name: "data", diskRef: { name: "counter" } }],
  });

/** Our volumes in the pool for namespace NS (data volumes and their ownership marks). */
async function poolVolumes(namespace: string): Promise<string[]> {
  await virsh("pool-refresh", POOL);
  return (await virsh("vol-list", POOL))
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${namespace}_`) || (n.startsWith("lvo-") && n.includes(`.${namespace}_`)))
    .sort();
}

async function orphansOnNode() {
  const { stdout } = await kubectl(["get", "node", TEST_STACK.nodeName, "-o", "json"]);
  const annotations = (JSON.parse(stdout) as { metadata: { annotations?: Record<string, string> } }).metadata
    .annotations;
  return parseOrphanAnnotation(annotations?.[ORPHANS_ANNOTATION]);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Deletes OBJECTS as a restore loses them: marked deleted, then their finalizers stripped. */
async function loseWithoutAgent(namespace: string, objects: string[]) {
  for (const o of objects) await kubectl(["delete", o, "-n", namespace, "--wait=false"]);
  for (const o of objects)
    await kubectl(["patch", o, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
  for (const o of objects) await kubectl(["wait", "--for=delete", o, "-n", namespace, "--timeout=30s"]);
}

before(async () => {
  started = Date.now();
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-adopt-"));
  // lvo.counter's first sector says 41.
  await counterImage(workDir, "counter", 41, 4 * MiB);
  process.env.IMAGE_IMPORT_DIRS = workDir;
  ns = await testNamespace("adopt");
  other = await testNamespace("adopt-other");
  await startTestOperator();
});

after(async () => {
  await Promise.all(extraNodes.map((n) => n.stop()));
  for (const n of [ns, other])
    await kubectl(["delete", "vm,vmdisk", "--all", "-n", n, "--wait=true", "--timeout=120s"]).catch(
      () => undefined,
    );
  await stopTestOperator();
  delete process.env.IMAGE_IMPORT_DIRS;
  await rm(workDir, { recursive: true, force: true });
  console.log(`adopt-e2e: ${Math.round((Date.now() - started) / 1000)} s`);
});

describe("objects applied again without status take over their volumes and running domain", () => {
  const domain = () => `${ns}_guest`;
  let before: {
    pid: number;
    uuid: string;
    mac: string;
    counterPath: string;
    copyPath: string;
    counterInode: number;
    copyInode: number;
    volumes: string[];
  };

  it("a VM runs a TCG guest counting on an imported disk; a copy of the disk holds the image's 41", async () => {
    await applyObject("VMDisk", ns, "counter", counterSpec());
    const counter = await waitForDisk(ns, "counter", ready, "Ready (imported)");
    await applyObject("VMDisk", ns, "copy", copySpec);
    const copy = await waitForDisk(ns, "copy", ready, "Ready (copied)");
    rmSync(consoleLogOf(ns, "guest"), { force: true });
    await applyVm(ns, "guest", vmSpec());
    const vm = await waitForVm(ns, "guest", isPrintable("Running"), "Running", 180_000);
    await waitFor("the guest counting", async () =>
      counterReadings(consoleText(consoleLogOf(ns, "guest"))).length >= 2 ? true : undefined,
    );
    before = {
      pid: qemuPid(domain())!,
      uuid: vm!.status!.uuid!,
      mac: vm!.status!.interfaces![0]!.mac!,
      counterPath: counter!.status!.path!,
      copyPath: copy!.status!.path!,
      counterInode: statSync(counter!.status!.path!).ino,
      copyInode: statSync(copy!.status!.path!).ino,
      volumes: await poolVolumes(ns),
    };
    assert.ok(before.pid > 0);
    assert.equal(await sectorText(before.copyPath), "41\n");
    // Each volume and its owner mark, nothing else.
    assert.deepEqual(
      before.volumes.map((v) => v.replace(/^lvo-owner-[0-9a-f-]+\./, "owner:")),
      [`${ns}_copy.qcow2`, `${ns}_counter.qcow2`, `owner:${ns}_copy.qcow2`, `owner:${ns}_counter.qcow2`],
    );
  });

  it("removed while the agent could not act, they stay on the node: kept and reported as orphans", async () => {
    await stopDaemon(TEST_STACK.stateDir, "agent");
    await loseWithoutAgent(ns, ["vm/guest", "vmdisk/copy", "vmdisk/counter"]);
    await startTestOperator();
    const report = await waitFor("the orphans on the Node", async () => {
      const r = await orphansOnNode();
      return r.domains.some((d) => d.namespace === ns) &&
        r.volumes.filter((v) => v.namespace === ns).length === 2
        ? r
        : undefined;
    });
    const orphan = report.domains.find((d) => d.namespace === ns && d.name === "guest");
    assert.equal(orphan?.uuid, before.uuid);
    assert.equal(orphan?.interfaces?.[0]?.mac, before.mac);
    assert.deepEqual(
      report.volumes.filter((v) => v.namespace === ns).map((v) => `${v.name}@${v.pool}`),
      [`copy@${POOL}`, `counter@${POOL}`],
    );
    assert.match(await agentMetrics(), /libvirt_operator_orphans\{[^}]*kind="domain"[^}]*\} [1-9]/);
    // Nothing was destroyed or deleted: the same guest runs, the volumes are there.
    assert.equal(qemuPid(domain()), before.pid);
    assert.deepEqual(await poolVolumes(ns), before.volumes);
  });

  it("the same manifests applied again (no status) take over the same volumes and the running guest", async () => {
    // An emptier node joins: placement afresh would choose it; the orphans decide instead.
    extraNodes.push(
      ...(await startTestNodes(1, { prefix: "adopt-tempt", cpus: 64, memoryBytes: 256 * 2 ** 30 })),
    );
    const ticksBefore = counterReadings(consoleText(consoleLogOf(ns, "guest"))).length;
    await applyObject("VMDisk", ns, "counter", counterSpec());
    await applyObject("VMDisk", ns, "copy", copySpec);
    await applyVm(ns, "guest", vmSpec());
    const counter = await waitForDisk(ns, "counter", ready, "Ready (adopted)");
    const copy = await waitForDisk(ns, "copy", ready, "Ready (adopted)");
    const vm = (await waitForVm(
      ns,
      "guest",
      (v) => v?.status?.printableStatus === "Running" && v.status.lastOperation?.type === "Adopt",
      "Running, adopted",
      120_000,
    )) as VirtualMachine;
    for (const [d, path, inode] of [
      [counter, before.counterPath, before.counterInode],
      [copy, before.copyPath, before.copyInode],
    ] as const) {
      assert.equal(d?.status?.nodeName, TEST_STACK.nodeName);
      assert.equal(d?.status?.path, path);
      assert.equal(statSync(path).ino, inode, "the same volume, not made again");
      assert.equal(d?.status?.lastOperation?.type, "Adopt");
      await waitForEvent(
        ns,
        d!.metadata.name,
        (e) =>
          e.reason === "Scheduled" &&
          /its volume on node .*, left by an earlier object of this name, is taken over there/.test(
            e.message,
          ),
        "Scheduled (taken over)",
      );
    }
    assert.equal(await sectorText(before.copyPath), "41\n", "the copy was not made again from the counter");
    assert.equal(vm.status?.nodeName, TEST_STACK.nodeName);
    assert.equal(vm.status?.uuid, before.uuid, "the domain's UUID, from the orphan report");
    assert.equal(vm.status?.interfaces?.[0]?.mac, before.mac, "the domain's MAC, from the orphan report");
    assert.equal(qemuPid(domain()), before.pid, "the same QEMU process");
    // The guest counts on, never booted again.
    await waitFor("the guest counting on", async () =>
      counterReadings(consoleText(consoleLogOf(ns, "guest"))).length > ticksBefore + 2 ? true : undefined,
    );
    const text = consoleText(consoleLogOf(ns, "guest"));
    assert.deepEqual(counterBoots(text), [41], "one boot only");
    const readings = counterReadings(text);
    for (let i = 1; i < readings.length; i++)
      assert.ok(readings[i]!.uptime > readings[i - 1]!.uptime, "uptime never reset");
    assert.deepEqual(await poolVolumes(ns), before.volumes, "no volume made, none deleted");
    assert.equal(
      (await virsh("list", "--all", "--name")).split("\n").filter((n) => n.trim() === domain()).length,
      1,
    );
    for (const name of ["counter", "copy", "guest"])
      await waitForEvent(ns, name, (e) => e.reason === "Adopted", "Adopted");
    // Taken over: no longer orphans.
    await waitFor("the orphan report emptied", async () => {
      const r = await orphansOnNode();
      return r.domains.some((d) => d.namespace === ns) || r.volumes.some((v) => v.namespace === ns)
        ? undefined
        : true;
    });
    await Promise.all(extraNodes.splice(0).map((n) => n.stop()));
  });

  it("a disk of the same name in another namespace gets a volume of its own, never the first one's", async () => {
    await applyObject("VMDisk", other, "counter", counterSpec());
    const mine = await waitForDisk(other, "counter", ready, "Ready (imported afresh)");
    assert.equal(mine?.status?.nodeName, TEST_STACK.nodeName);
    assert.notEqual(mine?.status?.path, before.counterPath);
    await waitForEvent(other, "counter", (e) => e.reason === "Imported", "Imported");
    assert.equal(
      await sectorText(mine!.status!.path!),
      "41\n",
      "the image, not the other namespace's counter",
    );
    assert.equal(statSync(before.counterPath).ino, before.counterInode);
    assert.ok(
      Number(await sectorText(before.counterPath)) > 41,
      "the first namespace's guest still writes its own",
    );
  });

  it("a volume of the disk's name that this cluster did not make is neither taken nor deleted", async () => {
    const name = `${other}_stranger.qcow2`;
    await virsh("vol-create-as", POOL, name, "16M", "--format", "qcow2");
    const path = (await virsh("vol-path", "--pool", POOL, name)).trim();
    const inode = statSync(path).ino;
    try {
      await applyObject("VMDisk", other, "stranger", { provisionedSize: "16Mi" });
      const refused = await waitForDisk(
        other,
        "stranger",
        (d) =>
          d?.status?.conditions?.some((c) => c.type === "Stalled" && c.reason === "VolumeNotOwned") === true,
        "Stalled (VolumeNotOwned)",
      );
      assert.equal(refused?.status?.path, undefined, "not taken");
      assert.match(
        refused!.status!.conditions!.find((c) => c.type === "Stalled")!.message!,
        /carries no record that this cluster's VMDisk .* made it/,
      );
      await kubectl(["delete", "vmdisk", "stranger", "-n", other, "--wait=true", "--timeout=60s"]);
      assert.equal(statSync(path).ino, inode, "deleting the disk left the volume alone");
    } finally {
      await virsh("vol-delete", "--pool", POOL, name).catch(() => undefined);
    }
  });

  it("deleted normally, the adopted VM and disks take their domain, volumes and marks with them", async () => {
    await kubectl(["delete", "vm", "guest", "-n", ns, "--wait=true", "--timeout=120s"]);
    await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=120s"]);
    assert.equal(qemuPid(domain()), undefined);
    assert.deepEqual(await poolVolumes(ns), []);
    assert.equal(await getVm(ns, "guest"), undefined);
    assert.equal(await disk(ns, "counter"), undefined);
  });
});
