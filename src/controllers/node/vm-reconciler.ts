import type { KubernetesObject } from "@kubernetes/client-node";
import { DOMAIN_FINALIZER, VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { templateBaseRefusal } from "../../hypervisor/domain/disks.ts";
import { domainNameOf, resourcesOf } from "../../hypervisor/domain/from-spec.ts";
import {
  buildDomainXml,
  type HostFacts,
  parseLiveDevices,
  parseOwnership,
} from "../../hypervisor/domain/xml.ts";
import {
  DomainEventType,
  type DomainRef,
  DomainState,
  DomainXmlFlags,
  isActiveState,
  type LibvirtClient,
  uuidToString,
} from "../../hypervisor/libvirt/index.ts";
import { httpStatus, type Kube, objectGone, readObject, splitKey } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import type { WatchVerb } from "../../runtime/watch.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import { Reason } from "../event-reasons.ts";
import { OWN_WRITE_MEMORY_MS } from "../status-writer.ts";
import { placedNode, placementOf } from "../vm-placement.ts";
import { CausedEvents } from "./caused-events.ts";
import { desiredReservations } from "./dhcp.ts";
import { adoptedProgress, decideDomainClaim } from "./domain-claim.ts";
import { type DomainLocks, LOCK_RETRY_MS } from "./domain-locks.ts";
import type { NodeRoom } from "./node-room.ts";
import { afterStart, afterStartSeen } from "./room-observer.ts";
import { admitOnNode, type NodeAdmissionContext } from "./vm-admission.ts";
import {
  type DomainObservation,
  decidePower,
  PausedReason,
  RunningReason,
  ShutoffReason,
} from "./vm-decide.ts";
import { diskStatus, type PlugResult } from "./vm-disks.ts";
import { seeDomain } from "./vm-domain-seen.ts";
import { crashLooping } from "./vm-observation.ts";
import { applyPowerAction, noteCrash, POLL_MS, powerActionFailed } from "./vm-power.ts";
import { finished, op, type Progress, progressFromStatus, withMemory } from "./vm-progress.ts";
import { NodeVmReporter } from "./vm-report.ts";
import { answerFilesystemRequest } from "./vm-requests.ts";
import { diskErrorsSeen } from "./vm-status.ts";
import { fenceDomain, finalizeVm, reserveAddresses, type VmTeardownOptions } from "./vm-teardown.ts";
import { type DiskCache, syncDevices, wantedDomain } from "./vm-wanted.ts";

/** A disk attach libvirt refused (reported in status) is tried again this often, not at once. */
const PLUG_RETRY_MS = 60_000;
/** A VM waiting for room on this node looks again this often (guests stopping free it). */
const ROOM_RECHECK_MS = 30_000;
/** A VM of ours missing from the cache is read from the API server again this often. */
const UNCACHED_POLL_MS = 10_000;

export interface VmCache {
  get(name: string, namespace?: string): (VirtualMachine & KubernetesObject) | undefined;
}

export interface NodeVmReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  cache: VmCache;
  disks: DiskCache;
  nodeName: string;
  /** UID of the cluster's kube-system namespace: domains of other clusters are not ours. */
  clusterId: string;
  host: HostFacts;
  consoleLogDir: string;
  /** The node's default storage pool: where a VMDisk naming none has its volume. */
  defaultPool: string;
  /** What the agent checks itself before a VM reaches libvirt (tenant rules, host paths). */
  admission: NodeAdmissionContext;
  /** Held for each reconcile: snapshots and restores of the VM hold it too. */
  locks: DomainLocks;
  /** Whether a snapshot of the VM is being taken (it may hold the guest saved). */
  snapshotInProgress?: (vm: VirtualMachine) => boolean;
  /** Samples the node's statistics now (a refresh request waits for it). */
  refreshStatistics?: () => Promise<void>;
  /** Bytes the VM's snapshots stored (they count in status.storedData). */
  snapshotBytes?: (vm: VirtualMachine) => number;
  /** A domain became an orphan or was taken over: the orphan report is made again. */
  orphansChanged?: () => void;
  /** What the guests running here take: a start must fit beside them. */
  room?: NodeRoom;
  log: Logger;
}

