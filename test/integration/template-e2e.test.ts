// Templates as a tenant uses them (seed 000 vTemplates, oVirt templates): a VMTemplate from a
// local qcow2 image holding a marker (the counting guest's start value), VMs made from it that
// boot from linked clones of its base, a full copy, a later generation, deletion held by the VMs,
// and a stopped VM made into a template. Real TCG guests counting on their disk.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import type { VMTemplate } from "../../src/api/vmtemplate.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  consoleLogOf,
  getObject,
  getVm,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { snapshotTools } from "../support/snapshots.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";
import { counterImage as counterImageIn, firstSector } from "../support/volumes.ts";

let guest: Guest;
let ns = "";
let workDir = "";
let t: ReturnType<typeof snapshotTools>;

const counterImage = (name: string, n: number) => counterImageIn(workDir, name, n);

/** The counter value in the first sector of a volume, as the guest would read it. */
async function counterIn(path: string, format = "qcow2"): Promise<number> {
  return Number.parseInt((await firstSector(path, format)).subarray(0, 32).toString("latin1"), 10);
}

async function backingOf(path: string): Promise<{ file?: string; format?: string }> {
  const { stdout } = await run("qemu-img", ["info", "-U", "--output=json", path]);
  const info = JSON.parse(stdout) as { "backing-filename"?: string; "backing-filename-format"?: string };
  return {
    ...(info["backing-filename"] ? { file: info["backing-filename"] } : {}),
    ...(info["backing-filename-format"] ? { format: info["backing-filename-format"] } : {}),
  };
}

const disk = (name: string) => getObject<VMDisk>("vmdisk", ns, name);
const template = (name: string) => getObject<VMTemplate>("vmtemplate", ns, name);
const readyDisk = (name: string) =>
  waitForObject<VMDisk>("vmdisk", ns, name, (d) => d?.status?.phase === "Ready", "Ready", 120_000);
const waitForTemplate = (
  name: string,
  check: (t: VMTemplate | undefined) => boolean,
  what: string,
  ms = 120_000,
) => waitForObject<VMTemplate>("vmtemplate", ns, name, check, what, ms);

function counterShape(image: string, extra: Record<string, unknown> = {}) {
  const spec = guestVmSpec(guest, {
    memory: "128Mi",
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1 lvo.counter=vda" },
  });
  return {
    ...spec,
    disks: [
      { name: "counter", size: "16Mi", image, bootOrder: 1 },
      { name: "copy", size: "16Mi", image, fullCopy: true },
    ],
    ...extra,
  };
}

/** Makes VM from TEMPLATE and waits until it runs and counts; returns the VM. */
async function child(name: string, tpl: string) {
  rmSync(consoleLogOf(ns, name), { force: true });
  await applyVm(ns, name, { source: { template: tpl } });
  const vm = await waitForVm(ns, name, isPrintable("Running"), "Running", 240_000);
  await t.waitForTick(name, 0, 0, 120_000);
  return vm!;
}

before(async () => {
  guest = await ensureGuest();
  workDir = mkdtempSync(join(tmpdir(), "lvo-template-e2e-"));
  process.env.IMAGE_IMPORT_DIRS = workDir;
  ns = await testNamespace("template-e2e");
  t = snapshotTools(ns, () => guest);
  await startTestOperator();
  await actAsTenant(ns);
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmtemplate", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
  rmSync(workDir, { recursive: true, force: true });
});

