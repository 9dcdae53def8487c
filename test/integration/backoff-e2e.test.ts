// Failures back off: VMDisks that can never succeed cost the node a sliver of CPU and a
// handful of attempts, say their error once (status, one counted Event), and go at once when
// the user deletes them; a namespace full of VMs and disks is deleted within a minute.
// BACKOFF_SOAK_SECONDS (default 60; `make soak` runs 600) is how long the failing disks stay.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  agentMetrics,
  agentPid,
  applyObject,
  eventsOf,
  getObject,
  startTestOperator,
  stopTestOperator,
  waitForObject,
} from "../support/operator.ts";
import { kubectl, testNamespace } from "../support/stack.ts";

const SOAK_SECONDS = Number(process.env.BACKOFF_SOAK_SECONDS ?? 60);
let ns = "";

type Disk = {
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string; message: string; lastTransitionTime: string }>;
  };
};

/** CPU seconds (user + system) and RSS of PID, from /proc. */
function usage(pid: number): { cpuSeconds: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return { cpuSeconds: ticks / 100, rssMiB: Math.round(rssKiB / 1024) };
}

function metric(text: string, name: string, controller: string): number {
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && l.includes(`controller="${controller}"`));
  return Number(line?.split(" ").at(-1) ?? 0);
}

before(async () => {
  ns = await testNamespace("backoff-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
});

describe("failures back off", () => {
  it(`two VMDisks that cannot succeed, left ${SOAK_SECONDS} s: a handful of attempts, then deleted at once`, async () => {
    await applyObject("VMDisk", ns, "unresolvable", {
      provisionedSize: "1Gi",
      source: { image: { url: "http://does-not-resolve.invalid/disk.qcow2" } },
    });
    await applyObject("VMDisk", ns, "too-large", { provisionedSize: "60Ti", format: "qcow2" });
    for (const name of ["unresolvable", "too-large"])
      await waitForObject<Disk>(
        "vmdisk",
        ns,
        name,
        (d) => d?.status?.conditions?.some((c) => c.type === "Stalled" && c.status === "True") ?? false,
        "Stalled",
        60_000,
      );
    const pid = agentPid()!;
    const before = usage(pid);
    const errorsBefore = metric(
      await agentMetrics(),
      "libvirt_operator_reconcile_errors_total",
      "vmdisk-node",
    );
    const started = Date.now();
    await sleep(SOAK_SECONDS * 1000);
    const elapsed = (Date.now() - started) / 1000;
    const now = usage(pid);
    const errors = metric(await agentMetrics(), "libvirt_operator_reconcile_errors_total", "vmdisk-node");
    const cpuPercent = ((now.cpuSeconds - before.cpuSeconds) / elapsed) * 100;
    const counts: Record<string, number> = {};
    for (const name of ["unresolvable", "too-large"]) {
      const failures = (await eventsOf(ns, name)).filter((e) => e.type === "Warning");
      assert.equal(failures.length, 1, `${name}: one Warning Event, counted (${JSON.stringify(failures)})`);
      counts[name] = failures[0]!.count;
    }
    process.stderr.write(
      `    ${elapsed.toFixed(0)} s: attempts ${JSON.stringify(counts)}, ${errors - errorsBefore} failed reconciles in the window; ` +
        `agent CPU ${cpuPercent.toFixed(1)} %, RSS ${before.rssMiB} → ${now.rssMiB} MiB\n`,
    );
    // 5 ms doubling to 5 min: ~14 attempts in the first minute, ~18 in ten.
    for (const [name, count] of Object.entries(counts))
      assert.ok(count <= 12 + Math.log2(Math.max(SOAK_SECONDS, 1)), `${name}: ${count} attempts`);
    assert.ok(cpuPercent < 5, `agent CPU ${cpuPercent.toFixed(1)} %`);

    // Status holds the error, written once: its transition time does not move.
    const disk = await getObject<Disk>("vmdisk", ns, "too-large");
    const stalled = disk?.status?.conditions?.find((c) => c.type === "Stalled");
    assert.ok(Date.parse(stalled!.lastTransitionTime) < started, "the Stalled condition was not rewritten");

    // A backed-off key must not hold a deletion.
    const deleted = Date.now();
    await kubectl([
      "delete",
      "vmdisk",
      "unresolvable",
      "too-large",
      "-n",
      ns,
      "--wait=true",
      "--timeout=10s",
    ]);
    process.stderr.write(`    deleted in ${((Date.now() - deleted) / 1000).toFixed(1)} s\n`);
  });

  it("a namespace holding VMs and disks is deleted, and gone within a minute", async () => {
    const doomed = await testNamespace("backoff-doomed");
    await applyObject("VMDisk", doomed, "data", { provisionedSize: "64Mi" });
    await applyObject("VirtualMachine", doomed, "vm", {
      hypervisor: "qemu",
      memory: "128Mi",
      runStrategy: "Halted",
      disks: [{ name: "data", diskRef: { name: "data" } }],
    });
    await waitForObject<Disk>("vmdisk", doomed, "data", (d) => d?.status?.phase === "Ready", "Ready", 60_000);
    await waitForObject<Disk & { status?: { printableStatus?: string } }>(
      "virtualmachine",
      doomed,
      "vm",
      (v) => (v?.status as { printableStatus?: string } | undefined)?.printableStatus === "Stopped",
      "Stopped",
      60_000,
    );
    const started = Date.now();
    await kubectl(["delete", "namespace", doomed, "--wait=false"]);
    const deadline = started + 60_000;
    let phase = "";
    while (Date.now() < deadline) {
      try {
        phase = JSON.parse((await kubectl(["get", "namespace", doomed, "-o", "json"])).stdout).status?.phase;
      } catch {
        phase = "gone";
        break;
      }
      await sleep(500);
    }
    assert.equal(phase, "gone", "the namespace is gone");
    process.stderr.write(`    namespace gone in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });
});
