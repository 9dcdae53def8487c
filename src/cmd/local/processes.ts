// Background processes of the local stack: started detached with a log file and a pid
// file, found again by pid, and stopped by pid only (nothing the stack did not start).
// Supervised ones run under a supervisor of their own (supervise.ts) that restarts them.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { RESTART_BACKOFF, type SupervisorState } from "./supervise-policy.ts";

export interface Daemon {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Run under a supervisor (supervise.ts) that restarts it with backoff whenever it exits. */
  supervise?: boolean;
}

/** What a supervisor is told to run (as JSON on its command line; the environment is its own). */
export interface SupervisedDaemon {
  name: string;
  stateDir: string;
  command: string;
  args: string[];
  /** A pid of this daemon already running (started unsupervised): watched, not started again. */
  adopt?: number;
}

const SUPERVISOR = join(import.meta.dirname, "supervise.ts");

export function pidFile(stateDir: string, name: string): string {
  return join(stateDir, "pids", `${name}.pid`);
}

/** The supervisor's state (SupervisorState), beside the daemon's pid file. */
export function supervisorFile(stateDir: string, name: string): string {
  return join(stateDir, "pids", `${name}.supervisor`);
}

export function logFile(stateDir: string, name: string): string {
  return join(stateDir, "logs", `${name}.log`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by whoever inherited it) still takes signals but is gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The pid recorded for NAME when that process still runs. */
export function runningPid(stateDir: string, name: string): number | undefined {
  const file = pidFile(stateDir, name);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}

/** The state of NAME's supervisor when it still runs. */
export function runningSupervisor(stateDir: string, name: string): SupervisorState | undefined {
  try {
    const state = JSON.parse(readFileSync(supervisorFile(stateDir, name), "utf8")) as SupervisorState;
    return isAlive(state.pid) ? state : undefined;
  } catch {
    return undefined;
  }
}

/** Names of the daemons with a pid file or a supervisor in STATE_DIR. */
export async function recordedDaemons(stateDir: string): Promise<string[]> {
  const dir = join(stateDir, "pids");
  if (!existsSync(dir)) return [];
  const names = (await readdir(dir)).flatMap((f) => {
    const m = /^(.+)\.(pid|supervisor)$/.exec(f);
    return m ? [m[1]!] : [];
  });
  return [...new Set(names)];
}

/**
 * Starts the daemon detached (it outlives this process) unless it already runs, and returns its
 * pid. A supervised one is started by its supervisor; one already running without a supervisor
 * (started before supervision) is adopted by a new supervisor.
 */
export async function startDaemon(stateDir: string, d: Daemon): Promise<number> {
  const existing = runningPid(stateDir, d.name);
  if (d.supervise && runningSupervisor(stateDir, d.name)) return supervisedPid(stateDir, d.name);
  if (existing && !d.supervise) return existing;
  // A stale pid file must not pass for the new process's.
  if (!existing) await rm(pidFile(stateDir, d.name), { force: true });
  const out = openSync(logFile(stateDir, d.name), "a");
  const supervised: SupervisedDaemon = { name: d.name, stateDir, command: d.command, args: d.args };
  if (existing) supervised.adopt = existing;
  const [command, args] = d.supervise
    ? [process.execPath, [SUPERVISOR, JSON.stringify(supervised)]]
    : [d.command, d.args];
  const child = spawn(command, args, {
    detached: true,
    stdio: ["ignore", out, out],
    env: d.env ?? process.env,
  });
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${d.name} (${command})`);
  child.unref();
  if (d.supervise) return supervisedPid(stateDir, d.name, pid);
  await writeFile(pidFile(stateDir, d.name), `${pid}\n`);
  return pid;
}

/** The pid of a supervised daemon, once its supervisor has (re)started it: waits out a backoff. */
async function supervisedPid(stateDir: string, name: string, supervisor?: number): Promise<number> {
  let pid: number | undefined;
  await waitUntil(
    `${name}'s supervisor`,
    async () => {
      pid = runningSupervisor(stateDir, name) ? runningPid(stateDir, name) : undefined;
      return pid !== undefined;
    },
    { timeoutMs: RESTART_BACKOFF.maxDelayMs + 10_000, stateDir, daemon: name, pid: supervisor },
  );
  return pid!;
}

function signalGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone already
  }
}

/** Waits until PID has exited, at most TIMEOUT_MS; true when it has. */
async function exitOf(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  return !isAlive(pid);
}

/**
 * Stops the daemon: its supervisor first (so nothing restarts it; it passes SIGTERM on and exits
 * when the daemon has), then whatever still runs by its pid: SIGTERM, and SIGKILL after the grace
 * period. Removes the pid and state files.
 */
export async function stopDaemon(stateDir: string, name: string, graceMs = 15_000): Promise<boolean> {
  const supervisor = runningSupervisor(stateDir, name);
  const pid = runningPid(stateDir, name);
  try {
    if (supervisor) {
      process.kill(supervisor.pid, "SIGTERM");
      if (!(await exitOf(supervisor.pid, graceMs))) {
        // The daemon ignores SIGTERM; the supervisor leaves when it is gone. Its process group
        // is its own (and what it started): a supervised daemon is never libvirtd.
        const daemon = runningPid(stateDir, name);
        if (daemon) signalGroup(daemon, "SIGKILL");
        if (!(await exitOf(supervisor.pid, 5_000))) process.kill(supervisor.pid, "SIGKILL");
      }
    }
    // Unsupervised, or left by a supervisor that was killed.
    const left = runningPid(stateDir, name) ?? (pid && isAlive(pid) ? pid : undefined);
    if (left) {
      process.kill(left, "SIGTERM");
      if (!(await exitOf(left, graceMs))) process.kill(left, "SIGKILL");
    }
  } finally {
    await rm(pidFile(stateDir, name), { force: true });
    await rm(supervisorFile(stateDir, name), { force: true });
  }
  return supervisor !== undefined || pid !== undefined;
}

/** Polls CHECK until it returns true; on timeout the error quotes the daemon's log tail. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs: number; stateDir?: string; daemon?: string; pid?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    if (options.pid !== undefined && !isAlive(options.pid)) break;
    await sleep(100);
  }
  let tail = "";
  if (options.stateDir && options.daemon) {
    const log = logFile(options.stateDir, options.daemon);
    if (existsSync(log)) tail = readFileSync(log, "utf8").split("\n").slice(-15).join("\n");
  }
  throw new Error(`${what} did not become ready${tail ? `; last lines of its log:\n${tail}` : ""}`);
}
