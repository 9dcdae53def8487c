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
  /** Domains a start is under way for: their claim holds until the start ends (settle). */
  private readonly starting = new Set<string>();
  /** Domains refused for room: told when room frees, so they need not wait for a recheck. */
  private readonly waiting = new Set<string>();
  private freed: (names: string[]) => void = () => undefined;
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
   * inactive or gone one does not — unless a start of it is under way (it is defined, and
   * inactive, a moment before it runs).
   */
  observe(name: string, active: Resources | undefined): void {
    const before = this.running.get(name);
    if (active) this.running.set(name, active);
    else if (!this.starting.has(name)) this.running.delete(name);
    const after = this.running.get(name);
    if (before && (!after || after.cpus < before.cpus || after.memoryBytes < before.memoryBytes))
      this.tellFreed();
  }

  /** LISTENER hears the domains waiting for room whenever some frees. */
  onFreed(listener: (names: string[]) => void): void {
    this.freed = listener;
  }

  /** NAME waits no more (its VM is gone from this node). */
  forget(name: string): void {
    this.waiting.delete(name);
  }

  private tellFreed() {
    if (this.waiting.size) this.freed([...this.waiting]);
  }

  /** Reserves room for KEY to start, or says why there is none. Ends with settle(KEY, …). */
  claim(key: string, need: Resources): Refusal | undefined {
    const host = this.host();
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
    this.running.set(key, need);
    this.starting.add(key);
    return undefined;
  }

  /** A start of KEY ended (or failed): it counts with what libvirt says now, ACTIVE. */
  settle(key: string, active: Resources | undefined): void {
    this.starting.delete(key);
    this.observe(key, active);
  }

  /** Every domain libvirt says is active, after a (re)connection: the rest count no more. */
  reset(active: ReadonlyMap<string, Resources>): void {
    let freed = false;
    for (const name of this.running.keys())
      if (!active.has(name) && !this.starting.has(name)) freed = this.running.delete(name) || freed;
    for (const [name, r] of active) this.running.set(name, r);
    if (freed) this.tellFreed();
  }
}
