// The controller's view of every VM, kept up to date one VM at a time from the VM informer's
// events, so that a reconcile looks up what it needs instead of walking the fleet (whose cost
// would grow with the square of it): who holds each UUID and MAC, what each node has
// allocated, the MACs and addresses in use per network, and which VMs an event wakes — those
// waiting for an identity or a node, clones of a snapshot, VMs of a template, users of a disk.
// Each VM is indexed as it runs (effectiveVm: a clone with the hardware it took).
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { resourcesOf } from "../../hypervisor/domain/from-spec.ts";
import { canonicalIp } from "../../hypervisor/network.ts";
import { keyOf } from "../../runtime/kube.ts";
import type { Watchable } from "../../runtime/watch.ts";
import { effectiveVm } from "../vm-clone.ts";
import {
  createdAt,
  heldIdentities,
  type Identity,
  type IdentityHolder,
  waitsForIdentity,
} from "../vm-identities.ts";
import { placementOf } from "../vm-placement.ts";
import { diskNamesOf } from "./disk-placement.ts";
import { KeyIndex } from "./key-index.ts";
import { waitsForRoom } from "./room-move.ts";
import { snapshotOfCloneToBe } from "./snapshot-uses.ts";
import { NOTHING, type Resources, reservesCapacity } from "./vm-reservation.ts";

type Vm = VirtualMachine & KubernetesObject;

interface Entry {
  holder: Omit<IdentityHolder, "assigned">;
  /** "kind value" of each identity held → whether it is in status (the first hold of it counts). */
  identities: Map<string, boolean>;
  /** The node it is placed on (vm-placement.ts). */
  node?: string;
  /** What it reserves on NODE (vm-reservation.ts), when it does. */
  reserved?: Resources;
}

const identityKey = (kind: string, value: string) => `${kind} ${value}`;
/** One address (spelled as canonicalIp spells it) on one network. */
export const addressKey = (network: string, ip: string) => `${network} ${ip}`;

export class VmIndex {
  private readonly entries = new Map<string, Entry>();
  private readonly identities = new KeyIndex();
  private readonly macs = new KeyIndex();
  private readonly addresses = new KeyIndex((key) => {
    for (const listener of this.addressReleased) listener(key);
  });
  private readonly addressReleased: Array<(addressKey: string) => void> = [];
  private readonly allocated = new Map<string, Resources>();
  private readonly waiting = new Set<string>();
  private readonly unplaced = new Set<string>();
  /** Placed, and refused a start by their node's agent for lack of room. */
  private readonly forRoom = new Set<string>();
  /** "namespace/snapshot" of clones not made yet. */
  private readonly clones = new KeyIndex();
  /** "namespace/template" of VMs that have not taken from it yet. */
  private readonly fromTemplate = new KeyIndex();
  /** "namespace/disk" of every VMDisk a VM names. */
  private readonly diskNames = new KeyIndex();
  /** Volume paths attached to a VM's domain (status.disks). */
  private readonly attachedPaths = new KeyIndex();
  private readonly roomFreed: Array<(node: string) => void> = [];

  /** Keep up with INFORMER: subscribe before anything that reads the index on its events. */
  watch(informer: Watchable<Vm>): this {
    for (const verb of ["add", "update"] as const) informer.on(verb, (vm) => this.observe(vm));
    informer.on("delete", (vm) => this.forget(keyOf(vm)));
    return this;
  }

  /** LISTENER hears of every node where a VM stopped reserving (deleted, stopped, moved). */
  onRoomFreed(listener: (node: string) => void): void {
    this.roomFreed.push(listener);
  }

  /** RAW as the cache has it now (added or changed). */
  observe(raw: Vm): void {
    const vm = effectiveVm(raw);
    const key = keyOf(vm);
    const ns = vm.metadata.namespace ?? "";
    const held = new Map<string, boolean>();
    for (const h of heldIdentities(vm)) {
      const k = identityKey(h.kind, h.value);
      if (!held.has(k)) held.set(k, h.assigned);
    }
    const placement = placementOf(vm);
    const node = placement.nodeName;
    const entry: Entry = {
      holder: { namespace: ns, name: vm.metadata.name ?? "", createdAt: createdAt(vm) },
      identities: held,
      ...(node ? { node } : {}),
      ...(node && reservesCapacity(vm) ? { reserved: resourcesOf(vm) } : {}),
    };
    this.reserve(this.entries.get(key), entry);
    this.entries.set(key, entry);
    this.identities.set(key, held.keys());
    const placedNics = placement.interfaces;
    this.macs.set(key, [
      ...placedNics.flatMap((i) => (i.mac ? [i.mac.toLowerCase()] : [])),
      ...(vm.spec.interfaces ?? []).flatMap((i) => (i.macAddress ? [i.macAddress.toLowerCase()] : [])),
    ]);
    this.addresses.set(
      key,
      placedNics.flatMap(({ network, ipv4, ipv6 }) =>
        network ? [ipv4, ipv6].flatMap((ip) => (ip ? [addressKey(network, canonicalIp(ip))] : [])) : [],
      ),
    );
    toggle(this.waiting, key, waitsForIdentity(vm, "Admitted"));
    toggle(this.unplaced, key, !node && !vm.metadata.deletionTimestamp);
    toggle(this.forRoom, key, Boolean(node) && waitsForRoom(vm, node ?? ""));
    const snapshot = snapshotOfCloneToBe(vm);
    this.clones.set(key, snapshot ? [`${ns}/${snapshot}`] : []);
    const template = vm.spec.source?.template;
    this.fromTemplate.set(key, template && !vm.status?.template ? [`${ns}/${template}`] : []);
    this.diskNames.set(
      key,
      diskNamesOf(vm).map((d) => `${ns}/${d}`),
    );
    this.attachedPaths.set(
      key,
      (vm.status?.disks ?? []).flatMap((d) => (d.path ? [d.path] : [])),
    );
  }

