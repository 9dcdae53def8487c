// How long the client waits for libvirtd, in one place: every procedure belongs to a class, and
// every class has a deadline. A call past its deadline rejects with CallTimeoutError; libvirtd
// may still finish it later (the late reply is dropped), which the level-triggered reconcilers
// notice on their next pass. Deadlines are upper bounds for *legitimate* work, not targets:
// one that fires while libvirt is still doing real work makes the operator retry on top of it.
import type { Procedure } from "./protocol.ts";

export type DeadlineClass = "query" | "change" | "lifecycle" | "long" | "bulk" | "streamStall" | "handshake";

/** Milliseconds per class; 0 means no deadline (only for tests and benches). */
export type Deadlines = Record<DeadlineClass, number>;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export const DEFAULT_DEADLINES: Readonly<Deadlines> = {
  // Reads that take no domain job (lookups, state, XML, lists, info): a healthy daemon answers
  // in milliseconds; 15 s only absorbs a loaded host.
  query: 15 * SECOND,
  // Requests that take libvirt's per-domain job (define, attach/detach, shutdown/reboot
  // requests, suspend/resume, stats …). libvirt waits up to 30 s (QEMU_JOB_WAIT_TIME, not
  // configurable) for a busy domain, then fails with an error that names the job holding it;
  // waiting past that lets the user see libvirt's reason rather than ours.
  change: 45 * SECOND,
  // Starting QEMU (30 s job wait + 30 s monitor wait + guest RAM preallocation, which grows with
  // memory size and hugepages), destroying it (job wait + SIGTERM, 10 s, SIGKILL, more seconds
  // per host device + freeing RAM), starting/refreshing a pool (mounting netfs/iSCSI, reading
  // every volume's header), deleting a large fully allocated file, growing a disk of a guest.
  lifecycle: 5 * MINUTE,
  // Snapshots (create/revert/delete) and save/restore move a guest's memory and qcow2
  // metadata: 64 GiB of RAM at 100 MB/s is about 11 minutes.
  long: 30 * MINUTE,
  // Copies and writes of a whole volume (create with preallocation, create-from = qemu-img
  // convert, wipe, resize with allocation): libvirt replies only when done and reports no
  // progress over RPC, so this must cover the largest legitimate copy: 2 TiB at 100 MB/s is
  // about 5.8 hours.
  bulk: 6 * HOUR,
  // Upload/download streams: not the total time (a large image at a slow pace is fine) but
  // silence — no reply, packet, socket drain or end confirmation for this long. A working stream
  // moves a 256 KiB packet far more often than once a minute.
  streamStall: 60 * SECOND,
  // Socket connect + authentication + connect-open + feature probes, as one deadline. A daemon
  // that is still starting its drivers accepts the socket but answers only when they are up.
  handshake: 30 * SECOND,
};

type ProcedureName = string;

/**
 * The class of each procedure the client issues, by wire name. A procedure missing here gets
 * DEFAULT_CLASS; the unit test requires every procedure in protocol.ts to be listed.
 */
