// How the node agent tells about a VM: one status write per reconcile (what it observed, with
// what the reconciler remembers between reconciles), Events and log lines said once per new
// message, and failures that are reported before they are rethrown for the retry.
import { VirtualMachineKind } from "../../api/names.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import { type DomainRef, DomainState, type LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { describeError, isTransient, type Kube } from "../../runtime/kube.ts";
import { forObject, type Logger } from "../../runtime/logging.ts";
import type { ReconcileResult } from "../../runtime/workqueue.ts";
import { findCondition } from "../conditions.ts";
import type { EventReason } from "../event-reasons.ts";
import { type EventRecorder, eventRecorder } from "../events.ts";
import { CONDITIONS_RULE } from "../status-diff.ts";
import { StatusWriter } from "../status-writer.ts";
import type { Refusal } from "../tenant-policy.ts";
import type { DomainObservation } from "./vm-decide.ts";
import { agentObservation } from "./vm-observation.ts";
import { type Progress, withMemory } from "./vm-progress.ts";
import { pendingRefresh } from "./vm-requests.ts";
import { AGENT_FIELD_MANAGER, AGENT_STATUS_FIELDS, type AgentObservation, agentStatus } from "./vm-status.ts";

const COMPONENT = "libvirt-operator-agent";

export interface NodeVmReporterOptions {
  kube: Kube;
  libvirt: LibvirtClient;
  /** What the reconciler remembers of each VM between reconciles (by namespace/name). */
  progress: ReadonlyMap<string, Progress>;
  /** Samples the node's statistics now (a refresh request waits for it). */
  refreshStatistics?: () => Promise<void>;
  log: Logger;
}

/** A status write put off (the cache behind the agent's last write) is tried again after this. */
const DEFERRED_RECHECK_MS = 1000;

export class NodeVmReporter {
  readonly event: EventRecorder;
  private readonly o: NodeVmReporterOptions;
  private readonly status: StatusWriter;

  constructor(options: NodeVmReporterOptions) {
    this.o = options;
    this.event = eventRecorder(options.kube, COMPONENT);
    this.status = new StatusWriter(options.kube, {
      kind: VirtualMachineKind,
      fieldManager: AGENT_FIELD_MANAGER,
      owns: AGENT_STATUS_FIELDS,
      listMaps: { conditions: CONDITIONS_RULE, interfaces: { key: "name", ownsSet: true } },
      // Lifecycle events come in bursts: a rerun before the cache shows our write would repeat it.
      waitForOwnWrites: true,
    });
  }

  /** A reconcile judges VM as the cache has it (see StatusWriter.judging). */
  judging(vm: VirtualMachine): void {
    this.status.judging(vm);
  }

  /** VM as the agent last saw it: after its own last status write, when the cache is behind it. */
  latestCopy<T extends VirtualMachine>(vm: T): T {
    return this.status.latestCopy(vm);
  }

  /** VM as the agent's last status write of it made it, with no reconcile judged on it before. */
  echoOfOwnWrite(vm: VirtualMachine): boolean {
    return this.status.echoOfOwnWrite(vm);
  }

  /** A start refused (template base, no room): logged and an Event, once per new message. */
  startRefused(
    vm: VirtualMachine,
    progress: Progress,
    refusal: { reason: EventReason; message: string },
    log: Logger,
  ) {
    const said = progress.startRefusalSaid ?? findCondition(vm.status?.conditions, "Ready")?.message;
    if (said !== refusal.message) {
      log.warn({ reason: refusal.reason }, refusal.message);
      void this.event(vm, refusal.reason, refusal.message);
    }
    progress.startRefusalSaid = refusal.message;
  }

  /** Refused before libvirt: nothing changes there; said once in a Failure condition and an Event. */
  async refuse(
    vm: VirtualMachine,
    domainName: string,
    dom: DomainRef | undefined,
    refusal: Refusal,
    log: Logger,
  ): Promise<undefined> {
    if (vm.status?.conditions?.find((c) => c.type === "Failure")?.message !== refusal.message) {
      log.warn(
        { reason: refusal.reason, field: refusal.field, err: refusal.message },
        "VM refused on the node",
      );
      void this.event(vm, refusal.reason, refusal.message);
    }
    const state = dom ? await this.o.libvirt.domainState(dom) : undefined;
    const domain =
      dom && state ? { ...state, id: state.state === DomainState.Shutoff ? -1 : dom.id } : undefined;
    await this.report(vm, domainName, domain, {
      failure: { reason: refusal.reason, message: refusal.message },
    });
    return undefined;
  }

  /** A libvirt action failed: reported in a Failure condition, then thrown for the retry (with backoff). */
  async failed(
    vm: VirtualMachine,
    domainName: string,
    domain: DomainObservation | undefined,
    reason: EventReason,
    err: unknown,
    log: Logger,
  ): Promise<never> {
    const message = describeError(err);
    // Said once; retries (with backoff) that fail the same way only count.
    if (vm.status?.conditions?.find((c) => c.type === "Failure")?.message !== message)
      log.warn({ reason, err: message }, "domain action failed");
    void this.event(vm, reason, message);
    const failure = { reason, message, ...(isTransient(err) ? { transient: true } : {}) };
    await this.report(vm, domainName, domain, { failure }).catch(() => undefined);
    throw err;
  }

  /** What was observed of the VM's domain, in one status write (only when something changed). */
  async report(
    vm: VirtualMachine,
    domainName: string,
    domain: DomainObservation | undefined,
    partial: Partial<AgentObservation>,
    requeueAfterMs?: number,
  ): Promise<ReconcileResult | undefined> {
    const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
    const memory = this.o.progress.get(key);
    // Asked to look now: the domain was just read; the statistics are sampled before answering.
    const refresh = pendingRefresh(vm, memory?.refreshHandled);
    if (refresh) {
      await this.o
        .refreshStatistics?.()
        .catch((err: unknown) =>
          forObject(this.o.log, "VirtualMachine", key).warn(
            { err: describeError(err) },
            "statistics for a refresh request failed",
          ),
        );
      if (memory) memory.refreshHandled = refresh;
    }
    const observation = agentObservation(vm, memory, domainName, domain, {
      ...partial,
      ...(refresh ? { refreshHandled: refresh } : {}),
    });
    const written = await this.status.writeOrDefer(
      vm,
      agentStatus(memory ? withMemory(vm, memory) : vm, observation, new Date()),
    );
    // Put off until the cache shows the last write: its watch event brings the reconcile back,
    // and this look makes sure of it should that event be taken for an echo.
    const soon = written === "deferred" ? DEFERRED_RECHECK_MS : undefined;
    const after = Math.min(requeueAfterMs ?? Number.POSITIVE_INFINITY, soon ?? Number.POSITIVE_INFINITY);
    return Number.isFinite(after) ? { requeueAfterMs: after } : undefined;
  }
}
