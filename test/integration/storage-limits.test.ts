// Storage limits against the real stack: the CRD's size maximum, the API server's own
// ResourceQuota on VMs and VMDisks (usage counted by the real quota controller), a namespace's
// provisioned-bytes budget, the storage pool allowlist (controller and, with the controller
// stopped, the agent alone), pool capacity with the admin's overcommit ratio, and a VM paused
// because its pool (a tmpfs) is full.
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { NODE_LABEL, VOLUME_FINALIZER } from "../../src/api/names.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { startController } from "../../src/cmd/local/operator.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { run } from "../../src/cmd/local/tools.ts";
import {
  ALLOWED_POOLS_ANNOTATION,
  DISK_BYTES_LIMIT_ANNOTATION,
} from "../../src/controllers/tenant-policy.ts";
import { ensureGuest, type Guest, guestVmSpec, waitForConsole } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  consoleLogOf,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { KUBECONFIG, kubectl, kubectlError, TEST_STACK, testNamespace, toYaml } from "../support/stack.ts";

const SLOT = Number(process.env.TEST_STACK_SLOT ?? 0);
/** libvirtd is shared by every test stack: pool names carry the slot. */
const OTHER_POOL = `lvo-s${SLOT}-other`;
const TMPFS_POOL = `lvo-s${SLOT}-tmpfs`;
const TMPFS_SIZE = "32m";
const Gi = 2 ** 30;

let guest: Guest;
let workDir = "";
let tmpfsDir = "";

const condition = (d: { status?: { conditions?: Array<{ type: string }> } } | undefined, type: string) =>
  d?.status?.conditions?.find((c) => c.type === type) as
    | { type: string; status: string; reason: string; message: string }
    | undefined;
const waitForDisk = (ns: string, name: string, check: (d: VMDisk | undefined) => boolean, what: string) =>
  waitForObject<VMDisk>("vmdisk", ns, name, check, what, 180_000);
const applyDisk = (ns: string, name: string, spec: Record<string, unknown>) =>
  applyObject("VMDisk", ns, name, spec);
const reasonIs = (type: string, reason: string) => (d: VMDisk | undefined) =>
  condition(d, type)?.reason === reason;

async function annotateNamespace(ns: string, annotations: Record<string, string>) {
  const pairs = Object.entries(annotations).map(([k, v]) => `${k}=${v}`);
  await kubectl(["annotate", "namespace", ns, "--overwrite", ...pairs]);
}

async function definePool(name: string, dir: string) {
  await virsh("pool-destroy", name).catch(() => undefined);
  await virsh("pool-undefine", name).catch(() => undefined);
  await virsh("pool-define-as", name, "dir", "--target", dir);
  await virsh("pool-start", name);
}

async function removePool(name: string) {
  const vols = await virsh("vol-list", "--pool", name).catch(() => "");
  for (const line of vols.split("\n").slice(2)) {
    const vol = line.trim().split(/\s+/)[0];
    if (vol) await virsh("vol-delete", "--pool", name, vol).catch(() => undefined);
  }
  await virsh("pool-destroy", name).catch(() => undefined);
  await virsh("pool-undefine", name).catch(() => undefined);
}

async function volumesIn(pool: string): Promise<string> {
  await virsh("pool-refresh", pool).catch(() => undefined);
  return virsh("vol-list", "--pool", pool);
}

/** The controller alone, restarted with ENV (the agent keeps running). */
async function restartController(env: Record<string, string | undefined>) {
  await stopDaemon(TEST_STACK.stateDir, "controller");
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await startController(
    TEST_STACK.stateDir,
    KUBECONFIG,
    `local-${TEST_STACK.nodeName}`,
    TEST_STACK.ports.controllerMetrics,
  );
}

/** The node's published pools include NAME (the agent publishes every 10 s). */
async function waitForPublishedPool(name: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { stdout } = await kubectl(["get", "node", TEST_STACK.nodeName, "-o", "json"]);
    const capacity = JSON.parse(stdout).metadata?.annotations?.["vm.libvirt-operator.io/capacity"] ?? "{}";
    if (JSON.parse(capacity).storagePools?.[name]) return;
    await sleep(500);
  }
  throw new Error(`node ${TEST_STACK.nodeName} never published storage pool ${name}`);
}

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-storage-limits-"));
  await chmod(workDir, 0o755);
  tmpfsDir = join(workDir, "tmpfs");
  await run("mkdir", ["-p", tmpfsDir, join(workDir, "other")]);
  await definePool(OTHER_POOL, join(workDir, "other"));
  await run("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE},mode=0755`, "tmpfs", tmpfsDir]);
  await definePool(TMPFS_POOL, tmpfsDir);
  process.env.STORAGE_OVERCOMMIT = "1";
  await startTestOperator();
});

