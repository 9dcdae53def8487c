// Node side of VirtualMachine: converges the libvirt domain of each VM placed on this node
// (define, power, pause, restart, deletion) and writes what it observed into status.
import { join } from "node:path";
import type { KubernetesObject } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../../api/common.ts";
import { DOMAIN_FINALIZER, type VirtualMachine, VirtualMachineKind } from "../../api/virtualmachine.ts";
import { domainDefinitionFor, domainNameOf } from "../../hypervisor/domain/from-spec.ts";
import {
  buildDomainXml,
  type HostFacts,
  liveDeviceUpdates,
  parseLiveDevices,
  parseOwnership,
  specHash,
} from "../../hypervisor/domain/xml.ts";
import {
  DomainAffect,
  DomainRebootFlags,
  type DomainRef,
  DomainShutdownFlags,
  DomainState,
  DomainUndefineFlags,
  DomainXmlFlags,
  type LibvirtClient,
  LibvirtError,
} from "../../hypervisor/libvirt/index.ts";
import {
  type AnyObject,
  applyStatus,
  describeError,
  httpStatus,
  type Kube,
  patchMetadata,
  recordEvent,
  splitKey,
} from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import { CONDITIONS_RULE, ownedStatusChanged } from "../status-diff.ts";
import { desiredReservations, syncReservations } from "./dhcp.ts";
import { type DomainObservation, decidePower, type PowerProgress } from "./vm-decide.ts";
import { AGENT_FIELD_MANAGER, AGENT_STATUS_FIELDS, type AgentObservation, agentStatus } from "./vm-status.ts";

const COMPONENT = "libvirt-operator-agent";
/** While waiting on a guest (shutdown, reboot), look again at least this often. */
const POLL_MS = 2000;

type LastOperation = NonNullable<AgentObservation["lastOperation"]>;

export interface VmCache {
  get(name: string, namespace?: string): (VirtualMachine & KubernetesObject) | undefined;
}

export interface NodeVmReconcilerOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  cache: VmCache;
  nodeName: string;
  /** UID of the cluster's kube-system namespace: domains of other clusters are not ours. */
  clusterId: string;
  host: HostFacts;
  consoleLogDir: string;
  log: Logger;
}

/** In-memory progress of slow guest actions, per key (seeded from status after a restart). */
interface Progress extends PowerProgress {
  lastOperation?: LastOperation;
  /**
   * Status fields only the agent writes. Its memory is ahead of the informer cache, which
   * may not yet hold its last write; applying a stale value would undo it (a second reboot).
   */
  startCount: number;
  restartHandled?: string;
  cdromBootedImage?: string;
}

export class NodeVmReconciler {
  private readonly o: NodeVmReconcilerOptions;
  private readonly progress = new Map<string, Progress>();

  constructor(options: NodeVmReconcilerOptions) {
    this.o = options;
  }

