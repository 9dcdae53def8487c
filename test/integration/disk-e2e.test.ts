// VMDisk end to end: volumes in the node's pool, attached to TCG guests that write markers on
// them, hot-plugged, grown live, cloned, imported (file, http), protected while in use,
// wiped and deleted, with statistics.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { BOOTED, consoleText, ensureGuest, type Guest, waitForConsole } from "../support/guest.ts";
import {
  agentMetrics,
  agentPid,
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
import { kubectl, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let workDir = "";
let server: Server | undefined;
let baseUrl = "";
const port = () => {
  const address = server?.address();
  return typeof address === "object" && address ? address.port : 0;
};
const MiB = 2 ** 20;

const getDisk = (name: string) => getObject<VMDisk>("vmdisk", ns, name);
const waitForDisk = (
  name: string,
  check: (d: VMDisk | undefined) => boolean,
  what: string,
  timeoutMs = 90_000,
) => waitForObject<VMDisk>("vmdisk", ns, name, check, what, timeoutMs);
const phaseIs = (phase: string) => (d: VMDisk | undefined) => d?.status?.phase === phase;
const condition = (d: VMDisk | undefined, type: string) =>
  d?.status?.conditions?.find((c) => c.type === type);

async function applyDisk(
  name: string,
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
) {
  await applyObject("VMDisk", ns, name, spec, metadata);
}

function guestSpec(extra: Record<string, unknown>, cmdline = "") {
  return {
    hypervisor: "qemu",
    memory: "256Mi",
    cpu: { cores: 1 },
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: `console=ttyS0 panic=-1 ${cmdline}`.trim() },
    shutdown: { gracePeriodSeconds: 60 },
    ...extra,
  };
}

/** The first bytes of a volume as the guest sees them (qemu-img reads qcow2 for us). */
async function volumeStart(path: string, format: string, bytes = 64): Promise<string> {
  const out = join(workDir, `read-${Date.now()}.raw`);
  await run("qemu-img", ["dd", "-f", format, "-O", "raw", "bs=512", "count=1", `if=${path}`, `of=${out}`]);
  const text = readFileSync(out).subarray(0, bytes).toString("latin1");
  rmSync(out, { force: true });
  return text;
}

/** The guest's last reported disk list ("vda:bytes …"). */
function guestDisks(name: string): string {
  const lines = consoleText(consoleLogOf(ns, name))
    .split("\n")
    .filter((l) => l.startsWith("LIBVIRT-OPERATOR-GUEST-DISKS"));
  return lines.at(-1) ?? "";
}

async function waitForGuestDisks(name: string, check: (line: string) => boolean, what: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (check(guestDisks(name))) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`guest ${name} never showed ${what}; last: ${guestDisks(name)}`);
}

/** Merge-patches the object's spec (null removes a field). */
function patchSpec(resource: string, name: string, spec: Record<string, unknown>) {
  return kubectl(["patch", resource, name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec })]);
}

