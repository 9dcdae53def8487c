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
  AuthFailed: 45,
  DomainExists: 28,
  OperationUnsupported: 84,
  AgentUnresponsive: 86,
  DeviceMissing: 99,
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