  /** The guest rebooted (libvirt reboot event): a pending restart is done. */
  rebooted(key: string) {
    const p = this.progress.get(key);
    if (p?.rebootRequestedAt !== undefined) {
      p.rebootRequestedAt = undefined;
      p.lastOperation = finished(p.lastOperation, "Succeeded", "the guest rebooted");
    }
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = splitKey(key);
    const vm = this.o.cache.get(name, namespace);
    const domainName = domainNameOf(namespace, name);
    const log = forObject(this.o.log, "VirtualMachine", key);
    const found = await this.lookup(domainName);
    const record = found
      ? parseOwnership(await this.o.libvirt.domainXml(found, DomainXmlFlags.Inactive))
      : undefined;
    // Domains of another cluster sharing this host are never ours.
    const owner = record?.cluster === this.o.clusterId ? record : undefined;

    if (!vm || (owner && vm.metadata.uid && owner.uid !== vm.metadata.uid)) {
      // The VM is gone (or this domain belonged to an earlier VM of the same name). The cache
      // may lag; only the API server's word that the owner is gone lets a guest be destroyed.
      if (found && owner && (await this.ownerGone(owner))) {
        await this.removeDomain(found, log, "orphaned domain of a deleted VirtualMachine");
      }
      if (!vm) {
        this.progress.delete(key);
        return undefined;
      }
      return { requeueAfterMs: 0 };
    }
    if (vm.status?.nodeName !== this.o.nodeName) return undefined;
    if (vm.metadata.deletionTimestamp) return this.finalize(key, vm, owner ? found : undefined, log);
    if (found && !owner) {
      return this.report(vm, domainName, undefined, {
        failure: {
          reason: "DomainConflict",
          message: `a libvirt domain named ${domainName} exists on ${this.o.nodeName} and is not managed by libvirt-operator in this cluster; it is left untouched`,
        },
      });
    }
    const uuid = vm.status?.uuid;
    if (!uuid || !vm.metadata.finalizers?.includes(DOMAIN_FINALIZER)) return undefined; // the controller is not done yet

    const definition = domainDefinitionFor(vm, {
      cluster: this.o.clusterId,
      uuid,
      macs: Object.fromEntries(
        (vm.status?.interfaces ?? []).flatMap((i) => (i.mac ? [[i.name, i.mac]] : [])),
      ),
      disks: [],
      consoleLog: join(this.o.consoleLogDir, `${domainName}-console.log`),
    });
    const wantHash = specHash(definition);
    let dom = found;
    try {
      if (!dom || owner?.specHash !== wantHash) {
        dom = await this.o.libvirt.defineDomain(buildDomainXml(definition, this.o.host));
        log.info(
          { domain: domainName, redefined: Boolean(found) },
          found ? "domain redefined" : "domain defined",
        );
        void this.event(
          vm,
          "Normal",
          found ? "Redefined" : "Defined",
          `domain ${domainName} ${found ? "redefined" : "defined"} on ${this.o.nodeName}`,
        );
      }
    } catch (err) {
      return this.failed(vm, domainName, undefined, "DefineFailed", err, log);
    }

    let state = await this.o.libvirt.domainState(dom);
    const active = state.state !== DomainState.Shutoff;
    // Link state and CD-ROM medium change in place: live and persistent when running.
    const currentXml = await this.o.libvirt.domainXml(dom, active ? 0 : DomainXmlFlags.Inactive);
    const runningInSync = !active || parseOwnership(currentXml)?.specHash === wantHash;
    const updates = liveDeviceUpdates(definition, parseLiveDevices(currentXml));
    for (const xml of updates) {
      await this.o.libvirt.updateDevice(
        dom,
        xml,
        active ? DomainAffect.Live | DomainAffect.Config : DomainAffect.Config,
      );
      log.info({ domain: domainName, device: xml.split("\n")[0] }, "device updated in place");
    }
    await this.reserveAddresses(vm, desiredReservations(vm), log);

    const progress = this.progressOf(key, vm);
    let observation: DomainObservation = { ...state, id: dom.id };
    const action = decidePower(withMemory(vm, progress), observation, progress, Date.now(), runningInSync);
    let requeueAfterMs: number | undefined;
    try {
      switch (action.type) {
        case "start": {
          // seed 004 cdimage_once: this one boot comes from the CD-ROM, later ones from the disks.
          const cdrom = definition.cdrom;
          const bootOnce = Boolean(
            vm.spec.cdrom?.bootOnce && cdrom?.image && progress.cdromBootedImage !== cdrom.image,
          );
          if (bootOnce && cdrom) {
            await this.o.libvirt.defineDomain(
              buildDomainXml({ ...definition, cdrom: { ...cdrom, bootFirst: true } }, this.o.host),
            );
          }
          dom = await this.o.libvirt.startDomain(dom);
          if (bootOnce && cdrom) {
            await this.o.libvirt.defineDomain(buildDomainXml(definition, this.o.host));
            progress.cdromBootedImage = cdrom.image;
            log.info({ domain: domainName, image: cdrom.image }, "booted once from the CD-ROM");
          }
          progress.startCount++;
          // Whatever stop or reboot was awaited has ended with the domain off.
          progress.shutdownRequestedAt = undefined;
          progress.rebootRequestedAt = undefined;
          progress.lastOperation = op("Start", "Succeeded", `started on ${this.o.nodeName}`);
          log.info({ domain: domainName, id: dom.id }, "domain started");
          void this.event(vm, "Normal", "Started", `domain ${domainName} started`);
          break;
        }
        case "shutdown":
          await this.o.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
          progress.shutdownRequestedAt = Date.now();
          progress.lastOperation = op("Stop", "Running", "ACPI shutdown requested; waiting for the guest");
          log.info({ domain: domainName }, "ACPI shutdown requested");
          void this.event(
            vm,
            "Normal",
            "Stopping",
            "ACPI shutdown requested; forced off if the guest does not stop in time",
          );
          requeueAfterMs = POLL_MS;
          break;
        case "wait-shutdown":
        case "wait-reboot":
          requeueAfterMs = Math.min(action.remainingMs, POLL_MS);
          break;
        case "destroy":
          await this.o.libvirt.destroyDomain(dom);
          progress.shutdownRequestedAt = undefined;
          progress.lastOperation = finished(
            progress.lastOperation ?? op("Stop", "Running", ""),
            "Succeeded",
            action.why === "force"
              ? "forced off (grace period 0)"
              : "forced off after the grace period expired",
          );
          log.info({ domain: domainName, why: action.why }, "domain forced off");
          void this.event(vm, "Normal", "ForcedOff", progress.lastOperation.message ?? "forced off");
          break;
        case "suspend":
          await this.o.libvirt.suspendDomain(dom);
          progress.lastOperation = op("Pause", "Succeeded", "vCPUs suspended");
          void this.event(vm, "Normal", "Paused", "the VM was paused");
          break;
        case "resume":
          await this.o.libvirt.resumeDomain(dom);
          progress.lastOperation = op("Unpause", "Succeeded", "vCPUs resumed");
          void this.event(vm, "Normal", "Resumed", "the VM was resumed");
          break;
        case "power-cycle":
          await this.o.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
          progress.shutdownRequestedAt = Date.now();
          progress.restartHandled = action.value;
          progress.lastOperation = op(
            "Restart",
            "Running",
            `restart requested at ${action.value}; stopping to apply the new definition`,
          );
          log.info({ domain: domainName, value: action.value }, "power cycle: ACPI shutdown, then start");
          void this.event(
            vm,
            "Normal",
            "Restarting",
            `restart requested (${action.value}); the VM stops and starts with its new definition`,
          );
          requeueAfterMs = POLL_MS;
          break;
        case "reboot":
          await this.o.libvirt.rebootDomain(dom, DomainRebootFlags.AcpiPowerButton);
          progress.rebootRequestedAt = Date.now();
          progress.restartHandled = action.value;
          progress.lastOperation = op("Reboot", "Running", `restart requested at ${action.value}`);
          log.info({ domain: domainName, value: action.value }, "ACPI reboot requested");
          void this.event(vm, "Normal", "Rebooting", `restart requested (${action.value})`);
          requeueAfterMs = POLL_MS;
          break;
        case "reset":
          await this.o.libvirt.resetDomain(dom);
          progress.rebootRequestedAt = undefined;
          progress.lastOperation = finished(
            progress.lastOperation,
            "Succeeded",
            "reset after the grace period expired",
          );
          void this.event(vm, "Normal", "Reset", "the guest did not reboot in time and was reset");
          break;
        case "mark-restart-handled":
          progress.restartHandled = action.value;
          break;
        case "none":
          break;
      }
    } catch (err) {
      return this.failed(vm, domainName, observation, `${capitalize(action.type)}Failed`, err, log);
    }

    state = await this.o.libvirt.domainState(dom);
    observation = { ...state, id: state.state === DomainState.Shutoff ? -1 : dom.id };
    if (state.state === DomainState.Shutoff && progress.shutdownRequestedAt !== undefined) {
      progress.shutdownRequestedAt = undefined;
      progress.lastOperation = finished(progress.lastOperation, "Succeeded", "the guest powered off");
      void this.event(vm, "Normal", "Stopped", "the guest powered off");
      requeueAfterMs = 0; // a power cycle starts it again at once
    }
    const liveXml = state.state === DomainState.Shutoff ? undefined : await this.o.libvirt.domainXml(dom);
    const live = liveXml ? parseOwnership(liveXml) : undefined;
    const links = liveXml ? parseLiveDevices(liveXml).links : {};
    return this.report(
      vm,
      domainName,
      observation,
      {
        definitionInSync: (live ?? { specHash: wantHash }).specHash === wantHash,
        stopping: progress.shutdownRequestedAt !== undefined,
        lastOperation: progress.lastOperation,
        links,
      },
      requeueAfterMs,
    );
  }

