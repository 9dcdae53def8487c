// The node agent's own check that a VM's UUID and MACs are its alone before its domain is
// defined: against the VMs placed on this node (the same rule as the controller's, see
// vm-identities.ts) and against the domains libvirt already has here — another VM's, an
// orphan still being removed, another cluster's or an admin's own. A duplicate UUID would
// otherwise surface as libvirt's raw error, and a duplicate MAC would silently break both guests.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import { parseOwnership } from "../../hypervisor/domain/xml.ts";
import {
  DomainEventType,
  type DomainRef,
  DomainXmlFlags,
  type LibvirtClient,
  type LifecycleEvent,
  unlessNotFound,
  uuidFromString,
} from "../../hypervisor/libvirt/index.ts";
import type { Refusal } from "../tenant-policy.ts";
import {
  claimedIdentities,
  describeHolder,
  type Identity,
  identityRefusal,
  inUseRefusal,
} from "../vm-identities.ts";
import { CausedEvents } from "./caused-events.ts";
import { DomainDefinitions } from "./domain-definitions.ts";

export interface NodeIdentityContext {
  /** UID of the cluster's kube-system namespace, as in the domains' owner records. */
  clusterId: string;
  nodeName: string;
  /**
   * The VMs placed on this node that hold an identity or an address VM wants (the agent's cache,
   * by its index: node-vm-index.ts); VM itself may be among them.
   */
  vmsSharing(vm: VirtualMachine): ReadonlyArray<VirtualMachine>;
  /** Whether the VM NAMESPACE/NAME is placed on this node (the agent's cache). */
  placedHere(namespace: string, name: string): boolean;
  /** Domains on this node, other than VM's own, using one of CLAIMS: the first one found. */
  domainHolding(vm: VirtualMachine, claims: readonly Identity[]): Promise<DomainHolder | undefined>;
  /** Runs DEFINE, our own define of NAME as XML, so that what it defines is known here unread. */
  defining?(name: string, xml: string, define: () => Promise<DomainRef>): Promise<DomainRef>;
}

export interface DomainHolder {
  claim: Identity;
  /** The domain's owner record, when the operator of some cluster defined it. */
  owner?: { cluster: string; namespace: string; name: string };
}

