// Pure: the controller's judgement of a VM before it is placed (and again on every change):
// what only the cluster-wide view can tell, and the tenant rules the node agent checks again.
// A refusal is reported as the Admitted=False condition; the agent refuses that generation too.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import { networkRefusal, type Refusal, type TenantPolicy } from "../tenant-policy.ts";
import { type HoldersOf, identityRefusalFrom } from "../vm-identities.ts";

/** False while the controller refuses the VM; True once a refused VM is fixed; absent if never refused. */
export const ADMITTED_CONDITION = "Admitted";

export interface ClusterAdmissionContext {
  policy: TenantPolicy;
  /** Who in the cluster (the informer's view, vm-index.ts) already holds a MAC or UUID. */
  holdersOf: HoldersOf;
}

export function clusterRefusal(vm: VirtualMachine, ctx: ClusterAdmissionContext): Refusal | undefined {
  return (
    networkRefusal(
      desiredInterfaces(vm).filter((i) => i.plugged),
      ctx.policy,
    ) ?? identityRefusalFrom(vm, ctx.holdersOf)
  );
}
