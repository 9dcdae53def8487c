// Conditions that mean one thing: kstatus itself (upstream cli-utils and Flux's fork, the code
// Flux and kubectl-style tooling judge resources with) and Argo CD's health check (our
// src/argocd/health.lua in gopher-lua, as Argo CD runs it) against live objects in each phase of
// the README's condition table. Current/Healthy = as the spec asks (Suspended: a VM stopped or
// paused as asked); InProgress/Progressing = on its way; Failed/Degraded = cannot get there
// without the user.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { API_VERSION, FROZEN_ANNOTATION } from "../../src/api/names.ts";
import { type ArgoHealthStatus, argoHealth } from "../support/argocd.ts";
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

type Kstatus = "Current" | "InProgress" | "Failed";

/** Argo CD's health for what kstatus says: the README's mapping (a VM stopped or paused as asked is Suspended). */
function argoFor(expected: Kstatus, resource: string, s: Status): ArgoHealthStatus {
  if (expected === "InProgress") return "Progressing";
  if (expected === "Failed") return "Degraded";
  const idle = ["Stopped", "Paused", "Frozen"].includes(s.printableStatus ?? "");
  return resource === "virtualmachine" && idle ? "Suspended" : "Healthy";
}

/**
 * Waits until the object is in the phase WHEN checks, both kstatus builds say EXPECTED of it and
 * Argo CD's health check says what the README maps EXPECTED to — all of the same read.
 */
async function expectKstatus(
  resource: string,
  name: string,
  expected: Kstatus,
  when: (s: Status) => boolean = () => true,
  timeoutMs = 60_000,
): Promise<ArgoHealthStatus> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const obj = await getObject<{ status?: Status }>(resource, ns, name);
    if (obj && when(obj.status ?? {})) {
      const argo = argoFor(expected, resource, obj.status ?? {});
      const [r, a] = await Promise.all([kstatus(obj), argoHealth(obj)]);
      last =
        `upstream ${r.upstream.status} (${r.upstream.message}), flux ${r.flux.status} (${r.flux.message}), ` +
        `argo ${a.status} (${a.message}${a.error ? `; error ${a.error}` : ""}), want ${argo}; status ${JSON.stringify(obj.status)}`;
      if (r.upstream.status === expected && r.flux.status === expected && a.status === argo) return a.status;
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

const is = (p: string) => (s: Status) => s.printableStatus === p;

const patch = (name: string, spec: Record<string, unknown>) =>
  kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec })]);

describe("kstatus (upstream and Flux) and Argo CD health on every kind, in every phase", () => {
  it("every kind, as the API server returns it from create (before the operator writes), is InProgress", async () => {
    // Names nothing else here uses: the operator may act on them a moment later, this reads the
    // create's own answer.
    const objects = [
      ["VirtualMachine", vmSpec({ runStrategy: "Halted" })],
      ["VMDisk", { provisionedSize: "64Mi" }],
      ["VMSnapshot", { vmName: "absent", failureDeadline: "10m" }],
      ["VMRestore", { vmName: "absent", snapshotName: "absent" }],
      ["VMTemplate", { template: { memory: "128Mi" } }],
    ] as const;
    for (const [kind, spec] of objects) {
      const manifest = { apiVersion: API_VERSION, kind, metadata: { name: "fresh", namespace: ns }, spec };
      const { stdout } = await kubectl(["create", "-o", "json", "-f", "-"], JSON.stringify(manifest));
      const created = JSON.parse(stdout);
      const [r, a] = await Promise.all([kstatus(created), argoHealth(created)]);
      const said = `${kind}: upstream ${r.upstream.status} (${r.upstream.message}), flux ${r.flux.status}, argo ${a.status}; status ${JSON.stringify(created.status)}`;
      assert.equal(r.upstream.status, "InProgress", said);
      assert.equal(r.flux.status, "InProgress", said);
      assert.equal(a.status, "Progressing", said);
    }
    await kubectl(["delete", "vm,vmdisk,vmsnapshot,vmrestore,vmtemplate", "fresh", "-n", ns, "--wait=false"]);
  });

  it("VirtualMachine: running, restart required are Current (Healthy); paused, halted Current (Suspended)", async () => {
    const condition = (type: string) => (s: Status) =>
      s.conditions?.some((c) => c.type === type && c.status === "True") ?? false;
    await applyObject("VirtualMachine", ns, "vm", vmSpec());
    await expectKstatus("virtualmachine", "vm", "Current", is("Running"));
    await patch("vm", { description: "changed: applies at the next boot" });
    await expectKstatus("virtualmachine", "vm", "Current", condition("RestartRequired"));
    await patch("vm", { paused: true });
    assert.equal(await expectKstatus("virtualmachine", "vm", "Current", is("Paused")), "Suspended");
    await patch("vm", { paused: false, runStrategy: "Halted" });
    assert.equal(await expectKstatus("virtualmachine", "vm", "Current", is("Stopped")), "Suspended");
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

  it("a frozen VM is Current (Suspended); a restore waiting for its snapshot InProgress; a disk in a pool not allowed Failed", async () => {
    await applyObject("VirtualMachine", ns, "iced", vmSpec({ runStrategy: "Halted" }), {
      annotations: { [FROZEN_ANNOTATION]: "true" },
    });
    assert.equal(await expectKstatus("virtualmachine", "iced", "Current", is("Frozen")), "Suspended");
    // "pinned" cannot be placed, so its snapshot waits for it, and a restore of that snapshot waits too.
    await applyObject("VMSnapshot", ns, "pinned-snap", { vmName: "pinned", failureDeadline: "10m" });
    await applyObject("VMRestore", ns, "pinned-restore", { vmName: "pinned", snapshotName: "pinned-snap" });
    await expectKstatus("vmsnapshot", "pinned-snap", "InProgress");
    assert.equal(await expectKstatus("vmrestore", "pinned-restore", "InProgress"), "Progressing");
    await applyObject("VMDisk", ns, "elsewhere", {
      provisionedSize: "64Mi",
      storagePool: "not-allowed-here",
    });
    assert.equal(await expectKstatus("vmdisk", "elsewhere", "Failed"), "Degraded");
  });

  it("a snapshot of a stopped VM that succeeds and a restore of it are Current (Healthy)", async () => {
    await applyObject("VMDisk", ns, "kept-root", { provisionedSize: "64Mi", format: "qcow2" });
    await applyObject(
      "VirtualMachine",
      ns,
      "kept",
      vmSpec({ runStrategy: "Halted", disks: [{ name: "root", diskRef: { name: "kept-root" } }] }),
    );
    assert.equal(await expectKstatus("virtualmachine", "kept", "Current", is("Stopped")), "Suspended");
    await applyObject("VMSnapshot", ns, "kept-snap", { vmName: "kept" });
    await expectKstatus("vmsnapshot", "kept-snap", "Current", undefined, 120_000);
    await applyObject("VMRestore", ns, "kept-restore", { vmName: "kept", snapshotName: "kept-snap" });
    await expectKstatus("vmrestore", "kept-restore", "Current", undefined, 120_000);
  });
});
