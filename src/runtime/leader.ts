// Leader election on a coordination.k8s.io Lease, as client-go's: acquire when free or
// expired, renew well inside the lease duration, and stop leading (exit) when renewal fails
// past the deadline. Its own API client, so renewals never queue behind reconcile traffic.
import { CoordinationV1Api, KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { httpStatus, MicroTime } from "./kube.ts";
import { makeApiClientWithDeadline } from "./kube-deadline.ts";
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
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const api = makeApiClientWithDeadline(kc, CoordinationV1Api);

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
    const holder = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
    const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (holder && holder !== identity && renewed + duration > now.getTime()) return false;
    const taking = holder !== identity;
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

  // Acquire.
  for (;;) {
    try {
      if (await tryAcquireOrRenew()) break;
    } catch (err) {
      log.warn({ err: (err as Error).message }, "leader election: acquire failed");
    }
    await new Promise((r) => setTimeout(r, retryPeriodMs));
  }
  log.info({ lease: `${namespace}/${name}`, identity }, "became leader");
  let lastRenew = Date.now();
  const timer = setInterval(async () => {
    try {
      if (await tryAcquireOrRenew()) lastRenew = Date.now();
    } catch (err) {
      log.warn({ err: (err as Error).message }, "leader election: renew failed");
    }
    if (Date.now() - lastRenew > renewDeadlineMs) {
      clearInterval(timer);
      log.error("lost leadership");
      onStoppedLeading();
    }
  }, retryPeriodMs);
  await onStartedLeading();
  return { release };

  async function release() {
    clearInterval(timer);
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
