// Pure: the part of a VMDisk's status the node agent owns, from what it knows and observed.
// Written by server-side apply as field manager "libvirt-operator-agent"; the controller owns
// nodeName, attachedTo and the Scheduled/InUse conditions.
import type { VMDisk } from "../../api/vmdisk.ts";
import { type Condition, type Standing, standingConditions, writerConditions } from "../conditions.ts";

export type DiskPhase = NonNullable<NonNullable<VMDisk["status"]>["phase"]>;
type LastOperation = NonNullable<NonNullable<VMDisk["status"]>["lastOperation"]>;

export const AGENT_DISK_FIELDS = [
  "observedGeneration",
  "phase",
  "provisionedSize",
  "actualSize",
  "path",
  "pool",
  "format",
  "storagePoolShared",
  "progress",
  "lastOperation",
  "conditions",
] as const;

/** What the agent knows ahead of its informer cache, per disk. */
export interface DiskMemory {
  phase?: DiskPhase;
  lastOperation?: LastOperation;
  progress?: number;
  /** The volume was created (or found complete) by this process: never recreate it. */
  complete: boolean;
  /** The last failed operation while creating: retries that fail the same way show it as it was. */
  failedOperation?: LastOperation;
}

/** What a reconcile saw of the volume (all optional: a report may know little). */
export interface VolumeSeen {
  phase?: DiskPhase;
  path?: string;
  pool?: string;
  format?: string;
  info?: { capacity: number; allocation: number };
  shared?: boolean;
  waiting?: string;
  failure?: { reason: string; message: string; transient?: boolean };
}

export function agentDiskStatus(
  disk: VMDisk,
  mem: DiskMemory,
  seen: VolumeSeen,
  now: Date,
): Record<string, unknown> {
  const prev = disk.status ?? {};
  const phase = seen.phase ?? mem.phase ?? "Pending";
  const generation = disk.metadata.generation ?? 0;
  const ready = phase === "Ready" || phase === "Resizing";
  // Once the volume exists its path stays in status (VMs keep using it whatever the phase).
  const path = seen.path ?? prev.path;
  // Ready: usable; Stalled: cannot become usable without the user; else on its way.
  const standing: Standing = seen.failure
    ? {
        state: seen.failure.transient ? "reconciling" : "stalled",
        reason: seen.failure.reason,
        message: seen.failure.message,
      }
    : ready
      ? { state: "ready", reason: phase, message: `volume ${path ?? ""} is usable` }
      : {
          state: "reconciling",
          reason: phase,
          message: seen.waiting ?? mem.lastOperation?.message ?? `the volume is ${phase.toLowerCase()}`,
        };
  const conditions = writerConditions(
    prev.conditions as Condition[] | undefined,
    standingConditions(standing),
    generation,
    now,
  );
  const pool = seen.pool ?? prev.pool;
  const format = seen.format ?? prev.format;
  const shared = seen.shared ?? prev.storagePoolShared;
  return {
    observedGeneration: generation,
    phase,
    ...(seen.info ? { provisionedSize: seen.info.capacity, actualSize: seen.info.allocation } : {}),
    ...(!seen.info && prev.provisionedSize !== undefined
      ? { provisionedSize: prev.provisionedSize, actualSize: prev.actualSize }
      : {}),
    ...(path ? { path } : {}),
    ...(pool ? { pool } : {}),
    ...(format ? { format } : {}),
    ...(shared ? { storagePoolShared: shared } : {}),
    ...(mem.progress !== undefined ? { progress: mem.progress } : {}),
    ...(mem.lastOperation ? { lastOperation: mem.lastOperation } : {}),
    conditions,
  };
}
