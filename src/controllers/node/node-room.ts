// The node agent's own count of what its running guests take: a VM starts only when its vCPUs
// and memory fit beside the domains already running here. The controller places VMs by the
// same rule, but a stopped VM reserves nothing there, so starting one later may find its node
// full; the agent then refuses the start (InsufficientCapacity) and the controller moves the
// VM where its disks allow. Counting and reserving happen in one synchronous step, so workers
// reconciling at once never start two guests into the same room.
import { Reason } from "../event-reasons.ts";
import type { Refusal } from "../tenant-policy.ts";

export interface Resources {
  cpus: number;
  memoryBytes: number;
}

export const INSUFFICIENT_CAPACITY = Reason.InsufficientCapacity;

/** CPU_OVERCOMMIT: vCPUs per host CPU (the controller places by the same figure); default 8. */
export function cpuOvercommitOf(value: string | undefined): number {
  const n = Number(value ?? 8);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`CPU_OVERCOMMIT: "${value}" is not a positive number such as 8`);
  return n;
}

/** The more of A and B in each figure (B may be unknown). */
export function largest(a: Resources, b: Resources | undefined): Resources {
  return b ? { cpus: Math.max(a.cpus, b.cpus), memoryBytes: Math.max(a.memoryBytes, b.memoryBytes) } : a;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)}GiB`;

/** Pure: why a guest needing NEED cannot start beside USED on a host of HOST, or undefined. */
export function startRefusal(
  nodeName: string,
  host: Resources,
  cpuOvercommit: number,
  used: Resources,
  need: Resources,
): Refusal | undefined {
  const cpuRoom = host.cpus * cpuOvercommit - used.cpus;
  const memRoom = host.memoryBytes - used.memoryBytes;
  const short =
    need.cpus > cpuRoom
      ? `${Math.max(cpuRoom, 0)} free vCPUs, the VM needs ${need.cpus}`
      : need.memoryBytes > memRoom
        ? `${gib(Math.max(memRoom, 0))} free memory, the VM needs ${gib(need.memoryBytes)}`
        : undefined;
  if (!short) return undefined;
  return {
    field: "spec.cpu",
    reason: Reason.InsufficientCapacity,
    message: `node ${nodeName} has ${short} beside the VMs running there; it starts once there is room (or on another node, when its disks allow)`,
  };
}

export class NodeRoom {
  /** What each domain running (or starting) here takes: libvirt's figures once it runs. */
  private readonly running = new Map<string, Resources>();
  /** Domains whose count holds while libvirt says they are off: a start, or a save and restore, is under way. */
  private readonly holding = new Set<string>();
  /** Domains refused for room: told when room frees, so they need not wait for a recheck. */
  private readonly waiting = new Set<string>();
  /** When each domain's count last changed (a change counter): a listing older than that says nothing of it. */
  private readonly changedAt = new Map<string, number>();
  private changes = 0;
  private readonly freedListeners: Array<(waiting: string[]) => void> = [];
  private readonly nodeName: string;
  private readonly host: () => Resources | undefined;
  private readonly cpuOvercommit: number;

  /** HOST is undefined until the agent read its capacity: then nothing is refused. */
  constructor(nodeName: string, host: () => Resources | undefined, cpuOvercommit: number) {
    this.nodeName = nodeName;
    this.host = host;
    this.cpuOvercommit = cpuOvercommit;
  }

  /**
   * What libvirt says of domain NAME (ours or not): an active one counts with what it has, an
   * inactive or gone one does not — unless it is held (defined and off a moment before it
   * runs, or saved for a snapshot and about to be restored).
   */
  observe(name: string, active: Resources | undefined): void {
    this.changedAt.set(name, ++this.changes);
    const before = this.running.get(name);
    if (active) this.running.set(name, active);
    else if (!this.holding.has(name)) this.running.delete(name);
    const after = this.running.get(name);
    if (before && (!after || after.cpus < before.cpus || after.memoryBytes < before.memoryBytes))
      this.tellFreed();
  }

  /**
   * What a reconcile of one of our VMs saw: off frees its room; running with no count yet
   * counts it with what its spec asks (GUESS) until libvirt's figures come. Mends a count an
   * event was missed for.
   */
  seen(name: string, active: boolean, guess: Resources): void {
    if (!active) this.observe(name, undefined);
    else if (!this.running.has(name)) this.observe(name, guess);
  }

  /** LISTENER hears whenever room frees, with the domains whose start was refused for room. */
  onFreed(listener: (waiting: string[]) => void): void {
    this.freedListeners.push(listener);
  }

  /** NAME waits no more (its VM is gone from this node). */
  forget(name: string): void {
    this.waiting.delete(name);
  }

  private tellFreed() {
    for (const listener of this.freedListeners) listener([...this.waiting]);
  }

  /** Reserves room for KEY to start, or says why there is none. Ends with settle(KEY, …). */
  claim(key: string, need: Resources): Refusal | undefined {
    const held = this.running.get(key);
    const host =
      held && held.cpus >= need.cpus && held.memoryBytes >= need.memoryBytes ? undefined : this.host();
    // A guest running here already holds what it needs (a restore of it): nothing to refuse.
    if (host) {
      let cpus = 0;
      let memoryBytes = 0;
      for (const [other, r] of this.running) {
        if (other === key) continue;
        cpus += r.cpus;
        memoryBytes += r.memoryBytes;
      }
      const refusal = startRefusal(this.nodeName, host, this.cpuOvercommit, { cpus, memoryBytes }, need);
      if (refusal) {
        this.waiting.add(key);
        return refusal;
      }
    }
    this.waiting.delete(key);
    this.holding.add(key);
    this.observe(key, largest(need, held));
    return undefined;
  }

  /** Keeps NAME's count while its guest is saved and restored (a snapshot). Ends with settle(NAME, …). */
  hold(name: string): void {
    if (this.running.has(name)) this.holding.add(name);
  }

  /** The save and restore of NAME ended: its count stays as it is (libvirt's events, or its VM's next reconcile, mend it). */
  unhold(name: string): void {
    this.holding.delete(name);
  }

  /** A start (or a save and restore) of KEY ended, or failed: it counts with what libvirt says now, ACTIVE. */
  settle(key: string, active: Resources | undefined): void {
    this.holding.delete(key);
    this.observe(key, active);
  }

  /** The change counter now: take it before listing the domains for reset. */
  mark(): number {
    return this.changes;
  }

  /**
   * Every domain libvirt listed as active (the listing begun at MARK): the rest count no more.
   * A domain whose count changed since MARK keeps it (an event or a start came after the list).
   */
  reset(active: ReadonlyMap<string, Resources>, mark: number): void {
    const stale = (name: string) => (this.changedAt.get(name) ?? 0) <= mark;
    let freed = false;
    for (const name of [...this.running.keys()])
      if (!active.has(name) && !this.holding.has(name) && stale(name)) {
        this.running.delete(name);
        freed = true;
      }
    for (const [name, r] of active) if (stale(name)) this.running.set(name, r);
    // What stopped before the listing is remembered no longer (the map stays as small as what runs).
    for (const name of [...this.changedAt.keys()])
      if (!this.running.has(name) && stale(name)) this.changedAt.delete(name);
    if (freed) this.tellFreed();
  }
}
