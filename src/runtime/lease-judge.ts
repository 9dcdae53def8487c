// Pure: judging a coordination.k8s.io Lease as client-go's leader election does. A candidate
// never reads the holder's clock: a lease is expired when THIS process has seen no change of its
// record for the lease duration, measured on its own monotonic clock.

export interface LeaseRecord {
  holderIdentity?: string;
  renewTime?: string | Date;
  acquireTime?: string | Date;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
}

/** The record last read and when (local monotonic ms) this process first saw it so. */
export interface LeaseObservation {
  record: string;
  observedAt: number;
}

export type LeaseVerdict =
  /** No holder (released or never held): anyone may take it. */
  | "free"
  /** Held by this candidate. */
  | "ours"
  /** Held by another that renewed within the lease duration, as far as this process saw. */
  | "held"
  /** Held by another whose record did not change for the lease duration: it may be taken. */
  | "expired";

function stamp(t: string | Date | undefined): string {
  return t instanceof Date ? t.toISOString() : (t ?? "");
}

/** What identifies one renewal of the record (any change means the holder is alive). */
export function recordKey(spec: LeaseRecord | undefined): string {
  return JSON.stringify([
    spec?.holderIdentity ?? "",
    stamp(spec?.renewTime),
    stamp(spec?.acquireTime),
    spec?.leaseDurationSeconds ?? 0,
    spec?.leaseTransitions ?? 0,
  ]);
}

/**
 * Judges SPEC as read at NOW (local monotonic ms) by IDENTITY, given what it observed before.
 * Returns the verdict and the observation to keep for the next read.
 */
export function judgeLease(
  spec: LeaseRecord | undefined,
  identity: string,
  previous: LeaseObservation | undefined,
  now: number,
): { verdict: LeaseVerdict; observation: LeaseObservation } {
  const record = recordKey(spec);
  const observation = previous?.record === record ? previous : { record, observedAt: now };
  const holder = spec?.holderIdentity;
  if (!holder) return { verdict: "free", observation };
  if (holder === identity) return { verdict: "ours", observation };
  const durationMs = Math.max(0, spec?.leaseDurationSeconds ?? 0) * 1000;
  return { verdict: now - observation.observedAt >= durationMs ? "expired" : "held", observation };
}

/**
 * Whether the leader must stop acting at NOW: its last successful renewal was SENT at
 * LAST_RENEW_SENT and the renew deadline has passed since. Counted from sending, not from the
 * answer: a standby starts counting no earlier than the write lands, so with a renew deadline
 * shorter than the lease duration the two never act at once.
 */
export function leadershipLapsed(lastRenewSent: number, renewDeadlineMs: number, now: number): boolean {
  return now - lastRenewSent >= renewDeadlineMs;
}

/** The settings client-go insists on: renew deadline inside the lease, retries inside the deadline. */
export function checkElectionTimings(
  leaseDurationMs: number,
  renewDeadlineMs: number,
  retryPeriodMs: number,
) {
  if (!(renewDeadlineMs < leaseDurationMs))
    throw new Error(
      `leader election: renew deadline ${renewDeadlineMs} ms must be shorter than the lease duration ${leaseDurationMs} ms`,
    );
  if (!(retryPeriodMs * 1.2 < renewDeadlineMs))
    throw new Error(
      `leader election: retry period ${retryPeriodMs} ms must be well inside the renew deadline ${renewDeadlineMs} ms`,
    );
}