/** Waits for an Event of REASON on the disk NAME (Events go beside status writes, not after them). */
function eventOf(name: string, reason: string) {
  return waitForEvent(ns, name, (e) => e.reason === reason, reason);
}

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-disk-e2e-"));
  // The pool directory is listed too: the agent must still refuse volumes as images.
  process.env.IMAGE_IMPORT_DIRS = `${workDir}:/var/lib/libvirt/libvirt-operator`;
  // Only the server's own address: a redirect to 127.0.0.2 must still be refused.
  process.env.IMAGE_IMPORT_ALLOWED_NETWORKS = "127.0.0.1/32";
  // An 8 MiB raw image with a marker, and the same image as qcow2, served on loopback.
  const raw = Buffer.alloc(8 * MiB);
  raw.write("IMPORTED-IMAGE-MARKER", 0, "latin1");
  writeFileSync(join(workDir, "image.raw"), raw);
  await run("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-F",
    "raw",
    "-b",
    "/etc/hostname",
    join(workDir, "backed.qcow2"),
  ]);
  await run("qemu-img", [
    "convert",
    "-f",
    "raw",
    "-O",
    "qcow2",
    join(workDir, "image.raw"),
    join(workDir, "image.qcow2"),
  ]);
  server = createServer((req, res) => {
    if (req.url === "/slow") {
      // The raw image, trickled out over ~5 s, so an agent can be killed in the middle.
      const body = readFileSync(join(workDir, "image.raw"));
      res.writeHead(200, { "content-length": body.length, "content-type": "application/octet-stream" });
      let at = 0;
      const timer = setInterval(() => {
        if (res.destroyed || at >= body.length) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(body.subarray(at, at + 256 * 1024));
        at += 256 * 1024;
      }, 150);
      return;
    }
    if (req.url === "/redirect") {
      res.writeHead(302, { location: `http://127.0.0.2:${port()}/image.raw` }).end();
      return;
    }
    const file = join(workDir, (req.url ?? "").replace(/^\/+/, ""));
    if (!req.url?.startsWith("/image.") || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    const body = readFileSync(file);
    res
      .writeHead(200, { "content-length": body.length, "content-type": "application/octet-stream" })
      .end(body);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${port()}`;
  ns = await testNamespace("disk-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
  server?.close();
  await rm(workDir, { recursive: true, force: true });
});

describe("VMDisk end to end (TCG guests)", () => {
  it("a guest writes a marker to its data disk; the marker is on the volume and in a clone; statistics rise; a second VM may not take it", async () => {
    await applyDisk("data", { provisionedSize: "64Mi", format: "qcow2", wipeAfterDelete: true });
    const created = await waitForDisk("data", phaseIs("Ready"), "Ready");
    const s = created!.status!;
    assert.equal(s.provisionedSize, 64 * MiB);
    assert.ok((s.actualSize ?? 0) > 0 && (s.actualSize ?? 0) < 64 * MiB, "sparse");
    assert.match(s.path ?? "", new RegExp(`/${ns}_data\\.qcow2$`));
    assert.equal(s.format, "qcow2");
    assert.ok(existsSync(s.path!));

    rmSync(consoleLogOf(ns, "writer"), { force: true });
    await applyVm(
      ns,
      "writer",
      guestSpec({ disks: [{ name: "data", diskRef: { name: "data" } }] }, "lvo.write=vda:DISK-MARKER-42"),
    );
    await waitForVm(ns, "writer", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "writer"), "LIBVIRT-OPERATOR-GUEST-WROTE vda", 90_000);
    await waitForGuestDisks("writer", (l) => /vda:67108864/.test(l), "a 64 MiB vda");

    const vm = await waitForVm(ns, "writer", (v) => (v?.status?.disks ?? []).length === 1, "status.disks");
    assert.equal(vm!.status!.disks![0]!.path, s.path);
    assert.equal(vm!.status!.disks![0]!.provisionedSize, 64 * MiB);
    assert.ok((vm!.status!.storedData ?? 0) > 0, "storedData counts the disk's allocation");
    const attached = await waitForDisk("data", (d) => condition(d, "InUse")?.status === "True", "InUse");
    assert.deepEqual(attached!.status!.attachedTo, ["writer"]);
    assert.ok(attached!.metadata.finalizers?.includes("vm.libvirt-operator.io/disk-protection"));

    // Statistics: the guest wrote > 1 MiB at boot.
    const withStats = await waitForDisk(
      "data",
      (d) => (d?.status?.statistics?.writeBytes ?? 0) > MiB,
      "write statistics",
      30_000,
    );
    assert.ok((withStats!.status!.statistics!.writeBytes ?? 0) > MiB);
    assert.match(
      await agentMetrics(),
      new RegExp(
        `libvirt_operator_vmdisk_write_bytes_total\\{namespace="${ns}",name="data",vm="writer"[^}]*\\} [1-9]`,
      ),
    );

    // A second VM asking for the non-shareable disk gets a clear condition.
    await applyVm(
      ns,
      "thief",
      guestSpec({ runStrategy: "Halted", disks: [{ name: "d", diskRef: { name: "data" } }] }),
    );
    const thief = await waitForVm(
      ns,
      "thief",
      (v) => v?.status?.conditions?.some((c) => c.type === "Failure" && c.status === "True") ?? false,
      "Failure",
    );
    assert.match(
      thief!.status!.conditions!.find((c) => c.type === "Failure")!.message,
      /attached to VirtualMachine writer and is not shareable/,
    );
    await kubectl(["delete", "vm", "thief", "-n", ns, "--wait=true"]);

    // Stopped, the marker is on the volume.
    await patchSpec("vm", "writer", { runStrategy: "Halted" });
    await waitForVm(ns, "writer", isPrintable("Stopped"), "Stopped");
    assert.equal((await volumeStart(s.path!, "qcow2")).slice(0, 14), "DISK-MARKER-42");

    // A clone carries it too.
    await applyDisk("copy", { provisionedSize: "64Mi", source: { disk: { name: "data" } } });
    const copy = await waitForDisk("copy", phaseIs("Ready"), "Ready (cloned)");
    assert.equal(copy!.status!.nodeName, s.nodeName);
    assert.notEqual(copy!.status!.path, s.path);
    assert.equal((await volumeStart(copy!.status!.path!, "qcow2")).slice(0, 14), "DISK-MARKER-42");
    assert.equal(copy!.status!.lastOperation?.type, "Clone");
  });

  it("deleting an attached disk waits, naming the VM; detached, it is wiped and deleted", async () => {
    const path = (await getDisk("data"))!.status!.path!;
    await kubectl(["delete", "vmdisk", "data", "-n", ns, "--wait=false"]);
    const blocked = await waitForDisk(
      "data",
      (d) => condition(d, "InUse")?.reason === "DeletionBlocked",
      "DeletionBlocked",
    );
    assert.match(condition(blocked, "InUse")!.message, /VirtualMachine writer uses the disk/);
    assert.ok(blocked!.metadata.deletionTimestamp);
    await eventOf("data", "DeletionBlocked");
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(existsSync(path), "the volume stays while attached");

    await patchSpec("vm", "writer", { disks: null });
    await waitForDisk("data", (d) => d === undefined, "deleted", 60_000);
    assert.ok(!existsSync(path), "the volume is gone");
    await eventOf("data", "Wiped");
    const vm = await getVm(ns, "writer");
    assert.deepEqual(vm!.status!.disks ?? [], []);
  });

  it("hot-plug into a running guest, unplug, plug again, grow live", async () => {
    await applyDisk("hot", { provisionedSize: "32Mi" });
    await waitForDisk("hot", phaseIs("Ready"), "Ready");
    rmSync(consoleLogOf(ns, "plug"), { force: true });
    await applyVm(ns, "plug", guestSpec({}));
    await waitForVm(ns, "plug", isPrintable("Running"), "Running");
    await waitForConsole(consoleLogOf(ns, "plug"), BOOTED, 90_000);
    assert.doesNotMatch(guestDisks("plug"), /vda/);

    const disks = (active: boolean) => ({ disks: [{ name: "hot", diskRef: { name: "hot" }, active }] });
    await patchSpec("vm", "plug", disks(true));
    await waitForGuestDisks("plug", (l) => /vda:33554432/.test(l), "vda plugged");
    const starts = (await getVm(ns, "plug"))!.status!.startCount;

    await patchSpec("vm", "plug", disks(false));
    await waitForGuestDisks("plug", (l) => !/vda/.test(l), "vda unplugged");
    await waitForVm(ns, "plug", (v) => (v?.status?.disks ?? []).length === 0, "status.disks empty");

    await patchSpec("vm", "plug", disks(true));
    await waitForGuestDisks("plug", (l) => /vda:33554432/.test(l), "vda plugged again");

    await patchSpec("vmdisk", "hot", { provisionedSize: "48Mi" });
    await waitForGuestDisks("plug", (l) => /vda:50331648/.test(l), "vda grown to 48 MiB");
    const grown = await waitForDisk("hot", (d) => d?.status?.provisionedSize === 48 * MiB, "48Mi");
    assert.match(grown!.status!.lastOperation?.message ?? "", /live \(VirtualMachine plug is running\)/);
    const after = (await getVm(ns, "plug"))!;
    assert.equal(after.status!.startCount, starts, "no restart");
    assert.equal(after.status!.printableStatus, "Running");
    // Shrinking is refused by the API server.
    const refused = await patchSpec("vmdisk", "hot", { provisionedSize: "16Mi" }).catch(
      (err: Error) => err.message,
    );
    assert.match(String(refused), /provisionedSize/);
  });

  it("a VM's own disks go with it; other disks stay", async () => {
    const vm = (await getVm(ns, "plug"))!;
    await applyDisk(
      "owned",
      { provisionedSize: "16Mi" },
      {
        ownerReferences: [
          {
            apiVersion: vm.apiVersion,
            kind: "VirtualMachine",
            name: "plug",
            uid: vm.metadata.uid,
            controller: true,
          },
        ],
      },
    );
    await waitForDisk("owned", phaseIs("Ready"), "Ready");
    const ownedPath = (await getDisk("owned"))!.status!.path!;
    await kubectl(["delete", "vm", "plug", "-n", ns, "--wait=true", "--timeout=120s"]);
    await waitForDisk("owned", (d) => d === undefined, "deleted with its VM", 60_000);
    assert.ok(!existsSync(ownedPath));
    const hot = await waitForDisk("hot", (d) => (d?.status?.attachedTo ?? []).length === 0, "detached");
    assert.equal(hot!.status!.phase, "Ready");
    assert.ok(existsSync(hot!.status!.path!));
    // Floating now: it grows offline.
    await patchSpec("vmdisk", "hot", { provisionedSize: "64Mi" });
    const offline = await waitForDisk("hot", (d) => d?.status?.provisionedSize === 64 * MiB, "64Mi");
    assert.match(offline!.status!.lastOperation?.message ?? "", /offline/);
  });

  it("imports a raw file from the node and a qcow2 image over http, converting formats; refuses bad sources", async () => {
    await applyDisk("from-file", {
      provisionedSize: "16Mi",
      format: "qcow2",
      source: { image: { url: join(workDir, "image.raw") } },
    });
    await applyDisk("from-http", {
      provisionedSize: "4Mi",
      format: "raw",
      source: { image: { url: `${baseUrl}/image.qcow2` } },
    });
    const file = await waitForDisk("from-file", phaseIs("Ready"), "Ready (file import)");
    assert.equal(file!.status!.provisionedSize, 16 * MiB);
    assert.equal(file!.status!.format, "qcow2");
    assert.equal((await volumeStart(file!.status!.path!, "qcow2")).slice(0, 21), "IMPORTED-IMAGE-MARKER");
    await eventOf("from-file", "Imported");
    const http = await waitForDisk("from-http", phaseIs("Ready"), "Ready (http import)");
    assert.equal(http!.status!.provisionedSize, 8 * MiB, "the image's own size wins over a smaller request");
    assert.equal(http!.status!.format, "raw");
    assert.equal((await volumeStart(http!.status!.path!, "raw")).slice(0, 21), "IMPORTED-IMAGE-MARKER");

    await applyDisk("outside", { provisionedSize: "1Mi", source: { image: { url: "/etc/hostname" } } });
    await applyDisk("redirected", {
      provisionedSize: "1Mi",
      source: { image: { url: `${baseUrl}/redirect` } },
    });
    await applyDisk("backed", {
      provisionedSize: "1Mi",
      source: { image: { url: join(workDir, "backed.qcow2") } },
    });
    const hotPath = (await getDisk("hot"))!.status!.path!;
    await applyDisk("volume", { provisionedSize: "1Mi", source: { image: { url: hotPath } } });
    await applyDisk("missing", {
      provisionedSize: "1Mi",
      source: { image: { url: `${baseUrl}/image.none` } },
    });
    await applyDisk("nowhere", { provisionedSize: "1Mi", nodeName: "no-such-node" });
    const nowhere = await waitForDisk(
      "nowhere",
      (d) => condition(d, "Scheduled")?.status === "False",
      "unschedulable",
    );
    assert.match(
      condition(nowhere, "Scheduled")!.message,
      /node no-such-node \(spec.nodeName\) does not exist/,
    );
    await eventOf("nowhere", "Unschedulable");
    const outside = await waitForDisk("outside", phaseIs("Illegal"), "Illegal");
    assert.match(
      condition(outside, "Ready")!.message,
      /not a regular file inside the directories this node imports from/,
    );
    const missing = await waitForDisk("missing", phaseIs("Illegal"), "Illegal");
    assert.match(condition(missing, "Ready")!.message, /HTTP 404/);
    const redirected = await waitForDisk("redirected", phaseIs("Illegal"), "Illegal");
    assert.match(
      condition(redirected, "Ready")!.message,
      /refused to connect: 127\.0\.0\.2 is a loopback address/,
    );
    const backed = await waitForDisk("backed", phaseIs("Illegal"), "Illegal");
    assert.match(condition(backed, "Ready")!.message, /names a backing file/);
    const volume = await waitForDisk("volume", phaseIs("Illegal"), "Illegal");
    assert.match(
      condition(volume, "Ready")!.message,
      /not a regular file inside the directories this node imports from/,
    );
  });

  it("an import cut short by an agent crash is done again from the start when it returns", async () => {
    await applyDisk("slow", {
      provisionedSize: "8Mi",
      format: "raw",
      source: { image: { url: `${baseUrl}/slow` } },
    });
    const importing = await waitForDisk(
      "slow",
      (d) => d?.status?.phase === "Locked" && (d.status.progress ?? 0) > 0,
      "importing with progress",
      30_000,
    );
    assert.ok((importing!.status!.progress ?? 0) < 100);
    process.kill(agentPid()!, "SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    await startTestOperator();
    const done = await waitForDisk("slow", phaseIs("Ready"), "Ready after the agent returned", 90_000);
    assert.equal(done!.status!.provisionedSize, 8 * MiB);
    assert.equal((await volumeStart(done!.status!.path!, "raw")).slice(0, 21), "IMPORTED-IMAGE-MARKER");
    assert.ok(!existsSync(`${done!.status!.path!}.import`), "no staging volume left behind");
  });
});
