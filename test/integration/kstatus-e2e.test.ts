// Conditions that mean one thing: kstatus itself (upstream cli-utils and Flux's fork, the code
// Flux and Argo CD-style tooling judge resources with) against live objects in each phase of
// the README's condition table. Current = as the spec asks; InProgress = on its way;
// Failed = cannot get there without the user.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ensureGuest, type Guest, guestVmSpec } from "../support/guest.ts";
import { kstatus } from "../support/kstatus.ts";
import {
  applyObject,
  getObject,
  startTestOperator,
  stopTestOperator,
  unbootableKernel,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";

function vmSpec(extra: Record<string, unknown> = {}) {
  return guestVmSpec(guest, { memory: "128Mi", shutdown: { gracePeriodSeconds: 0 }, ...extra });
}

type Status = { printableStatus?: string; conditions?: Array<{ type: string; status: string }> };

/** Waits until the object is in the phase WHEN checks and both kstatus builds say EXPECTED of it. */
async function expectKstatus(
  resource: string,
  name: string,
  expected: string,
  when: (s: Status) => boolean = () => true,
  timeoutMs = 60_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const obj = await getObject<{ status?: Status }>(resource, ns, name);
    if (obj && when(obj.status ?? {})) {
      const r = await kstatus(obj);
      last = `upstream ${r.upstream.status} (${r.upstream.message}), flux ${r.flux.status} (${r.flux.message}); status ${JSON.stringify(obj.status)}`;
      if (r.upstream.status === expected && r.flux.status === expected) return;
    }
    await sleep(500);
  }
  assert.fail(`${resource} ${name}: expected ${expected}; ${last}`);
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("kstatus-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl([
    "delete",
    "vm,vmdisk,vmsnapshot,vmrestore,vmtemplate",
    "--all",
    "-n",
    ns,
    "--wait=true",
    "--timeout=120s",
  ]).catch(() => undefined);
  await stopTestOperator();
});

const patch = (name: string, spec: Record<string, unknown>) =>
  kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec })]);

describe("kstatus (upstream and Flux) on every kind, in every phase", () => {
  it("VirtualMachine: running, restart required, paused, halted are Current", async () => {
    const is = (p: string) => (s: Status) => s.printableStatus === p;
    const condition = (type: string) => (s: Status) =>
      s.conditions?.some((c) => c.type === type && c.status === "True") ?? false;
    await applyObject("VirtualMachine", ns, "vm", vmSpec());
    await expectKstatus("virtualmachine", "vm", "Current", is("Running"));
    await patch("vm", { description: "changed: applies at the next boot" });
    await expectKstatus("virtualmachine", "vm", "Current", condition("RestartRequired"));
    await patch("vm", { paused: true });
    await expectKstatus("virtualmachine", "vm", "Current", is("Paused"));
    await patch("vm", { paused: false, runStrategy: "Halted" });
    await expectKstatus("virtualmachine", "vm", "Current", is("Stopped"));
  });

  it("VirtualMachine: unschedulable, failing to start, or from a template that cannot be made is Failed; one waiting for its template InProgress", async () => {
    await applyObject("VirtualMachine", ns, "pinned", vmSpec({ nodeName: "no-such-node" }));
    await applyObject(
      "VirtualMachine",
      ns,
      "nokernel",
      vmSpec({ boot: { kernel: unbootableKernel(), initrd: guest.initrd } }),
    );
    await applyObject("VMTemplate", ns, "huge", {
      template: { memory: "128Mi", disks: [{ name: "root", size: "65Ti" }] },
    });
    await applyObject("VirtualMachine", ns, "from-huge", { source: { template: "huge" } });
    await applyObject("VirtualMachine", ns, "from-later", { source: { template: "later" } });
    await expectKstatus("virtualmachine", "pinned", "Failed");
    await expectKstatus("virtualmachine", "nokernel", "Failed");
    await expectKstatus("vmtemplate", "huge", "Failed");
    await expectKstatus("virtualmachine", "from-huge", "Failed");
    await expectKstatus("virtualmachine", "from-later", "InProgress");
  });

  it("VMDisk and a VM waiting for it are InProgress; a usable disk Current; a failed one Failed", async () => {
    await applyObject("VMDisk", ns, "clone", {
      provisionedSize: "64Mi",
      source: { disk: { name: "origin" } },
    });
    await applyObject(
      "VirtualMachine",
      ns,
      "waiting",
      vmSpec({ disks: [{ name: "clone", diskRef: { name: "clone" } }] }),
    );
    await expectKstatus("vmdisk", "clone", "InProgress");
    await expectKstatus("virtualmachine", "waiting", "InProgress");
    await applyObject("VMDisk", ns, "origin", { provisionedSize: "64Mi" });
    await expectKstatus("vmdisk", "origin", "Current");
    await expectKstatus("vmdisk", "clone", "Current");
    await applyObject("VMDisk", ns, "too-large", { provisionedSize: "60Ti", format: "qcow2" });
    await expectKstatus("vmdisk", "too-large", "Failed");
  });

  it("a snapshot waiting for its VM is InProgress, Failed past its deadline; a restore of it Failed; a VMTemplate Current", async () => {
    await applyObject("VMSnapshot", ns, "waiting", { vmName: "later", failureDeadline: "10m" });
    await expectKstatus("vmsnapshot", "waiting", "InProgress");
    await applyObject("VMSnapshot", ns, "snap", { vmName: "vm", failureDeadline: "2s" });
    await expectKstatus("vmsnapshot", "snap", "Failed");
    await applyObject("VMRestore", ns, "restore", { vmName: "vm", snapshotName: "snap" });
    await applyObject("VMTemplate", ns, "tpl", { template: { memory: "128Mi" } });
    await expectKstatus("vmrestore", "restore", "Failed");
    await expectKstatus("vmtemplate", "tpl", "Current");
  });
});
