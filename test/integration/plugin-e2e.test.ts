// kubectl vm's verbs that write spec or create objects, end to end: the real kubectl with the
// plugin on PATH, run as a tenant ServiceAccount with the built-in edit role (a viewer for what
// it may not do), against the operator and real TCG guests. Each write is checked to change what
// it should and nothing else. (Power requests, freeze, fsfreeze and refresh: plugin-power-e2e.)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMRestore, VMSnapshot } from "../../src/api/vmsnapshot.ts";
import type { VMTemplate } from "../../src/api/vmtemplate.ts";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  getObject,
  getVm,
  isPrintable,
  readyCondition,
  startTestOperator,
  stopTestOperator,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { kubectlVm, type PluginRun, runKubectl, serviceAccountKubeconfig } from "../support/plugin.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let user = "";
let viewer = "";

/** Longer than any --wait below, so a wait that runs out says so itself, with what it last saw. */
const CALL_TIMEOUT_MS = 300_000;

/** `kubectl vm ARGS` as the tenant (its context's namespace); the run, whatever its exit code. */
const vm = (...args: string[]) => kubectlVm(args, { kubeconfig: user, timeoutMs: CALL_TIMEOUT_MS });

/** As vm(), failing the test with what it printed unless it exits 0. */
async function vmOk(...args: string[]): Promise<PluginRun> {
  const run = await vm(...args);
  assert.equal(run.code, 0, `kubectl vm ${args.join(" ")} exited ${run.code}: ${run.stderr}${run.stdout}`);
  return run;
}

/** As vm(), expecting exit code CODE and stderr matching MESSAGE. */
async function vmFails(code: number, message: RegExp, args: string[], kubeconfig = user): Promise<void> {
  const run = await kubectlVm(args, { kubeconfig, timeoutMs: CALL_TIMEOUT_MS });
  assert.equal(run.code, code, `kubectl vm ${args.join(" ")}: ${run.stderr}${run.stdout}`);
  assert.match(run.stderr, message);
}

async function spec(name: string): Promise<VirtualMachine["spec"]> {
  const got = await getVm(ns, name);
  assert.ok(got, `VM ${name} exists`);
  return got.spec;
}

/** The spec fields whose values differ between A and B. */
function changedFields(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

/** Runs VERB, and checks that it changed exactly FIELD of VM's spec; returns the spec after. */
async function changesOnly(name: string, field: string, args: string[]): Promise<VirtualMachine["spec"]> {
  const was = await spec(name);
  await vmOk(...args);
  const now = await spec(name);
  assert.deepEqual(changedFields(was, now), [field], `kubectl vm ${args.join(" ")}`);
  return now;
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("plugin-e2e");
  user = await serviceAccountKubeconfig(ns, "user", "edit");
  viewer = await serviceAccountKubeconfig(ns, "viewer", "view");
  // The viewer may read every namespace (status -A), and write nothing anywhere.
  await kubectl([
    "create",
    "clusterrolebinding",
    "plugin-e2e-viewer",
    "--clusterrole=view",
    `--serviceaccount=${ns}:viewer`,
    "--dry-run=client",
    "-o",
    "yaml",
  ]).then(({ stdout }) => kubectl(["apply", "--server-side", "-f", "-"], stdout));
  await startTestOperator();
  // The cluster admin's part: disks, a template, and the VMs the tenant works with.
  await applyObject("VMDisk", ns, "web-data", { provisionedSize: "16Mi" });
  await applyObject("VMDisk", ns, "extra", { provisionedSize: "16Mi" });
  await applyObject("VMDisk", ns, "iso", { provisionedSize: "16Mi", format: "raw" });
  await applyObject("VMDisk", ns, "golden-data", { provisionedSize: "16Mi" });
  await applyObject("VMTemplate", ns, "small", { template: guestVmSpec(guest, { memory: "128Mi" }) });
  await applyVm(
    ns,
    "web",
    guestVmSpec(guest, { memory: "128Mi", disks: [{ name: "data", diskRef: { name: "web-data" } }] }),
  );
  await applyVm(ns, "halted", guestVmSpec(guest, { memory: "128Mi", runStrategy: "Halted" }));
  await applyVm(ns, "golden", {
    ...guestVmSpec(guest, { memory: "128Mi", runStrategy: "Halted" }),
    disks: [{ name: "data", diskRef: { name: "golden-data" } }],
  });
  await waitForVm(ns, "web", isPrintable("Running"), "Running", 120_000);
  await waitForVm(ns, "halted", isPrintable("Stopped"), "Stopped");
  // Waits until the operator's roles are aggregated into edit, which the user is bound to. (Its
  // own tenant account goes unused: every write after this is the user's, through the plugin.)
  await actAsTenant(ns);
});

