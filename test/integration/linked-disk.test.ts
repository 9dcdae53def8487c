// Linked clones of a VMTemplate's base on the real agent and libvirtd: a thin qcow2 volume whose
// backing file (and its format) is the base's volume; a guest boots from it and its writes stay
// in the clone; a snapshot of it and a full copy of it are read out flat; the base is never
// grown, never deleted while a clone reads it, and the VM whose disk it is does not start
// unless it asks for it read-only.
// The controller writes status.baseOf in production; here the admin patches it in.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DISK_PROTECTION_FINALIZER, VOLUME_FINALIZER } from "../../src/api/names.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { counterBoots, ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  consoleLogOf,
  eventsOf,
  getObject,
  isPrintable,
  readyCondition,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { snapshotTools } from "../support/snapshots.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";
import { counterImage, firstSector } from "../support/volumes.ts";

const MiB = 2 ** 20;
let guest: Guest;
let ns = "";
let workDir = "";
let t: ReturnType<typeof snapshotTools>;

const waitForDisk = (name: string, check: (d: VMDisk | undefined) => boolean, what: string, ms = 90_000) =>
  waitForObject<VMDisk>("vmdisk", ns, name, check, what, ms);
const phaseIs = (phase: string) => (d: VMDisk | undefined) => d?.status?.phase === phase;
const readyMessage = (d: VMDisk | undefined) =>
  d?.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "";

interface ImageInfo {
  "virtual-size": number;
  format: string;
  "backing-filename"?: string;
  "backing-filename-format"?: string;
}

async function imageInfo(path: string): Promise<ImageInfo> {
  const { stdout } = await run("qemu-img", ["info", "-U", "--output=json", path]);
  return JSON.parse(stdout) as ImageInfo;
}

/** The first sector of a volume as the guest sees it (through its backing file), up to a NUL. */
async function sectorText(path: string): Promise<string> {
  return (await firstSector(path)).toString("latin1").split("\0")[0]!;
}

const patchSpec = (resource: string, name: string, spec: Record<string, unknown>) =>
  kubectl(["patch", resource, name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec })]);

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-linked-"));
  // The base's image: lvo.counter's first sector says 41.
  await counterImage(workDir, "base", 41, 4 * MiB);
  process.env.IMAGE_IMPORT_DIRS = workDir;
  ns = await testNamespace("linked-disk");
  t = snapshotTools(ns, () => guest);
  await startTestOperator();
  await actAsTenant(ns);
});

