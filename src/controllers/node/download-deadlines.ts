// Deadlines of an http(s) image download: the response headers must come within a bound, and
// the body must keep a minimum throughput. Throughput is measured only over the time spent
// waiting for the server: while the consumer (the libvirt upload) holds back, the bytes wait
// in socket buffers and that pause is ours, not the server's.

/** From sending a request to its response headers, per redirect hop. */
export const IMAGE_HEADERS_TIMEOUT_MS = 30_000;
/**
 * Fewer than IMAGE_MIN_BYTES_PER_WINDOW bytes in IMAGE_THROUGHPUT_WINDOW_MS of waiting fails the
 * download: about 17 KiB/s sustained for a minute, where a 1 GiB image would take 17 hours.
 * Well below any mirror's pace, well above a dead or trickling peer.
 */
export const IMAGE_MIN_BYTES_PER_WINDOW = 1024 * 1024;
export const IMAGE_THROUGHPUT_WINDOW_MS = 60_000;

export interface DownloadDeadlines {
  headersTimeoutMs: number;
  minBytesPerWindow: number;
  windowMs: number;
}

export const DEFAULT_DOWNLOAD_DEADLINES: Readonly<DownloadDeadlines> = {
  headersTimeoutMs: IMAGE_HEADERS_TIMEOUT_MS,
  minBytesPerWindow: IMAGE_MIN_BYTES_PER_WINDOW,
  windowMs: IMAGE_THROUGHPUT_WINDOW_MS,
};

export function formatBytes(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30} GiB`;
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

export function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * A sliding window over "waiting time": a clock that runs only between startWait() and
 * endWait(), and the bytes each wait brought. Pure but for Date.now (injectable).
 */
export class ThroughputWindow {
  private waitedMs = 0;
  private waitStartedAt?: number;
  /** Arrivals within the last window, by wait-clock time. */
  private readonly arrivals: { at: number; bytes: number }[] = [];
  private readonly limits: DownloadDeadlines;
  private readonly now: () => number;

  constructor(limits: DownloadDeadlines, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  /** Milliseconds spent waiting for the server so far. */
  clock(): number {
    return this.waitedMs + (this.waitStartedAt === undefined ? 0 : this.now() - this.waitStartedAt);
  }

  startWait() {
    this.waitStartedAt ??= this.now();
  }

  endWait(bytes: number) {
    if (this.waitStartedAt === undefined) return;
    this.waitedMs += this.now() - this.waitStartedAt;
    this.waitStartedAt = undefined;
    if (bytes > 0) this.arrivals.push({ at: this.waitedMs, bytes });
  }

  /** True once a full window of waiting brought fewer than the minimum bytes. */
  stalled(): boolean {
    const { windowMs, minBytesPerWindow } = this.limits;
    if (windowMs <= 0 || minBytesPerWindow <= 0) return false;
    const clock = this.clock();
    if (clock < windowMs) return false;
    while (this.arrivals.length > 0 && this.arrivals[0]!.at <= clock - windowMs) this.arrivals.shift();
    const bytes = this.arrivals.reduce((sum, a) => sum + a.bytes, 0);
    return bytes < minBytesPerWindow;
  }
}

export interface StallWatch {
  url: string;
  /** The image's length when known (for the message). */
  length?: number;
  /** The error to fail with (the caller's kind, so reconcilers classify it as theirs). */
  error: (message: string) => Error;
  /** Called with that error: should make the pending read fail (abort the request). */
  abort: (error: Error) => void;
}

/**
 * Yields SOURCE's chunks. While a read waits for the server it checks the window; when the
 * window stalled it aborts the request and fails with a clear error, whatever the aborted read
 * then throws.
 */
export async function* withThroughputDeadline(
  source: AsyncIterator<Uint8Array>,
  limits: DownloadDeadlines,
  watch: StallWatch,
): AsyncGenerator<Uint8Array, void, undefined> {
  const window = new ThroughputWindow(limits);
  let failure: Error | undefined;
  let received = 0;
  const check = () => {
    if (failure || !window.stalled()) return;
    failure = watch.error(
      `image download stalled: less than ${formatBytes(limits.minBytesPerWindow)} in ` +
        `${formatSeconds(limits.windowMs)} from ${watch.url} ` +
        `(${received}${watch.length === undefined ? "" : ` of ${watch.length}`} bytes so far)`,
    );
    watch.abort(failure);
  };
  // Checked on every arrival (a trickle of small chunks), and by a timer for a read that waits
  // long (silence). Between reads the clock stands still, so the timer finds nothing new there.
  const timer = setInterval(check, Math.min(1000, Math.max(20, limits.windowMs / 10)));
  timer.unref();
  try {
    for (;;) {
      window.startWait();
      let next: IteratorResult<Uint8Array>;
      try {
        next = await source.next();
      } catch (err) {
        throw failure ?? err;
      }
      if (failure) throw failure;
      window.endWait(next.done ? 0 : next.value.byteLength);
      if (next.done) return;
      received += next.value.byteLength;
      check();
      if (failure) throw failure;
      yield next.value;
    }
  } finally {
    clearInterval(timer);
    await source.return?.()?.catch(() => undefined);
  }
}