describe("VMs made from a template", () => {
  it("boot from linked clones of the template's base; a full copy is independent; the base never changes", async () => {
    const image = await counterImage("marker", 1000);
    await applyObject("VMTemplate", ns, "counting", {
      description: "counts from 1000",
      template: counterShape(image),
    });
    const ready = await waitForTemplate("counting", (x) => x?.status?.phase === "Ready", "Ready");
    assert.ok(ready?.status?.targetNodes?.includes(TEST_STACK.nodeName), JSON.stringify(ready?.status));

    const a = await child("tpl-a", "counting");
    assert.deepEqual(t.boots("tpl-a"), [1000], "the VM found the template image's marker");
    assert.equal(a.status?.template?.name, "counting");
    assert.equal(a.status?.template?.generation, 1);
    // Its disks are its own VMDisks: a linked clone of the base, and a full copy.
    const base = await readyDisk(`counting-g1-counter-${TEST_STACK.nodeName}`);
    assert.equal(base?.status?.baseOf?.template, "counting");
    const linked = await readyDisk("tpl-a-counter");
    assert.equal(linked?.metadata.ownerReferences?.[0]?.name, "tpl-a");
    assert.deepEqual(await backingOf(linked!.status!.path!), { file: base!.status!.path, format: "qcow2" });
    const copy = await readyDisk("tpl-a-copy");
    assert.deepEqual(await backingOf(copy!.status!.path!), {}, "a full copy has no backing file");
    assert.equal(await counterIn(copy!.status!.path!), 1000);

    // A second VM writes to its own disk: the first and the base are untouched by it.
    await child("tpl-b", "counting");
    assert.deepEqual(
      t.boots("tpl-b"),
      [1000],
      "the second VM also starts from the base, not the first's disk",
    );
    await t.waitForTick("tpl-b", 1004, 0, 120_000);
    assert.equal(await counterIn(base!.status!.path!), 1000, "the base is never written");
    const bLinked = (await disk("tpl-b-counter"))!;
    assert.ok((await counterIn(bLinked.status!.path!)) > 1000, "the second VM counts on its own disk");
    assert.deepEqual(t.boots("tpl-a"), [1000], "the first VM did not restart");

    const tpl = await waitForTemplate(
      "counting",
      (x) => x?.status?.children?.length === 2,
      "with two children",
    );
    assert.deepEqual(tpl?.status?.children, ["tpl-a", "tpl-b"]);
    assert.equal(tpl?.status?.bases?.[0]?.node, TEST_STACK.nodeName);
  });

  it("keeps each generation's bases while its VMs live, and a template is deleted only after its VMs", async () => {
    // A later edit: new VMs get the new generation; existing ones keep theirs.
    await applyObject("VMTemplate", ns, "counting", {
      description: "counts from 1000, more memory",
      template: counterShape(join(workDir, "marker.qcow2"), { memory: "160Mi" }),
    });
    await waitForTemplate("counting", (x) => x?.status?.observedGeneration === 2, "at generation 2");
    await applyVm(ns, "tpl-c", { source: { template: "counting" } });
    const c = await waitForVm(ns, "tpl-c", isPrintable("Running"), "Running", 240_000);
    assert.equal(c?.status?.template?.generation, 2);
    assert.equal((c?.status?.template?.spec as { memory?: string })?.memory, "160Mi");
    assert.equal((await getVm(ns, "tpl-a"))?.status?.template?.generation, 1, "tpl-a keeps generation 1");
    await readyDisk(`counting-g2-counter-${TEST_STACK.nodeName}`);
    assert.ok(
      await disk(`counting-g1-counter-${TEST_STACK.nodeName}`),
      "generation 1's base stays for tpl-a and tpl-b",
    );

    // Deleting the template waits for its VMs, and says which.
    await kubectl(["delete", "vmtemplate", "counting", "-n", ns, "--wait=false"]);
    const held = await template("counting");
    assert.ok(held?.metadata.deletionTimestamp, "deletion requested");
    const blocked = await waitForEvent(
      ns,
      "counting",
      (e) => e.reason === "DeletionBlocked",
      "DeletionBlocked",
    );
    assert.match(blocked.message, /tpl-a, tpl-b, tpl-c/);
    const bases = [1, 2].map((g) => `counting-g${g}-counter-${TEST_STACK.nodeName}`);
    const paths = await Promise.all(bases.map(async (b) => (await disk(b))!.status!.path!));
    await kubectl(["delete", "vm", "tpl-a", "tpl-b", "tpl-c", "-n", ns, "--wait=true", "--timeout=120s"]);
    await waitForObject("vmtemplate", ns, "counting", (x) => x === undefined, "gone", 120_000);
    for (const b of bases) await waitForObject("vmdisk", ns, b, (x) => x === undefined, "gone", 120_000);
    const left = await run("virsh", ["-c", "qemu:///system", "vol-list", "libvirt-operator"]);
    for (const p of paths) assert.ok(!left.stdout.includes(p), `${p} is removed from the pool`);
  });
});