after(async () => {
  for (const kind of ["vm", "vmtemplate", "vmsnapshot", "vmrestore", "vmdisk"])
    await kubectl(["delete", kind, "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
      () => undefined,
    );
  await kubectl(["delete", "clusterrolebinding", "plugin-e2e-viewer", "--ignore-not-found"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

describe("kubectl vm as a tenant (edit role)", () => {
  it("status: kubectl's table; -A and -o json parse; one VM; an unknown VM is NotFound", async () => {
    const table = await vmOk("status");
    assert.match(table.stdout, /^NAME +STATUS +NODE +ADDRESSES +STATUS-CHANGE +AGE$/m);
    assert.match(table.stdout, /^web +Running +\S+ +\d+\.\d+\.\d+\.\d+,\S+ +\S+ +\S+$/m);
    assert.match(table.stdout, /^halted +Stopped +/m);

    const all = await kubectlVm(["status", "-A", "-o", "json"], { kubeconfig: viewer });
    assert.equal(all.code, 0, all.stderr);
    const list = JSON.parse(all.stdout) as { kind: string; items: VirtualMachine[] };
    assert.equal(list.kind, "List");
    assert.ok(list.items.some((v) => v.metadata.name === "web" && v.metadata.namespace === ns));
    const allTable = await kubectlVm(["status", "-A"], { kubeconfig: viewer });
    assert.match(
      allTable.stdout,
      new RegExp(`^NAMESPACE +NAME +STATUS[^\\n]*\\n(.*\\n)*${ns} +web +Running`, "m"),
    );

    const one = JSON.parse((await vmOk("status", "web", "-o", "json", "-n", ns)).stdout) as VirtualMachine;
    assert.equal(one.kind, "VirtualMachine");
    assert.equal(one.status?.printableStatus, "Running");
    await vmFails(
      1,
      /^Error from server \(NotFound\): virtualmachines\.vm\.libvirt-operator\.io "nope" not found$/m,
      ["status", "nope"],
    );
  });

  it("snapshot → snapshots lists it → restore --wait → clone --from-snapshot → delete-snapshot", async () => {
    const taken = await vmOk("snapshot", "web", "--name", "s1", "--consistent", "--wait=3m");
    assert.match(taken.stdout, /^vmsnapshot\.vm\.libvirt-operator\.io\/s1 created$/m);
    assert.match(taken.stdout, /condition met/);
    const snap = await getObject<VMSnapshot>("vmsnapshot", ns, "s1");
    assert.deepEqual(
      { vmName: snap?.spec.vmName, consistent: snap?.spec.consistent, phase: snap?.status?.phase },
      { vmName: "web", consistent: true, phase: "Succeeded" },
    );
    assert.match((await vmOk("snapshots", "web")).stdout, /^s1 +<none> +Succeeded +true +false /m);
    const listed = JSON.parse((await vmOk("snapshots", "web", "-o", "json")).stdout) as {
      items: VMSnapshot[];
    };
    assert.deepEqual(
      listed.items.map((s) => s.metadata.name),
      ["s1"],
    );
    // Shell completion offers the VM's snapshots, through kubectl.
    const completion = await runKubectl(["__complete", "vm", "restore", "web", ""], { kubeconfig: user });
    assert.match(completion.stdout, /^s1$/m);
    assert.match(completion.stdout, /^:4$/m);

    const specBefore = await spec("web");
    const restored = await vmOk("restore", "web", "s1", "--wait=3m");
    const restoreName = /vmrestore\.vm\.libvirt-operator\.io\/(\S+) created/.exec(restored.stdout)?.[1];
    assert.ok(restoreName, restored.stdout);
    const restore = await getObject<VMRestore>("vmrestore", ns, restoreName);
    assert.equal(restore?.status?.phase, "Succeeded");
    assert.deepEqual(await spec("web"), specBefore, "a restore leaves the VM's spec as it was");
    await waitForVm(ns, "web", isPrintable("Running"), "Running again after the restore", 120_000);

    await vmOk("clone", "web", "--from-snapshot", "s1", "--to", "web-clone", "--wait=3m");
    const clone = await getVm(ns, "web-clone");
    assert.deepEqual(clone?.spec, { source: { snapshot: "s1" } });
    assert.equal(clone?.status?.printableStatus, "Running");
    assert.equal(readyCondition(clone)?.status, "True");

    await vmFails(1, /snapshot "s1" is of VM "web", not of "halted"/, ["delete-snapshot", "halted", "s1"]);
    await vmFails(1, /snapshot "s1" is of VM "web", not of "halted"/, [
      "clone",
      "halted",
      "--from-snapshot",
      "s1",
      "--to",
      "x",
    ]);
    const deleted = await vmOk("delete-snapshot", "web", "s1");
    assert.match(deleted.stdout, /^vmsnapshot\.vm\.libvirt-operator\.io\/s1 deleted$/m);
    await waitForObject("vmsnapshot", ns, "s1", (s) => s === undefined, "deleted", 60_000);
    await vmFails(
      1,
      /Error from server \(NotFound\): virtualmachines\.vm\.libvirt-operator\.io "ghost" not found/,
      ["snapshot", "ghost"],
    );
    const { stdout } = await kubectl(["get", "vmsnapshot", "-n", ns, "-o", "json"]);
    const left = (JSON.parse(stdout) as { items: VMSnapshot[] }).items.map((s) => s.spec.vmName);
    assert.ok(!left.includes("ghost"), "no snapshot was created for a missing VM");
  });

  it("rotation sets spec.snapshotPolicy and --off removes it, nothing else", async () => {
    const original = await spec("web");
    const on = await changesOnly("web", "snapshotPolicy", [
      "rotation",
      "web",
      "--schedule",
      "0 3 * * *",
      "--keep",
      "2",
      "--consistent",
    ]);
    assert.deepEqual(on.snapshotPolicy, { schedule: "0 3 * * *", keep: 2, consistent: true });
    await changesOnly("web", "snapshotPolicy", ["rotation", "web", "--off"]);
    assert.deepEqual(await spec("web"), original);
  });

  it("create-from-template: -o yaml prints the VMs and writes nothing; then three run, web-5 … web-7", async () => {
    const threeFromFive = ["create-from-template", "small", "--name", "web", "--amount", "3", "--start", "5"];
    const printed = await vmOk(...threeFromFive, "-o", "yaml");
    const docs = printed.stdout.split(/^---$/m);
    assert.equal(docs.length, 3);
    assert.match(docs[0] ?? "", /name: web-5\n[\s\S]*template: small/);
    assert.equal(await getVm(ns, "web-5"), undefined, "-o yaml created nothing");

    const made = await vmOk(...threeFromFive, "--wait=3m");
    for (const n of [5, 6, 7]) {
      assert.match(made.stdout, new RegExp(`virtualmachine\\.vm\\.libvirt-operator\\.io/web-${n} created`));
      const v = await getVm(ns, `web-${n}`);
      assert.equal(v?.status?.printableStatus, "Running", `web-${n}`);
      assert.deepEqual(v?.spec, { source: { template: "small" } });
    }
    const children = await waitForObject<VMTemplate>(
      "vmtemplate",
      ns,
      "small",
      (x) => x?.status?.children?.length === 3,
      "three children",
    );
    assert.deepEqual(children?.status?.children, ["web-5", "web-6", "web-7"]);
    assert.match((await vmOk("children", "small")).stdout, /^web-5 +Running[\s\S]*^web-7 +Running/m);
  });

  it("set-as-template makes a Ready VMTemplate of a stopped VM, and refuses a running one", async () => {
    await waitForVm(ns, "golden", isPrintable("Stopped"), "Stopped");
    await vmFails(1, /runStrategy Always: a template's VM must stay stopped/, [
      "set-as-template",
      "web",
      "--name",
      "nope",
    ]);
    const made = await vmOk(
      "set-as-template",
      "golden",
      "--name",
      "from-golden",
      "--description",
      "gold",
      "--wait=2m",
    );
    assert.match(made.stdout, /vmtemplate\.vm\.libvirt-operator\.io\/from-golden created/);
    const tpl = await getObject<VMTemplate>("vmtemplate", ns, "from-golden");
    assert.deepEqual(tpl?.spec, { description: "gold", source: { vmName: "golden" } });
    assert.equal(tpl?.status?.phase, "Ready");
  });

  it("cdrom insert/eject and disk attach/deactivate/activate/detach change only that part of spec", async () => {
    const original = await spec("halted");
    const inserted = await changesOnly("halted", "cdrom", ["cdrom", "insert", "halted", "iso", "--wait=1m"]);
    assert.equal(inserted.cdrom?.diskRef?.name, "iso");
    assert.equal(inserted.cdrom?.image, undefined);
    const ejected = await changesOnly("halted", "cdrom", ["cdrom", "eject", "halted", "--wait=1m"]);
    assert.deepEqual({ ...ejected.cdrom, bus: undefined }, { image: "", bus: undefined }, "an empty drive");
    assert.equal(ejected.cdrom?.bus, inserted.cdrom?.bus, "the drive's bus stays");
    await vmFails(1, /NotFound.*vmdisks.*"no-such-iso"/, ["cdrom", "insert", "halted", "no-such-iso"]);

    const withCdrom = await spec("halted");
    const attached = await changesOnly("halted", "disks", [
      "disk",
      "attach",
      "halted",
      "extra",
      "--boot-order",
      "2",
      "--wait=1m",
    ]);
    assert.deepEqual(
      attached.disks?.map(({ name, diskRef, bootOrder }) => ({ name, diskRef, bootOrder })),
      [{ name: "extra", diskRef: { name: "extra" }, bootOrder: 2 }],
    );
    await vmFails(1, /has a disk named "extra" already/, ["disk", "attach", "halted", "extra"]);
    await vmFails(1, /NotFound.*vmdisks.*"missing"/, ["disk", "attach", "halted", "missing"]);
    const off = await changesOnly("halted", "disks", ["disk", "deactivate", "halted", "extra", "--wait=1m"]);
    assert.equal(off.disks?.[0]?.active, false);
    assert.deepEqual({ ...off.disks?.[0], active: undefined }, { ...attached.disks?.[0], active: undefined });
    const on = await changesOnly("halted", "disks", ["disk", "activate", "halted", "extra"]);
    assert.equal(on.disks?.[0]?.active, true);
    await vmFails(1, /no disk "nope" \(its disks: extra\)/, ["disk", "detach", "halted", "nope"]);
    await changesOnly("halted", "disks", ["disk", "detach", "halted", "extra", "--wait=1m"]);
    assert.deepEqual(
      await spec("halted"),
      withCdrom,
      "detaching the last disk leaves the spec as before the attach",
    );
    assert.deepEqual(changedFields(original, withCdrom), ["cdrom"]);
  });

  it("pause and unpause --wait; --dry-run=server writes nothing; a write returns quickly", async () => {
    const paused = await vmOk("pause", "web", "--wait=60s");
    assert.match(paused.stdout, /web paused\n.*web condition met$/m);
    assert.equal((await getVm(ns, "web"))?.status?.printableStatus, "Paused");
    await vmOk("unpause", "web", "--wait=60s");
    assert.equal((await getVm(ns, "web"))?.status?.printableStatus, "Running");

    const dry = await vmOk("pause", "web", "--dry-run=server");
    assert.match(dry.stdout, /paused \(server dry run\)/);
    assert.equal((await spec("web")).paused, false, "a server dry run keeps nothing");

    // Wall time of one write as the user types it (kubectl, the plugin, TLS, one PATCH).
    const times: number[] = [];
    for (let i = 0; i < 6; i++) times.push((await vmOk(i % 2 ? "unpause" : "pause", "web")).ms);
    times.sort((a, b) => a - b);
    process.stderr.write(
      `    kubectl vm pause/unpause wall time: median ${times[3]?.toFixed(0)} ms, all ${times.map((t) => t.toFixed(0)).join(" ")}\n`,
    );
  });

  it("errors: a viewer is forbidden to write; usage errors exit 2", async () => {
    await vmFails(
      1,
      /Error from server \(Forbidden\): .*cannot patch resource "virtualmachines"/,
      ["pause", "web"],
      viewer,
    );
    await vmFails(1, /forbidden/, ["snapshot", "web", "--name", "viewer-snap"], viewer);
    await vmFails(2, /unknown command "bogus" for "kubectl vm"/, ["bogus"]);
    await vmFails(2, /"kubectl vm stop" needs NAME/, ["stop"]);
    await vmFails(2, /needs a sub-command: insert, eject/, ["cdrom"]);
    await vmFails(1, /runStrategy Always: the operator starts it already/, ["start", "web"]);
    const help = await vmOk("help", "disk");
    assert.match(help.stdout, /kubectl vm disk attach VM DISK/);
  });
});
