// libvirt enum and flag values the operator uses (include/libvirt/libvirt-*.h).

export const DomainState = {
  NoState: 0,
  Running: 1,
  Blocked: 2,
  Paused: 3,
  Shutdown: 4,
  Shutoff: 5,
  Crashed: 6,
  PmSuspended: 7,
} as const;

/** A domain whose QEMU is up: running, paused, blocked, shutting down or suspended (not off, crashed or unknown). */
export function isActiveState(state: number): boolean {
  return (
    state === DomainState.Running ||
    state === DomainState.Paused ||
    state === DomainState.Blocked ||
    state === DomainState.Shutdown ||
    state === DomainState.PmSuspended
  );
}

/** What went wrong on a disk (virDomainDiskErrorCode). */
export const DomainDiskError = { None: 0, Unspecified: 1, NoSpace: 2 } as const;

export const DomainEventType = {
  Defined: 0,
  Undefined: 1,
  Started: 2,
  Suspended: 3,
  Resumed: 4,
  Stopped: 5,
  Shutdown: 6,
  PmSuspended: 7,
  Crashed: 8,
} as const;

export const DomainEventId = { Lifecycle: 0, Reboot: 1, DeviceRemoved: 15 } as const;

export const ListDomains = {
  Active: 1 << 0,
  Inactive: 1 << 1,
  Persistent: 1 << 2,
  Transient: 1 << 3,
  Running: 1 << 4,
  Paused: 1 << 5,
  Shutoff: 1 << 6,
} as const;

export const DomainXmlFlags = {
  Secure: 1 << 0,
  Inactive: 1 << 1,
  UpdateCpu: 1 << 2,
  Migratable: 1 << 3,
} as const;
export const DomainStartFlags = {
  Paused: 1 << 0,
  Autodestroy: 1 << 1,
  BypassCache: 1 << 2,
  ForceBoot: 1 << 3,
} as const;
export const DomainUndefineFlags = {
  ManagedSave: 1 << 0,
  SnapshotsMetadata: 1 << 1,
  Nvram: 1 << 2,
  KeepNvram: 1 << 3,
  CheckpointsMetadata: 1 << 4,
} as const;
export const DomainShutdownFlags = { Default: 0, AcpiPowerButton: 1 << 0, GuestAgent: 1 << 1 } as const;
export const DomainRebootFlags = { Default: 0, AcpiPowerButton: 1 << 0, GuestAgent: 1 << 1 } as const;
export const DomainDestroyFlags = { Default: 0, Graceful: 1 << 0 } as const;
/** For attach/detach/update device, set memory, …: which definition a change affects. */
export const DomainAffect = { Current: 0, Live: 1 << 0, Config: 1 << 1 } as const;
export const BlockResizeFlags = { Bytes: 1 << 0 } as const;

export const DomainStats = {
  State: 1 << 0,
  CpuTotal: 1 << 1,
  Balloon: 1 << 2,
  Vcpu: 1 << 3,
  Interface: 1 << 4,
  Block: 1 << 5,
} as const;
/** virConnectGetAllDomainStatsFlags: which domains to report (none set: all). */
export const DomainStatsFlags = { Active: 1 << 0, Inactive: 1 << 1 } as const;

export const SnapshotCreateFlags = {
  Redefine: 1 << 0,
  Current: 1 << 1,
  NoMetadata: 1 << 2,
  Halt: 1 << 3,
  DiskOnly: 1 << 4,
  ReuseExt: 1 << 5,
  Quiesce: 1 << 6,
  Atomic: 1 << 7,
  Live: 1 << 8,
  Validate: 1 << 9,
} as const;
export const SnapshotRevertFlags = { Running: 1 << 0, Paused: 1 << 1, Force: 1 << 2 } as const;
export const SnapshotDeleteFlags = { Children: 1 << 0, MetadataOnly: 1 << 1, ChildrenOnly: 1 << 2 } as const;
/** virDomainSaveRestoreFlags: for save, restore (and managed save). */
export const DomainSaveRestoreFlags = {
  BypassCache: 1 << 0,
  /** Start the restored guest running, whatever state it was saved in. */
  Running: 1 << 1,
  /** Leave the restored guest paused. */
  Paused: 1 << 2,
  ResetNvram: 1 << 3,
} as const;
/** virDomainSaveImageXMLFlags. */
export const SaveImageXmlFlags = { Secure: 1 << 0 } as const;

export const StoragePoolState = {
  Inactive: 0,
  Building: 1,
  Running: 2,
  Degraded: 3,
  Inaccessible: 4,
} as const;
export const StorageVolCreateFlags = { PreallocMetadata: 1 << 0, Reflink: 1 << 1, Validate: 1 << 2 } as const;
export const StorageVolResizeFlags = { Allocate: 1 << 0, Delta: 1 << 1, Shrink: 1 << 2 } as const;
export const StorageVolDeleteFlags = { Normal: 0, Zeroed: 1 << 0, WithSnapshots: 1 << 1 } as const;

export const NetworkUpdateCommand = { None: 0, Modify: 1, Delete: 2, AddLast: 3, AddFirst: 4 } as const;
export const NetworkSection = { IpDhcpHost: 4 } as const;
export const NetworkUpdateAffect = { Current: 0, Live: 1 << 0, Config: 1 << 1 } as const;

export const ConnectFlags = { ReadOnly: 1 << 0 } as const;
export const AuthType = { None: 0, Sasl: 1, Polkit: 2 } as const;
/** VIR_DRV_FEATURE_PROGRAM_KEEPALIVE: asking for it makes the server answer our pings. */
export const FEATURE_PROGRAM_KEEPALIVE = 10;
/** VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER: the daemon reads virNetworkUpdate's arguments unswapped. */
export const FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER = 16;
export const ListNetworks = { Inactive: 1 << 0, Active: 1 << 1 } as const;
export const NetworkXmlFlags = { Inactive: 1 << 0 } as const;
