// VirtualMachine end to end: the controller and node agent against the real API server and
// libvirtd, running TCG guests that print markers on their serial console.
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RESTART_ANNOTATION } from "../../src/api/names.ts";
import { startLibvirt } from "../../src/cmd/local/libvirt.ts";
import { runningPid, stopDaemon } from "../../src/cmd/local/processes.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { dhcpHostName } from "../../src/controllers/node/dhcp.ts";
import {
  BOOTED,
  consoleText,
  ensureGuest,
  type Guest,
  guestVmSpec,
  POWEROFF,
  waitForConsole,
} from "../support/guest.ts";
import {
  agentMetrics,
  agentPid,
  applyVm,
  consoleLogOf,
  getVm,
  isPrintable,
  qemuPid,
  readyCondition,
  startTestOperator,
  stopTestOperator,
  TEST_MEDIA_DIR,
  virsh,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

let guest: Guest;
let ns = "";
let workDir = "";
/** ISOs VMs name by path: inside the test operator's media directory (MEDIA_DIRS). */
let mediaDir = "";

/** Polls `virsh domblklist` of DOMAIN until CHECK passes. */
async function waitForVmDomain(domain: string, check: (blklist: string) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await virsh("domblklist", domain);
    if (check(last)) return;
    await sleep(250);
  }
  throw new Error(`domain ${domain} never got there: ${last}`);
}

function guestSpec(extra: Record<string, unknown> = {}) {
  return guestVmSpec(guest, extra);
}

function bootCount(name: string): number {
  return consoleText(consoleLogOf(ns, name)).split(BOOTED).length - 1;
}

/** A fresh VM, running, with its console log starting empty. */
async function runningVm(
  name: string,
  extra: Record<string, unknown> = {},
  annotations?: Record<string, string>,
) {
  rmSync(consoleLogOf(ns, name), { force: true });
  await applyVm(ns, name, guestSpec(extra), annotations);
  await waitForVm(ns, name, isPrintable("Running"), "Running");
  await waitForConsole(consoleLogOf(ns, name), BOOTED, 90_000);
}

async function patchSpec(name: string, patch: Record<string, unknown>) {
  await kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec: patch })]);
}

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-e2e-"));
  await mkdir(TEST_MEDIA_DIR, { recursive: true });
  mediaDir = await mkdtemp(join(TEST_MEDIA_DIR, "vm-e2e-"));
  await mkdir(join(workDir, "iso-content"));
  writeFileSync(join(workDir, "iso-content", "README"), "an ISO's content\n");
  ns = await testNamespace("vm-e2e");
  await startTestOperator();
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await stopTestOperator();
  await rm(workDir, { recursive: true, force: true });
  await rm(mediaDir, { recursive: true, force: true });
});

