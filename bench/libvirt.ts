// make bench-libvirt: our RPC client against spawning virsh per call, same daemon, same work
// (look a domain up, read its state, read its XML), with 1 and 32 operations in flight.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { startLibvirt } from "../src/cmd/local/libvirt.ts";
import { stopDaemon } from "../src/cmd/local/processes.ts";
import { REPO_ROOT } from "../src/cmd/local/tools.ts";
import { LibvirtClient } from "../src/hypervisor/libvirt/index.ts";
import { summarize, table } from "./stats.ts";

const execFileAsync = promisify(execFile);
const URI = "test+unix:///default";
const DOMAIN = "test"; // the test driver's built-in running domain
const CLIENT_OPS = Number(process.env.BENCH_CLIENT_OPS ?? 3000);
const VIRSH_OPS = Number(process.env.BENCH_VIRSH_OPS ?? 60);

type Kind = "lookup" | "state" | "xml";
interface Run {
  label: string;
  inFlight: number;
  latencies: Record<Kind, number[]>;
  calls: number;
  seconds: number;
}

/** Runs OPS operations (each = lookup, state, xml) with IN_FLIGHT workers; records per-call latency. */
async function drive(
  label: string,
  inFlight: number,
  ops: number,
  call: (kind: Kind) => Promise<void>,
): Promise<Run> {
  const latencies: Record<Kind, number[]> = { lookup: [], state: [], xml: [] };
  let next = 0;
  const timed = async (kind: Kind) => {
    const t = performance.now();
    await call(kind);
    latencies[kind].push(performance.now() - t);
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next++ < ops) {
        await timed("lookup");
        await timed("state");
        await timed("xml");
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { label, inFlight, latencies, calls: ops * 3, seconds };
}

async function main() {
  const stateDir = join(REPO_ROOT, ".local", "bench");
  for (const d of ["pids", "logs"]) await mkdir(join(stateDir, d), { recursive: true });
  const { started } = await startLibvirt(stateDir);
  const client = await LibvirtClient.connect({ uri: URI });
  try {
    const dom = await client.lookupDomainByName(DOMAIN);
    const viaClient = (kind: Kind) =>
      kind === "lookup"
        ? client.lookupDomainByName(DOMAIN).then(() => undefined)
        : kind === "state"
          ? client.domainState(dom).then(() => undefined)
          : client.domainXml(dom).then(() => undefined);
    const virshArgs: Record<Kind, string[]> = {
      lookup: ["domuuid", DOMAIN],
      state: ["domstate", "--reason", DOMAIN],
      xml: ["dumpxml", DOMAIN],
    };
    const viaVirsh = (kind: Kind) =>
      execFileAsync("virsh", ["-c", URI, ...virshArgs[kind]]).then(() => undefined);

    await drive("warm-up", 4, 200, viaClient);
    const runs: Run[] = [];
    for (const inFlight of [1, 32]) {
      process.stderr.write(`client, ${inFlight} in flight …\n`);
      runs.push(await drive("client", inFlight, CLIENT_OPS, viaClient));
      process.stderr.write(`virsh per call, ${inFlight} in flight …\n`);
      runs.push(await drive("virsh", inFlight, VIRSH_OPS, viaVirsh));
    }

    const rows = runs.map((r) => {
      const all = summarize([...r.latencies.lookup, ...r.latencies.state, ...r.latencies.xml]);
      const lookup = summarize(r.latencies.lookup);
      return [r.label, r.inFlight, r.calls, all.p50, all.p99, lookup.p50, lookup.p99, r.calls / r.seconds];
    });
    console.log(
      `\nlibvirt client benchmark (${URI}, domain "${DOMAIN}"; latencies in ms; one op = lookup + state + XML)\n`,
    );
    console.log(
      table(["via", "in flight", "calls", "p50", "p99", "lookup p50", "lookup p99", "calls/s"], rows),
    );
    console.log("");
    for (const inFlight of [1, 32]) {
      const ours = runs.find((r) => r.label === "client" && r.inFlight === inFlight)!;
      const virsh = runs.find((r) => r.label === "virsh" && r.inFlight === inFlight)!;
      const ratio = ours.calls / ours.seconds / (virsh.calls / virsh.seconds);
      console.log(`throughput ratio client/virsh, ${inFlight} in flight: ${ratio.toFixed(1)}x`);
    }
  } finally {
    await client.close();
    if (started) {
      await stopDaemon(stateDir, "libvirtd");
      await stopDaemon(stateDir, "virtlogd");
    }
  }
}

await main();
