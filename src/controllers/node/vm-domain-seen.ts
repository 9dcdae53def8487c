// The first look of a node reconcile: this VM's domain as libvirt has it (by name), whose it is
// (the ownership record in its definition), and the VM itself when the cache lacks it.
import type { KubernetesObject } from "@kubernetes/client-node";
import { VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { type DomainOwnership, parseOwnership } from "../../hypervisor/domain/xml.ts";
import {
  type DomainRef,
  DomainXmlFlags,
  type LibvirtClient,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { type AnyObject, type Kube, readObject } from "../../runtime/kube.ts";
import { effectiveVm } from "../vm-clone.ts";
import { placedNode } from "../vm-placement.ts";

type Vm = VirtualMachine & KubernetesObject;

export interface DomainSeen {
  /** The VM to converge: the cached one, or read from the API server (then `uncached`). */
  vm?: Vm;
  uncached: boolean;
  found?: DomainRef;
  /** The persistent definition of FOUND. */
  inactiveXml?: string;
  /** FOUND's ownership record when it is this cluster's (another cluster's domain is never ours). */
  owner?: DomainOwnership;
  /** The API server has the same VM placed on another node: FOUND must be fenced. */
  placedElsewhere?: Vm & AnyObject;
}

export async function seeDomain(
  o: { kube: Kube; libvirt: LibvirtClient; nodeName: string; clusterId: string },
  domainName: string,
  cached: Vm | undefined,
): Promise<DomainSeen> {
  const found = await unlessNotFound(o.libvirt.lookupDomainByName(domainName));
  const inactiveXml = found ? await o.libvirt.domainXml(found, DomainXmlFlags.Inactive) : undefined;
  const record = inactiveXml ? parseOwnership(inactiveXml) : undefined;
  const owner = record?.cluster === o.clusterId ? record : undefined;
  const seen = { found, inactiveXml, owner, uncached: false };
  if (cached || !found || !owner) return { ...seen, vm: cached };
  // Ours, yet not in the cache (its node label removed, or the cache behind): the API server
  // says whether it is still this node's VM, so its guest is never left running.
  const current = await readObject<Vm & AnyObject>(o.kube, VirtualMachineKind, owner);
  if (current?.metadata.uid !== owner.uid) return seen;
  // The same VM placed again elsewhere while this node was confirmed gone (lost-node handling):
  // this node came back and must not run it a second time.
  if (placedNode(current) !== o.nodeName) return { ...seen, placedElsewhere: current };
  return { ...seen, vm: effectiveVm(current), uncached: true };
}
