// Test stacks start from an empty etcd, so every run is a cluster of its own (a new kube-system
// UID) on the machine's one libvirtd. A run cut short (a killed test process, a session's end)
// leaves the domains, volumes and DHCP reservations its cluster owned, and the next run's agent
// rightly leaves a domain of another cluster alone (DomainConflict), so a test reusing the name
// fails. Each run records its cluster; the next sweeps those whose test process is gone.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CACHE_DIR } from "../../src/cmd/local/tools.ts";
import { dhcpHostName } from "../../src/controllers/node/dhcp.ts";
import { markNameOf } from "../../src/controllers/node/volume-claim.ts";
import { parseNics, parseOwnership } from "../../src/hypervisor/domain/xml.ts";
import { dhcpHostXml, parseDhcpHosts } from "../../src/hypervisor/network.ts";
import { virsh } from "./operator.ts";
import { kubectl } from "./stack.ts";

const RECORDS = join(CACHE_DIR, "test-clusters");

interface Record {
  pid: number;
  stateDir: string;
}

/** Notes this run's cluster, so a later run can sweep what it leaves if it is cut short. */
export async function recordTestCluster(stateDir: string): Promise<void> {
  const { stdout } = await kubectl(["get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}"]);
  mkdirSync(RECORDS, { recursive: true });
  const record: Record = { pid: process.pid, stateDir };
  // Whole or not at all: a half-written record would read as a dead run's.
  const file = join(RECORDS, stdout.trim());
  writeFileSync(`${file}.tmp`, JSON.stringify(record));
  renameSync(`${file}.tmp`, file);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("node");
  } catch {
    return false;
  }
}

/** The recorded clusters whose test process is gone. */
function deadClusters(): Set<string> {
  if (!existsSync(RECORDS)) return new Set();
  const dead = new Set<string>();
  for (const uid of readdirSync(RECORDS).filter((f) => !f.endsWith(".tmp"))) {
    try {
      const record = JSON.parse(readFileSync(join(RECORDS, uid), "utf8")) as Record;
      if (!alive(record.pid)) dead.add(uid);
    } catch {
      dead.add(uid);
    }
  }
  return dead;
}

const quietly = (p: Promise<unknown>) => p.catch(() => undefined);

/** Removes what clusters of test runs cut short left in libvirt, and forgets them. */
export async function sweepTestLeftovers(log: (line: string) => void): Promise<void> {
  const dead = deadClusters();
  if (dead.size === 0) return;
  const reservations = new Map<string, Array<{ mac: string; host: string }>>();
  for (const domain of (await virsh("list", "--all", "--name"))
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)) {
    const xml = await virsh("dumpxml", "--inactive", domain).catch(() => "");
    const owner = parseOwnership(xml);
    if (!owner || !dead.has(owner.cluster)) continue;
    for (const nic of parseNics(xml))
      if (nic.network)
        reservations.set(nic.network, [
          ...(reservations.get(nic.network) ?? []),
          { mac: nic.mac, host: dhcpHostName(owner.namespace, owner.name, nic.name) },
        ]);
    await quietly(virsh("destroy", domain));
    // One domain that cannot go (gone already) does not keep the rest.
    await virsh("undefine", domain, "--snapshots-metadata", "--managed-save", "--nvram").then(
      () => log(`removed domain ${domain}, left by an earlier test run`),
      (err) => log(`could not remove domain ${domain}, left by an earlier test run: ${err}`),
    );
  }
  for (const [network, nics] of reservations) {
    const hosts = parseDhcpHosts(await virsh("net-dumpxml", "--inactive", network));
    for (const h of hosts.filter((h) =>
      nics.some((n) => n.mac === h.mac?.toLowerCase() || n.host === h.name),
    ))
      await quietly(
        virsh("net-update", network, "delete", "ip-dhcp-host", dhcpHostXml(h), "--live", "--config"),
      );
  }
  for (const pool of (await virsh("pool-list", "--name"))
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)) {
    const volumes = (await virsh("vol-list", "--pool", pool))
      .split("\n")
      .slice(2)
      .map((line) => line.trim().split(/\s+/)[0] ?? "")
      .filter(Boolean);
    for (const volume of volumes) {
      const marks = volumes.filter((v) => v.startsWith("lvo-") && v.endsWith(`.${volume}`));
      const deadMarks = [...dead].flatMap((uid) =>
        (["owner", "making"] as const).map((state) => markNameOf(volume, uid, state)),
      );
      const left = marks.filter((m) => deadMarks.includes(m));
      if (left.length === 0) continue;
      // Another cluster (a test run going on in another slot) holds it too: only the marks go.
      if (left.length === marks.length) {
        await quietly(virsh("vol-delete", "--pool", pool, volume));
        log(`removed volume ${volume} of pool ${pool}, left by an earlier test run`);
      }
      for (const mark of left) await quietly(virsh("vol-delete", "--pool", pool, mark));
    }
  }
  for (const uid of dead) rmSync(join(RECORDS, uid), { force: true });
}
