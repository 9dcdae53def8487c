// The node agent's own judgement of a VM before anything reaches libvirt: the agent acts only
// on what it checked itself, never on the controller's word alone (a forged or stale object
// would otherwise reach the host). A refusal changes nothing in libvirt; the reconciler reports
// it as a Failure condition and one Warning Event.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { desiredInterfaces } from "../../hypervisor/domain/from-spec.ts";
import { type DhcpHost, sameDhcpHost } from "../../hypervisor/network.ts";
import { ADMITTED_CONDITION } from "../cluster/vm-admission.ts";
import { findCondition } from "../conditions.ts";
import { isEventReason, Reason } from "../event-reasons.ts";
import { networkRefusal, type Refusal, type TenantPolicy } from "../tenant-policy.ts";
import { addressConflicts, addressRefusal } from "./address-claims.ts";
import { type NodeIdentityContext, nodeIdentityRefusal } from "./vm-identity-check.ts";
import { type MediaContext, type ResolvedMedia, resolveVmMedia } from "./vm-media.ts";

export interface NodeAdmissionContext {
  /** The tenant policy of a namespace (its annotations over the cluster defaults). */
  policyOf(namespace: string): TenantPolicy;
  /** Media directories, the places host paths never reach, and where CD-ROM VMDisks are. */
  media: MediaContext;
  /** The VMs placed here and libvirt's domains: whether a UUID or MAC is already taken. */
  identities: NodeIdentityContext;
  /** The DHCP entries libvirt holds on NETWORK (undefined: no such network here). */
  dhcpHosts(network: string): Promise<readonly DhcpHost[] | undefined>;
}

/** What the checks resolved, to be used as resolved (no second lookup between check and use). */
export interface Admitted {
  /** CD-ROM medium, kernel and initrd as checked: the paths the domain gets. */
  media: ResolvedMedia;
}

export type Admission = { admitted: Admitted } | { refused: Refusal };

export async function admitOnNode(vm: VirtualMachine, ctx: NodeAdmissionContext): Promise<Admission> {
  const namespace = vm.metadata.namespace ?? "default";
  // The controller judged what only it can see (the whole cluster): its refusal of this
  // generation stands here too.
  const judged = findCondition(vm.status?.conditions, ADMITTED_CONDITION);
  if (judged?.status === "False" && judged.observedGeneration === vm.metadata.generation)
    return {
      refused: {
        field: "",
        reason: isEventReason(judged.reason) ? judged.reason : Reason.NotAdmitted,
        message: judged.message,
      },
    };
  const policy = ctx.policyOf(namespace);
  const network = networkRefusal(
    desiredInterfaces(vm).filter((i) => i.plugged),
    policy,
  );
  if (network) return { refused: network };
  // Both only read (libvirt, the file system): asked side by side, on the start's hot path.
  // An identity refusal still comes first, even when the media lookup failed meanwhile.
  const [identity, resolved] = await Promise.allSettled([
    nodeIdentityRefusal(vm, ctx.identities),
    resolveVmMedia(vm, ctx.media),
  ]);
  if (identity.status === "rejected") throw identity.reason;
  if (identity.value) return { refused: identity.value };
  const address = await nodeAddressRefusal(vm, ctx);
  if (address) return { refused: address };
  if (resolved.status === "rejected") throw resolved.reason;
  const media = resolved.value;
  if ("refused" in media) return media;
  return { admitted: { media: media.media } };
}

/** An address VM was given that another VM on this node holds first (address-claims.ts). */
async function nodeAddressRefusal(
  vm: VirtualMachine,
  ctx: NodeAdmissionContext,
): Promise<Refusal | undefined> {
  const conflicts = addressConflicts(vm, ctx.identities.vmsSharing(vm));
  if (!conflicts.length) return undefined;
  // Only when two VMs were given one address: which reservations libvirt has now.
  const networks = [...new Set(conflicts.map((c) => c.mine.network))];
  const held = new Map(
    await Promise.all(networks.map(async (n) => [n, (await ctx.dhcpHosts(n)) ?? []] as const)),
  );
  return addressRefusal(vm, conflicts, (r) =>
    (held.get(r.network) ?? []).some((h) => sameDhcpHost(h, r.host)),
  );
}
