// Pure: what a VM takes of its node's vCPUs and memory. A VM reserves them while it runs or
// should run — by its run strategy and the user's start/stop intent, as the node agent decides
// (node/vm-decide.ts shouldRun) — and while its domain still uses the host (running, paused,
// shutting down). A stopped VM reserves nothing, as in KubeVirt and oVirt: a Halted VM is
// placed on a full node (it gets its node, identity and disks) and takes no room there.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { resourcesOf } from "../../hypervisor/domain/from-spec.ts";
import { DomainState } from "../../hypervisor/libvirt/constants.ts";
import { type DomainObservation, ShutoffReason, shouldRun } from "../node/vm-decide.ts";

export interface Resources {
  cpus: number;
  memoryBytes: number;
}

export const NOTHING: Readonly<Resources> = Object.freeze({ cpus: 0, memoryBytes: 0 });

/** Domain states (status.hypervisorStatus) in which QEMU still holds the guest's vCPUs and memory. */
const ON_HOST: ReadonlySet<string> = new Set([
  "RUNNING",
  "BLOCKED",
  "PAUSED",
  "SHUTDOWN",
  "PMSUSPENDED",
  "CRASHED",
]);
/** What the agent says of a domain on its way up, up, or on its way down. */
const UNDER_WAY: ReadonlySet<string> = new Set(["Starting", "Running", "Paused", "Stopping", "Migrating"]);

/**
 * The domain as the agent last reported it, as far as shouldRun looks: a shut-off domain the
 * agent called Stopped is one it decided not to start again (RerunOnFailure: the guest powered
 * itself off); its reason is not in status otherwise.
 */
function reportedDomain(vm: VirtualMachine): DomainObservation | undefined {
  if (vm.status?.hypervisorStatus !== "HALTED") return undefined;
  const reason = vm.status.printableStatus === "Stopped" ? ShutoffReason.Shutdown : ShutoffReason.Unknown;
  return { state: DomainState.Shutoff, reason, id: -1 };
}

/** VM takes room on its node: it should run, or its domain still runs (or starts, or stops). */
export function reservesCapacity(vm: VirtualMachine): boolean {
  const s = vm.status;
  if (ON_HOST.has(s?.hypervisorStatus ?? "") || UNDER_WAY.has(s?.printableStatus ?? "")) return true;
  return shouldRun(vm, reportedDomain(vm));
}

/** What VM takes of a node: its vCPUs and memory while it reserves capacity, else nothing. */
export function capacityNeed(vm: VirtualMachine): Resources {
  return reservesCapacity(vm) ? resourcesOf(vm) : { ...NOTHING };
}
