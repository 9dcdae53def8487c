// When each node's agent was last heard from, by this process's own monotonic clock. Agents
// renew a heartbeat Lease; what counts is that this process SAW it change, never the time the
// agent wrote into it (its clock may be wrong). Fed by the Lease informer.
import type { V1Lease } from "@kubernetes/client-node";
import { HEARTBEAT_FRESH_MS, HEARTBEAT_LEASE_PREFIX, heartbeatLeaseName } from "../node-facts.ts";

/** What placement and lost-node handling ask about a node's agent. */
export interface HeartbeatView {
  /** The agent renewed recently enough to be given new work. */
  fresh(node: string): boolean;
  /** How long no renewal was seen (ms); counted from the first question when none ever was. */
  silentMs(node: string): number;
  /** This process has seen the agent renew (not only read its Lease once). */
  heardRenewing(node: string): boolean;
}

interface Seen {
  /** The renewal last seen (the Lease's renewTime as written; only its changes count). */
  renew: string;
  /** Monotonic ms when this process saw RENEW first. */
  at: number;
  /** A change was seen (not only the first read): the agent is known alive at AT. */
  changed: boolean;
  /** The holder's own renewTime as wall-clock ms, only for the first read (see fresh). */
  holderMs: number;
}

/**
 * How much longer than the last Lease event this process saw a node may count as silent. The
 * Lease watch carries every agent's renewals and the controller's own leader renewals (every few
 * seconds): when it brings nothing at all, this process is blind (a stalled watch, an API server
 * away), and that blindness must not make every node look lost.
 */
export const WATCH_GRACE_MS = 10_000;

export class HeartbeatClock implements HeartbeatView {
  private readonly seen = new Map<string, Seen>();
  /** When any Lease event (a heartbeat, the leader's renewal) was last seen. */
  private lastEventAt: number | undefined;
  private readonly firstAsked = new Map<string, number>();
  private readonly now: () => number;
  private readonly wallNow: () => number;

  constructor(now: () => number = () => performance.now(), wallNow: () => number = () => Date.now()) {
    this.now = now;
    this.wallNow = wallNow;
  }

  /**
   * Records a Lease event (adds and updates; a deleted Lease leaves the silence counting).
   * False for Leases that are no agent's heartbeat.
   */
  observe(lease: V1Lease): boolean {
    this.lastEventAt = this.now();
    const name = lease.metadata?.name ?? "";
    if (!name.startsWith(HEARTBEAT_LEASE_PREFIX)) return false;
    const raw = lease.spec?.renewTime as unknown;
    const renew = raw instanceof Date ? raw.toISOString() : String(raw ?? "");
    const before = this.seen.get(name);
    if (before?.renew === renew) return true;
    this.seen.set(name, {
      renew,
      at: this.now(),
      changed: before !== undefined,
      holderMs: new Date(renew).getTime() || 0,
    });
    return true;
  }

  silentMs(node: string): number {
    const now = this.now();
    const seen = this.seen.get(heartbeatLeaseName(node));
    let since = seen?.at ?? this.firstAsked.get(node);
    if (since === undefined) {
      since = now;
      this.firstAsked.set(node, since);
    }
    const watched = this.lastEventAt ?? now;
    return Math.min(now - since, Math.max(0, watched - since) + WATCH_GRACE_MS);
  }

  /**
   * Fresh when a renewal was seen within HEARTBEAT_FRESH_MS. A Lease only read once (this
   * process just started) is fresh if its own renewTime says so too: a node dead for an hour
   * is not given work for the first 40 s after a restart. The holder's clock can only make a
   * node look stale, never alive, and only until its next renewal is seen.
   */
  heardRenewing(node: string): boolean {
    return this.seen.get(heartbeatLeaseName(node))?.changed === true;
  }

  fresh(node: string): boolean {
    const seen = this.seen.get(heartbeatLeaseName(node));
    if (!seen || this.now() - seen.at >= HEARTBEAT_FRESH_MS) return false;
    return seen.changed || this.wallNow() - seen.holderMs < HEARTBEAT_FRESH_MS;
  }
}