  /** True only when the API server says the VirtualMachine with the owner's uid no longer exists. */
  private async ownerGone(owner: { namespace: string; name: string; uid: string }): Promise<boolean> {
    try {
      const current = (await this.o.kube.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: VirtualMachineKind.plural,
        namespace: owner.namespace,
        name: owner.name,
      })) as VirtualMachine;
      return current.metadata.uid !== owner.uid;
    } catch (err) {
      return httpStatus(err) === 404;
    }
  }

  private progressOf(key: string, vm: VirtualMachine): Progress {
    let p = this.progress.get(key);
    if (!p) {
      // After an agent restart: pick up a shutdown or reboot that was in progress.
      const last = vm.status?.lastOperation;
      const startedAt = last?.startedAt ? Date.parse(last.startedAt) : undefined;
      p = {
        lastOperation: last,
        startCount: vm.status?.startCount ?? 0,
        ...(vm.status?.restartRequestHandled ? { restartHandled: vm.status.restartRequestHandled } : {}),
        ...(vm.status?.cdromBootedImage ? { cdromBootedImage: vm.status.cdromBootedImage } : {}),
      };
      if (last?.phase === "Running" && last.type === "Stop") p.shutdownRequestedAt = startedAt;
      if (last?.phase === "Running" && last.type === "Reboot") p.rebootRequestedAt = startedAt;
      this.progress.set(key, p);
    }
    return p;
  }

  /** DHCP reservations follow the addresses in status; a failure is reported, not fatal. */
  private async reserveAddresses(
    vm: VirtualMachine,
    wanted: ReturnType<typeof desiredReservations>,
    log: Logger,
  ) {
    try {
      const changes = await syncReservations(this.o.libvirt, vm, wanted);
      if (changes.length) log.info({ changes }, "DHCP reservations updated");
    } catch (err) {
      log.warn({ err: describeError(err) }, "DHCP reservation failed");
      void this.event(vm, "Warning", "DhcpReservationFailed", describeError(err));
    }
  }

  private async lookup(name: string): Promise<DomainRef | undefined> {
    try {
      return await this.o.libvirt.lookupDomainByName(name);
    } catch (err) {
      if (err instanceof LibvirtError && err.isNotFound) return undefined;
      throw err;
    }
  }

  /** Deleting: stop the guest (gracefully, within the grace period), undefine, release the finalizer. */
  private async finalize(key: string, vm: VirtualMachine, dom: DomainRef | undefined, log: Logger) {
    if (dom) {
      const state = await this.o.libvirt.domainState(dom);
      const progress = this.progressOf(key, vm);
      const action = decidePower(withMemory(vm, progress), { ...state, id: dom.id }, progress, Date.now());
      const terminating = (requeueAfterMs: number) =>
        this.report(
          vm,
          dom.name,
          { ...state, id: dom.id },
          { stopping: true, lastOperation: progress.lastOperation },
          requeueAfterMs,
        );
      if (action.type === "shutdown") {
        await this.o.libvirt.shutdownDomain(dom, DomainShutdownFlags.AcpiPowerButton);
        progress.shutdownRequestedAt = Date.now();
        progress.lastOperation = op(
          "Delete",
          "Running",
          "ACPI shutdown requested before the domain is removed",
        );
        return terminating(POLL_MS);
      }
      if (action.type === "wait-shutdown") return terminating(Math.min(action.remainingMs, POLL_MS));
      if (action.type === "resume") {
        await this.o.libvirt.resumeDomain(dom);
        return { requeueAfterMs: 0 };
      }
      await this.removeDomain(dom, log, "VirtualMachine deleted");
    }
    await this.reserveAddresses(vm, [], log);
    const finalizers = vm.metadata.finalizers ?? [];
    if (finalizers.includes(DOMAIN_FINALIZER)) {
      await patchMetadata(this.o.kube, VirtualMachineKind, vm as AnyObject, {
        finalizers: finalizers.filter((f) => f !== DOMAIN_FINALIZER),
      });
      log.info("domain gone; finalizer removed");
    }
    this.progress.delete(key);
    return undefined;
  }

  private async removeDomain(dom: DomainRef, log: Logger, why: string) {
    const state = await this.o.libvirt.domainState(dom);
    if (state.state !== DomainState.Shutoff) await this.o.libvirt.destroyDomain(dom);
    await this.o.libvirt.undefineDomain(
      dom,
      DomainUndefineFlags.ManagedSave | DomainUndefineFlags.SnapshotsMetadata | DomainUndefineFlags.Nvram,
    );
    log.info({ domain: dom.name, why }, "domain destroyed and undefined");
  }

  private async failed(
    vm: VirtualMachine,
    domainName: string,
    domain: DomainObservation | undefined,
    reason: string,
    err: unknown,
    log: Logger,
  ): Promise<never> {
    const message = describeError(err);
    log.warn({ reason, err: message }, "domain action failed");
    void this.event(vm, "Warning", reason, message);
    await this.report(vm, domainName, domain, { failure: { reason, message } }).catch(() => undefined);
    throw err;
  }

  private async report(
    vm: VirtualMachine,
    domainName: string,
    domain: DomainObservation | undefined,
    partial: Partial<AgentObservation>,
    requeueAfterMs?: number,
  ): Promise<ReconcileResult | undefined> {
    const memory = this.progress.get(`${vm.metadata.namespace}/${vm.metadata.name}`);
    const observation: AgentObservation = {
      domainName,
      ...(domain ? { domain } : {}),
      definitionInSync: partial.definitionInSync ?? false,
      stopping: partial.stopping ?? false,
      startCount: memory?.startCount ?? vm.status?.startCount ?? 0,
      ...(partial.failure ? { failure: partial.failure } : {}),
      ...(partial.lastOperation
        ? { lastOperation: partial.lastOperation }
        : vm.status?.lastOperation
          ? { lastOperation: vm.status.lastOperation }
          : {}),
      ...((memory?.restartHandled ?? vm.status?.restartRequestHandled)
        ? { restartRequestHandled: memory?.restartHandled ?? vm.status?.restartRequestHandled }
        : {}),
      ...(partial.links ? { links: partial.links } : {}),
      ...((memory?.cdromBootedImage ?? vm.status?.cdromBootedImage)
        ? { cdromBootedImage: memory?.cdromBootedImage ?? vm.status?.cdromBootedImage }
        : {}),
    };
    const status = agentStatus(memory ? withMemory(vm, memory) : vm, observation, new Date());
    const listMaps = { conditions: CONDITIONS_RULE, interfaces: { key: "name", ownsSet: false } };
    if (ownedStatusChanged(vm.status as Record<string, unknown>, status, AGENT_STATUS_FIELDS, listMaps)) {
      await applyStatus(this.o.kube, VirtualMachineKind, vm, AGENT_FIELD_MANAGER, status);
    }
    return requeueAfterMs === undefined ? undefined : { requeueAfterMs };
  }

  private event(vm: VirtualMachine, type: "Normal" | "Warning", reason: string, message: string) {
    return recordEvent(this.o.kube, COMPONENT, vm as AnyObject, type, reason, message);
  }
}

/** VM as the agent knows it: its own status fields from memory, which is never behind. */
function withMemory(vm: VirtualMachine, p: Progress): VirtualMachine {
  return {
    ...vm,
    status: {
      ...vm.status,
      startCount: p.startCount,
      ...(p.restartHandled ? { restartRequestHandled: p.restartHandled } : {}),
      ...(p.cdromBootedImage ? { cdromBootedImage: p.cdromBootedImage } : {}),
    },
  };
}

function op(type: string, phase: LastOperation["phase"], message: string): LastOperation {
  const now = new Date().toISOString();
  return { type, phase, startedAt: now, ...(phase === "Running" ? {} : { completedAt: now }), message };
}

function finished(
  prev: LastOperation | undefined,
  phase: LastOperation["phase"],
  message: string,
): LastOperation {
  const now = new Date().toISOString();
  return { type: prev?.type ?? "Stop", phase, startedAt: prev?.startedAt ?? now, completedAt: now, message };
}

function capitalize(s: string): string {
  return s.replace(/(^|-)(\w)/g, (_m, _d, c: string) => c.toUpperCase());
}
