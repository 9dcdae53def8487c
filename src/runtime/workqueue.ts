// A work queue keyed by namespace/name, as controller-runtime's: duplicate keys collapse, a
// key is reconciled by one worker at a time (a key added while it runs runs again after),
// failures back off exponentially per key, and a reconcile may ask to run again later.
// A key that is backing off ignores add(): our own status and Event writes, and events of
// related objects, would otherwise retry it at once, forever. forget() (the user changed
// the object) starts it over at once.
import type { Registry } from "prom-client";
import { Counter, Gauge, Histogram } from "prom-client";

export interface ReconcileResult {
  /** Run this key again after this long, even if nothing changes (polling a shutdown, say). */
  requeueAfterMs?: number;
}

/** An error that retrying cannot fix (bad input); it is reported, not retried. */
export class TerminalError extends Error {
  override name = "TerminalError";
}

export type Reconciler = (key: string) => Promise<ReconcileResult | undefined>;

export interface WorkQueueOptions {
  concurrency?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  registry?: Registry;
  onError?: (key: string, err: unknown, failure: FailureInfo) => void;
}

export interface FailureInfo {
  /** Failures in a row for this key (1 = the first). */
  attempt: number;
  /** The same message as the previous failure of this key: say it once, then count. */
  repeated: boolean;
  /** When it runs again (undefined: a terminal error, not retried). */
  retryInMs?: number;
}

interface QueueMetrics {
  depth: Gauge;
  adds: Counter;
  latency: Histogram;
  duration: Histogram;
  total: Counter;
  errors: Counter;
}

const metricsByRegistry = new WeakMap<Registry, QueueMetrics>();

