// The node's room (node-room.ts) kept to libvirt's word: every domain's lifecycle event, ours
// or not, re-reads what that domain takes, and a new connection re-reads them all. So a guest
// counts with the vCPUs and memory it runs with (not a spec changed since), a start that
// failed after QEMU came up still counts, and domains someone else started count too.
import type { Logger } from "pino";
import {
  type DomainRef,
  DomainState,
  type LibvirtClient,
  type LifecycleEvent,
  ListDomains,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import type { NodeRoom, Resources } from "./node-room.ts";

const isActive = (state: number) => state !== DomainState.Shutoff && state !== DomainState.Crashed;

/** What DOM takes while it runs, or undefined when it does not run (or is gone). */
export async function liveResources(
  libvirt: LibvirtClient,
  dom: DomainRef | undefined,
): Promise<Resources | undefined> {
  if (!dom) return undefined;
  const info = await unlessNotFound(libvirt.domainInfo(dom));
  return info && isActive(info.state) ? { cpus: info.vcpus, memoryBytes: info.maxMemKiB * 1024 } : undefined;
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

/** Counts what runs now, then follows libvirt's events (and reconnections) for as long as it lives. */
export async function keepRoomCurrent(room: NodeRoom, libvirt: LibvirtClient, log: Logger): Promise<void> {
  room.reset(await activeDomains(libvirt));
  libvirt.on("lifecycle", (e: LifecycleEvent) => {
    liveResources(libvirt, e.domain)
      .then((r) => room.observe(e.domain.name, r))
      .catch((err: Error) => log.warn({ domain: e.domain.name, err: err.message }, "room: domain not read"));
  });
  libvirt.on("reconnected", () => {
    activeDomains(libvirt)
      .then((active) => room.reset(active))
      .catch((err: Error) => log.warn({ err: err.message }, "room: domains not read after reconnecting"));
  });
}
