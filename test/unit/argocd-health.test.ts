// Argo CD's view of our kinds: src/argocd/health.lua run by gopher-lua (test/tools/argocd-health)
// the way Argo CD runs an argocd-cm health check. Hand-made objects for every row of the
// README's mapping, the edge cases, and the runner's own convention (libraries, limit, checks),
// so a runner that drifts from Argo CD shows up here before the e2e relies on it.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { KINDS } from "../../src/api/index.ts";
import { ARGOCD_CM_PATH, argocdFiles, healthKey, healthScript } from "../../src/argocd/render.ts";
import { type ArgoHealth, argoHealth, argoHealthMany } from "../support/argocd.ts";

type Standing = "Ready" | "Reconciling" | "Stalled";

interface Made {
  kind: string;
  standing?: Standing;
  reason?: string;
  message?: string;
  status?: Record<string, unknown>;
  generation?: number;
  observed?: number;
  deleting?: boolean;
}

/** An object of KIND whose conditions say STANDING (exactly one True), as our writers set them. */
function made(m: Made): Record<string, unknown> {
  const generation = m.generation ?? 2;
  const observed = m.observed ?? generation;
  const reason = m.reason ?? m.standing ?? "Reason";
  const cond = (type: Standing) => ({
    type,
    status: m.standing === type || (type === "Ready" && m.standing === undefined) ? "True" : "False",
    reason: m.standing === type || type === "Ready" ? reason : "Other",
    message: m.standing === type || type === "Ready" ? (m.message ?? "") : "",
    observedGeneration: observed,
    lastTransitionTime: "2026-01-01T00:00:00Z",
  });
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: m.kind,
    metadata: {
      name: "x",
      namespace: "default",
      generation,
      ...(m.deleting
        ? { deletionTimestamp: "2026-01-01T00:00:00Z", finalizers: ["vm.libvirt-operator.io/x"] }
        : {}),
    },
    spec: {},
    status: {
      observedGeneration: observed,
      ...m.status,
      conditions: (["Ready", "Reconciling", "Stalled"] as const).map(cond),
    },
  };
}

const vm = (printableStatus: string, standing: Standing, message: string, reason = printableStatus) =>
  made({ kind: "VirtualMachine", standing, reason, message, status: { printableStatus } });
const phased = (kind: string, phase: string, standing: Standing, message: string, extra = {}) =>
  made({ kind, standing, reason: phase, message, status: { phase, ...extra } });

/** The message of the condition that is True: what the check passes on. */
function saying(obj: Record<string, unknown>): string {
  const conditions = (obj.status as { conditions: Array<{ status: string; message: string }> }).conditions;
  return conditions.find((c) => c.status === "True")!.message;
}

