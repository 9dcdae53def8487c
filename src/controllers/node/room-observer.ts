// The node's room (node-room.ts) kept to libvirt's word: every lifecycle event of a domain
// (ours or not) that can change what runs re-reads what that domain takes, and a new
// connection re-reads them all. So a guest counts with the vCPUs and memory it runs with (not a
// spec changed since), a start that failed after QEMU came up still counts, and domains someone
// else started count too.
import type { Logger } from "pino";
import {
  DomainEventType,
  type DomainRef,
  DomainState,
  isActiveState,
  type LibvirtClient,
  type LifecycleEvent,
  ListDomains,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import type { NodeRoom, Resources } from "./node-room.ts";

/** What DOM takes while it runs, or undefined when it does not run (or is gone). */
export async function liveResources(
  libvirt: LibvirtClient,
  dom: DomainRef | undefined,
): Promise<Resources | undefined> {
  return dom ? taken(await unlessNotFound(libvirt.domainInfo(dom))) : undefined;
}

/** What a domain of INFO takes while it runs; undefined when it does not run. */
function taken(info: Awaited<ReturnType<LibvirtClient["domainInfo"]>> | undefined): Resources | undefined {
  return info && isActiveState(info.state)
    ? { cpus: info.vcpus, memoryBytes: info.maxMemKiB * 1024 }
    : undefined;
}

/**
 * What a start (or a save and restore) of DOM left running, for settle: what libvirt says, or
 * NEED when libvirt cannot be asked now (counted as running; its next event or reconcile mends it).
 */
export async function afterStart(
  libvirt: LibvirtClient,
  dom: DomainRef | undefined,
  need: Resources,
): Promise<Resources | undefined> {
  return (await afterStartSeen(libvirt, dom, need)).resources;
}

/** afterStart, and whether libvirt said the guest runs: then its state needs no other call. */
export async function afterStartSeen(
  libvirt: LibvirtClient,
  dom: DomainRef | undefined,
  need: Resources,
): Promise<{ resources?: Resources; running: boolean }> {
  if (!dom) return { running: false };
  try {
    const info = await unlessNotFound(libvirt.domainInfo(dom));
    const resources = taken(info);
    return { ...(resources ? { resources } : {}), running: info?.state === DomainState.Running };
  } catch {
    return { resources: need, running: false };
  }
}

/** Every active domain of the host, by name, with what it takes. */
async function activeDomains(libvirt: LibvirtClient): Promise<Map<string, Resources>> {
  const active = new Map<string, Resources>();
  for (const dom of await libvirt.listAllDomains(ListDomains.Active)) {
    const r = await liveResources(libvirt, dom);
    if (r) active.set(dom.name, r);
  }
  return active;
}

/** Counts again everything libvirt runs now (what changed while listing keeps its newer count). */
export async function resyncRoom(room: NodeRoom, libvirt: LibvirtClient): Promise<void> {
  const mark = room.mark();
  room.reset(await activeDomains(libvirt), mark);
}

/** A full recount this often mends what a lost event left wrong. */
const RESYNC_MS = 5 * 60_000;

/** Follows libvirt's events (and reconnections) for as long as the agent lives; SIGNAL ends the recounts. */
export function keepRoomCurrent(
  room: NodeRoom,
  libvirt: LibvirtClient,
  log: Logger,
  signal?: AbortSignal,
): void {
  // One recount at a time; asks while one runs make one more after it (a burst of failed reads is one).
  let running: Promise<void> | undefined;
  let again = false;
  const resync = (why: string): void => {
    if (running) {
      again = true;
      return;
    }
    running = resyncRoom(room, libvirt)
      .catch((err: Error) => log.warn({ err: err.message, why }, "room: domains not read"))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          resync(why);
        }
      });
  };
  // Per domain, the last event whose read is under way: an older read answering late (a guest
  // started, then stopped before its read came back) does not overwrite what a newer event said.
  const lastHeard = new Map<string, number>();
  let heard = 0;
  libvirt.on("lifecycle", (e: LifecycleEvent) => {
    // A definition written or removed leaves a running guest as it runs and starts none: what
    // runs is unchanged (a third of the reads a new VM cost, half of a deleted one's).
    if (e.event === DomainEventType.Defined || e.event === DomainEventType.Undefined) return;
    const name = e.domain.name;
    // A stopped domain runs no more, whatever stopped it: nothing to ask (one read per stop and
    // deletion). A start after it has its own event, read as it comes.
    if (e.event === DomainEventType.Stopped) {
      lastHeard.delete(name);
      room.observe(name, undefined);
      return;
    }
    const mine = ++heard;
    lastHeard.set(name, mine);
    liveResources(libvirt, e.domain)
      .then((r) => {
        if (lastHeard.get(name) !== mine) return;
        lastHeard.delete(name);
        room.observe(name, r);
      })
      .catch((err: Error) => {
        if (lastHeard.get(name) === mine) lastHeard.delete(name);
        log.warn({ domain: name, err: err.message }, "room: domain not read; counting all again");
        resync("an event's domain could not be read");
      });
  });
  libvirt.on("reconnected", () => resync("reconnected"));
  const timer = setInterval(() => resync("periodic"), RESYNC_MS);
  timer.unref();
  signal?.addEventListener("abort", () => clearInterval(timer));
}