after(async () => {
  await stopTestOperator();
  delete process.env.STORAGE_OVERCOMMIT;
  await removePool(OTHER_POOL);
  await removePool(TMPFS_POOL);
  await run("umount", [tmpfsDir]).catch(() => undefined);
  await rm(workDir, { recursive: true, force: true });
});

describe("storage limits", () => {
  it("the API server refuses a provisionedSize over 64Ti, naming the limit", async () => {
    const ns = await testNamespace("storage-max");
    const error = await kubectlError(
      ["apply", "--server-side", "-f", "-"],
      toYaml({
        apiVersion: "vm.libvirt-operator.io/v1alpha1",
        kind: "VMDisk",
        metadata: { name: "huge", namespace: ns },
        spec: { provisionedSize: "65Ti" },
      }),
    );
    assert.match(error, /spec.provisionedSize: Invalid value.*may be at most 64Ti/);
  });

  it("ResourceQuota: the real quota controller counts VMs and VMDisks and the API server refuses one over", async () => {
    const ns = await testNamespace("storage-quota");
    await actAsTenant(ns);
    const vmCount = "count/virtualmachines.vm.libvirt-operator.io";
    const diskCount = "count/vmdisks.vm.libvirt-operator.io";
    await kubectl(
      ["apply", "-f", "-"],
      toYaml({
        apiVersion: "v1",
        kind: "ResourceQuota",
        metadata: { name: "vms", namespace: ns },
        spec: { hard: { [vmCount]: "1", [diskCount]: "1" } },
      }),
    );
    const quota = async () =>
      JSON.parse((await kubectl(["get", "resourcequota", "vms", "-n", ns, "-o", "json"])).stdout) as {
        status?: { hard?: Record<string, string>; used?: Record<string, string> };
      };
    const waitForUsed = async (key: string, value: string) => {
      const deadline = Date.now() + 90_000;
      let last = await quota();
      while (last.status?.used?.[key] !== value) {
        if (Date.now() > deadline)
          throw new Error(`quota ${key} never used ${value}: ${JSON.stringify(last.status)}`);
        await sleep(500);
        last = await quota();
      }
    };
    // Nothing is admitted until the quota controller has computed the quota's status.
    await waitForUsed(vmCount, "0");
    await waitForUsed(diskCount, "0");

    await applyVm(ns, "first", { memory: "64Mi", runStrategy: "Halted" });
    await applyDisk(ns, "first", { provisionedSize: "1Mi" });
    await waitForUsed(vmCount, "1");
    await waitForUsed(diskCount, "1");
    const vmError = await kubectlError(
      ["create", "-f", "-"],
      toYaml({
        apiVersion: "vm.libvirt-operator.io/v1alpha1",
        kind: "VirtualMachine",
        metadata: { name: "second", namespace: ns },
        spec: { memory: "64Mi", runStrategy: "Halted" },
      }),
    );
    assert.match(
      vmError,
      /exceeded quota: vms, requested: count\/virtualmachines.vm.libvirt-operator.io=1, used: count\/virtualmachines.vm.libvirt-operator.io=1, limited: count\/virtualmachines.vm.libvirt-operator.io=1/,
    );
    const diskError = await kubectlError(
      ["create", "-f", "-"],
      toYaml({
        apiVersion: "vm.libvirt-operator.io/v1alpha1",
        kind: "VMDisk",
        metadata: { name: "second", namespace: ns },
        spec: { provisionedSize: "1Mi" },
      }),
    );
    assert.match(diskError, /exceeded quota: vms, requested: count\/vmdisks.vm.libvirt-operator.io=1/);

    // Deleting one frees its place: the quota controller counts it gone (admission never decrements).
    await kubectl(["delete", "vm", "first", "-n", ns, "--wait=true", "--timeout=90s"]);
    await waitForUsed(vmCount, "0");
    await applyVm(ns, "second", { memory: "64Mi", runStrategy: "Halted" });
    await kubectl(["delete", "vm", "second", "-n", ns, "--wait=true", "--timeout=90s"]);
    await kubectl(["delete", "vmdisk", "first", "-n", ns, "--wait=true", "--timeout=90s"]);
  });

  it("a namespace's disk byte limit: a disk over it waits unplaced, a growth over it keeps the size; both proceed once there is room", async () => {
    const ns = await testNamespace("storage-budget");
    await actAsTenant(ns);
    await annotateNamespace(ns, { [DISK_BYTES_LIMIT_ANNOTATION]: "3Gi" });
    await applyDisk(ns, "a", { provisionedSize: "2Gi" });
    await waitForDisk(ns, "a", (d) => d?.status?.phase === "Ready", "Ready");
    await applyDisk(ns, "b", { provisionedSize: "2Gi" });
    const waiting = await waitForDisk(ns, "b", reasonIs("Scheduled", "DiskBytesLimitExceeded"), "refused");
    const scheduled = condition(waiting, "Scheduled")!;
    assert.equal(scheduled.status, "False");
    assert.match(
      scheduled.message,
      /creating it \(2Gi\) would bring the namespace's provisioned disk bytes to 4Gi, over its limit of 3Gi \(set by the annotation vm.libvirt-operator.io\/disk-bytes-limit of namespace storage-budget\); its other VMDisks hold 2Gi/,
    );
    assert.equal(condition(waiting, "Stalled")?.status, "True");
    assert.equal(waiting?.metadata.labels?.[NODE_LABEL], undefined, "not placed");
    await waitForEvent(
      ns,
      "b",
      (e) => e.type === "Warning" && e.reason === "DiskBytesLimitExceeded",
      "DiskBytesLimitExceeded",
    );

    // The admin raises the limit: the waiting disk is placed and created (the Namespace is watched).
    await annotateNamespace(ns, { [DISK_BYTES_LIMIT_ANNOTATION]: "5Gi" });
    await waitForDisk(ns, "b", (d) => d?.status?.phase === "Ready", "Ready after the limit rose");

    // Growing a to 4Gi would make 6Gi: the agent keeps its 2Gi and says why.
    await applyDisk(ns, "a", { provisionedSize: "4Gi" });
    const held = await waitForDisk(ns, "a", reasonIs("Stalled", "DiskBytesLimitExceeded"), "growth refused");
    assert.match(
      condition(held, "Stalled")!.message,
      /growing it from 2Gi to 4Gi would bring .* to 6Gi, over its limit of 5Gi/,
    );
    assert.equal(held?.status?.provisionedSize, 2 * Gi);
    assert.equal(held?.status?.phase, "Ready", "the volume stays usable");
    await waitForEvent(
      ns,
      "a",
      (e) => e.type === "Warning" && e.reason === "DiskBytesLimitExceeded",
      "DiskBytesLimitExceeded",
    );

    // Another disk goes: the growth proceeds.
    await kubectl(["delete", "vmdisk", "b", "-n", ns, "--wait=true", "--timeout=90s"]);
    const grown = await waitForDisk(ns, "a", (d) => d?.status?.provisionedSize === 4 * Gi, "grown to 4Gi");
    assert.equal(condition(grown, "Ready")?.status, "True");
    await kubectl(["delete", "vmdisk", "a", "-n", ns, "--wait=true", "--timeout=90s"]);
  });

  it("a pool outside the namespace's allowlist is refused by the controller; the admin's annotation allows it", async () => {
    const ns = await testNamespace("storage-pools");
    await actAsTenant(ns);
    await waitForPublishedPool(OTHER_POOL);
    await applyDisk(ns, "elsewhere", { provisionedSize: "1Mi", storagePool: OTHER_POOL });
    const refused = await waitForDisk(
      ns,
      "elsewhere",
      reasonIs("Scheduled", "StoragePoolNotAllowed"),
      "refused",
    );
    assert.match(
      condition(refused, "Scheduled")!.message,
      new RegExp(
        `spec.storagePool: storage pool ${OTHER_POOL} is not allowed in this namespace \\(allowed: libvirt-operator, set by the cluster default\\)`,
      ),
    );
    assert.equal(refused?.metadata.labels?.[NODE_LABEL], undefined);
    await waitForEvent(
      ns,
      "elsewhere",
      (e) => e.type === "Warning" && e.reason === "StoragePoolNotAllowed",
      "StoragePoolNotAllowed",
    );
    assert.doesNotMatch(await volumesIn(OTHER_POOL), new RegExp(`${ns}_elsewhere`));

    await annotateNamespace(ns, { [ALLOWED_POOLS_ANNOTATION]: `libvirt-operator,${OTHER_POOL}` });
    await waitForDisk(ns, "elsewhere", (d) => d?.status?.phase === "Ready", "Ready once allowed");
    assert.match(await volumesIn(OTHER_POOL), new RegExp(`${ns}_elsewhere\\.qcow2`));
    await kubectl(["delete", "vmdisk", "elsewhere", "-n", ns, "--wait=true", "--timeout=90s"]);
  });

  it("the agent alone refuses a disk placed by hand in a pool its namespace may not use, and creates nothing", async () => {
    const ns = await testNamespace("storage-forged");
    await stopDaemon(TEST_STACK.stateDir, "controller");
    try {
      await applyDisk(ns, "forged", { provisionedSize: "1Mi", storagePool: OTHER_POOL });
      // What the controller would do on placement, done with the admin's kubeconfig.
      await kubectl([
        "patch",
        "vmdisk",
        "forged",
        "-n",
        ns,
        "--type=merge",
        "-p",
        JSON.stringify({
          metadata: { labels: { [NODE_LABEL]: TEST_STACK.nodeName }, finalizers: [VOLUME_FINALIZER] },
        }),
      ]);
      await kubectl([
        "patch",
        "vmdisk",
        "forged",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status: { nodeName: TEST_STACK.nodeName } }),
      ]);
      const refused = await waitForDisk(
        ns,
        "forged",
        reasonIs("Stalled", "StoragePoolNotAllowed"),
        "refused by the agent",
      );
      assert.match(
        condition(refused, "Stalled")!.message,
        new RegExp(`storage pool ${OTHER_POOL} is not allowed in this namespace`),
      );
      await waitForEvent(
        ns,
        "forged",
        (e) => e.type === "Warning" && e.reason === "StoragePoolNotAllowed",
        "StoragePoolNotAllowed",
      );
      await sleep(2000);
      assert.doesNotMatch(await volumesIn(OTHER_POOL), new RegExp(`${ns}_forged`), "no volume was created");
    } finally {
      await restartController({});
    }
    await kubectl(["delete", "vmdisk", "forged", "-n", ns, "--wait=true", "--timeout=90s"]);
  });

  it("pool capacity × overcommit: a disk larger than what the pool may promise waits, naming pool, capacity and what is provisioned", async () => {
    const ns = await testNamespace("storage-capacity");
    await annotateNamespace(ns, { [ALLOWED_POOLS_ANNOTATION]: `libvirt-operator,${TMPFS_POOL}` });
    await waitForPublishedPool(TMPFS_POOL);
    await applyDisk(ns, "fill", { provisionedSize: "256Mi", storagePool: TMPFS_POOL });
    const waiting = await waitForDisk(ns, "fill", reasonIs("Scheduled", "Unschedulable"), "unschedulable");
    assert.match(
      condition(waiting, "Scheduled")!.message,
      new RegExp(
        `pool ${TMPFS_POOL} on node ${TEST_STACK.nodeName} has 32Mi capacity, 0 bytes already provisioned; the disk needs 256Mi`,
      ),
    );
    // The admin allows 16 times the capacity to be promised: the sparse disk is placed.
    await restartController({ STORAGE_OVERCOMMIT: "16" });
    await waitForDisk(ns, "fill", (d) => d?.status?.phase === "Ready", "Ready with overcommit 16");
  });

  it("a guest filling an overcommitted pool is paused, and the VM says its disk is full", async () => {
    const ns = "storage-capacity"; // the disk of the previous test, 256Mi in a 32Mi tmpfs
    const spec = guestVmSpec(guest, {
      disks: [{ name: "data", diskRef: { name: "fill" } }],
      shutdown: { gracePeriodSeconds: 0 },
    });
    const boot = spec.boot as { cmdline: string };
    await rm(consoleLogOf(ns, "filler"), { force: true }); // an earlier run's console shows nothing of this one
    await applyVm(ns, "filler", { ...spec, boot: { ...boot, cmdline: `${boot.cmdline} lvo.fill=vda` } });
    await waitForConsole(consoleLogOf(ns, "filler"), "LIBVIRT-OPERATOR-GUEST-FILLING vda", 300_000);
    const vm = await waitForVm(
      ns,
      "filler",
      (v) => condition(v, "Ready")?.reason === "DiskFull",
      "Ready False (DiskFull)",
      240_000,
    );
    const ready = condition(vm, "Ready")!;
    assert.equal(ready.status, "False");
    assert.match(ready.message, /disk vda \(VMDisk fill\) ran out of space in its storage pool/);
    assert.equal(condition(vm, "Stalled")?.status, "True");
    assert.equal(condition(vm, "Paused")?.reason, "IOError");
    assert.equal(vm?.status?.printableStatus, "Paused");
    assert.match(await virsh("domstate", "--reason", `${ns}_filler`), /paused \(I\/O error\)/);
    assert.doesNotMatch(await run("cat", [consoleLogOf(ns, "filler")]).then((r) => r.stdout), /GUEST-FILLED/);

    await kubectl(["delete", "vm", "filler", "-n", ns, "--wait=true", "--timeout=120s"]);
    await kubectl(["delete", "vmdisk", "fill", "-n", ns, "--wait=true", "--timeout=90s"]);
    await restartController({ STORAGE_OVERCOMMIT: "1" });
  });
});
