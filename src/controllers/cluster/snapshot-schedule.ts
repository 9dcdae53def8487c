// Pure: what a VM's snapshotPolicy asks for now — an automatic snapshot due, the ones rotation
// deletes — and where the policy stands. Automatic snapshots are ordinary VMSnapshots the
// controller made (label vm.libvirt-operator.io/automatic, the VM as owner).
import { CronExpressionParser } from "cron-parser";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMSnapshot, VMSnapshotSpec } from "../../api/vmsnapshot.ts";
import { type EventReason, Reason } from "../event-reasons.ts";
import { derivedName } from "../object-names.ts";

/** Label of the snapshots a policy takes. */
export const AUTOMATIC_LABEL = "vm.libvirt-operator.io/automatic";
export const DEFAULT_MAX_FAILURES = 5;
/** Failed automatic snapshots stay this long (they explain the failure), then go. */
export const FAILED_KEPT_MS = 60 * 60_000;
/** Look again at least this often, whatever the schedule. */
const MAX_WAIT_MS = 60 * 60_000;

type PolicyStatus = NonNullable<NonNullable<VirtualMachine["status"]>["snapshotPolicy"]>;

export interface PolicyDecision {
  create?: { name: string; spec: VMSnapshotSpec };
  delete: Array<{ name: string; why: string }>;
  status: PolicyStatus;
  /** Active, or False with the reason (an Event's too) the policy does not run. */
  condition:
    | { status: "True"; reason: "Active"; message: string }
    | { status: "False"; reason: EventReason; message: string };
  requeueAfterMs?: number;
}

/** The policy's own snapshots of VM: made by the controller for this VM (label and owner). */
export function automaticSnapshotsOf(vm: VirtualMachine, snapshots: readonly VMSnapshot[]): VMSnapshot[] {
  return snapshots.filter(
    (s) =>
      s.spec.vmName === vm.metadata.name &&
      s.metadata.labels?.[AUTOMATIC_LABEL] === "true" &&
      (s.metadata.ownerReferences ?? []).some((r) => r.uid === vm.metadata.uid),
  );
}

const created = (s: VMSnapshot) => Date.parse(s.metadata.creationTimestamp ?? "") || 0;
const iso = (ms: number) => new Date(ms).toISOString();

export function decidePolicy(
  vm: VirtualMachine,
  snapshots: readonly VMSnapshot[],
  inUse: { has(snapshot: string): boolean },
  now: number,
): PolicyDecision | undefined {
  const policy = vm.spec.snapshotPolicy;
  if (!policy) return undefined;
  const was = vm.status?.snapshotPolicy ?? {};
  const mine = automaticSnapshotsOf(vm, snapshots).sort((a, b) => created(b) - created(a));
  // A new resume value: failures before it no longer count.
  const resumedWith = policy.resume;
  const resumedAt = resumedWith !== undefined && resumedWith !== was.resumedWith ? iso(now) : was.resumedAt;
  const countFrom = resumedAt ? Date.parse(resumedAt) : 0;
  let failures = 0;
  for (const s of mine) {
    if (created(s) < countFrom || s.status?.phase === "Succeeded") break;
    if (s.status?.phase === "Failed") failures++;
  }
  const succeeded = mine.filter((s) => s.status?.phase === "Succeeded" && s.status.creationTime);
  const lastSuccess = succeeded[0]?.status?.creationTime;
  const status: PolicyStatus = {
    ...(was.lastScheduleTime ? { lastScheduleTime: was.lastScheduleTime } : {}),
    ...(lastSuccess ? { lastSuccessTime: lastSuccess } : {}),
    consecutiveFailures: failures,
    ...(resumedWith !== undefined ? { resumedWith } : {}),
    ...(resumedAt ? { resumedAt } : {}),
  };
  const decision: PolicyDecision = {
    delete: [],
    status,
    condition: { status: "True", reason: "Active", message: "" },
  };
  let cron: ReturnType<typeof CronExpressionParser.parse>;
  const next = (after: number) => {
    cron = CronExpressionParser.parse(policy.schedule, { currentDate: new Date(after), tz: "UTC" });
    return cron.next().getTime();
  };
  try {
    next(now);
  } catch (err) {
    decision.condition = {
      status: "False",
      reason: Reason.InvalidSchedule,
      message: `spec.snapshotPolicy.schedule "${policy.schedule}" is not a cron schedule: ${(err as Error).message}`,
    };
    return decision;
  }
  const maxFailures = policy.maxFailures ?? DEFAULT_MAX_FAILURES;
  if (policy.suspend) {
    decision.condition = {
      status: "False",
      reason: Reason.Suspended,
      message: "spec.snapshotPolicy.suspend is true",
    };
    return decision;
  }
  if (failures >= maxFailures) {
    decision.condition = {
      status: "False",
      reason: Reason.TooManyFailures,
      message:
        `the last ${failures} automatic snapshots failed (maxFailures ${maxFailures}): no more are taken until ` +
        "spec.snapshotPolicy.resume is set to a new value",
    };
    return decision;
  }

  // Schedule: one snapshot per due time; times missed while nobody looked give one, not a burst.
  const last = Math.max(Date.parse(was.lastScheduleTime ?? "") || 0, mine[0] ? created(mine[0]) : 0);
  const due = last ? next(last) : undefined;
  const busy = mine.some((s) => s.status?.phase !== "Succeeded" && s.status?.phase !== "Failed");
  if (!last) {
    status.lastScheduleTime = iso(now); // the policy starts counting now
  } else if (due !== undefined && due <= now && !busy) {
    const timestamp = Math.floor(now / 1000);
    decision.create = {
      name: derivedName(vm.metadata.name, `-auto-${timestamp}`),
      spec: {
        vmName: vm.metadata.name,
        description: `automatic snapshot (spec.snapshotPolicy, schedule ${policy.schedule})`,
        ...(policy.memory ? { memory: true } : {}),
        ...(policy.consistent ? { consistent: true } : {}),
        ...(policy.failureDeadline ? { failureDeadline: policy.failureDeadline } : {}),
      },
    };
    status.lastScheduleTime = iso(now);
  }
  const nextAt = next(Date.parse(status.lastScheduleTime ?? iso(now)));
  status.nextScheduleTime = iso(nextAt);
  decision.requeueAfterMs = Math.max(1000, Math.min(MAX_WAIT_MS, nextAt - now));

  // Rotation: the newest `keep` of the ones it may delete stay.
  const excluded = new Set(policy.exclude ?? []);
  const rotatable = mine.filter(
    (s) =>
      s.status?.phase === "Succeeded" &&
      !s.spec.sticky &&
      !excluded.has(s.metadata.name) &&
      !inUse.has(s.metadata.name) &&
      !s.metadata.deletionTimestamp,
  );
  for (const s of rotatable.slice(policy.keep))
    decision.delete.push({ name: s.metadata.name, why: `rotated out (keep ${policy.keep})` });
  for (const s of mine)
    if (s.status?.phase === "Failed" && now - created(s) > FAILED_KEPT_MS && !s.metadata.deletionTimestamp)
      decision.delete.push({ name: s.metadata.name, why: "failed more than an hour ago" });
  return decision;
}
