// What a local-stack supervisor decides (pure): how long to wait before restarting a daemon
// that exited, how to say why it exited, and how `make local` reports its restarts.

export interface RestartBackoff {
  /** Delay before the first restart after a run that lasted long enough to count as healthy. */
  firstDelayMs: number;
  /** The delay doubles with each quick exit up to this. */
  maxDelayMs: number;
  /** A run this long resets the schedule: the next exit is restarted after firstDelayMs again. */
  resetAfterMs: number;
}

export const RESTART_BACKOFF: RestartBackoff = {
  firstDelayMs: 1_000,
  maxDelayMs: 30_000,
  resetAfterMs: 60_000,
};

export interface RestartPlan {
  /** 1 for the first restart since the last healthy run, then 2, 3 … */
  attempt: number;
  delayMs: number;
}

/**
 * The restart after an exit: PREVIOUS_ATTEMPT is the attempt that started the process that just
 * exited (0 for the first start), UPTIME_MS how long it ran.
 */
export function planRestart(
  previousAttempt: number,
  uptimeMs: number,
  backoff: RestartBackoff = RESTART_BACKOFF,
): RestartPlan {
  const attempt = uptimeMs >= backoff.resetAfterMs ? 1 : previousAttempt + 1;
  const delayMs = Math.min(backoff.maxDelayMs, backoff.firstDelayMs * 2 ** (attempt - 1));
  return { attempt, delayMs };
}

/** "exited with code 1", "killed by SIGKILL"; a process found running (adopted) has no status. */
export function describeExit(code: number | null, signal: string | null): string {
  if (signal) return `killed by ${signal}`;
  if (code !== null) return `exited with code ${code}`;
  return "exited (status unknown)";
}

/** What a supervisor records in its state file (pids/<daemon>.supervisor), for stop and for reports. */
export interface SupervisorState {
  daemon: string;
  /** The supervisor's own pid. */
  pid: number;
  /** When the supervisor started (ISO time). */
  since: string;
  /** Restarts so far (scheduled, counting one waiting for its delay). */
  restarts: number;
  lastExit?: {
    at: string;
    how: string;
    uptimeMs: number;
    attempt: number;
    delayMs: number;
  };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** One line for `make local`: NAME's restarts since its supervisor started. */
export function describeRestarts(state: SupervisorState): string {
  if (state.restarts === 0) return `${state.daemon}: no restarts since ${state.since}`;
  const times = state.restarts === 1 ? "once" : `${state.restarts} times`;
  const last = state.lastExit;
  const detail = last
    ? `; last at ${last.at}: ${last.how} after ${seconds(last.uptimeMs)} up, restart ${last.attempt} after ${seconds(last.delayMs)}`
    : "";
  return `${state.daemon}: restarted ${times} since ${state.since}${detail}`;
}