  /** The VM of KEY is gone. */
  forget(key: string): void {
    this.reserve(this.entries.get(key), undefined);
    this.entries.delete(key);
    for (const index of [
      this.identities,
      this.macs,
      this.addresses,
      this.clones,
      this.fromTemplate,
      this.diskNames,
      this.attachedPaths,
    ])
      index.delete(key);
    this.waiting.delete(key);
    this.unplaced.delete(key);
    this.forRoom.delete(key);
  }

  /** The VMs holding CLAIM's value, as the holder rule weighs them (vm-identities.ts). */
  readonly holdersOf = (claim: Pick<Identity, "kind" | "value">): IdentityHolder[] => {
    const k = identityKey(claim.kind, claim.value);
    return [...this.identities.keys(k)].flatMap((key) => {
      const e = this.entries.get(key);
      return e ? [{ ...e.holder, assigned: e.identities.get(k) ?? false }] : [];
    });
  };

  /** A VM other than EXCEPT has MAC (lower case) in its spec or status. */
  macTaken(mac: string, except: string): boolean {
    return this.macs.heldByOther(mac, except);
  }

  /** A VM other than EXCEPT holds IP (canonicalIp's spelling) on NETWORK in its status. */
  addressTaken(network: string, ip: string, except: string): boolean {
    return this.addresses.heldByOther(addressKey(network, ip), except);
  }

  /** LISTENER hears of every address (addressKey) a VM lets go of: it may be free now. */
  onAddressReleased(listener: (addressKey: string) => void): void {
    this.addressReleased.push(listener);
  }

  /** vCPUs and memory the VMs the cache shows on NODE reserve, leaving out EXCEPT's own. */
  allocatedOn(node: string, except?: string): Resources {
    const total = this.allocated.get(node) ?? NOTHING;
    const own = except === undefined ? undefined : this.entries.get(except);
    if (own?.node !== node || !own.reserved) return { ...total };
    return {
      cpus: total.cpus - own.reserved.cpus,
      memoryBytes: total.memoryBytes - own.reserved.memoryBytes,
    };
  }

  /** The node the cache shows KEY placed on. */
  placedNode(key: string): string | undefined {
    return this.entries.get(key)?.node;
  }

  /** Keys of VMs refused for a MAC or UUID another holds: any VM's change may free it. */
  waitingForIdentity(): string[] {
    return [...this.waiting];
  }

  /** Keys of VMs not placed yet (nor being deleted). */
  unplacedKeys(): string[] {
    return [...this.unplaced];
  }

  /** Keys of placed VMs whose node's agent has no room to start them: room elsewhere may do. */
  waitingForRoom(): string[] {
    return [...this.forRoom];
  }

  /** Keys of clones of NAMESPACE/SNAPSHOT not made yet. */
  clonesOf(namespace: string, snapshot: string): string[] {
    return [...this.clones.keys(`${namespace}/${snapshot}`)];
  }

  /** Keys of VMs made from NAMESPACE/TEMPLATE that have not taken from it yet. */
  madeFrom(namespace: string, template: string): string[] {
    return [...this.fromTemplate.keys(`${namespace}/${template}`)];
  }

  /** Keys of VMs that name NAMESPACE/DISK, or have the volume at PATH attached (any namespace). */
  diskUsers(namespace: string, disk: string, path?: string): string[] {
    const named = this.diskNames.keys(`${namespace}/${disk}`);
    if (!path) return [...named];
    return [...new Set([...named, ...this.attachedPaths.keys(path)])];
  }

  /** Keys of VMs not placed yet that name NAMESPACE/DISK. */
  unplacedUsersOf(namespace: string, disk: string): string[] {
    return [...this.diskNames.keys(`${namespace}/${disk}`)].filter((k) => this.unplaced.has(k));
  }

  /** Moves the allocation totals from BEFORE's reservation to AFTER's. */
  private reserve(before: Entry | undefined, after: Entry | undefined) {
    const was = before?.reserved && before.node ? { node: before.node, ...before.reserved } : undefined;
    const now = after?.reserved && after.node ? { node: after.node, ...after.reserved } : undefined;
    if (was?.node === now?.node && was?.cpus === now?.cpus && was?.memoryBytes === now?.memoryBytes) return;
    if (was) this.add(was.node, -was.cpus, -was.memoryBytes);
    if (now) this.add(now.node, now.cpus, now.memoryBytes);
    if (was && (now?.node !== was.node || now.cpus < was.cpus || now.memoryBytes < was.memoryBytes))
      for (const listener of this.roomFreed) listener(was.node);
  }

  private add(node: string, cpus: number, memoryBytes: number) {
    const a = this.allocated.get(node) ?? { cpus: 0, memoryBytes: 0 };
    const sum = { cpus: a.cpus + cpus, memoryBytes: a.memoryBytes + memoryBytes };
    if (sum.cpus === 0 && sum.memoryBytes === 0) this.allocated.delete(node);
    else this.allocated.set(node, sum);
  }
}

function toggle(set: Set<string>, key: string, on: boolean) {
  if (on) set.add(key);
  else set.delete(key);
}