/** Pure: the MAC addresses in a domain's XML (lower case). */
export function domainMacs(xml: string): string[] {
  return [...xml.matchAll(/<mac\s+address=['"]([0-9a-fA-F:]{17})['"]/g)].map((m) => m[1]!.toLowerCase());
}

/** Pure: the refusal for a domain holding one of VM's identities, naming no other tenant. */
export function domainHolderRefusal(
  vm: VirtualMachine,
  holder: DomainHolder,
  clusterId: string,
  node: string,
): Refusal {
  const ours = holder.owner?.cluster === clusterId ? holder.owner : undefined;
  const where = ours
    ? describeHolder(vm, ours.namespace, ours.name)
    : `in use by a libvirt domain on node ${node} that this operator does not manage here`;
  return inUseRefusal(holder.claim, where);
}

/**
 * Refusal when another VM placed here holds one of VM's identities first, or a domain here
 * that belongs to no VM in the cache already uses one (VMs in the cache are judged by the rule
 * above, so a holder's domain never makes the holder itself yield).
 */
export async function nodeIdentityRefusal(
  vm: VirtualMachine,
  ctx: NodeIdentityContext,
): Promise<Refusal | undefined> {
  const refused = identityRefusal(vm, ctx.vmsSharing(vm));
  if (refused) return refused;
  const claims = claimedIdentities(vm);
  if (!claims.length) return undefined;
  const holder = await ctx.domainHolding(vm, claims);
  if (!holder) return undefined;
  const inCache =
    holder.owner?.cluster === ctx.clusterId && ctx.placedHere(holder.owner.namespace, holder.owner.name);
  return inCache ? undefined : domainHolderRefusal(vm, holder, ctx.clusterId, ctx.nodeName);
}

/** VMs found clear, kept at most. */
const CLEAR_KEPT = 16_384;

/** What an identity check needs of a domain's definition. */
interface DefinitionFacts {
  macs: ReadonlySet<string>;
  owner?: DomainHolder["owner"];
}

function definitionFacts(xml: string): DefinitionFacts {
  const o = parseOwnership(xml);
  return {
    macs: new Set(domainMacs(xml)),
    ...(o ? { owner: { cluster: o.cluster, namespace: o.namespace, name: o.name } } : {}),
  };
}

/**
 * domainHolding (and defining) on a libvirt connection. The MAC search looks at every other
 * domain's definition, kept between searches (domain-definitions.ts: read again when libvirt says
 * a domain changed, but not after our own define, whose definition we wrote), and a VM found
 * clear is not searched again until its identities change.
 */
export function libvirtDomainHolding(
  libvirt: LibvirtClient,
): Required<Pick<NodeIdentityContext, "domainHolding" | "defining">> {
  const clear = new Map<string, string>();
  const definitions = new DomainDefinitions({
    source: {
      list: () => libvirt.listAllDomains(),
      lookup: (name) => unlessNotFound(libvirt.lookupDomainByName(name)),
      read: (dom) => unlessNotFound(libvirt.domainXml(dom, DomainXmlFlags.Inactive)),
    },
    digest: definitionFacts,
  });
  // A definition written or removed changes it, and so does a stop (a transient domain made
  // again under its name and UUID, or gone); a start may make a new (transient) domain.
  const changesDefinition = new Set<number>([
    DomainEventType.Defined,
    DomainEventType.Undefined,
    DomainEventType.Stopped,
  ]);
  const ownDefines = new CausedEvents();
  libvirt.on("lifecycle", (e: LifecycleEvent) => {
    // The echo of our own define: what it defined is known already (defining).
    if (e.event === DomainEventType.Defined && ownDefines.consume(e.domain.name, e.event)) return;
    if (changesDefinition.has(e.event)) definitions.forget(e.domain.name);
    else if (e.event === DomainEventType.Started) definitions.started(e.domain.name);
  });
  libvirt.on("deviceRemoved", (e: { domain: DomainRef }) => definitions.forget(e.domain.name));
  // While libvirt is away nothing is known (events are missed), and a VM found clear then is
  // searched again after.
  const unknown = () => {
    ownDefines.clear();
    definitions.forgetAll();
    clear.clear();
  };
  libvirt.on("disconnected", unknown);
  libvirt.on("reconnected", unknown);
  const defining = async (name: string, xml: string, define: () => Promise<DomainRef>) => {
    try {
      const dom = await ownDefines.around(name, DomainEventType.Defined, define);
      definitions.remember(dom, xml);
      return dom;
    } catch (err) {
      // libvirt may have defined it all the same (a deadline passed), its event taken as ours.
      definitions.forget(name);
      throw err;
    }
  };
  const domainHolding: NodeIdentityContext["domainHolding"] = async (vm, claims) => {
    const namespace = vm.metadata.namespace ?? "default";
    const own = domainNameOf(namespace, vm.metadata.name);
    const key = `${namespace}/${vm.metadata.name}`;
    const signature = JSON.stringify([vm.metadata.uid, claims.map((c) => `${c.kind}=${c.value}`).sort()]);
    if (clear.get(key) === signature) return undefined;
    const uuid = claims.find((c) => c.kind === "uuid");
    const macs = claims.filter((c) => c.kind === "mac");
    if (macs.length) {
      // The domains known (domain-definitions.ts) answer both: the UUIDs from their references,
      // the MACs from their definitions.
      const others = (await definitions.all()).filter(({ dom }) => dom.name !== own);
      const wanted = uuid && uuidFromString(uuid.value);
      const sameUuid = wanted && others.find(({ dom }) => Buffer.from(dom.uuid).equals(wanted));
      if (uuid && sameUuid)
        return { claim: uuid, ...(sameUuid.facts.owner ? { owner: sameUuid.facts.owner } : {}) };
      for (const { facts } of others) {
        const claim = macs.find((c) => facts.macs.has(c.value));
        if (claim) return { claim, ...(facts.owner ? { owner: facts.owner } : {}) };
      }
    } else if (uuid) {
      const dom = await unlessNotFound(libvirt.lookupDomainByUuid(uuid.value));
      if (dom && dom.name !== own) {
        const xml = await unlessNotFound(libvirt.domainXml(dom, DomainXmlFlags.Inactive));
        const owner = xml ? definitionFacts(xml).owner : undefined;
        return { claim: uuid, ...(owner ? { owner } : {}) };
      }
    }
    if (clear.size >= CLEAR_KEPT) clear.clear(); // VMs deleted long ago are searched again if they come back
    clear.set(key, signature);
    return undefined;
  };
  return { domainHolding, defining };
}
