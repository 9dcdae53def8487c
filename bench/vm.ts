// make bench: what the operator adds on top of libvirt, measured in one run on one machine.
//  - create → Running for 1 VM (BENCH_SINGLE_RUNS times) and a burst of 20, next to raw libvirt
//    define + start of the same domains (same XML, our client), and the difference. "Running"
//    is taken at the same moment for both, libvirt's start call returning (the agent's log line
//    right after it), and also as a user sees it (printableStatus Running through a watch);
//  - where one VM's time goes, per run (vm-timeline.ts);
//  - API writes per VM from create to Running, and writes during steady state;
//  - controller and agent resident memory.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Watch } from "@kubernetes/client-node";
import { API_VERSION, GROUP, NODE_LABEL, VERSION } from "../src/api/names.ts";
import type { VirtualMachine } from "../src/api/virtualmachine.ts";
import { kubectl } from "../src/cmd/local/kube.ts";
import { describeBuild, operatorBuild } from "../src/cmd/local/operator-build.ts";
import { runningPid } from "../src/cmd/local/processes.ts";
import { stackDown } from "../src/cmd/local/stack.ts";
import { placedNode } from "../src/controllers/vm-placement.ts";
import { parseCapabilities } from "../src/hypervisor/capabilities.ts";
import {
  DomainEventType,
  DomainUndefineFlags,
  LibvirtClient,
  type LifecycleEvent,
} from "../src/hypervisor/libvirt/index.ts";
import {
  apiRequests,
  apiWriteRequests,
  describeWrites,
  requestsGrew,
  WriteRecorder,
} from "../test/support/api-writes.ts";
import { apiClient, freshStack, guestFiles, KUBECONFIG, NS, progress, rawDomainXml, STACK } from "./stack.ts";
import { summarize, table } from "./stats.ts";
import {
  breakdownTable,
  figures,
  LogTail,
  logMarks,
  overhead,
  ownMs,
  phaseSummary,
  type RawMarks,
  type VmMarks,
  wallNow,
} from "./vm-timeline.ts";

const BURST = Number(process.env.BENCH_BURST ?? 20);
const SINGLE_RUNS = Number(process.env.BENCH_SINGLE_RUNS ?? 50);
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 60);
const STATISTICS_SECONDS = Number(process.env.STATISTICS_INTERVAL_SECONDS ?? 60);
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 15);

function vmSpec(guest: { kernel: string; initrd: string }) {
  return {
    hypervisor: "qemu",
    memory: "128Mi",
    cpu: { cores: 1 },
    interfaces: [],
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: "console=ttyS0 panic=-1" },
    shutdown: { gracePeriodSeconds: 0 },
  };
}

/** Counts of write requests the API server has served, by resource (its own /metrics). */
const apiWrites = () => apiWriteRequests(STACK);

function diff(after: Record<string, number>, before: Record<string, number>, keys: string[]): number {
  return keys.reduce((n, k) => n + (after[k] ?? 0) - (before[k] ?? 0), 0);
}

function rssMiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/**
 * Creates VMs NAMES at once and resolves with what was seen of each: the bench's watch (label,
 * placement, Running) and the agent's log (domain defined, started).
 */
async function operatorRun(names: string[], guest: { kernel: string; initrd: string }): Promise<VmMarks[]> {
  const { kc, api } = await apiClient("virtualmachines");
  const agentLog = new LogTail(join(STACK.stateDir, "logs", "agent.log"));
  const marks = new Map<string, VmMarks>();
  let done: () => void = () => undefined;
  const allRunning = new Promise<void>((r) => {
    done = r;
  });
  const watch = await new Watch(kc).watch(
    `/apis/vm.libvirt-operator.io/v1alpha1/namespaces/${NS}/virtualmachines`,
    {},
    (_type: string, vm: VirtualMachine) => {
      const now = wallNow();
      const m = marks.get(vm.metadata.name);
      if (!m) return;
      if (vm.metadata.labels?.[NODE_LABEL]) m.labelled ??= now;
      if (placedNode(vm)) m.placed ??= now;
      if (vm.status?.printableStatus === "Running" && m.running === undefined) {
        m.running = now;
        if (names.every((n) => marks.get(n)?.running !== undefined)) done();
      }
    },
    () => undefined,
  );
  // All at once through the API, as a GitOps tool would send them; the clock starts at the POST.
  await Promise.all(
    names.map(async (name) => {
      const m: VmMarks = { posted: wallNow() };
      marks.set(name, m);
      await api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: "virtualmachines",
        body: {
          apiVersion: API_VERSION,
          kind: "VirtualMachine",
          metadata: { name, namespace: NS },
          spec: vmSpec(guest),
        },
      });
      m.created = wallNow();
    }),
  );
  await Promise.race([
    allRunning,
    sleep(300_000).then(() => Promise.reject(new Error("VMs did not all run"))),
  ]);
  watch.abort();
  // pino writes its line as the call returns; a moment for it to reach the file.
  await sleep(50);
  const logged = logMarks(agentLog.read(), NS);
  return names.map((n) => ({ ...marks.get(n)!, ...logged.get(n) }));
}

