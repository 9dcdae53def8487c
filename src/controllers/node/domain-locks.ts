// One piece of work at a time per VM on this node: the VM's reconcile, a snapshot of it, a
// restore of it. A snapshot pauses or saves the guest and a restore stops it; without the lock
// the VM's reconcile would see that and "repair" it (resume, start) in the middle.

/** What holds a VM's lock now, for logs and liveness ("snapshot ns/snap"). */
export interface LockHolder {
  what: string;
  since: number;
}

export class DomainLocks {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly holders = new Map<string, LockHolder>();

  /** Runs WORK once every earlier holder of KEY's lock is done; returns its result. */
  async run<T>(key: string, what: string, work: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    this.holders.set(key, { what, since: Date.now() });
    try {
      return await work();
    } finally {
      this.holders.delete(key);
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Runs WORK holding every lock of KEYS, taken in one order (so two callers never deadlock). */
  async runAll<T>(keys: readonly string[], what: string, work: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const step = (i: number): Promise<T> =>
      i === sorted.length ? work() : this.run(sorted[i]!, what, () => step(i + 1));
    return step(0);
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
