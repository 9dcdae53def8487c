// Leader election on a coordination.k8s.io Lease, as client-go's: acquire when free or
// expired (judged by this process's own clock: lease-judge.ts), renew well inside the lease
// duration, and stop leading the moment the renew deadline passes — a timer says so, not the
// answer of a request that may hang. Its own API client, so renewals never queue behind
// reconcile traffic.
import type { V1Lease } from "@kubernetes/client-node";
import { connectKube, httpStatus, MicroTime } from "./kube.ts";
import { checkElectionTimings, judgeLease, type LeaseObservation, leadershipLapsed } from "./lease-judge.ts";
import type { Logger } from "./logging.ts";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
}

export interface Leadership {
  /** Stops renewing and frees the Lease, so a successor need not wait for it to expire. */
  release(): Promise<void>;
}

export async function runLeaderElection(
  options: LeaderElectionOptions,
  onStartedLeading: () => Promise<void> | void,
  onStoppedLeading: () => void,
): Promise<Leadership> {
  const { namespace, name, identity, log } = options;
  const leaseDurationMs = options.leaseDurationMs ?? 15_000;
  const renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
  const retryPeriodMs = options.retryPeriodMs ?? 2_000;
  checkElectionTimings(leaseDurationMs, renewDeadlineMs, retryPeriodMs);
  // A request may not outlast half the renew deadline: one hung renewal leaves time for another;
  // two connections, so a hung one never holds up the next renewal.
  const api = (await connectKube(Math.floor(renewDeadlineMs / 2), undefined, 2)).coordination;
  let observed: LeaseObservation | undefined;

  const tryAcquireOrRenew = async (): Promise<boolean> => {
    const now = new MicroTime();
    let lease: V1Lease | undefined;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
    }
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewTime: now,
    };
    if (!lease) {
      await api.createNamespacedLease({
        namespace,
        body: { metadata: { name, namespace }, spec: { ...spec, acquireTime: now, leaseTransitions: 0 } },
      });
      return true;
    }
    const judged = judgeLease(lease.spec, identity, observed, performance.now());
    observed = judged.observation;
    if (judged.verdict === "held") return false;
    const taking = judged.verdict !== "ours";
    await api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        ...lease,
        spec: {
          ...lease.spec,
          ...spec,
          ...(taking ? { acquireTime: now, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } : {}),
        },
      },
    });
    return true;
  };

  // Acquire. The deadline counts from when the winning write was sent.
  let lastRenewSent = 0;
  for (;;) {
    try {
      lastRenewSent = performance.now();
      if (await tryAcquireOrRenew()) break;
    } catch (err) {
      log.warn({ err: (err as Error).message }, "leader election: acquire failed");
    }
    await new Promise((r) => setTimeout(r, retryPeriodMs));
  }
  log.info({ lease: `${namespace}/${name}`, identity }, "became leader");
  let leading = true;
  const lose = (why: string) => {
    if (!leading) return;
    leading = false;
    clearInterval(timer);
    clearInterval(watchdog);
    log.error({ why }, "lost leadership");
    onStoppedLeading();
  };
  // Renewals one at a time; each counts from when it was sent (a standby counts from later).
  let renewing: Promise<void> | undefined;
  const renew = async () => {
    const sent = performance.now();
    try {
      if (await tryAcquireOrRenew()) lastRenewSent = Math.max(lastRenewSent, sent);
      else lose("another candidate holds the lease");
    } catch (err) {
      log.warn({ err: (err as Error).message }, "leader election: renew failed");
    } finally {
      renewing = undefined;
    }
  };
  const timer = setInterval(() => {
    if (renewing || !leading) return;
    renewing = renew();
  }, retryPeriodMs);
  // Independent of the renewals: a hung request cannot keep this process leading past its deadline.
  const watchdog = setInterval(
    () => {
      if (leadershipLapsed(lastRenewSent, renewDeadlineMs, performance.now()))
        lose(`no renewal succeeded within ${renewDeadlineMs} ms`);
    },
    Math.min(250, retryPeriodMs),
  );
  await onStartedLeading();
  return { release };

  async function release() {
    leading = false;
    clearInterval(timer);
    clearInterval(watchdog);
    // A renewal in flight would land after our read: the release then meets a conflict (409).
    await renewing;
    const lease = await api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await api.replaceNamespacedLease({
      name,
      namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 } },
    });
    log.info("released leadership");
  }
}
