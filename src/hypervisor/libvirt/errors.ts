// Errors the client raises: what libvirt said (code, domain, message), a dead connection,
// a timeout, or a reply we could not decode (XdrDecodeError, from xdr.ts).
/** virErrorNumber values the operator branches on (virterror.h). */
export const ErrorCode = {
  InternalError: 1,
  NoSupport: 3,
  OperationFailed: 9,
  InvalidArg: 8,
  NoDomain: 42,
  NoNetwork: 43,
  OperationInvalid: 55,
  NoStoragePool: 49,
  NoStorageVol: 50,
  OperationTimeout: 68,
  NoDomainSnapshot: 72,
  ArgumentUnsupported: 74,
  AuthFailed: 45,
  DomainExists: 28,
  OperationUnsupported: 84,
  AgentUnresponsive: 86,
  AgentUnsynced: 97,
  DeviceMissing: 99,
  /** Newer daemons than Debian 12's 9.0 (which says AgentUnresponsive for a timed-out agent). */
  AgentCommandTimeout: 112,
} as const;

export class LibvirtError extends Error {
  override name = "LibvirtError";
  readonly code: number;
  readonly domain: number;
  readonly level: number;
  /** The procedure that failed, for logs. */
  readonly procedure: string;

  constructor(code: number, domain: number, level: number, message: string, procedure: string) {
    super(message);
    this.code = code;
    this.domain = domain;
    this.level = level;
    this.procedure = procedure;
  }

  /** True when the error says the looked-up object does not exist. */
  get isNotFound(): boolean {
    const c = this.code;
    return (
      c === ErrorCode.NoDomain ||
      c === ErrorCode.NoNetwork ||
      c === ErrorCode.NoStoragePool ||
      c === ErrorCode.NoStorageVol ||
      c === ErrorCode.NoDomainSnapshot
    );
  }
}

export class ConnectionClosedError extends Error {
  override name = "ConnectionClosedError";
}

export class CallTimeoutError extends Error {
  override name = "CallTimeoutError";
  /** The procedure (or handshake step) that ran out of time, when known. */
  readonly procedure?: string;
  /** The deadline it had, in ms, when known. */
  readonly deadlineMs?: number;

  constructor(message: string, details: { procedure?: string; deadlineMs?: number } = {}) {
    super(message);
    if (details.procedure !== undefined) this.procedure = details.procedure;
    if (details.deadlineMs !== undefined) this.deadlineMs = details.deadlineMs;
  }
}

/** The call's result, or undefined when libvirt says the object does not exist (lookups). */
export async function unlessNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof LibvirtError && err.isNotFound) return undefined;
    throw err;
  }
}

/** Procedures that are guest agent commands (their only slow part is the agent). */
const AGENT_PROCEDURES = new Set(["domain-fsfreeze", "domain-fsthaw"]);

/**
 * True when a guest agent call (fsfreeze/thaw, quiesced snapshot, …) failed because the agent
 * cannot be reached, not because of what it was asked: the domain has no agent channel (libvirt
 * 9.0: ArgumentUnsupported, "QEMU guest agent is not configured"), the agent is not connected,
 * broken or did not answer its sync in time (AgentUnresponsive, AgentUnsynced; newer daemons:
 * AgentCommandTimeout), or an earlier agent command is still waiting for it (OperationTimeout,
 * "held by agent="). libvirt 9.0 waits for an agent command without limit once the agent has
 * synced, so a hung agent shows as our own deadline (CallTimeoutError) on a freeze or thaw.
 * A caller may then go on without the agent (e.g. a crash-consistent snapshot), but a freeze that
 * was sent may still reach the guest later: thaw after a failed freeze.
 */
export function isGuestAgentUnavailable(err: unknown): boolean {
  if (err instanceof CallTimeoutError) return AGENT_PROCEDURES.has(err.procedure ?? "");
  if (!(err instanceof LibvirtError)) return false;
  switch (err.code) {
    case ErrorCode.AgentUnresponsive:
    case ErrorCode.AgentUnsynced:
    case ErrorCode.AgentCommandTimeout:
      return true;
    // These codes also mean "unsupported flag/argument"; only the agent's wording counts.
    case ErrorCode.ArgumentUnsupported:
    case ErrorCode.OperationUnsupported:
      return /guest agent is not (configured|available|connected)/i.test(err.message);
    // An earlier agent command still waits for the agent and holds the domain's agent job:
    // "cannot acquire state change lock (held by agent=remoteDispatchDomainFSFreeze)".
    case ErrorCode.OperationTimeout:
      return /held by agent=/.test(err.message);
    default:
      return false;
  }
}