/** [what, object, expected status]: the README's rows; the message is the True condition's. */
const rows: Array<[string, Record<string, unknown>, ArgoHealth["status"]]> = [
  ["VM Running", vm("Running", "Ready", "domain d is running as specified"), "Healthy"],
  ["VM Paused as asked", vm("Paused", "Ready", "the VM is paused as asked"), "Suspended"],
  ["VM Stopped (Halted)", vm("Stopped", "Ready", "the VM is stopped as asked"), "Suspended"],
  ["VM Frozen", vm("Frozen", "Ready", "the VM is frozen"), "Suspended"],
  ["VM Provisioning", vm("Provisioning", "Reconciling", "waiting for disks: root"), "Progressing"],
  ["VM Unknown (NodeLost)", vm("Unknown", "Reconciling", "not heard from", "NodeLost"), "Progressing"],
  ["VM Unknown (NodeGone)", vm("Unknown", "Stalled", "node n is gone", "NodeGone"), "Degraded"],
  ["VM ErrorUnschedulable", vm("ErrorUnschedulable", "Stalled", "no node can run it"), "Degraded"],
  ["VM paused by a full disk", vm("Paused", "Stalled", "disk full", "DiskFull"), "Degraded"],
  ["VMDisk Ready", phased("VMDisk", "Ready", "Ready", "volume ready"), "Healthy"],
  ["VMDisk Resizing", phased("VMDisk", "Resizing", "Ready", "growing"), "Healthy"],
  ["VMDisk Locked", phased("VMDisk", "Locked", "Reconciling", "clone in progress"), "Progressing"],
  ["VMDisk Illegal", phased("VMDisk", "Illegal", "Stalled", "import failed"), "Degraded"],
  ["VMSnapshot Succeeded", phased("VMSnapshot", "Succeeded", "Ready", "ok", { readyToUse: true }), "Healthy"],
  ["VMSnapshot InProgress", phased("VMSnapshot", "InProgress", "Reconciling", "waiting"), "Progressing"],
  ["VMSnapshot Failed", phased("VMSnapshot", "Failed", "Stalled", "deadline passed"), "Degraded"],
  [
    "VMRestore Succeeded",
    phased("VMRestore", "Succeeded", "Ready", "restored", { complete: true }),
    "Healthy",
  ],
  ["VMRestore InProgress", phased("VMRestore", "InProgress", "Reconciling", "stopping"), "Progressing"],
  ["VMRestore Failed", phased("VMRestore", "Failed", "Stalled", "snapshot failed"), "Degraded"],
  ["VMTemplate Ready", phased("VMTemplate", "Ready", "Ready", "bases ready"), "Healthy"],
  ["VMTemplate Pending", phased("VMTemplate", "Pending", "Reconciling", "importing"), "Progressing"],
  ["VMTemplate Failed", phased("VMTemplate", "Failed", "Stalled", "import failed"), "Degraded"],
];

describe("Argo CD health check (src/argocd/health.lua in gopher-lua)", () => {
  it("maps every row of the README's table (one run of the runner)", async () => {
    const got = await argoHealthMany(rows.map(([, obj]) => obj));
    rows.forEach(([what, obj, status], i) => {
      assert.deepEqual(got[i], { status, message: saying(obj) }, what);
    });
  });

  it("a template or disk that is Stopped by name is still Healthy: only a VirtualMachine is Suspended", async () => {
    const got = await argoHealth(
      made({ kind: "VMTemplate", standing: "Ready", message: "ok", status: { printableStatus: "Stopped" } }),
    );
    assert.equal(got.status, "Healthy");
  });

  it("no status, or status without conditions, is Progressing", async () => {
    const bare = { ...made({ kind: "VMDisk" }), status: undefined };
    const noConditions = { ...made({ kind: "VirtualMachine" }), status: { printableStatus: "Running" } };
    for (const r of await argoHealthMany([bare, noConditions])) {
      assert.deepEqual(r, { status: "Progressing", message: "Waiting for the operator to report status" });
    }
  });

  it("conditions judged against an older generation are Progressing, even when they say Stalled or Ready", async () => {
    const got = await argoHealthMany([
      made({ kind: "VMSnapshot", standing: "Stalled", message: "old failure", generation: 3, observed: 2 }),
      made({ kind: "VirtualMachine", standing: "Ready", message: "old", generation: 5, observed: 4 }),
    ]);
    for (const r of got) assert.equal(r.status, "Progressing", r.message);
    assert.equal(got[0]!.message, "Waiting for the operator to judge generation 3 (it last judged 2)");
  });

  it("status.observedGeneration behind alone, or the Ready condition's alone, is enough to be Progressing", async () => {
    const topBehind = made({ kind: "VMDisk", standing: "Ready", message: "ok", generation: 4 });
    (topBehind.status as { observedGeneration: number }).observedGeneration = 3;
    const conditionBehind = made({
      kind: "VMDisk",
      standing: "Ready",
      message: "ok",
      generation: 4,
      observed: 3,
    });
    delete (conditionBehind.status as { observedGeneration?: number }).observedGeneration;
    for (const r of await argoHealthMany([topBehind, conditionBehind])) {
      assert.deepEqual(r, {
        status: "Progressing",
        message: "Waiting for the operator to judge generation 4 (it last judged 3)",
      });
    }
  });

  it("an empty message falls back to the reason", async () => {
    const got = await argoHealth(
      made({ kind: "VMRestore", standing: "Stalled", reason: "SnapshotFailed", message: "" }),
    );
    assert.deepEqual(got, { status: "Degraded", message: "SnapshotFailed" });
  });

  it("an object being deleted is Progressing 'Pending deletion', as Argo CD says before running any check", async () => {
    const got = await argoHealth(made({ kind: "VirtualMachine", standing: "Ready", deleting: true }));
    assert.deepEqual(got, { status: "Progressing", message: "Pending deletion" });
  });

  it("argocd-cm holds the same script under each kind's key, and nothing else", () => {
    const cm = yaml.load(argocdFiles().get(ARGOCD_CM_PATH)!) as {
      metadata: { name: string; namespace: string };
      data: Record<string, string>;
    };
    assert.deepEqual([cm.metadata.name, cm.metadata.namespace], ["argocd-cm", "argocd"]);
    assert.deepEqual(Object.keys(cm.data).sort(), KINDS.map((k) => healthKey(k.kind)).sort());
    assert.equal(Object.keys(cm.data).length, 5);
    for (const script of Object.values(cm.data)) assert.equal(script, healthScript());
  });
});