async function deleteAll() {
  await kubectl(KUBECONFIG, ["delete", "vm", "--all", "-n", NS, "--wait=true", "--timeout=300s"]);
}

/** The same domains straight through libvirt: define + start, then destroy + undefine. */
async function rawRun(libvirt: LibvirtClient, names: string[], guest: { kernel: string; initrd: string }) {
  const host = parseCapabilities(await libvirt.capabilities());
  const domains = names.map((name) => ({
    name: `${NS}_raw-${name}`,
    xml: rawDomainXml(host, name, vmSpec(guest), guest),
  }));
  const startedEvents = new Map<string, number>();
  const onLifecycle = (e: LifecycleEvent) => {
    if (e.event === DomainEventType.Started) startedEvents.set(e.domain.name, wallNow());
  };
  libvirt.on("lifecycle", onLifecycle);
  const began = new Map<string, number>();
  const returned = await Promise.all(
    domains.map(async ({ name, xml }) => {
      const t = wallNow();
      began.set(name, t);
      const dom = await libvirt.defineDomain(xml);
      await libvirt.startDomain(dom);
      return wallNow() - t;
    }),
  );
  // The event follows the reply on the same connection; a moment for the last ones.
  for (let i = 0; i < 50 && startedEvents.size < domains.length; i++) await sleep(10);
  libvirt.off("lifecycle", onLifecycle);
  for (const { name } of domains) {
    const dom = await libvirt.lookupDomainByName(name);
    await libvirt.destroyDomain(dom).catch(() => undefined);
    await libvirt.undefineDomain(dom, DomainUndefineFlags.ManagedSave);
  }
  return domains.map(
    ({ name }, i): RawMarks => ({
      returned: returned[i]!,
      event: (startedEvents.get(name) ?? Number.NaN) - began.get(name)!,
    }),
  );
}

