// Background processes of the local stack: started detached with a log file and a pid
// file, found again by pid, and stopped by pid only (nothing the stack did not start).
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface Daemon {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export function pidFile(stateDir: string, name: string): string {
  return join(stateDir, "pids", `${name}.pid`);
}

export function logFile(stateDir: string, name: string): string {
  return join(stateDir, "logs", `${name}.log`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
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

/** Starts the daemon detached (it outlives this process) unless it already runs. */
export async function startDaemon(stateDir: string, d: Daemon): Promise<number> {
  const existing = runningPid(stateDir, d.name);
  if (existing) return existing;
  const out = openSync(logFile(stateDir, d.name), "a");
  const child = spawn(d.command, d.args, {
    detached: true,
    stdio: ["ignore", out, out],
    env: d.env ?? process.env,
  });
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${d.name} (${d.command})`);
  child.unref();
  await writeFile(pidFile(stateDir, d.name), `${pid}\n`);
  return pid;
}

/** SIGTERM, then SIGKILL after the grace period; removes the pid file. */
export async function stopDaemon(stateDir: string, name: string, graceMs = 15_000): Promise<boolean> {
  const pid = runningPid(stateDir, name);
  await rm(pidFile(stateDir, name), { force: true });
  if (!pid) return false;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
  return true;
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
