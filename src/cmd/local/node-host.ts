// What the local node changes on the host outside its own directory — sysctls, iptables
// chains, cgroups, a bridge — and the lock that keeps one node per machine: the kubelet and
// kube-proxy own host-wide iptables chains (KUBE-*), so a second node would rewrite the first's
// Service rules, and cleaning up after one would take the other's away.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { runningPid } from "./processes.ts";
import { run } from "./tools.ts";

const LOCK = "/run/libvirt-operator/node.json";
const NODE_PROCESSES = ["kubelet", "kube-proxy", "containerd"];

function lockHolder(): string | undefined {
  try {
    return (JSON.parse(readFileSync(LOCK, "utf8")) as { stateDir?: string }).stateDir;
  } catch {
    return undefined;
  }
}

function nodeRuns(stateDir: string): boolean {
  return NODE_PROCESSES.some((name) => runningPid(stateDir, name) !== undefined);
}

/** Why STATEDIR's stack may not start its node now (another stack's node runs), or undefined. */
export function nodeBusyReason(stateDir: string): string | undefined {
  const holder = lockHolder();
  if (!holder || holder === stateDir || !nodeRuns(holder)) return undefined;
  return (
    `the node of the stack in ${holder} runs on this machine; one node per machine (the kubelet ` +
    "and kube-proxy own host-wide iptables chains): stop that one first (make local-down there)"
  );
}

/** Takes the machine's node lock for STATEDIR, or throws saying whose node runs. */
export async function takeNodeLock(stateDir: string): Promise<void> {
  const busy = nodeBusyReason(stateDir);
  if (busy) throw new Error(busy);
  await mkdir(dirname(LOCK), { recursive: true });
  await writeFile(LOCK, `${JSON.stringify({ stateDir })}\n`);
}

/** STATEDIR's stack may clean host-wide state: it holds the lock, or nobody's node runs. */
export function mayCleanHost(stateDir: string): boolean {
  return nodeBusyReason(stateDir) === undefined;
}

export async function releaseNodeLock(stateDir: string): Promise<void> {
  if (lockHolder() === stateDir) await rm(LOCK, { force: true });
}

/**
 * Host settings the node changes, put back when it stops: the kubelet sets the first three
 * (its kernel tunables), bridged pod traffic needs iptables (Services between pods of the node).
 * ip_forward stays on: libvirt's NAT network needs it as much.
 */
const SYSCTLS: Record<string, string | undefined> = {
  "vm/overcommit_memory": undefined,
  "kernel/panic": undefined,
  "kernel/panic_on_oops": undefined,
  "net/bridge/bridge-nf-call-iptables": "1",
  "net/ipv4/ip_forward": "1",
};
const KEPT = new Set(["net/ipv4/ip_forward"]);

/** Records the host's values once (a restart keeps the first record), then sets the node's. */
export async function setSysctls(nodeDir: string): Promise<void> {
  const record = join(nodeDir, "host-sysctls.json");
  if (!existsSync(record)) {
    const saved: Record<string, string> = {};
    for (const key of Object.keys(SYSCTLS)) {
      const value = await readFile(join("/proc/sys", key), "utf8").catch(() => undefined);
      if (value !== undefined && !KEPT.has(key)) saved[key] = value.trim();
    }
    await writeFile(record, JSON.stringify(saved));
  }
  for (const [key, value] of Object.entries(SYSCTLS)) {
    if (value === undefined) continue;
    const file = join("/proc/sys", key);
    if (existsSync(file)) await writeFile(file, value);
    else
      process.stderr.write(
        `note: ${file} is missing (br_netfilter not loaded?); pods may not reach Services\n`,
      );
  }
}

export async function restoreSysctls(nodeDir: string): Promise<void> {
  const record = join(nodeDir, "host-sysctls.json");
  const saved = await readFile(record, "utf8").then(
    (text) => JSON.parse(text) as Record<string, string>,
    () => ({}) as Record<string, string>,
  );
  for (const [key, value] of Object.entries(saved)) {
    await writeFile(join("/proc/sys", key), value).catch(() => undefined);
  }
  await rm(record, { force: true });
}

/** iptables -S quotes arguments with spaces (comments). */
export function shellWords(line: string): string[] {
  return (line.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"(.*)"$/, "$1"));
}

/**
 * Removes the KUBE-* chains the kubelet and kube-proxy made (only the node holding the lock
 * calls it): the rules jumping to them from the built-in chains, then the chains, flushed first
 * because they jump to each other. Nothing else: not `kube-proxy --cleanup`, which also flushes
 * every IPVS virtual server and nftables table of kube-proxy's on the host.
 */
export async function removeKubeChains(): Promise<void> {
  for (const tool of ["iptables", "ip6tables"]) {
    for (const table of ["filter", "nat", "mangle"]) {
      const rules = (await run(tool, ["-t", table, "-S"]).catch(() => ({ stdout: "" }))).stdout.split("\n");
      const chains = rules.filter((r) => r.startsWith("-N KUBE-")).map((r) => r.slice(3));
      for (const rule of rules) {
        const words = shellWords(rule);
        if (words[0] !== "-A" || chains.includes(words[1] ?? "")) continue;
        if (!chains.some((c) => rule.includes(`-j ${c}`))) continue;
        await run(tool, ["-t", table, "-D", ...words.slice(1)]).catch(() => undefined);
      }
      for (const chain of chains) await run(tool, ["-t", table, "-F", chain]).catch(() => undefined);
      for (const chain of chains) await run(tool, ["-t", table, "-X", chain]).catch(() => undefined);
    }
  }
}

/** The directories of CGROUP in each mounted hierarchy (cgroup v1: one per controller; v2: one). */
export async function cgroupDirs(cgroup: string): Promise<string[]> {
  const base = "/sys/fs/cgroup";
  if (existsSync(join(base, "cgroup.controllers"))) return [join(base, cgroup)];
  const entries = await readdir(base, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => join(base, e.name, cgroup));
}

/** Kills every process left in CGROUP and removes it with what is under it, deepest first. */
export async function removeCgroup(cgroup: string): Promise<void> {
  for (const top of await cgroupDirs(cgroup)) {
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = async (d: string) => {
      dirs.push(d);
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(d, e.name));
      }
    };
    await walk(top);
    for (const d of dirs.reverse()) {
      const procs = await readFile(join(d, "cgroup.procs"), "utf8").catch(() => "");
      for (const pid of procs.split("\n").filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
      await rmdir(d).catch(() => undefined);
    }
  }
}

/** Mount points under DIR, deepest first (mountinfo's field 5, octal escapes decoded). */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const points = mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export async function unmountUnder(dir: string): Promise<void> {
  for (const point of mountsUnder(await readFile("/proc/self/mountinfo", "utf8"), dir)) {
    await run("umount", [point]).catch(() => run("umount", ["-l", point]).catch(() => undefined));
  }
}