export const PROCEDURE_CLASS: Readonly<Record<ProcedureName, DeadlineClass>> = {
  // handshake (each step gets what is left of the handshake deadline)
  "auth-list": "handshake",
  "auth-polkit": "handshake",
  "connect-open": "handshake",
  "connect-supports-feature": "handshake",
  "connect-close": "query",
  // host
  "connect-get-version": "query",
  "connect-get-lib-version": "query",
  "connect-get-hostname": "query",
  "connect-get-uri": "query",
  "connect-get-capabilities": "query",
  "node-get-info": "query",
  "connect-domain-event-callback-register-any": "query",
  "connect-domain-event-callback-deregister-any": "query",
  // domains: reads
  "connect-list-all-domains": "query",
  "domain-lookup-by-name": "query",
  "domain-lookup-by-uuid": "query",
  "domain-get-state": "query",
  "domain-get-disk-errors": "query",
  "domain-get-info": "query",
  "domain-get-xml-desc": "query",
  "domain-get-autostart": "query",
  // domains: changes and requests (a shutdown/reboot request returns before the guest acts)
  "connect-get-all-domain-stats": "change",
  "domain-define-xml-flags": "change",
  "domain-undefine-flags": "change",
  "domain-set-autostart": "change",
  "domain-attach-device-flags": "change",
  "domain-detach-device-flags": "change",
  "domain-update-device-flags": "change",
  "domain-shutdown-flags": "change",
  "domain-reboot": "change",
  "domain-reset": "change",
  "domain-suspend": "change",
  "domain-resume": "change",
  // domains: lifecycle
  "domain-create-with-flags": "lifecycle",
  "domain-destroy-flags": "lifecycle",
  "domain-block-resize": "lifecycle",
  // snapshots
  "domain-list-all-snapshots": "query",
  "domain-snapshot-lookup-by-name": "query",
  "domain-snapshot-get-xml-desc": "query",
  "domain-snapshot-current": "query",
  "domain-snapshot-create-xml": "long",
  "domain-revert-to-snapshot": "long",
  "domain-snapshot-delete": "long",
  // save/restore write or read the guest's whole memory, like a snapshot with memory; reading
  // a save image's XML only reads its header
  "domain-save-flags": "long",
  "domain-restore-flags": "long",
  "domain-save-image-get-xml-desc": "query",
  // not issued yet; classified so that adding it needs no decision
  "domain-managed-save": "long",
  // guest agent freeze/thaw: the agent job wait (30 s), the agent's sync (5 s), then the guest
  // flushes its dirty pages and runs its fsfreeze hooks, for which libvirt waits without limit.
  // Writes in the guest stall while it is frozen, so a caller wants an answer in minutes.
  "domain-fsfreeze": "lifecycle",
  "domain-fsthaw": "lifecycle",
  // storage pools
  "connect-list-all-storage-pools": "query",
  "storage-pool-lookup-by-name": "query",
  "storage-pool-get-info": "query",
  "storage-pool-get-xml-desc": "query",
  "storage-pool-list-all-volumes": "query",
  "storage-pool-define-xml": "change",
  "storage-pool-undefine": "change",
  "storage-pool-set-autostart": "change",
  "storage-pool-create": "lifecycle",
  "storage-pool-build": "lifecycle",
  "storage-pool-destroy": "lifecycle",
  "storage-pool-refresh": "lifecycle",
  // volumes
  "storage-vol-lookup-by-name": "query",
  "storage-vol-get-info": "query",
  "storage-vol-get-xml-desc": "query",
  "storage-vol-get-path": "query",
  "storage-vol-delete": "lifecycle",
  "storage-vol-create-xml": "bulk",
  "storage-vol-create-xml-from": "bulk",
  "storage-vol-wipe": "bulk",
  "storage-vol-resize": "bulk",
  "storage-vol-upload": "streamStall",
  "storage-vol-download": "streamStall",
  // networks (network-create starts dnsmasq and sets up the bridge: seconds)
  "connect-list-all-networks": "query",
  "network-lookup-by-name": "query",
  "network-get-xml-desc": "query",
  "network-get-dhcp-leases": "query",
  "network-define-xml": "change",
  "network-undefine": "change",
  "network-update": "change",
  "network-create": "change",
  "network-destroy": "change",
};

/** For a procedure nobody classified: long enough for libvirt's own job wait. */
export const DEFAULT_CLASS: DeadlineClass = "change";

export function deadlinesWith(overrides: Partial<Deadlines> = {}): Deadlines {
  const merged = { ...DEFAULT_DEADLINES };
  for (const [key, value] of Object.entries(overrides) as [DeadlineClass, number | undefined][]) {
    if (value === undefined) continue;
    if (!Number.isFinite(value) || value < 0) throw new Error(`libvirt deadline ${key} must be ≥ 0 ms`);
    merged[key] = value;
  }
  return merged;
}

export function classOf(p: Procedure<unknown, unknown> | { name: string }): DeadlineClass {
  return PROCEDURE_CLASS[p.name] ?? DEFAULT_CLASS;
}

export function deadlineOf(p: { name: string }, deadlines: Deadlines): number {
  return deadlines[classOf(p)];
}

/** One call on the connection, for liveness checks and logs. */
export interface InFlightCall {
  procedure: string;
  /** Date.now() when the call was written. */
  startedAt: number;
  /** Its deadline in ms (0 = none). For a stream: the longest silence allowed. */
  deadlineMs: number;
  /** Streams only (after the call's reply): when a packet last went either way. */
  lastProgressAt?: number;
}

/** How far past its deadline CALL is at NOW (≤ 0: not overdue; never for deadline 0). */
export function overdueBy(call: InFlightCall, now = Date.now()): number {
  if (call.deadlineMs <= 0) return Number.NEGATIVE_INFINITY;
  return now - (call.lastProgressAt ?? call.startedAt) - call.deadlineMs;
}
