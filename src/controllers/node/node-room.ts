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
  /** What each VM with a running (or starting) domain here takes. */
  private readonly running = new Map<string, Resources>();
  private readonly nodeName: string;
  private readonly host: () => Resources | undefined;
  private readonly cpuOvercommit: number;

  /** HOST is undefined until the agent read its capacity: then nothing is refused. */
  constructor(nodeName: string, host: () => Resources | undefined, cpuOvercommit: number) {
    this.nodeName = nodeName;
    this.host = host;
    this.cpuOvercommit = cpuOvercommit;
  }

  /** What libvirt says of KEY's domain: active ones count, others (and gone VMs) do not. */
  observe(key: string, active: Resources | undefined): void {
    if (active) this.running.set(key, active);
    else this.running.delete(key);
  }

  /** Reserves room for KEY to start, or says why there is none. */
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
      if (refusal) return refusal;
    }
    this.running.set(key, need);
    return undefined;
  }
}