describe("VirtualMachine end to end (TCG guests)", () => {
  it("apply → Running: the guest boots and status mirrors the domain", async () => {
    const description = `web <frontend> & "friends" 'quoted'`;
    await runningVm("boot", { description });
    const vm = (await getVm(ns, "boot"))!;
    const s = vm.status!;
    assert.equal(s.hypervisorStatus, "RUNNING");
    assert.equal(s.syncStatus, "SYNC");
    assert.equal(s.domainName, `${ns}_boot`);
    assert.equal(s.nodeName, TEST_STACK.nodeName);
    assert.ok((s.hypervisorId ?? 0) > 0);
    assert.match(s.uuid ?? "", /^[0-9a-f-]{36}$/);
    assert.match(s.interfaces?.[0]?.mac ?? "", /^52:54:00:/);
    assert.ok(s.statusChangedAt);
    assert.equal(s.lastOperation?.type, "Start");
    assert.equal(readyCondition(vm)?.status, "True");
    assert.equal(vm.metadata.finalizers?.includes("vm.libvirt-operator.io/domain"), true);
    // The description reached libvirt intact, escaped in the XML.
    const xml = await virsh("dumpxml", `${ns}_boot`);
    assert.match(
      xml,
      /<description>web &lt;frontend&gt; &amp; (&quot;|")friends(&quot;|") ('|&apos;)quoted('|&apos;)<\/description>/,
    );
    assert.match(xml, new RegExp(`<uuid>${s.uuid}</uuid>`));
    const events = (
      await kubectl(["get", "events", "-n", ns, "--field-selector", "involvedObject.name=boot", "-o", "json"])
    ).stdout;
    assert.match(events, /"reason": "Scheduled"/);
    assert.match(events, /"reason": "Started"/);
    // A new domain defined and started in one reconcile says both in one Event, not two.
    assert.match(
      events,
      new RegExp(`"message": "domain ${ns}_boot defined on ${TEST_STACK.nodeName} and started"`),
    );
    assert.doesNotMatch(events, /"reason": "Defined"/);
  });

  it("statistics refresh on the interval into status and the agent's Prometheus metrics", async () => {
    const vm = await waitForVm(
      ns,
      "boot",
      (v) => v?.status?.statistics?.updatedAt !== undefined,
      "with statistics",
      30_000,
    );
    const st = vm!.status!.statistics!;
    assert.equal(st.memoryInstalledBytes, 256 * 2 ** 20);
    assert.ok((st.cpuTotalPercent ?? -1) >= 0 && (st.cpuTotalPercent ?? 101) <= 100);
    assert.ok((st.memoryUsedBytes ?? 0) > 0);
    const metrics = await agentMetrics();
    const cpu = new RegExp(
      `libvirt_operator_vm_cpu_seconds_total\\{namespace="${ns}",name="boot"[^}]*\\} ([0-9.e+-]+)`,
    ).exec(metrics);
    assert.ok(cpu && Number(cpu[1]) > 0, "cpu seconds exported");
    assert.match(
      metrics,
      new RegExp(
        `libvirt_operator_vm_memory_installed_bytes\\{namespace="${ns}",name="boot"[^}]*\\} 268435456`,
      ),
    );
    assert.match(metrics, new RegExp(`libvirt_operator_vm_ready\\{namespace="${ns}",name="boot"[^}]*\\} 1`));
    assert.match(metrics, /libvirt_operator_reconcile_total\{controller="virtualmachine-node"[^}]*\} \d+/);
  });

  it("Halted: the guest powers off by ACPI within the grace period; Always starts it again", async () => {
    await patchSpec("boot", { runStrategy: "Halted" });
    const stopped = await waitForVm(ns, "boot", isPrintable("Stopped"), "Stopped", 60_000);
    assert.ok(consoleText(consoleLogOf(ns, "boot")).includes(POWEROFF), "the guest ran its own power-off");
    assert.equal(stopped?.status?.hypervisorStatus, "HALTED");
    assert.equal(stopped?.status?.lastOperation?.message, "the guest powered off");
    assert.equal(readyCondition(stopped)?.status, "True", "stopped as asked is Ready");

    await patchSpec("boot", { runStrategy: "Always" });
    await waitForVm(ns, "boot", isPrintable("Running"), "Running again");
    await waitForConsole(consoleLogOf(ns, "boot"), BOOTED, 90_000, 2);
  });

  it("gracePeriodSeconds 0 forces the domain off at once", async () => {
    await runningVm("force", { shutdown: { gracePeriodSeconds: 0 } });
    const started = Date.now();
    await patchSpec("force", { runStrategy: "Halted" });
    const vm = await waitForVm(ns, "force", isPrintable("Stopped"), "Stopped", 30_000);
    assert.ok(Date.now() - started < 15_000);
    assert.ok(
      !consoleText(consoleLogOf(ns, "force")).includes(POWEROFF),
      "no guest power-off: it was forced",
    );
    assert.equal(vm?.status?.lastOperation?.message, "forced off (grace period 0)");
  });

  it("a new restart-requested-at value reboots the guest exactly once", async () => {
    await runningVm("restart");
    assert.equal(bootCount("restart"), 1);
    await kubectl(["annotate", "vm", "restart", "-n", ns, `${RESTART_ANNOTATION}=2026-11-22T10:00:00Z`]);
    await waitForVm(
      ns,
      "restart",
      (vm) => vm?.status?.restartRequestHandled === "2026-11-22T10:00:00Z",
      "restart handled",
    );
    await waitForConsole(consoleLogOf(ns, "restart"), BOOTED, 90_000, 2);
    await waitForVm(ns, "restart", isPrintable("Running"), "Running after the reboot");
    // The same value again changes nothing.
    await kubectl([
      "annotate",
      "--overwrite",
      "vm",
      "restart",
      "-n",
      ns,
      `${RESTART_ANNOTATION}=2026-11-22T10:00:00Z`,
    ]);
    await sleep(8000);
    assert.equal(bootCount("restart"), 2, "exactly one reboot");
  });

  it("paused suspends the vCPUs and unpausing resumes them", async () => {
    await patchSpec("restart", { paused: true });
    const paused = await waitForVm(ns, "restart", isPrintable("Paused"), "Paused");
    assert.equal(paused?.status?.hypervisorStatus, "PAUSED");
    assert.equal(paused?.status?.conditions?.find((c) => c.type === "Paused")?.status, "True");
    // Paused as its spec asks: Ready (Argo CD shows it Suspended by the Paused condition).
    assert.equal(readyCondition(paused)?.status, "True");
    await patchSpec("restart", { paused: false });
    await waitForVm(
      ns,
      "restart",
      (vm) => isPrintable("Running")(vm) && readyCondition(vm)?.status === "True",
      "Running",
    );
  });

  it("nodeName naming a missing node is ErrorUnschedulable, with the node named", async () => {
    await applyVm(ns, "nowhere", { ...guestSpec(), nodeName: "no-such-node" });
    const vm = await waitForVm(
      ns,
      "nowhere",
      isPrintable("ErrorUnschedulable"),
      "ErrorUnschedulable",
      30_000,
    );
    const scheduled = vm?.status?.conditions?.find((c) => c.type === "Scheduled");
    assert.equal(scheduled?.status, "False");
    assert.match(scheduled?.message ?? "", /node no-such-node \(spec\.nodeName\) does not exist/);
    assert.match(readyCondition(vm)?.message ?? "", /no-such-node/);
    await kubectl(["delete", "vm", "nowhere", "-n", ns, "--wait=true", "--timeout=30s"]);
  });

  it("every VM gets a stable MAC, IPv4 and IPv6 of its own, reserved in the network's DHCP", async () => {
    const a = (await getVm(ns, "boot"))?.status?.interfaces?.[0];
    const b = (await getVm(ns, "restart"))?.status?.interfaces?.[0];
    assert.ok(a?.mac && a.ipv4 && a.ipv6 && b?.mac && b.ipv4 && b.ipv6, JSON.stringify([a, b]));
    assert.notEqual(a.mac, b.mac);
    assert.notEqual(a.ipv4, b.ipv4);
    assert.notEqual(a.ipv6, b.ipv6);
    assert.match(await virsh("dumpxml", `${ns}_boot`), new RegExp(`<mac address='${a.mac}'/>`));
    const net = await virsh("net-dumpxml", "default");
    const host = dhcpHostName(ns, "boot", "default");
    assert.match(
      net,
      new RegExp(`<host mac='${a.mac}' name='${host}' ip='${a.ipv4.replaceAll(".", "\\.")}'/>`),
    );
    assert.match(net, new RegExp(`<host name='${host}' ip='${a.ipv6}'/>`));
    // Addresses survive a stop and start.
    assert.equal(a.ipv4, (await getVm(ns, "boot"))?.status?.interfaces?.[0]?.ipv4);
  });

  it("an interface's link goes down and up in place", async () => {
    await patchSpec("boot", { interfaces: [{ name: "default", linked: false }] });
    await waitForVm(ns, "boot", (vm) => vm?.status?.interfaces?.[0]?.linked === false, "link down");
    assert.match(
      await virsh("domif-getlink", `${ns}_boot`, (await getVm(ns, "boot"))!.status!.interfaces![0]!.mac!),
      /down/,
    );
    await patchSpec("boot", { interfaces: [{ name: "default", linked: true }] });
    const vm = await waitForVm(ns, "boot", (v) => v?.status?.interfaces?.[0]?.linked === true, "link up");
    assert.equal(vm?.status?.syncStatus, "SYNC", "a link change needs no restart");
  });

  it("the CD-ROM medium is changed and ejected on the running VM", async () => {
    const iso = join(mediaDir, "disc.iso");
    const iso2 = join(mediaDir, "disc2.iso");
    await run("xorriso", [
      "-as",
      "mkisofs",
      "-quiet",
      "-o",
      iso,
      "-V",
      "DISC1",
      join(workDir, "iso-content"),
    ]);
    await run("cp", [iso, iso2]);
    await patchSpec("boot", { cdrom: { image: iso } });
    // Adding a drive changes the hardware: it is defined now and present from the next boot.
    await waitForVm(ns, "boot", (vm) => vm?.status?.syncStatus === "SYNC_NOK", "awaiting restart");
    await kubectl(["annotate", "--overwrite", "vm", "boot", "-n", ns, `${RESTART_ANNOTATION}=cdrom-added`]);
    await waitForVm(
      ns,
      "boot",
      (vm) => vm?.status?.syncStatus === "SYNC" && isPrintable("Running")(vm),
      "in sync",
    );
    assert.match(await virsh("domblklist", `${ns}_boot`), new RegExp(iso));
    await patchSpec("boot", { cdrom: { image: iso2 } });
    await waitForVmDomain(`${ns}_boot`, (blk) => blk.includes(iso2));
    await patchSpec("boot", { cdrom: { image: "" } });
    await waitForVmDomain(`${ns}_boot`, (blk) => !blk.includes(".iso"));
    assert.equal((await getVm(ns, "boot"))?.status?.syncStatus, "SYNC");
  });

  it("cdrom.bootOnce boots once from the CD-ROM, later boots from the disks", async () => {
    const iso = join(mediaDir, "once.iso");
    await run("xorriso", ["-as", "mkisofs", "-quiet", "-o", iso, "-V", "ONCE", join(workDir, "iso-content")]);
    await runningVm("once", { cdrom: { image: iso, bootOnce: true } });
    const vm = await waitForVm(
      ns,
      "once",
      (v) => v?.status?.cdromBootedImage === iso,
      "booted once from the CD-ROM",
    );
    assert.equal(vm?.status?.syncStatus, "SYNC");
    const cdromOf = (xml: string) => /<disk type='file' device='cdrom'>[\s\S]*?<\/disk>/.exec(xml)?.[0] ?? "";
    assert.match(
      cdromOf(await virsh("dumpxml", `${ns}_once`)),
      /<boot order='1'\/>/,
      "this boot: CD-ROM first",
    );
    assert.doesNotMatch(
      cdromOf(await virsh("dumpxml", "--inactive", `${ns}_once`)),
      /<boot order/,
      "next boot: not",
    );
    await kubectl(["delete", "vm", "once", "-n", ns, "--wait=true", "--timeout=60s"]);
  });

  it("a domain of another cluster with the VM's name is left alone and reported", async () => {
    const xml = (await virsh("dumpxml", "--inactive", `${ns}_boot`))
      .replace(/<name>[^<]*<\/name>/, `<name>${ns}_foreign</name>`)
      .replace(/<uuid>[^<]*<\/uuid>/, "")
      .replace(/<lvo:cluster>[^<]*<\/lvo:cluster>/, "<lvo:cluster>another-cluster</lvo:cluster>")
      .replace(/<mac address='[^']*'\/>/g, "");
    const file = join(workDir, "foreign.xml");
    writeFileSync(file, xml);
    await virsh("define", file);
    try {
      await applyVm(ns, "foreign", guestSpec());
      const vm = await waitForVm(
        ns,
        "foreign",
        (v) => v?.status?.conditions?.some((c) => c.type === "Failure" && c.status === "True") ?? false,
        "reported",
      );
      assert.match(
        vm!.status!.conditions!.find((c) => c.type === "Failure")!.message,
        /not managed by libvirt-operator in this cluster/,
      );
      assert.match(await virsh("domstate", `${ns}_foreign`), /shut off/, "untouched");
      await kubectl(["delete", "vm", "foreign", "-n", ns, "--wait=true", "--timeout=30s"]);
      await virsh("dominfo", `${ns}_foreign`); // still there
    } finally {
      await virsh("undefine", `${ns}_foreign`).catch(() => undefined);
    }
  });

  it("killing the agent leaves guests running; status recovers when it returns", async () => {
    const domain = `${ns}_boot`;
    const pidBefore = qemuPid(domain);
    assert.ok(pidBefore);
    process.kill(agentPid()!, "SIGKILL");
    await sleep(500);
    await patchSpec("boot", { paused: true });
    await sleep(2000);
    assert.equal(qemuPid(domain), pidBefore, "same QEMU process while the agent is gone");
    assert.match(await virsh("domstate", domain), /running/, "nothing acted on the spec without the agent");
    await startTestOperator();
    await waitForVm(ns, "boot", isPrintable("Paused"), "Paused after the agent returned");
    assert.equal(qemuPid(domain), pidBefore, "still the same QEMU process");
    await patchSpec("boot", { paused: false });
    await waitForVm(ns, "boot", isPrintable("Running"), "Running");
  });

  it("restarting libvirtd leaves guests running and no VM goes Failed", async (t) => {
    if (!runningPid(TEST_STACK.stateDir, "libvirtd")) {
      t.skip("libvirtd was not started by this test stack");
      return;
    }
    const domain = `${ns}_boot`;
    const pidBefore = qemuPid(domain);
    await stopDaemon(TEST_STACK.stateDir, "libvirtd");
    await sleep(1000);
    assert.equal(qemuPid(domain), pidBefore, "the guest outlives libvirtd");
    await startLibvirt(TEST_STACK.stateDir);
    await sleep(3000);
    const vm = await waitForVm(ns, "boot", isPrintable("Running"), "Running after libvirtd restart", 30_000);
    assert.equal(readyCondition(vm)?.status, "True");
    assert.equal(qemuPid(domain), pidBefore, "same QEMU process after libvirtd restart");
    const all = JSON.parse((await kubectl(["get", "vm", "-n", ns, "-o", "json"])).stdout) as {
      items: Array<{ status?: { printableStatus?: string } }>;
    };
    assert.ok(all.items.every((v) => v.status?.printableStatus !== "Failed"));
  });

  it("deleting a VM destroys and undefines its domain, releases its addresses, then the finalizer", async () => {
    const force = (await getVm(ns, "force"))?.status?.interfaces?.[0];
    await kubectl(["delete", "vm", "force", "-n", ns, "--wait=true", "--timeout=60s"]);
    assert.doesNotMatch(
      await virsh("net-dumpxml", "default"),
      new RegExp(`'${force?.mac}'|name='${dhcpHostName(ns, "force", "default")}'`),
    );
    await assert.rejects(virsh("dominfo", `${ns}_force`), /failed to get domain|Domain not found/);
    await kubectl(["delete", "vm", "restart", "-n", ns, "--wait=true", "--timeout=120s"]);
    await assert.rejects(virsh("dominfo", `${ns}_restart`), /failed to get domain|Domain not found/);
    assert.equal(await getVm(ns, "restart"), undefined);
  });
});