function queueMetrics(registry: Registry): QueueMetrics {
  let m = metricsByRegistry.get(registry);
  if (m) return m;
  const registers = [registry];
  m = {
    depth: new Gauge({
      name: "libvirt_operator_workqueue_depth",
      help: "Keys waiting",
      labelNames: ["controller"],
      registers,
    }),
    adds: new Counter({
      name: "libvirt_operator_workqueue_adds_total",
      help: "Keys added",
      labelNames: ["controller"],
      registers,
    }),
    latency: new Histogram({
      name: "libvirt_operator_workqueue_queue_duration_seconds",
      help: "Time a key waits before a worker takes it",
      labelNames: ["controller"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers,
    }),
    duration: new Histogram({
      name: "libvirt_operator_reconcile_duration_seconds",
      help: "Time one reconcile takes",
      labelNames: ["controller"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
      registers,
    }),
    total: new Counter({
      name: "libvirt_operator_reconcile_total",
      help: "Reconciles run",
      labelNames: ["controller"],
      registers,
    }),
    errors: new Counter({
      name: "libvirt_operator_reconcile_errors_total",
      help: "Reconciles that failed",
      labelNames: ["controller"],
      registers,
    }),
  };
  metricsByRegistry.set(registry, m);
  return m;
}

export class WorkQueue {
  private readonly name: string;
  private readonly reconcile: Reconciler;
  private readonly opts: Required<Omit<WorkQueueOptions, "registry" | "onError">> &
    Pick<WorkQueueOptions, "onError">;
  private readonly metrics?: QueueMetrics;
  /** Keys waiting, in order; each also in `dirty`. */
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly enqueuedAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly lastErrors = new Map<string, string>();
  /** forget() was called while the key ran: its failure does not count. */
  private readonly resetWhileRunning = new Set<string>();
  private readonly startedAt = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private running = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(name: string, reconcile: Reconciler, options: WorkQueueOptions = {}) {
    this.name = name;
    this.reconcile = reconcile;
    this.opts = {
      concurrency: options.concurrency ?? 4,
      baseDelayMs: options.baseDelayMs ?? 5,
      maxDelayMs: options.maxDelayMs ?? 300_000,
      onError: options.onError,
    };
    if (options.registry) this.metrics = queueMetrics(options.registry);
  }

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.stopped || this.dirty.has(key)) return;
    // Backing off: the backoff timer adds it; nothing else may shorten the wait.
    if (this.failures.has(key) && this.timers.has(key)) return;
    this.dirty.add(key);
    this.metrics?.adds.inc({ controller: this.name });
    if (!this.enqueuedAt.has(key)) this.enqueuedAt.set(key, performance.now());
    if (!this.processing.has(key)) {
      this.queue.push(key);
      this.metrics?.depth.set({ controller: this.name }, this.queue.length);
      this.pump();
    }
  }

  /** Adds KEY after DELAY; an earlier pending add-after for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /**
   * Starts KEY over: its failures are forgotten and it runs at once (the user changed the
   * object, or it was deleted; a backed-off key must not hold either).
   */
  forget(key: string): void {
    if (this.stopped) return;
    this.failures.delete(key);
    this.lastErrors.delete(key);
    const pending = this.timers.get(key);
    if (pending) {
      clearTimeout(pending.timer);
      this.timers.delete(key);
    }
    if (this.processing.has(key)) this.resetWhileRunning.add(key);
    this.add(key);
  }

  /** Keys a worker has held longer than LIMIT (a stuck call): liveness fails on them. */
  stuck(limitMs: number, now = performance.now()): string[] {
    return [...this.startedAt].filter(([, at]) => now - at > limitMs).map(([key]) => key);
  }

  /** Failures in a row of KEY (0 when its last reconcile succeeded). */
  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Stops taking keys; resolves when running reconciles have finished. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.length = 0;
    this.dirty.clear();
    await this.idle();
  }

  /** Resolves when nothing is queued or running (tests and shutdown). */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump() {
    while (!this.stopped && this.running < this.opts.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.dirty.delete(key);
      this.processing.add(key);
      this.running++;
      this.metrics?.depth.set({ controller: this.name }, this.queue.length);
      const queuedAt = this.enqueuedAt.get(key);
      this.enqueuedAt.delete(key);
      if (queuedAt !== undefined) {
        this.metrics?.latency.observe({ controller: this.name }, (performance.now() - queuedAt) / 1000);
      }
      void this.work(key);
    }
  }

  private async work(key: string) {
    const started = performance.now();
    this.startedAt.set(key, started);
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      this.lastErrors.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      this.metrics?.errors.inc({ controller: this.name });
      this.failed(key, err);
    } finally {
      this.startedAt.delete(key);
      this.resetWhileRunning.delete(key);
      this.metrics?.total.inc({ controller: this.name });
      this.metrics?.duration.observe({ controller: this.name }, (performance.now() - started) / 1000);
      this.processing.delete(key);
      this.running--;
      // Added while it ran: run it again now that the previous run is done.
      if (!this.stopped && this.dirty.has(key) && !this.queue.includes(key)) this.queue.push(key);
      this.pump();
      if (this.running === 0 && this.queue.length === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
      }
    }
  }

  private failed(key: string, err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    const repeated = this.lastErrors.get(key) === message;
    this.lastErrors.set(key, message);
    if (this.stopped) {
      this.opts.onError?.(key, err, { attempt: (this.failures.get(key) ?? 0) + 1, repeated });
      return;
    }
    if (this.resetWhileRunning.has(key)) {
      // The object changed while this attempt ran: the next attempt is a fresh one, now.
      this.failures.delete(key);
      this.opts.onError?.(key, err, { attempt: 1, repeated, retryInMs: 0 });
      this.dirty.add(key);
      return;
    }
    const attempt = (this.failures.get(key) ?? 0) + 1;
    if (err instanceof TerminalError) {
      this.failures.delete(key);
      this.opts.onError?.(key, err, { attempt, repeated });
      return;
    }
    this.failures.set(key, attempt);
    const retryInMs = this.backoff(attempt);
    this.opts.onError?.(key, err, { attempt, repeated, retryInMs });
    // Events seen while it ran (often our own status write) do not cut the wait short.
    this.dirty.delete(key);
    this.addAfter(key, retryInMs);
  }

  /** Exponential per-key backoff: base, 2×base, 4×base … up to the maximum. */
  backoff(attempt: number): number {
    return Math.min(this.opts.baseDelayMs * 2 ** (attempt - 1), this.opts.maxDelayMs);
  }
}