after(async () => {
  await kubectl(["delete", "vm,vmsnapshot", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
    () => undefined,
  );
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
  delete process.env.IMAGE_IMPORT_DIRS;
  await rm(workDir, { recursive: true, force: true });
});

describe("linked clones of a VMTemplate's base (real agent, libvirtd, TCG guests)", () => {
  let basePath = "";
  let clonePath = "";

  it("a linked clone waits for status.baseOf, then is a qcow2 volume backed by the base with its format", async () => {
    await applyObject("VMDisk", ns, "base", {
      provisionedSize: "64Mi",
      source: { image: { url: join(workDir, "base.qcow2") } },
    });
    basePath = (await waitForDisk("base", phaseIs("Ready"), "Ready (imported)"))!.status!.path!;

    await applyObject("VMDisk", ns, "clone", {
      provisionedSize: "32Mi",
      source: { disk: { name: "base", linked: true } },
    });
    const waiting = await waitForDisk(
      "clone",
      (d) => /not a VMTemplate's base/.test(readyMessage(d)),
      "waiting for a base",
    );
    assert.equal(waiting!.status!.phase, "Pending");
    assert.match(readyMessage(waiting), /VMDisk base is not a VMTemplate's base; a linked clone needs one/);
    assert.equal(waiting!.status!.path, undefined, "nothing made");

    // What the controller does when the disk becomes a template's base.
    await kubectl([
      "patch",
      "vmdisk",
      "base",
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { baseOf: { template: "tpl", templateUID: "0000-tpl" } } }),
    ]);
    const clone = await waitForDisk("clone", phaseIs("Ready"), "Ready (linked clone)");
    clonePath = clone!.status!.path!;
    assert.equal(clone!.status!.provisionedSize, 64 * MiB, "at least the base's size");
    assert.equal(clone!.status!.lastOperation?.type, "Clone");
    assert.match(clone!.status!.lastOperation?.message ?? "", /^linked clone of VMDisk base in \d+ ms$/);
    const info = await imageInfo(clonePath);
    assert.equal(info.format, "qcow2");
    assert.equal(info["backing-filename"], basePath);
    assert.equal(info["backing-filename-format"], "qcow2", "the backing format is recorded");
    assert.equal(info["virtual-size"], 64 * MiB);
    assert.ok((clone!.status!.actualSize ?? 0) < MiB, "thin");
    assert.equal(await sectorText(clonePath), "41\n", "reads the base's content");
    await waitForEvent(ns, "clone", (e) => e.reason === "Cloned", "Cloned");
  });

  it("a guest boots from the linked clone and writes to it; the base is unchanged", async () => {
    rmSync(consoleLogOf(ns, "child"), { force: true });
    await applyVm(
      ns,
      "child",
      guestVmSpec(guest, {
        boot: {
          kernel: guest.kernel,
          initrd: guest.initrd,
          cmdline: "console=ttyS0 panic=-1 lvo.counter=vda",
        },
        disks: [{ name: "counter", diskRef: { name: "clone" } }],
      }),
    );
    await waitForVm(ns, "child", isPrintable("Running"), "Running", 300_000);
    await t.waitForTick("child", 44, 0, 120_000);
    assert.deepEqual(counterBoots(readFileSync(consoleLogOf(ns, "child"), "utf8")), [41]);
    await patchSpec("vm", "child", { runStrategy: "Halted" });
    await waitForVm(ns, "child", isPrintable("Stopped"), "Stopped", 120_000);
    assert.ok(Number(await sectorText(clonePath)) >= 44, "the clone holds the guest's writes");
    assert.equal(await sectorText(basePath), "41\n", "the base is as it was");
    assert.equal((await imageInfo(basePath))["backing-filename"], undefined);
  });

  it("a VM on a linked clone is snapshotted (Internal); a disk read out of the snapshot is flat", async () => {
    const at = await sectorText(clonePath);
    const { snap } = await t.snapshotNow("child", "snap");
    assert.equal(snap.status?.method, "Internal");
    await applyObject("VMDisk", ns, "from-snap", {
      provisionedSize: "16Mi",
      source: { snapshot: { name: "snap", disk: "counter" } },
    });
    const disk = await waitForDisk("from-snap", phaseIs("Ready"), "Ready (from the snapshot)");
    assert.equal((await imageInfo(disk!.status!.path!))["backing-filename"], undefined, "no backing file");
    assert.equal(await sectorText(disk!.status!.path!), at);
    assert.equal(
      (await imageInfo(clonePath))["backing-filename"],
      basePath,
      "the clone still reads the base",
    );
  });

  it("a full copy of the linked clone is flat and has its content", async () => {
    await applyObject("VMDisk", ns, "flat", { provisionedSize: "16Mi", source: { disk: { name: "clone" } } });
    const flat = await waitForDisk("flat", phaseIs("Ready"), "Ready (copied)");
    const info = await imageInfo(flat!.status!.path!);
    assert.equal(info["backing-filename"], undefined, "no backing file");
    assert.equal(info["virtual-size"], 64 * MiB);
    assert.equal(await sectorText(flat!.status!.path!), await sectorText(clonePath));
  });

  it("the VM whose disk is a base does not start; asking for it read-only, it runs with it read-only", async () => {
    await applyVm(ns, "tmpl", guestVmSpec(guest, { disks: [{ name: "root", diskRef: { name: "base" } }] }));
    const refused = await waitForVm(
      ns,
      "tmpl",
      (v) => readyCondition(v)?.reason === "TemplateBase",
      "refused a start (TemplateBase)",
    );
    assert.equal(refused!.status!.printableStatus, "Stopped");
    assert.equal(readyCondition(refused)!.status, "False");
    assert.match(
      readyCondition(refused)!.message,
      /disk root \(VMDisk base\) is a base of VMTemplate tpl; a VM made into a template does not run/,
    );
    assert.equal(refused!.status!.conditions!.find((c) => c.type === "Stalled")?.status, "True");
    await waitForEvent(
      ns,
      "tmpl",
      (e) => e.reason === "TemplateBase" && e.type === "Warning",
      "TemplateBase",
    );
    assert.match(await virsh("dumpxml", "--inactive", `${ns}_tmpl`), /<readonly\/>/);
    await sleep(3000);
    assert.equal(
      (await getObject<{ status?: { printableStatus?: string } }>("vm", ns, "tmpl"))?.status?.printableStatus,
      "Stopped",
    );

    await patchSpec("vm", "tmpl", { disks: [{ name: "root", diskRef: { name: "base" }, readOnly: true }] });
    await waitForVm(ns, "tmpl", isPrintable("Running"), "Running", 300_000);
    assert.match(await virsh("dumpxml", `${ns}_tmpl`), /<readonly\/>/);
    await kubectl(["delete", "vm", "tmpl", "-n", ns, "--wait=true", "--timeout=120s"]);
  });

  it("growing the base leaves it as it is and says why, once", async () => {
    await patchSpec("vmdisk", "base", { provisionedSize: "128Mi" });
    const refused = await waitForDisk(
      "base",
      (d) => d?.status?.lastOperation?.phase === "Failed",
      "the grow refused",
    );
    assert.match(refused!.status!.lastOperation!.message ?? "", /a VMTemplate's base never grows/);
    assert.equal(refused!.status!.phase, "Ready");
    assert.equal(refused!.status!.provisionedSize, 64 * MiB);
    await sleep(6000); // reconciles every 2 s (the statistics interval): the refusal is not said again
    assert.equal((await imageInfo(basePath))["virtual-size"], 64 * MiB);
    const said = (await eventsOf(ns, "base")).filter((e) => e.reason === "ResizeRefused");
    assert.deepEqual(
      said.map((e) => [e.type, e.count]),
      [["Warning", 1]],
    );
  });

  it("deleting the base waits for its linked clone (the controller's finalizer, and the node's own check); then it goes", async () => {
    await kubectl(["delete", "vmdisk", "base", "-n", ns, "--wait=false"]);
    const blocked = await waitForDisk(
      "base",
      (d) =>
        Boolean(d?.metadata.deletionTimestamp) &&
        (d?.status?.conditions ?? []).some((c) =>
          /VMDisk clone is a linked clone of the disk/.test(c.message),
        ),
      "deletion blocked by its linked clone (controller)",
    );
    assert.ok(blocked);
    // Without the controller's protection finalizer the agent still keeps the volume, and says why.
    await stopDaemon(TEST_STACK.stateDir, "controller");
    await kubectl([
      "patch",
      "vmdisk",
      "base",
      "-n",
      ns,
      "--type=merge",
      "-p",
      JSON.stringify({
        metadata: {
          finalizers: blocked!.metadata.finalizers!.filter((f) => f !== DISK_PROTECTION_FINALIZER),
        },
      }),
    ]);
    const kept = await waitForDisk(
      "base",
      (d) =>
        /^deletion waits: VMDisk clone is a linked clone of the disk/.test(
          d?.status?.lastOperation?.message ?? "",
        ),
      "deletion blocked by its linked clone (agent)",
    );
    assert.equal(kept!.status!.lastOperation!.type, "Delete");
    assert.deepEqual(kept!.metadata.finalizers, [VOLUME_FINALIZER]);
    await sleep(5000);
    assert.ok(existsSync(basePath), "the base's volume stays");
    assert.ok(await getObject("vmdisk", ns, "base"), "and so does its VMDisk");
    await startTestOperator();

    await kubectl(["delete", "vmsnapshot", "snap", "-n", ns, "--wait=true", "--timeout=120s"]);
    await kubectl(["delete", "vm", "child", "-n", ns, "--wait=true", "--timeout=120s"]);
    await kubectl([
      "delete",
      "vmdisk",
      "clone",
      "flat",
      "from-snap",
      "-n",
      ns,
      "--wait=true",
      "--timeout=120s",
    ]);
    await waitForDisk("base", (d) => d === undefined, "deleted once the clone is gone");
    assert.ok(!existsSync(basePath), "the base's volume is gone");
    assert.ok(!existsSync(clonePath));
  });
});