async function main() {
  const guest = await guestFiles();
  // 2 host CPUs here; the burst needs room for 20 one-vCPU guests.
  process.env.CPU_OVERCOMMIT ??= "16";
  // The guest's kernel and initrd are host paths: the agent accepts them from a media directory.
  process.env.MEDIA_DIRS ??= dirname(guest.kernel);
  progress("starting the bench stack");
  await freshStack();
  const libvirt = await LibvirtClient.connect({ uri: "qemu:///system" });
  await libvirt.enableDomainEvents();
  try {
    await kubectl(KUBECONFIG, ["create", "namespace", NS]);
    const rows: (string | number)[][] = [];
    const compare: string[] = [];

    progress(`1 VM at a time, ${SINGLE_RUNS} runs`);
    const single: VmMarks[] = [];
    const rawSingle: RawMarks[] = [];
    let vmWrites = 0;
    let eventWrites = 0;
    // Each path runs alone: no guest of the other one is booting on the same CPUs meanwhile.
    for (let i = 0; i < SINGLE_RUNS; i++) {
      const before = await apiWrites();
      single.push(...(await operatorRun([`one-${i}`], guest)));
      const after = await apiWrites();
      vmWrites += diff(after, before, ["virtualmachines", "virtualmachines/status"]) - 1; // minus the user's create
      eventWrites += diff(after, before, ["events"]);
      await deleteAll();
      rawSingle.push(...(await rawRun(libvirt, [`one-${i}`], guest)));
    }

    progress(`burst of ${BURST}`);
    const names = Array.from({ length: BURST }, (_, i) => `burst-${i}`);
    const rawBurst = await rawRun(
      libvirt,
      names.map((n) => `r${n}`),
      guest,
    );
    const burst = await operatorRun(names, guest);
    // The last VMs' start-up (their last status writes) is not steady state yet.
    progress(`settling ${SETTLE_SECONDS}s, then steady state: ${STEADY_SECONDS}s with ${BURST} VMs running`);
    const recorder = new WriteRecorder(STACK);
    await recorder.open();
    await sleep(SETTLE_SECONDS * 1000);
    await recorder.start();
    const requestsBefore = await apiRequests(STACK);
    await sleep(STEADY_SECONDS * 1000);
    const steady = await recorder.stop();
    const steadyRequests = requestsGrew(requestsBefore, await apiRequests(STACK));
    const controllerRss = rssMiB(runningPid(STACK.stateDir, "controller"));
    const agentRss = rssMiB(runningPid(STACK.stateDir, "agent"));
    await deleteAll();

    console.log("\nVirtualMachine benchmark (TCG guests; ms)\n");
    console.log(breakdownTable(single, rawSingle));
    console.log("");
    for (const [label, ours, raw] of [
      ["1 VM", single, rawSingle],
      [`burst of ${BURST}`, burst, rawBurst],
    ] as const) {
      const started = summarize(ours.map((m) => (m.started ?? Number.NaN) - m.posted));
      const seen = summarize(ours.map((m) => (m.running ?? Number.NaN) - m.posted));
      const rawReturned = summarize(raw.map((r) => r.returned));
      const rawEvent = summarize(raw.map((r) => r.event));
      rows.push([`raw libvirt, ${label}: define → start returned`, ...figures(rawReturned)]);
      rows.push([`raw libvirt, ${label}: define → Started event`, ...figures(rawEvent)]);
      rows.push([`operator, ${label}: create → agent's start returned`, ...figures(started)]);
      rows.push([`operator, ${label}: create → Running seen (watch)`, ...figures(seen)]);
      const own = summarize(ours.map(ownMs));
      compare.push(
        `${label}: the operator's own time (all but the agent's define → start): p50 ${own.p50.toFixed(0)} ms, p95 ${own.p95.toFixed(0)} ms, max ${own.max.toFixed(0)} ms`,
        `${label}: operator overhead to libvirt's start returning (the same moment): ${overhead(started, rawReturned)}`,
        `${label}: operator overhead to Running as a watcher sees it: ${overhead(seen, rawReturned)}`,
      );
    }
    console.log(table(["path", "VMs", "p50", "p95", "max"], rows));
    console.log("");
    for (const line of compare) console.log(line);
    console.log(`1 VM target: overhead p95 ≤ 100 ms; burst target: p95 ratio ≤ 1.2x`);
    console.log(`\nburst of ${BURST}, phases (p50 / p95 of each, ms):`);
    console.log(phaseSummary(burst));
    console.log(
      `API writes per VM, create → Running (VM object + status, not counting the create): ${(vmWrites / SINGLE_RUNS).toFixed(1)}`,
    );
    console.log(`Events per VM, create → Running: ${(eventWrites / SINGLE_RUNS).toFixed(1)}`);
    const statsWrites = steady.writes.filter((w) => w.allowed === "statistics").length;
    console.log(
      `writes in ${STEADY_SECONDS}s of steady state (${BURST} VMs): ${steady.disallowed.length + steady.unseenRequests}` +
        ` besides ${statsWrites} statistics refreshes (status.statistics, every ${STATISTICS_SECONDS}s when a figure changed)` +
        ` and ${steady.writes.length - statsWrites - steady.disallowed.length} heartbeat Lease renewals`,
    );
    // Heartbeat cost, per holder of a Lease (the agent's is per node).
    const leases = new Map<string, number>();
    for (const w of steady.writes.filter((x) => x.kind === "leases" && x.allowed === "heartbeat"))
      leases.set(w.object, (leases.get(w.object) ?? 0) + 1);
    const perMinute = (n: number) => ((n * 60) / STEADY_SECONDS).toFixed(1);
    console.log(
      `heartbeat Lease renewals per minute: ${[...leases].map(([lease, n]) => `${lease} ${perMinute(n)}`).join(", ")}`,
    );
    if (steady.disallowed.length) console.log(describeWrites(steady.disallowed));
    if (steady.unseenRequests)
      console.log(`${steady.unseenRequests} of them changed nothing (no watch saw them)`);
    const writeVerbs = Object.entries(steadyRequests).filter(
      ([k]) => !k.startsWith("GET ") && !k.startsWith("LIST ") && !k.startsWith("WATCH "),
    );
    console.log(
      `write requests in steady state by verb and resource: ${writeVerbs.map(([k, n]) => `${k} ${n}`).join(", ") || "none"}`,
    );
    console.log(
      `RSS: controller ${controllerRss.toFixed(0)} MiB, agent ${agentRss.toFixed(0)} MiB (${describeBuild(operatorBuild())})`,
    );
  } finally {
    // A run that failed leaves VMs: their agent removes the domains (a later run's VM of the
    // same name would find one no cluster of its own made, and refuse it).
    await deleteAll().catch((err: unknown) => progress(`VMs left: ${String(err)}`));
    await libvirt.close();
    await stackDown(STACK);
  }
}

await main();
// Keep-alive sockets of the API client would hold the process open.
process.exit(0);