export class NodeVmReconciler {
  private readonly o: NodeVmReconcilerOptions;
  private readonly progress = new Map<string, Progress>();
  /** VMs last read from the API server because the cache lacks them. */
  private readonly uncached = new Set<string>();
  /**
   * A domain defined for the first time, its Event held back: a start in the same reconcile says
   * both in one Event (a third of a new VM's API writes were Events); otherwise said at its end.
   */
  private readonly definedUnsaid = new Map<string, { vm: VirtualMachine; message: string }>();
  /** VMs (by UID) whose domain this agent removed before it let go of the finalizer, and when. */
  private readonly released = new Map<string, number>();
  /** libvirt events our own define and start calls cause (their echo wakes no reconcile). */
  readonly caused = new CausedEvents();
  private readonly reporter: NodeVmReporter;
  private readonly teardown: VmTeardownOptions;

  constructor(options: NodeVmReconcilerOptions) {
    this.o = options;
    this.reporter = new NodeVmReporter({ ...options, progress: this.progress });
    this.teardown = { ...options, reporter: this.reporter, caused: this.caused };
  }

  /**
   * The watch event of the agent's own write, which tells the reconcile nothing new: its status
   * write, or the deletion its removal of the finalizer completed (the domain is gone already).
   */
  ownEcho(vm: VirtualMachine, verb: WatchVerb): boolean {
    if (verb !== "delete") return this.reporter.echoOfOwnWrite(vm);
    const at = this.released.get(vm.metadata?.uid ?? "");
    this.released.delete(vm.metadata?.uid ?? "");
    this.forgetOldReleases();
    return at !== undefined && Date.now() - at < OWN_WRITE_MEMORY_MS;
  }

  /** A deletion whose watch event came before our finalizer write answered is not waited for. */
  private forgetOldReleases(now = Date.now()) {
    for (const [uid, at] of this.released) if (now - at >= OWN_WRITE_MEMORY_MS) this.released.delete(uid);
  }

  /** The guest rebooted (libvirt reboot event): a pending restart is done. */
  rebooted(key: string) {
    const p = this.progress.get(key);
    if (p?.rebootRequestedAt !== undefined) {
      p.rebootRequestedAt = undefined;
      p.lastOperation = finished(p.lastOperation, "Succeeded", "the guest rebooted");
    }
  }

  /**
   * A restore stopped the guest and left it RUNNING or not: nothing of that was a crash or a
   * stop the VM's own reconcile waits for.
   */
  restored(key: string, message: string, running: boolean) {
    const p = this.progress.get(key);
    if (!p) return;
    p.shutdownRequestedAt = undefined;
    p.rebootRequestedAt = undefined;
    p.powerCycle = undefined;
    p.crashSeenAt = undefined;
    p.quickCrashes = 0;
    p.lastStartAt = running ? Date.now() : undefined;
    p.lastOperation = op("Restore", "Succeeded", message);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const locked = await this.o.locks.tryRun([key], "reconcile", () =>
      this.gone(key, () => this.converge(key)).finally(() => this.sayDefined(key)),
    );
    // A snapshot or restore of this VM is under way: look again once it is done.
    if ("busy" in locked) return { requeueAfterMs: LOCK_RETRY_MS };
    const result = locked.done;
    // Read from the API server (not in the cache): no watch event will say it changed.
    if (!this.uncached.has(key)) return result;
    return { requeueAfterMs: Math.min(result?.requeueAfterMs ?? UNCACHED_POLL_MS, UNCACHED_POLL_MS) };
  }

