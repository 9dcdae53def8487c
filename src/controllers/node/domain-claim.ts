// Pure: whether a VirtualMachine takes over the domain of its name that an earlier object of
// the same name left on this node. The key of a domain is (cluster, namespace, name, UUID):
// cluster, namespace and name are in its owner record (<metadata>), the UUID is the domain's
// own. The object's UID is not in the key: a restore (Velero, GitOps) gives the object a new
// one, and the guest must run on, not start over.
import { RESTART_ANNOTATION } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { placementOf } from "../vm-placement.ts";
import { latestPowerRequest } from "./vm-decide.ts";
import type { Progress } from "./vm-progress.ts";
import { pendingFilesystemRequest } from "./vm-requests.ts";

export interface DomainSeenForClaim {
  name: string;
  uuid: string;
  /** The UID in its owner record (the object that made it). */
  recordedUid: string;
  /** The API server says the object with recordedUid is gone (undefined: not asked). */
  recordedOwnerGone: boolean | undefined;
}

export type DomainClaim =
  /** The VM's own domain. */
  | { own: true }
  /** Left by an earlier object of this key: the VM takes it, running guest and all. */
  | { adopt: string }
  /** The earlier object may still exist (the cache lags), or the controller has not given a UUID yet. */
  | { wait: true }
  /** Of this name but not this VM's: never adopted, never destroyed. */
  | { refuse: { reason: EventReason; message: string } };

export const DOMAIN_NOT_ADOPTED = Reason.DomainNotAdopted;

export function decideDomainClaim(vm: VirtualMachine, domain: DomainSeenForClaim, node: string): DomainClaim {
  if (vm.metadata.uid && domain.recordedUid === vm.metadata.uid) return { own: true };
  if (domain.recordedOwnerGone !== true) return { wait: true };
  const uuid = domain.uuid.toLowerCase();
  const specUuid = vm.spec.uuid?.toLowerCase();
  const refuse = (why: string) => ({
    refuse: {
      reason: DOMAIN_NOT_ADOPTED,
      message:
        `domain ${domain.name} on node ${node} was left by an earlier VirtualMachine of this name with UUID ${uuid}; ` +
        `${why}, so it is not taken over and is left untouched (it runs on if it ran): ` +
        `remove it from the node, or re-create this VirtualMachine with spec.uuid: ${uuid} to take it over`,
    },
  });
  if (specUuid && specUuid !== uuid) return refuse(`this VM's spec.uuid is ${specUuid}`);
  const given = placementOf(vm).uuid?.toLowerCase();
  if (!given) return { wait: true };
  if (given !== uuid) return refuse(`this VM was given UUID ${given} before the domain was found`);
  return {
    adopt: `took over domain ${domain.name} on node ${node} (UUID ${uuid}), left by an earlier VirtualMachine of this name; the guest was not restarted`,
  };
}

/**
 * Requests already in the annotations of an adopted VM came with it (restored from a backup,
 * applied again from Git): they were made for the guest it had, which runs on; only requests
 * made from now on are acted on.
 */
export function adoptedProgress(vm: VirtualMachine, progress: Progress): Progress {
  const restart = vm.metadata.annotations?.[RESTART_ANNOTATION];
  // "" is no request's tag: the latest request, whatever the status said.
  const power = latestPowerRequest(vm, "");
  const filesystems = pendingFilesystemRequest(vm, "");
  return {
    ...progress,
    ...(restart ? { restartHandled: restart } : {}),
    ...(power ? { powerRequestHandled: power.tag } : {}),
    // The guest's file systems are as the last request left them.
    ...(filesystems
      ? { guestFilesystems: { frozen: filesystems.verb === "freeze", requestHandled: filesystems.tag } }
      : {}),
  };
}
