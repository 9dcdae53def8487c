// The supervisor of one local-stack daemon (started by processes.ts startDaemon, detached):
//   node supervise.ts '<SupervisedDaemon as JSON>'
// It starts the daemon in a session and process group of its own, writes its pid file, and
// when it exits restarts it after a backoff (supervise-policy.ts), logging each restart into the
// daemon's own log and its state file; whatever the daemon left in its process group is killed
// after it. SIGTERM/SIGINT: no more restarts, SIGTERM to the daemon, exit once it is gone. The
// daemon dies with the supervisor: it runs under setpriv --pdeathsig, so a supervisor killed
// outright (SIGKILL) takes its daemon down instead of leaving it running unwatched, and nothing
// restarts it afterwards.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createLogger } from "../../runtime/logging.ts";
import { isAlive, logFile, pidFile, type SupervisedDaemon, supervisorFile } from "./processes.ts";
import { describeExit, planRestart, type SupervisorState } from "./supervise-policy.ts";

const spec = JSON.parse(process.argv[2] ?? "{}") as SupervisedDaemon;
const log = createLogger("supervisor").child({ daemon: spec.name });
const state: SupervisorState = {
  daemon: spec.name,
  pid: process.pid,
  since: new Date().toISOString(),
  restarts: 0,
};
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

interface Run {
  pid: number;
  startedAt: number;
}

let attempt = 0;
/** The daemon now running (a child, or a process found running at start), when there is one. */
let current: Run | undefined;
let restartTimer: NodeJS.Timeout | undefined;
let stopping = false;

function saveState() {
  const file = supervisorFile(spec.stateDir, spec.name);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Removes our files (the pid file only while it still names our daemon) and exits. */
function finish(): never {
  const file = supervisorFile(spec.stateDir, spec.name);
  try {
    if ((JSON.parse(readFileSync(file, "utf8")) as SupervisorState).pid === process.pid) rmSync(file);
    const pids = pidFile(spec.stateDir, spec.name);
    if (current && Number(readFileSync(pids, "utf8").trim()) === current.pid) rmSync(pids);
  } catch {
    // already removed by stopDaemon
  }
  log.info("supervisor stopped");
  process.exit(0);
}

function start() {
  restartTimer = undefined;
  if (stopping) return;
  const out = openSync(logFile(spec.stateDir, spec.name), "a");
  const [command, args] = SETPRIV
    ? [SETPRIV, ["--pdeathsig", "TERM", "--", spec.command, ...spec.args]]
    : [spec.command, spec.args];
  // detached: a session and process group of its own, so signals meant for ours (a terminal's
  // Ctrl-C) do not reach it and it never takes ours with it.
  const child = spawn(command, args, { detached: true, stdio: ["ignore", out, out] });
  closeSync(out);
  const run: Run = { pid: child.pid ?? 0, startedAt: performance.now() };
  let ended = false;
  const end = (code: number | null, signal: string | null, error?: string) => {
    if (ended) return;
    ended = true;
    exited(run, code, signal, error);
  };
  child.once("error", (err) => end(null, null, err.message));
  child.once("exit", (code, signal) => end(code, signal));
  if (!child.pid) return;
  current = run;
  writeFileSync(pidFile(spec.stateDir, spec.name), `${child.pid}\n`);
  log.info({ pid: child.pid, attempt }, `${spec.name} started`);
}

/** Watches a daemon that was running before this supervisor (not our child: polled by pid). */
function adopt(pid: number) {
  const run: Run = { pid, startedAt: performance.now() };
  current = run;
  log.info({ pid }, `${spec.name} was already running; supervising it from now on`);
  const poll = setInterval(() => {
    if (isAlive(pid)) return;
    clearInterval(poll);
    exited(run, null, null);
  }, 250);
}

/**
 * What the daemon left in its process group (a qemu-img of the agent) goes with it, as a
 * container's processes go with the container: an orphan must not work beside the next run.
 */
function killGroup(pid: number) {
  try {
    if (pid > 0) process.kill(-pid, "SIGKILL");
  } catch {
    // nothing left
  }
}

function exited(run: Run, code: number | null, signal: string | null, error?: string) {
  killGroup(run.pid);
  const uptimeMs = performance.now() - run.startedAt;
  const how = error ? `could not start: ${error}` : describeExit(code, signal);
  if (stopping) {
    log.info({ exit: how }, `${spec.name} stopped`);
    finish();
  }
  const plan = planRestart(attempt, uptimeMs);
  attempt = plan.attempt;
  state.restarts += 1;
  state.lastExit = { at: new Date().toISOString(), how, uptimeMs: Math.round(uptimeMs), ...plan };
  saveState();
  log.warn(
    { exit: how, code, signal, uptimeMs: Math.round(uptimeMs), attempt: plan.attempt, delayMs: plan.delayMs },
    `${spec.name} ${how} after ${(uptimeMs / 1000).toFixed(1)} s; restart ${plan.attempt} in ${(plan.delayMs / 1000).toFixed(1)} s`,
  );
  restartTimer = setTimeout(start, plan.delayMs);
}

function stop(signal: string) {
  if (stopping) return;
  stopping = true;
  clearTimeout(restartTimer);
  log.info({ signal }, `stopping ${spec.name}; no more restarts`);
  const running = current && isAlive(current.pid) ? current : undefined;
  if (!running) finish();
  try {
    process.kill(running.pid, "SIGTERM");
  } catch {
    finish();
  }
  // Our child reports its exit; a process found running is polled until it is gone (adopt).
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
saveState();
if (spec.adopt && isAlive(spec.adopt)) adopt(spec.adopt);
else start();