  /**
   * A VM being deleted is gone from the API server once its finalizer is removed; a reconcile
   * still judging on the cached object (a libvirt event of its domain's removal, say) finds it
   * gone when it writes: nothing is left to do, and nothing failed.
   */
  private async gone(key: string, work: () => Promise<ReconcileResult | undefined>) {
    const { namespace, name } = splitKey(key);
    // As judged: by the time a write finds it gone, the cache may have dropped it too.
    const judged = this.o.cache.get(name, namespace);
    try {
      return await work();
    } catch (err) {
      const cached = this.o.cache.get(name, namespace) ?? judged;
      if (httpStatus(err) !== 404 || !cached?.metadata.deletionTimestamp) throw err;
      // The 404 may be another object's: only the API server's word that the VM is gone ends it.
      const current = await readObject(this.o.kube, VirtualMachineKind, { namespace, name });
      if (current?.metadata.uid === cached.metadata.uid) throw err;
      this.progress.delete(key);
      return undefined;
    }
  }

  private async converge(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    let vm = this.o.cache.get(name, namespace);
    if (vm) this.reporter.judging(vm);
    this.uncached.delete(key);
    // Labelled for this node but not placed here (yet: the controller's status write follows
    // its label; or moved away, the label to follow): nothing to do, and no libvirt call.
    const domainName = domainNameOf(namespace, name);
    if (vm && placedNode(vm) !== this.o.nodeName) {
      // Not this node's to start: it waits for room here no more.
      this.o.room?.forget(domainName);
      return undefined;
    }
    const log = forObject(this.o.log, "VirtualMachine", key);
    const seen = await seeDomain(this.o, domainName, vm);
    const { found, inactiveXml, owner } = seen;
    if (seen.placedElsewhere && found) {
      await fenceDomain(this.teardown, found, seen.placedElsewhere, log);
      return undefined;
    }
    vm = seen.vm;
    if (seen.uncached) this.uncached.add(key);
    if (!vm) {
      // The VM is gone without its finalizer having let us remove the domain (removed by force,
      // lost in a restore): the domain is kept, guest and all, for the VM applied again to take
      // over; the orphan scan reports it (orphans.ts). Normal deletion goes through finalize.
      if (found && owner) this.o.orphansChanged?.();
      this.progress.delete(key);
      this.o.room?.forget(domainName);
      return undefined;
    }
    if (placedNode(vm) !== this.o.nodeName) return undefined; // read from the API server: placed elsewhere
    let adopted: string | undefined;
    if (found && owner && vm.metadata.uid && owner.uid !== vm.metadata.uid) {
      // Left by an earlier object of this name. The cache may lag: only the API server's word
      // that the earlier object is gone lets the VM take the domain over.
      const claim = decideDomainClaim(
        vm,
        {
          name: domainName,
          uuid: uuidToString(found.uuid),
          recordedUid: owner.uid,
          recordedOwnerGone: await objectGone(this.o.kube, VirtualMachineKind, owner),
        },
        this.o.nodeName,
      );
      if ("wait" in claim) return { requeueAfterMs: POLL_MS };
      if ("refuse" in claim) {
        // Deleting the VM never touches a domain that was not its own.
        if (vm.metadata.deletionTimestamp) return this.finalize(key, vm, undefined, log, false);
        if (vm.status?.conditions?.find((c) => c.type === "Failure")?.message !== claim.refuse.message) {
          log.warn({ domain: domainName, err: claim.refuse.message }, "domain not taken over");
          void this.reporter.event(vm, claim.refuse.reason, claim.refuse.message);
        }
        return this.reporter.report(vm, domainName, undefined, { failure: claim.refuse });
      }
      if ("adopt" in claim) adopted = claim.adopt;
    }
    if (vm.metadata.deletionTimestamp)
      return this.finalize(key, vm, owner ? found : undefined, log, !found || !!owner);
    if (found && !owner) {
      return this.reporter.report(vm, domainName, undefined, {
        failure: {
          reason: "DomainConflict",
          message: `a libvirt domain named ${domainName} exists on ${this.o.nodeName} and is not managed by libvirt-operator in this cluster; it is left untouched`,
        },
      });
    }
    if (found && this.o.snapshotInProgress?.(vm)) {
      // A snapshot saved the guest (VolumeCopy) and its reconcile brings it back, memory and all;
      // starting it here would boot it afresh. (After an agent restart this reconcile may come first.)
      const st = await this.o.libvirt.domainState(found);
      if (st.state === DomainState.Shutoff && st.reason === ShutoffReason.Saved)
        return { requeueAfterMs: POLL_MS };
    }
    const uuid = placementOf(vm).uuid;
    if (!uuid || !vm.metadata.finalizers?.includes(DOMAIN_FINALIZER)) return undefined; // the controller is not done yet
    const admission = await admitOnNode(vm, this.o.admission);
    if ("refused" in admission) return this.reporter.refuse(vm, domainName, found, admission.refused, log);

    const wanted = await wantedDomain(
      this.o,
      vm,
      { domainName, uuid, ownInactiveXml: owner ? inactiveXml : undefined },
      admission.admitted.media,
    );
    const { definition, wantHash, disks } = wanted;
    let dom = found;
    let defined = false;
    if (adopted && found) {
      // Taken over only with every disk it has there for it (they are taken over first, each by
      // its own VMDisk): a definition without them would unplug them from the running guest.
      const notYet = [...disks.blocked, ...disks.waiting].join("; ");
      if (notYet) {
        const state = await this.o.libvirt.domainState(found);
        return this.reporter.report(
          vm,
          domainName,
          { ...state, id: state.state === DomainState.Shutoff ? -1 : found.id },
          { waiting: `domain ${domainName} is taken over once its disks are there: ${notYet}` },
          POLL_MS,
        );
      }
      // Its owner record takes this VM's UID (redefining leaves a running guest as it is), and
      // requests that came with the VM were made for the guest it had.
      this.progress.set(key, adoptedProgress(vm, this.progressOf(key, vm)));
      this.progress.get(key)!.lastOperation = op("Adopt", "Succeeded", adopted);
      log.info({ domain: domainName }, "domain taken over");
      void this.reporter.event(vm, Reason.Adopted, adopted);
      this.o.orphansChanged?.();
    }
    try {
      if (!dom || owner?.specHash !== wantHash || adopted) {
        const xml = buildDomainXml(definition, this.o.host);
        const define = () => this.o.libvirt.defineDomain(xml);
        const { defining } = this.o.admission.identities;
        dom = await this.caused.around(domainName, DomainEventType.Defined, () =>
          defining ? defining(domainName, xml, define) : define(),
        );
        defined = true;
        log.info(
          { domain: domainName, redefined: Boolean(found) },
          found ? "domain redefined" : "domain defined",
        );
        const message = `domain ${domainName} ${found ? "redefined" : "defined"} on ${this.o.nodeName}`;
        if (found) void this.reporter.event(vm, Reason.Redefined, message);
        else this.definedUnsaid.set(key, { vm, message });
      }
    } catch (err) {
      return this.reporter.failed(vm, domainName, undefined, Reason.DefineFailed, err, log);
    }

    // A domain that did not exist until the define above is shut off (libvirt says no more), and
    // its definition is the wanted one whole: no device to bring in line, nothing to read back.
    const fresh = defined && !found;
    let state = fresh
      ? { state: DomainState.Shutoff, reason: ShutoffReason.Unknown }
      : await this.o.libvirt.domainState(dom);
    noteCrash(this.progressOf(key, vm), state, Date.now()); // when it was seen, not when decided
    const active = state.state !== DomainState.Shutoff;
    const { runningInSync, deviceFailure, plugged } = fresh
      ? { runningInSync: true, deviceFailure: undefined, plugged: { retry: false } as PlugResult }
      : await syncDevices(
          this.o.libvirt,
          dom,
          wanted,
          {
            active,
            // A shut-off domain's definition was read above, unless it was just redefined.
            currentXml:
              !active && !defined && inactiveXml
                ? inactiveXml
                : await this.o.libvirt.domainXml(dom, active ? 0 : DomainXmlFlags.Inactive),
            justDefined: defined,
          },
          log,
        );
    await reserveAddresses(this.teardown, vm, desiredReservations(vm), log);

    const progress = this.progressOf(key, vm);
    let observation: DomainObservation = { ...state, id: dom.id };
    let action = decidePower(withMemory(vm, progress), observation, progress, Date.now(), runningInSync);
    // A guest starts only with all its disks (KubeVirt waits for its volumes the same way).
    const diskWait = [...disks.blocked, ...disks.waiting].join("; ");
    const diskFailure = disks.blocked.length
      ? { reason: Reason.DiskUnavailable, message: disks.blocked.join("; ") }
      : (plugged.failure ?? deviceFailure);
    // The VM made into a template never starts again while its disks are bases (one running
    // already is left running).
    const baseRefusal = templateBaseRefusal(disks.bases);
    if (action.type === "start" && baseRefusal) {
      this.reporter.startRefused(vm, progress, baseRefusal, log);
      action = { type: "none" };
    }
    if (action.type === "start" && diskWait) action = { type: "none" };
    // Room is claimed only for a start that goes ahead; a stopped VM reserved none.
    const noRoom = action.type === "start" ? this.o.room?.claim(domainName, resourcesOf(vm)) : undefined;
    if (action.type !== "start") this.o.room?.forget(domainName);
    if (noRoom) {
      this.reporter.startRefused(vm, progress, noRoom, log);
      action = { type: "none" };
    }
    if (!baseRefusal && !noRoom) progress.startRefusalSaid = undefined;
    if (
      diskFailure &&
      vm.status?.conditions?.find((c) => c.type === "Failure")?.message !== diskFailure.message
    ) {
      log.warn({ reason: diskFailure.reason, err: diskFailure.message }, "VM disks not usable");
      void this.reporter.event(vm, diskFailure.reason, diskFailure.message);
    }
    let requeueAfterMs: number | undefined;
    try {
      const done = await applyPowerAction(
        {
          libvirt: this.o.libvirt,
          host: this.o.host,
          nodeName: this.o.nodeName,
          log,
          caused: this.caused,
          event: (reason, message) => {
            const defined = reason === Reason.Started ? this.definedUnsaid.get(key) : undefined;
            if (defined) this.definedUnsaid.delete(key);
            void this.reporter.event(vm, reason, defined ? `${defined.message} and started` : message);
          },
        },
        vm,
        definition,
        dom,
        action,
        progress,
      );
      dom = done.dom;
      requeueAfterMs = done.requeueAfterMs;
    } catch (err) {
      this.sayDefined(key); // before the failure, as it happened
      // A start that failed late (QEMU up, a deadline passed) may have left a guest running.
      if (action.type === "start")
        this.o.room?.settle(domainName, await afterStart(this.o.libvirt, dom, resourcesOf(vm)));
      return this.reporter.failed(vm, domainName, observation, powerActionFailed(action.type), err, log);
    }

    // Settled before anything else can throw: a claim left held would count a guest forever.
    // What libvirt says of a start answers whether the guest runs too (no state call then).
    let runningAfterStart = false;
    if (action.type === "start") {
      const seen = await afterStartSeen(this.o.libvirt, dom, resourcesOf(vm));
      this.o.room?.settle(domainName, seen.resources);
      runningAfterStart = seen.running;
    }
    // A domain defined and started in this reconcile runs the definition just written: its
    // devices are known, nothing is read back.
    const startedFresh = fresh && action.type === "start";
    // What it is now, and its live definition when it runs: side by side when it should run
    // (a start just made: the report that says Running waits on both).
    const [after, liveIfRunning] = await Promise.all([
      runningAfterStart
        ? { state: DomainState.Running, reason: RunningReason.Booted }
        : this.o.libvirt.domainState(dom),
      action.type === "start" && !startedFresh ? this.o.libvirt.domainXml(dom) : undefined,
    ]);
    state = after;
    observation = { ...state, id: state.state === DomainState.Shutoff ? -1 : dom.id };
    // Once a guest runs, libvirt's events keep what it takes (room-observer.ts); this mends a missed one.
    this.o.room?.seen(domainName, isActiveState(state.state), resourcesOf(vm));
    if (state.state === DomainState.Shutoff && progress.shutdownRequestedAt !== undefined) {
      progress.shutdownRequestedAt = undefined;
      progress.lastOperation = finished(progress.lastOperation, "Succeeded", "the guest powered off");
      log.info({ domain: domainName }, "guest powered off");
      void this.reporter.event(vm, Reason.Stopped, "the guest powered off");
      requeueAfterMs = 0; // a power cycle starts it again at once
    }
    progress.guestFilesystems = await answerFilesystemRequest(
      {
        libvirt: this.o.libvirt,
        log,
        event: (reason, message) => void this.reporter.event(vm, reason, message),
      },
      vm,
      dom,
      state.state !== DomainState.Shutoff,
      progress.guestFilesystems,
    );
    const liveXml =
      state.state === DomainState.Shutoff || startedFresh
        ? undefined
        : (liveIfRunning ?? (await this.o.libvirt.domainXml(dom)));
    const live = liveXml ? parseOwnership(liveXml) : undefined;
    const devices = liveXml ? parseLiveDevices(liveXml) : undefined;
    const attached = devices ? Object.values(devices.disks) : definition.disks;
    const links =
      devices?.links ??
      (startedFresh && state.state !== DomainState.Shutoff
        ? Object.fromEntries(definition.nics.map((n) => [n.name, n.linked]))
        : {});
    // QEMU paused the guest on a disk error (error_policy stop): which disk, and is its pool full?
    const diskErrors =
      state.state === DomainState.Paused && state.reason === PausedReason.IoError
        ? diskErrorsSeen(vm, attached, await this.o.libvirt.domainDiskErrors(dom))
        : undefined;
    return this.reporter.report(
      vm,
      domainName,
      observation,
      {
        definitionInSync: (live ?? { specHash: wantHash }).specHash === wantHash,
        stopping: progress.shutdownRequestedAt !== undefined,
        lastOperation: progress.lastOperation,
        links,
        ...diskStatus(
          vm,
          attached,
          (disk) => this.o.disks.get(disk, namespace),
          this.o.snapshotBytes?.(vm) ?? 0,
        ),
        ...(diskWait ? { waiting: diskWait } : {}),
        ...(baseRefusal || noRoom ? { startRefused: baseRefusal ?? noRoom } : {}),
        ...(crashLooping(progress, state.state, Date.now()) ? { crashLoops: progress.quickCrashes } : {}),
        ...(diskFailure ? { failure: diskFailure } : {}),
        ...(diskErrors ? { diskErrors } : {}),
      },
      // Paused on an I/O error: look again soon (libvirt may name the disk a moment later).
      // Waiting for room: a guest stopping here frees it without any event of this VM's.
      requeueAfterMs ??
        (noRoom
          ? ROOM_RECHECK_MS
          : plugged.failure
            ? PLUG_RETRY_MS
            : plugged.retry || diskErrors
              ? POLL_MS
              : undefined),
    );
  }

  private sayDefined(key: string) {
    const unsaid = this.definedUnsaid.get(key);
    if (!unsaid) return;
    this.definedUnsaid.delete(key);
    void this.reporter.event(unsaid.vm, Reason.Defined, unsaid.message);
  }

  private progressOf(key: string, vm: VirtualMachine): Progress {
    let p = this.progress.get(key);
    if (!p) {
      p = progressFromStatus(vm);
      this.progress.set(key, p);
    }
    return p;
  }

  /** CLEAN: no domain of another is left under the VM's name (its deletion leaves nothing to look at). */
  private async finalize(
    key: string,
    vm: VirtualMachine,
    dom: DomainRef | undefined,
    log: Logger,
    clean: boolean,
  ) {
    const done = await finalizeVm(this.teardown, vm, dom, () => this.progressOf(key, vm), log);
    if (done !== "released") return done;
    this.progress.delete(key);
    this.forgetOldReleases();
    if (clean && vm.metadata.uid) this.released.set(vm.metadata.uid, Date.now());
    return undefined;
  }
}
