// The domain of a VM, only when it is ours: named <namespace>_<name> and carrying, in its
// definition, this cluster's identity and the VM's UID. A domain of another cluster sharing
// the host, made by hand, or left by an earlier VM of the same name is never snapshotted,
// saved, stopped or rolled back.
import { domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import { parseOwnership } from "../../hypervisor/domain/xml.ts";
import {
  type DomainRef,
  DomainXmlFlags,
  type LibvirtClient,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";

export type OwnedDomain = { dom: DomainRef } | { missing: true } | { foreign: string };

export async function ownedDomain(
  libvirt: LibvirtClient,
  clusterId: string,
  namespace: string,
  name: string,
  vmUID: string,
): Promise<OwnedDomain> {
  const dom = await unlessNotFound(libvirt.lookupDomainByName(domainNameOf(namespace, name)));
  if (!dom) return { missing: true };
  const xml = await unlessNotFound(libvirt.domainXml(dom, DomainXmlFlags.Inactive));
  if (!xml) return { missing: true };
  const owner = parseOwnership(xml);
  if (owner?.cluster !== clusterId || owner.uid !== vmUID)
    return {
      foreign: `the domain ${dom.name} on this node is not this VM's (another cluster's, made by hand, or an earlier VM's of the same name)`,
    };
  return { dom };
}
