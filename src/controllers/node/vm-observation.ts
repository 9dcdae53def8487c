// Pure: what the node agent observed of a VM, with what it remembers of the power requests it
// handled (kept in memory between reconciles, status as the fallback after a restart).
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { DomainState } from "../../hypervisor/libvirt/index.ts";
import { type DomainObservation, QUICK_CRASH_MS } from "./vm-decide.ts";
import type { Progress } from "./vm-progress.ts";
import type { AgentObservation } from "./vm-status.ts";

export function agentObservation(
  vm: VirtualMachine,
  memory: Progress | undefined,
  domainName: string,
  domain: DomainObservation | undefined,
  partial: Partial<AgentObservation>,
): AgentObservation {
  return {
    domainName,
    ...(domain ? { domain } : {}),
    definitionInSync: partial.definitionInSync ?? false,
    stopping: partial.stopping ?? false,
    startCount: memory?.startCount ?? vm.status?.startCount ?? 0,
    ...(partial.failure ? { failure: partial.failure } : {}),
    ...(partial.lastOperation
      ? { lastOperation: partial.lastOperation }
      : vm.status?.lastOperation
        ? { lastOperation: vm.status.lastOperation }
        : {}),
    ...((memory?.restartHandled ?? vm.status?.restartRequestHandled)
      ? { restartRequestHandled: memory?.restartHandled ?? vm.status?.restartRequestHandled }
      : {}),
    ...((memory?.powerRequestHandled ?? vm.status?.powerRequestHandled)
      ? { powerRequestHandled: memory?.powerRequestHandled ?? vm.status?.powerRequestHandled }
      : {}),
    ...((partial.refreshHandled ?? memory?.refreshHandled ?? vm.status?.refreshHandled)
      ? { refreshHandled: partial.refreshHandled ?? memory?.refreshHandled ?? vm.status?.refreshHandled }
      : {}),
    ...((memory?.guestFilesystems ?? vm.status?.guestFilesystems)
      ? { guestFilesystems: memory?.guestFilesystems ?? vm.status?.guestFilesystems }
      : {}),
    ...(partial.links ? { links: partial.links } : {}),
    ...(partial.disks ? { disks: partial.disks, storedData: partial.storedData ?? 0 } : {}),
    ...(partial.waiting ? { waiting: partial.waiting } : {}),
    ...(partial.startRefused ? { startRefused: partial.startRefused } : {}),
    ...(partial.crashLoops ? { crashLoops: partial.crashLoops } : {}),
    ...(partial.diskErrors ? { diskErrors: partial.diskErrors } : {}),
    ...((memory?.cdromBootedImage ?? vm.status?.cdromBootedImage)
      ? { cdromBootedImage: memory?.cdromBootedImage ?? vm.status?.cdromBootedImage }
      : {}),
  };
}

/** Looping: stopped soon after starts several times, and off or just started again. */
export function crashLooping(p: Progress, state: number, now: number): boolean {
  const recent = p.lastStartAt !== undefined && now - p.lastStartAt < QUICK_CRASH_MS;
  return (p.quickCrashes ?? 0) > 0 && (state === DomainState.Shutoff || recent);
}