describe("argocd-health runner: Argo CD's calling convention", () => {
  let dir = "";
  const script = async (name: string, body: string) => {
    const path = join(dir, `${name}.lua`);
    await writeFile(path, body);
    return path;
  };
  const obj = made({ kind: "VMDisk", standing: "Ready" });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "argocd-health-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("sets the global obj, its integers as numbers", async () => {
    const got = await argoHealth(
      obj,
      await script(
        "obj",
        'return { status = "Healthy", message = obj.kind .. " " .. (obj.metadata.generation + 1) }',
      ),
    );
    assert.deepEqual(got, { status: "Healthy", message: "VMDisk 3" });
  });

  for (const [lib, call, key] of [
    ["string", 'string.format("%d", 1)', "format"],
    ["string (as methods)", '("a"):upper()', "upper"],
    ["math", "math.floor(1.5)", "floor"],
    ["os", "os.time()", "time"],
  ] as const) {
    it(`does not open the ${lib} library (Argo CD leaves it out of argocd-cm checks)`, async () => {
      const got = await argoHealth(
        obj,
        await script(key, `local x = ${call}\nreturn { status = "Healthy" }`),
      );
      assert.equal(got.status, "Unknown");
      assert.match(
        got.error ?? "",
        new RegExp(`attempt to index a non-table object\\((nil|string)\\) with key '${key}'`),
      );
    });
  }

  it("opens base and table", async () => {
    const body =
      'local t = {}\ntable.insert(t, tostring(#obj.status.conditions))\nreturn { status = "Healthy", message = table.concat(t, ",") }';
    assert.deepEqual(await argoHealth(obj, await script("libs", body)), { status: "Healthy", message: "3" });
  });

  it("stops a script after 1 s: Unknown with the error", async () => {
    const started = Date.now();
    const got = await argoHealth(obj, await script("loop", "while true do end"));
    const took = Date.now() - started;
    assert.equal(got.status, "Unknown");
    assert.match(got.error ?? "", /context deadline exceeded/);
    assert.ok(took >= 1000 && took < 10_000, `took ${took} ms`);
  });

  it("turns an unknown status into Unknown 'Lua returned an invalid health status'", async () => {
    const got = await argoHealth(obj, await script("invalid", 'return { status = "Great", message = "hi" }'));
    assert.deepEqual(got, { status: "Unknown", message: "Lua returned an invalid health status" });
  });

  it("wants a table back", async () => {
    const got = await argoHealth(obj, await script("scalar", 'return "Healthy"'));
    assert.equal(got.status, "Unknown");
    assert.equal(got.error, "expect table output from Lua script, not string");
  });
});
