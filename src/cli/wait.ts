// --wait: polls the objects a verb wrote until each is done, showing progress on stderr when
// what it sees changes; a failure or the deadline ends the wait with an error saying what was
// last seen. Transient API errors (a request past its deadline, a restarting API server) are
// retried until the deadline; NotFound and Forbidden end it at once.
import { httpStatusOf, WaitError } from "./errors.ts";
import type { Verdict } from "./judges.ts";
import { type Kind, shortName } from "./kinds.ts";

/** How often each object is read. */
export const POLL_INTERVAL_MS = 500;

/** T: the object JUDGE reads; a list of targets of different kinds is a WaitTarget[]. */
export interface WaitTarget<T = never> {
  kind: Kind;
  name: string;
  /** What done means, for the timeout message: "to be Running". */
  goal: string;
  judge: (obj: T) => Verdict;
}

export interface WaitDeps {
  get(kind: Kind, name: string): Promise<unknown>;
  sleep(ms: number): Promise<void>;
  /** Milliseconds, monotonic. */
  clock(): number;
  /** A progress line (to stderr). */
  progress(line: string): void;
  /** Formats an API error as kubectl would. */
  describeError(err: unknown): string;
}

/** Errors that waiting longer cannot mend. */
function isFinal(err: unknown): boolean {
  const code = httpStatusOf(err);
  return code !== undefined && code >= 400 && code < 500 && code !== 429 && code !== 408;
}

/**
 * Waits for every target; returns the notes done targets left ("applies at the next start").
 * Throws WaitError on the first failure or at the deadline, or the API error that ends it.
 */
export async function waitFor(targets: WaitTarget[], timeoutMs: number, deps: WaitDeps): Promise<string[]> {
  const deadline = deps.clock() + timeoutMs;
  const seen = new Map<string, string>();
  const notes: string[] = [];
  let pending = [...targets];
  for (;;) {
    const still: typeof pending = [];
    for (const target of pending) {
      let verdict: Verdict;
      try {
        verdict = target.judge((await deps.get(target.kind, target.name)) as never);
      } catch (err) {
        if (isFinal(err)) throw err;
        verdict = {
          state: "waiting",
          seen: `${seen.get(target.name) ?? "unknown"} (last read failed: ${deps.describeError(err)})`,
        };
      }
      if (verdict.state === "failed")
        throw new WaitError(`${shortName(target.kind, target.name)}: ${verdict.message}`);
      if (verdict.state === "done") {
        if (verdict.note) notes.push(`${target.name}: ${verdict.note}`);
        continue;
      }
      if (seen.get(target.name) !== verdict.seen) deps.progress(`${target.name}: ${verdict.seen}`);
      seen.set(target.name, verdict.seen);
      still.push(target);
    }
    pending = still;
    if (pending.length === 0) return notes;
    if (deps.clock() >= deadline) {
      const waiting = pending.map(
        (t) => `${shortName(t.kind, t.name)} ${t.goal} (last seen: ${seen.get(t.name) ?? "nothing"})`,
      );
      throw new WaitError(
        `timed out waiting for ${waiting.join("; ")} (waited ${Math.round(timeoutMs / 1000)}s)`,
      );
    }
    await deps.sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - deps.clock())));
  }
}
