// How a VM's domain leaves this node: deletion (the guest stopped gracefully within its grace
// period, the domain and its snapshots removed, the finalizer released) and fencing (a VM placed
// elsewhere while this node was gone: its domain here stopped and undefined, its disks kept).
import { DOMAIN_FINALIZER, VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import {
  DomainEventType,
  type DomainRef,
  DomainShutdownFlags,
  DomainState,
  DomainUndefineFlags,
  type LibvirtClient,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import { type AnyObject, describeError, type Kube, removeFinalizer } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import { Reason } from "../event-reasons.ts";
import { placedNode } from "../vm-placement.ts";
import { type CausedEvents, causing } from "./caused-events.ts";
import { type desiredReservations, syncReservations } from "./dhcp.ts";
import type { NodeRoom } from "./node-room.ts";
import { decidePower } from "./vm-decide.ts";
import { POLL_MS } from "./vm-power.ts";
import { op, type Progress, withMemory } from "./vm-progress.ts";
import type { NodeVmReporter } from "./vm-report.ts";

export interface VmTeardownOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  nodeName: string;
  room?: NodeRoom;
  reporter: NodeVmReporter;
  /** Where the events our destroy and undefine calls cause are expected. */
  caused?: CausedEvents;
}

/** DHCP reservations follow the addresses in status; a failure is reported, not fatal. */
export async function reserveAddresses(
  o: Pick<VmTeardownOptions, "libvirt" | "reporter">,
  vm: VirtualMachine,
  wanted: ReturnType<typeof desiredReservations>,
  log: Logger,
) {
  try {
    const changes = await syncReservations(o.libvirt, vm, wanted);
    if (changes.length) log.info({ changes }, "DHCP reservations updated");
  } catch (err) {
    log.warn({ err: describeError(err) }, "DHCP reservation failed");
    void o.reporter.event(vm, Reason.DhcpReservationFailed, describeError(err));
  }
}

/**
 * Deleting: stop the guest (gracefully, within the grace period), undefine, release the
 * finalizer. Returns when to look again while the guest shuts down; PROGRESS_OF gives the VM's.
 */
export async function finalizeVm(
  o: VmTeardownOptions,
  vm: VirtualMachine,
  dom: DomainRef | undefined,
  progressOf: () => Progress,
  log: Logger,
): Promise<ReconcileResult | "released"> {
  if (dom) {
    const state = await o.libvirt.domainState(dom);
    const progress = progressOf();
    const action = decidePower(withMemory(vm, progress), { ...state, id: dom.id }, progress, Date.now());
    const terminating = async (requeueAfterMs: number) => {
      const stopping = { stopping: true, lastOperation: progress.lastOperation };
      await o.reporter.report(vm, dom.name, { ...state, id: dom.id }, stopping);
      return { requeueAfterMs };
    };
    if (action.type === "press-again") {
      await o.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
      progress.lastPressAt = Date.now();
      return terminating(POLL_MS);
    }
    if (action.type === "shutdown") {
      await o.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
      progress.shutdownRequestedAt = Date.now();
      progress.lastPressAt = progress.shutdownRequestedAt;
      progress.powerCycle = undefined;
      progress.lastOperation = op(
        "Delete",
        "Running",
        "ACPI shutdown requested before the domain is removed",
      );
      return terminating(POLL_MS);
    }
    if (action.type === "wait-shutdown") return terminating(Math.min(action.remainingMs, POLL_MS));
    if (action.type === "resume") {
      await o.libvirt.resumeDomain(dom);
      return { requeueAfterMs: 0 };
    }
    await removeDomain(o, dom, log, "VirtualMachine deleted", state);
  }
  await reserveAddresses(o, vm, [], log);
  if (vm.metadata.finalizers?.includes(DOMAIN_FINALIZER)) {
    // As our own last status write ("terminating") left it, when the cache does not show it yet.
    await removeFinalizer(
      o.kube,
      VirtualMachineKind,
      o.reporter.latestCopy(vm) as AnyObject,
      DOMAIN_FINALIZER,
    );
    log.info("domain gone; finalizer removed");
  }
  o.room?.forget(domainNameOf(vm.metadata.namespace ?? "", vm.metadata.name ?? ""));
  return "released";
}

/**
 * Stops and undefines a domain with its snapshots (they are the VM's dependents); SEEN is its
 * state when the caller has just read it.
 */
export async function removeDomain(
  o: Pick<VmTeardownOptions, "libvirt" | "room" | "caused">,
  dom: DomainRef,
  log: Logger,
  why: string,
  seen?: { state: number },
) {
  const state = seen ?? (await o.libvirt.domainState(dom));
  if (state.state !== DomainState.Shutoff)
    await causing(o.caused, dom.name, DomainEventType.Stopped, () => o.libvirt.destroyDomain(dom));
  // What libvirt holds of them inside the disks' qcow2 files is freed here, while the domain
  // still names it.
  for (const snap of await o.libvirt.listSnapshots(dom)) await unlessNotFound(o.libvirt.deleteSnapshot(snap));
  await undefine(o, dom);
  log.info({ domain: dom.name, why }, "domain destroyed and undefined");
}

/**
 * Stops and undefines this node's domain of a VM that runs elsewhere now. Its disks are not
 * touched (in a shared pool the other node's guest uses them; internal snapshots stay too).
 */
export async function fenceDomain(
  o: VmTeardownOptions,
  dom: DomainRef,
  vm: VirtualMachine & AnyObject,
  log: Logger,
) {
  const state = await o.libvirt.domainState(dom);
  if (state.state !== DomainState.Shutoff) await o.libvirt.destroyDomain(dom);
  await undefine(o, dom);
  // Its addresses here go with it (the new node reserves them in its own networks).
  await reserveAddresses(o, vm, [], log);
  const placedOn = placedNode(vm);
  const where = placedOn ? `node ${placedOn}` : "another node";
  const message = `the VM was placed on ${where}: its domain on node ${o.nodeName} was stopped and undefined`;
  log.warn({ domain: dom.name, placedOn }, "domain fenced");
  void o.reporter.event(vm, Reason.Fenced, message);
}

async function undefine(o: Pick<VmTeardownOptions, "libvirt" | "room" | "caused">, dom: DomainRef) {
  await causing(o.caused, dom.name, DomainEventType.Undefined, () =>
    o.libvirt.undefineDomain(
      dom,
      DomainUndefineFlags.ManagedSave | DomainUndefineFlags.SnapshotsMetadata | DomainUndefineFlags.Nvram,
    ),
  );
  o.room?.observe(dom.name, undefined);
}