describe("a VM made into a template (set as template)", () => {
  it("takes the stopped VM's disks as bases, never runs the VM again, and its VMs boot from them", async () => {
    const image = await counterImage("golden", 2000);
    await applyObject("VMDisk", ns, "golden-counter", {
      provisionedSize: "16Mi",
      source: { image: { url: image } },
    });
    const spec = guestVmSpec(guest, {
      memory: "128Mi",
      runStrategy: "Halted",
      boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1 lvo.counter=vda" },
      disks: [{ name: "counter", diskRef: { name: "golden-counter" } }],
    });
    await applyVm(ns, "golden", spec);
    await waitForVm(ns, "golden", isPrintable("Stopped"), "Stopped", 120_000);
    await applyObject("VMTemplate", ns, "from-golden", { source: { vmName: "golden" } });
    await waitForTemplate("from-golden", (x) => x?.status?.phase === "Ready", "Ready");
    // Its VMs can run only where its disks are.
    await waitForTemplate(
      "from-golden",
      (x) => JSON.stringify(x?.status?.targetNodes) === JSON.stringify([TEST_STACK.nodeName]),
      `targeting ${TEST_STACK.nodeName}`,
      30_000,
    );
    const taken = await waitForObject<VMDisk>(
      "vmdisk",
      ns,
      "golden-counter",
      (d) => d?.status?.baseOf?.template === "from-golden",
      "a base",
    );
    assert.equal(taken?.metadata.ownerReferences?.find((r) => r.controller)?.kind, "VMTemplate");

    // The VM never starts again while its disk is a base.
    await applyVm(ns, "golden", { ...spec, runStrategy: "Always" });
    const refused = await waitForVm(
      ns,
      "golden",
      (vm) => vm?.status?.conditions?.some((c) => c.type === "Ready" && c.reason === "TemplateBase") ?? false,
      "refused to start",
    );
    assert.equal(refused?.status?.printableStatus, "Stopped");

    await child("gold-1", "from-golden");
    assert.deepEqual(t.boots("gold-1"), [2000], "the VM booted from the golden VM's disk");
    const linked = (await readyDisk("gold-1-counter"))!;
    assert.equal((await backingOf(linked.status!.path!)).file, taken!.status!.path);

    // Deleting the VM leaves its disk (the template's now); deleting the template then removes it.
    await kubectl(["delete", "vm", "golden", "-n", ns, "--wait=true", "--timeout=120s"]);
    await sleep(2000);
    assert.ok(await disk("golden-counter"), "the template's base outlives the VM");
    await kubectl(["delete", "vm", "gold-1", "-n", ns, "--wait=true", "--timeout=120s"]);
    await kubectl(["delete", "vmtemplate", "from-golden", "-n", ns, "--wait=true", "--timeout=120s"]);
    await waitForObject("vmdisk", ns, "golden-counter", (x) => x === undefined, "gone", 120_000);
  });

  it("gives the disks back to a VM that still exists when the template is deleted", async () => {
    await applyObject("VMDisk", ns, "keep-disk", { provisionedSize: "16Mi" });
    await applyVm(ns, "keeper", {
      ...guestVmSpec(guest, { memory: "128Mi", runStrategy: "Halted" }),
      disks: [{ name: "data", diskRef: { name: "keep-disk" } }],
    });
    await waitForVm(ns, "keeper", isPrintable("Stopped"), "Stopped", 120_000);
    await applyObject("VMTemplate", ns, "from-keeper", { source: { vmName: "keeper" } });
    await waitForObject<VMDisk>("vmdisk", ns, "keep-disk", (d) => Boolean(d?.status?.baseOf), "a base");
    await kubectl(["delete", "vmtemplate", "from-keeper", "-n", ns, "--wait=true", "--timeout=60s"]);
    const back = await waitForObject<VMDisk>("vmdisk", ns, "keep-disk", (d) => !d?.status?.baseOf, "no base");
    assert.ok(!back?.metadata.ownerReferences?.some((r) => r.kind === "VMTemplate"));
    const vm = (await getVm(ns, "keeper")) as VirtualMachine;
    assert.ok(vm, "the VM is still there");
  });
});
