// One piece of work at a time per VM (and per VMDisk) on this node: the VM's reconcile, a
// snapshot of it, a restore of it, its disks' own reconciles. A snapshot pauses or saves the
// guest and a restore stops it; without the lock the VM's reconcile would see that and
// "repair" it (resume, start) in the middle. Nobody waits for a lock: a worker that finds one
// taken is told so at once and looks again later, so a long restore never holds other
// workers (or other tenants' VMs) up.

/** What holds a lock now, for logs ("restore ns/r1"). */
export interface LockHolder {
  what: string;
  since: number;
}

/** How soon work that found its lock taken looks again. */
export const LOCK_RETRY_MS = 1000;

export class DomainLocks {
  private readonly holders = new Map<string, LockHolder>();

  /**
   * Runs WORK holding every lock of KEYS, or returns the holder of the first one taken (and
   * runs nothing). Checking and taking happen in one step, with nothing awaited between.
   */
  async tryRun<T>(
    keys: readonly string[],
    what: string,
    work: () => Promise<T>,
  ): Promise<{ done: T } | { busy: LockHolder & { key: string } }> {
    const unique = [...new Set(keys)];
    for (const key of unique) {
      const holder = this.holders.get(key);
      if (holder) return { busy: { ...holder, key } };
    }
    const mine = { what, since: Date.now() };
    for (const key of unique) this.holders.set(key, mine);
    try {
      return { done: await work() };
    } finally {
      for (const key of unique) if (this.holders.get(key) === mine) this.holders.delete(key);
    }
  }

  /** Who holds KEY's lock, if anyone. */
  holder(key: string): LockHolder | undefined {
    return this.holders.get(key);
  }
}

/** The lock of VMDisk NAMESPACE/NAME (a VM's lock is its own key). */
export function diskLockKey(namespace: string, name: string): string {
  return `vmdisk:${namespace}/${name}`;
}
