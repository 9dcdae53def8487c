// libvirt lifecycle events the node VM reconciler caused itself (it defined, started, destroyed
// or undefined the domain): the reconcile that acted looked at the domain after acting, so their
// echo wakes no second reconcile (a new VM cost three reconciles where one does). Any event not expected —
// a crash, a stop, a start or definition by someone else — wakes the VM's reconcile as before.
// After controller-runtime's "expectations".

/** Longer than any event takes to come back; an expectation never met is forgotten after it. */
const EXPECTED_FOR_MS = 10_000;
/** Domains with expectations before the ones never met are swept out. */
const SWEEP_AT = 256;

export class CausedEvents {
  private readonly expected = new Map<string, Array<{ event: number; until: number }>>();

  /** DOMAIN is about to get EVENT (libvirt's DomainEventType) from our own call. */
  expect(domain: string, event: number, now = Date.now()): void {
    if (this.expected.size >= SWEEP_AT) this.sweep(now);
    const live = (this.expected.get(domain) ?? []).filter((e) => e.until > now);
    live.push({ event, until: now + EXPECTED_FOR_MS });
    this.expected.set(domain, live);
  }

  /** libvirt came back: what was expected of the connection before may never come. */
  clear(): void {
    this.expected.clear();
  }

  /** Forgets expectations never met (an event lost with its connection). */
  private sweep(now: number): void {
    for (const [domain, list] of this.expected)
      if (list.every((e) => e.until <= now)) this.expected.delete(domain);
  }

  /** The call failed: the event will not come, and one like it from elsewhere must count. */
  unexpect(domain: string, event: number): void {
    const left = (this.expected.get(domain) ?? []).filter((e) => e.event !== event);
    if (left.length) this.expected.set(domain, left);
    else this.expected.delete(domain);
  }

  /** Whether EVENT of DOMAIN was expected (then it is expected no more). */
  consume(domain: string, event: number, now = Date.now()): boolean {
    const list = this.expected.get(domain);
    if (!list) return false;
    const live = list.filter((e) => e.until > now);
    const at = live.findIndex((e) => e.event === event);
    if (at >= 0) live.splice(at, 1);
    if (live.length) this.expected.set(domain, live);
    else this.expected.delete(domain);
    return at >= 0;
  }

  /** What ACT (a libvirt call causing EVENT of DOMAIN) returns, the event expected while it runs. */
  async around<T>(domain: string, event: number, act: () => Promise<T>): Promise<T> {
    this.expect(domain, event);
    try {
      return await act();
    } catch (err) {
      this.unexpect(domain, event);
      throw err;
    }
  }
}

/** ACT (a libvirt call causing EVENT of DOMAIN), the event expected in CAUSED while it runs, if given. */
export function causing<T>(
  caused: CausedEvents | undefined,
  domain: string,
  event: number,
  act: () => Promise<T>,
): Promise<T> {
  return caused ? caused.around(domain, event, act) : act();
}
