// The subset of libvirt's remote program (remote_protocol.x, program 0x20008086) the operator
// uses: procedure numbers and the XDR shape of their arguments and replies.
import {
  array,
  type Codec,
  double,
  fixedArray,
  hyper,
  type Infer,
  int,
  opaqueFixed,
  optional,
  string,
  struct,
  uhyper,
  uhyperNumber,
  uint,
  XdrDecodeError,
  xdrVoid,
} from "./xdr.ts";

const STRING_MAX = 4194304;
const LIST_MAX = 16384;
/** REMOTE_DOMAIN_DISK_ERRORS_MAX. */
const DISK_ERRORS_MAX = 256;
/** REMOTE_DOMAIN_FSFREEZE_MOUNTPOINTS_MAX. */
export const FSFREEZE_MOUNTPOINTS_MAX = 256;

export const nonnullString = string(STRING_MAX);
export const remoteString = optional(nonnullString);
export const uuid = opaqueFixed(16);

export const Domain = struct({ name: nonnullString, uuid, id: int });
export const Network = struct({ name: nonnullString, uuid });
export const StoragePool = struct({ name: nonnullString, uuid });
export const StorageVol = struct({ pool: nonnullString, name: nonnullString, key: nonnullString });
export const DomainSnapshot = struct({ name: nonnullString, dom: Domain });

export type DomainRef = Infer<typeof Domain>;
export type NetworkRef = Infer<typeof Network>;
export type StoragePoolRef = Infer<typeof StoragePool>;
export type StorageVolRef = Infer<typeof StorageVol>;
export type SnapshotRef = Infer<typeof DomainSnapshot>;

/** virNetMessageError: what the server sends with status ERROR. */
export const RemoteError = struct({
  code: int,
  domain: int,
  message: remoteString,
  level: int,
  dom: optional(Domain),
  str1: remoteString,
  str2: remoteString,
  str3: remoteString,
  int1: int,
  int2: int,
  net: optional(Network),
});

/** virTypedParameter: a named value whose type is the union discriminant. */
export type TypedValue = number | bigint | boolean | string;
export interface TypedParam {
  field: string;
  value: TypedValue;
}

const TYPED_INT = 1;
const TYPED_UINT = 2;
const TYPED_LLONG = 3;
const TYPED_ULLONG = 4;
const TYPED_DOUBLE = 5;
const TYPED_BOOLEAN = 6;
const TYPED_STRING = 7;

export const TypedParamCodec: Codec<TypedParam> = {
  encode(w, p) {
    nonnullString.encode(w, p.field);
    const v = p.value;
    if (typeof v === "string") {
      w.int(TYPED_STRING);
      nonnullString.encode(w, v);
    } else if (typeof v === "boolean") {
      w.int(TYPED_BOOLEAN);
      w.int(v ? 1 : 0);
    } else if (typeof v === "bigint") {
      w.int(TYPED_ULLONG);
      w.uhyper(v);
    } else if (Number.isInteger(v)) {
      w.int(TYPED_LLONG);
      w.hyper(BigInt(v));
    } else {
      w.int(TYPED_DOUBLE);
      w.double(v);
    }
  },
  decode(r) {
    const field = nonnullString.decode(r);
    const type = r.int();
    switch (type) {
      case TYPED_INT:
        return { field, value: r.int() };
      case TYPED_UINT:
        return { field, value: r.uint() };
      case TYPED_LLONG:
        return { field, value: hyper.decode(r) };
      case TYPED_ULLONG:
        return { field, value: uhyper.decode(r) };
      case TYPED_DOUBLE:
        return { field, value: double.decode(r) };
      case TYPED_BOOLEAN:
        return { field, value: r.int() !== 0 };
      case TYPED_STRING:
        return { field, value: nonnullString.decode(r) };
      default:
        throw new XdrDecodeError(`typed parameter ${field} has unknown type ${type}`);
    }
  },
};

export interface Procedure<A, R> {
  number: number;
  name: string;
  args: Codec<A>;
  ret: Codec<R>;
}

function proc<A, R>(number: number, name: string, args: Codec<A>, ret: Codec<R>): Procedure<A, R> {
  return { number, name, args, ret };
}

const flags = uint;
const domFlags = struct({ dom: Domain, flags });
const domOnly = struct({ dom: Domain });
const xmlRet = struct({ xml: nonnullString });
const domRet = struct({ dom: Domain });
const snapRet = struct({ snap: DomainSnapshot });
const snapFlags = struct({ snap: DomainSnapshot, flags });
const poolOnly = struct({ pool: StoragePool });
const poolFlags = struct({ pool: StoragePool, flags });
const poolRet = struct({ pool: StoragePool });
const volOnly = struct({ vol: StorageVol });
const volFlags = struct({ vol: StorageVol, flags });
const volRet = struct({ vol: StorageVol });
/** remote_storage_vol_upload_args and remote_storage_vol_download_args (the same shape). */
const volStream = struct({ vol: StorageVol, offset: uhyperNumber, length: uhyperNumber, flags });
const netOnly = struct({ net: Network });
const netRet = struct({ net: Network });
const listArgs = struct({ need_results: int, flags });
const domDevice = struct({ dom: Domain, xml: nonnullString, flags });
/** remote_domain_fsfreeze_args / _fsthaw_args (the same shape); an empty list means every file system. */
const fsFreezeArgs = struct({
  dom: Domain,
  mountpoints: array(nonnullString, FSFREEZE_MOUNTPOINTS_MAX),
  flags,
});
const fsFreezeRet = struct({ filesystems: int });

export const P = {
  ConnectOpen: proc(1, "connect-open", struct({ name: remoteString, flags }), xdrVoid),
  ConnectClose: proc(2, "connect-close", xdrVoid, xdrVoid),
  ConnectGetVersion: proc(4, "connect-get-version", xdrVoid, struct({ hv_ver: uhyperNumber })),
  NodeGetInfo: proc(
    6,
    "node-get-info",
    xdrVoid,
    struct({
      model: fixedArray(int, 32),
      memory: uhyperNumber,
      cpus: int,
      mhz: int,
      nodes: int,
      sockets: int,
      cores: int,
      threads: int,
    }),
  ),
  ConnectGetCapabilities: proc(
    7,
    "connect-get-capabilities",
    xdrVoid,
    struct({ capabilities: nonnullString }),
  ),
  DomainGetXmlDesc: proc(14, "domain-get-xml-desc", domFlags, xmlRet),
  DomainGetAutostart: proc(15, "domain-get-autostart", domOnly, struct({ autostart: int })),
  DomainGetInfo: proc(
    16,
    "domain-get-info",
    domOnly,
    struct({ state: int, maxMem: uhyperNumber, memory: uhyperNumber, nrVirtCpu: int, cpuTime: uhyper }),
  ),
  DomainLookupByName: proc(23, "domain-lookup-by-name", struct({ name: nonnullString }), domRet),
  DomainLookupByUuid: proc(24, "domain-lookup-by-uuid", struct({ uuid }), domRet),
  DomainReboot: proc(27, "domain-reboot", domFlags, xdrVoid),
  DomainResume: proc(28, "domain-resume", domOnly, xdrVoid),
  DomainSetAutostart: proc(29, "domain-set-autostart", struct({ dom: Domain, autostart: int }), xdrVoid),
  DomainSuspend: proc(34, "domain-suspend", domOnly, xdrVoid),
  NetworkCreate: proc(39, "network-create", netOnly, xdrVoid),
  NetworkDefineXml: proc(41, "network-define-xml", struct({ xml: nonnullString }), netRet),
  NetworkDestroy: proc(42, "network-destroy", netOnly, xdrVoid),
  NetworkGetXmlDesc: proc(43, "network-get-xml-desc", struct({ net: Network, flags }), xmlRet),
  NetworkLookupByName: proc(46, "network-lookup-by-name", struct({ name: nonnullString }), netRet),
  NetworkUndefine: proc(49, "network-undefine", netOnly, xdrVoid),
  ConnectGetHostname: proc(59, "connect-get-hostname", xdrVoid, struct({ hostname: nonnullString })),
  ConnectSupportsFeature: proc(
    60,
    "connect-supports-feature",
    struct({ feature: int }),
    struct({ supported: int }),
  ),
  AuthList: proc(66, "auth-list", xdrVoid, struct({ types: array(int, 20) })),
  AuthPolkit: proc(70, "auth-polkit", xdrVoid, struct({ complete: int })),
  StoragePoolDefineXml: proc(77, "storage-pool-define-xml", struct({ xml: nonnullString, flags }), poolRet),
  StoragePoolCreate: proc(78, "storage-pool-create", poolFlags, xdrVoid),
  StoragePoolBuild: proc(79, "storage-pool-build", poolFlags, xdrVoid),
  StoragePoolDestroy: proc(80, "storage-pool-destroy", poolOnly, xdrVoid),
  StoragePoolUndefine: proc(82, "storage-pool-undefine", poolOnly, xdrVoid),
  StoragePoolRefresh: proc(83, "storage-pool-refresh", poolFlags, xdrVoid),
  StoragePoolLookupByName: proc(84, "storage-pool-lookup-by-name", struct({ name: nonnullString }), poolRet),
  StoragePoolGetInfo: proc(
    87,
    "storage-pool-get-info",
    poolOnly,
    struct({ state: int, capacity: uhyperNumber, allocation: uhyperNumber, available: uhyperNumber }),
  ),
  StoragePoolGetXmlDesc: proc(88, "storage-pool-get-xml-desc", poolFlags, xmlRet),
  StoragePoolSetAutostart: proc(
    90,
    "storage-pool-set-autostart",
    struct({ pool: StoragePool, autostart: int }),
    xdrVoid,
  ),
  StorageVolCreateXml: proc(
    93,
    "storage-vol-create-xml",
    struct({ pool: StoragePool, xml: nonnullString, flags }),
    volRet,
  ),
  StorageVolDelete: proc(94, "storage-vol-delete", volFlags, xdrVoid),
  StorageVolLookupByName: proc(
    95,
    "storage-vol-lookup-by-name",
    struct({ pool: StoragePool, name: nonnullString }),
    volRet,
  ),
  StorageVolGetInfo: proc(
    98,
    "storage-vol-get-info",
    volOnly,
    struct({ type: int, capacity: uhyperNumber, allocation: uhyperNumber }),
  ),
  StorageVolGetXmlDesc: proc(99, "storage-vol-get-xml-desc", volFlags, xmlRet),
  StorageVolGetPath: proc(100, "storage-vol-get-path", volOnly, struct({ name: nonnullString })),
  ConnectGetUri: proc(110, "connect-get-uri", xdrVoid, struct({ uri: nonnullString })),
  StorageVolCreateXmlFrom: proc(
    125,
    "storage-vol-create-xml-from",
    struct({ pool: StoragePool, xml: nonnullString, clonevol: StorageVol, flags }),
    volRet,
  ),
  ConnectGetLibVersion: proc(157, "connect-get-lib-version", xdrVoid, struct({ lib_ver: uhyperNumber })),
  DomainAttachDeviceFlags: proc(160, "domain-attach-device-flags", domDevice, xdrVoid),
  DomainDetachDeviceFlags: proc(161, "domain-detach-device-flags", domDevice, xdrVoid),
  StorageVolWipe: proc(165, "storage-vol-wipe", volFlags, xdrVoid),
  DomainUpdateDeviceFlags: proc(174, "domain-update-device-flags", domDevice, xdrVoid),
  DomainSnapshotCreateXml: proc(
    185,
    "domain-snapshot-create-xml",
    struct({ dom: Domain, xml_desc: nonnullString, flags }),
    snapRet,
  ),
  DomainSnapshotGetXmlDesc: proc(186, "domain-snapshot-get-xml-desc", snapFlags, xmlRet),
  DomainSnapshotLookupByName: proc(
    189,
    "domain-snapshot-lookup-by-name",
    struct({ dom: Domain, name: nonnullString, flags }),
    snapRet,
  ),
  DomainSnapshotCurrent: proc(191, "domain-snapshot-current", domFlags, snapRet),
  DomainRevertToSnapshot: proc(192, "domain-revert-to-snapshot", snapFlags, xdrVoid),
  DomainSnapshotDelete: proc(193, "domain-snapshot-delete", snapFlags, xdrVoid),
  DomainCreateWithFlags: proc(196, "domain-create-with-flags", domFlags, domRet),
  /** Opens a write stream into the volume; the data follows as STREAM packets (stream.ts). */
  StorageVolUpload: proc(208, "storage-vol-upload", volStream, xdrVoid),
  /** Opens a read stream from the volume; the data follows as STREAM packets (stream.ts). */
  StorageVolDownload: proc(209, "storage-vol-download", volStream, xdrVoid),
  DomainGetState: proc(212, "domain-get-state", domFlags, struct({ state: int, reason: int })),
  DomainUndefineFlags: proc(231, "domain-undefine-flags", domFlags, xdrVoid),
  /** dxml: a replacement domain XML for the image (same ABI), or null. */
  DomainSaveFlags: proc(
    232,
    "domain-save-flags",
    struct({ dom: Domain, to: nonnullString, dxml: remoteString, flags }),
    xdrVoid,
  ),
  DomainRestoreFlags: proc(
    233,
    "domain-restore-flags",
    struct({ from: nonnullString, dxml: remoteString, flags }),
    xdrVoid,
  ),
  DomainDestroyFlags: proc(234, "domain-destroy-flags", domFlags, xdrVoid),
  DomainSaveImageGetXmlDesc: proc(
    235,
    "domain-save-image-get-xml-desc",
    struct({ file: nonnullString, flags }),
    xmlRet,
  ),
  DomainReset: proc(245, "domain-reset", domFlags, xdrVoid),
  DomainBlockResize: proc(
    251,
    "domain-block-resize",
    struct({ dom: Domain, disk: nonnullString, size: uhyperNumber, flags }),
    xdrVoid,
  ),
  DomainShutdownFlags: proc(258, "domain-shutdown-flags", domFlags, xdrVoid),
  StorageVolResize: proc(
    260,
    "storage-vol-resize",
    struct({ vol: StorageVol, capacity: uhyperNumber, flags }),
    xdrVoid,
  ),
  /** The disks whose I/O failed (their target, e.g. vda) and why; read after a pause with reason I/O error. */
  DomainGetDiskErrors: proc(
    263,
    "domain-get-disk-errors",
    struct({ dom: Domain, maxerrors: uint, flags }),
    struct({ errors: array(struct({ disk: nonnullString, error: int }), DISK_ERRORS_MAX), nerrors: int }),
  ),
  ConnectListAllDomains: proc(
    273,
    "connect-list-all-domains",
    listArgs,
    struct({ domains: array(Domain, LIST_MAX), ret: uint }),
  ),
  DomainListAllSnapshots: proc(
    274,
    "domain-list-all-snapshots",
    struct({ dom: Domain, need_results: int, flags }),
    struct({ snapshots: array(DomainSnapshot, LIST_MAX), ret: int }),
  ),
  ConnectListAllStoragePools: proc(
    281,
    "connect-list-all-storage-pools",
    listArgs,
    struct({ pools: array(StoragePool, LIST_MAX), ret: uint }),
  ),
  StoragePoolListAllVolumes: proc(
    282,
    "storage-pool-list-all-volumes",
    struct({ pool: StoragePool, need_results: int, flags }),
    struct({ vols: array(StorageVol, LIST_MAX), ret: uint }),
  ),
  ConnectListAllNetworks: proc(
    283,
    "connect-list-all-networks",
    listArgs,
    struct({ nets: array(Network, LIST_MAX), ret: uint }),
  ),
  NetworkUpdate: proc(
    291,
    "network-update",
    struct({ net: Network, command: uint, section: uint, parentIndex: int, xml: nonnullString, flags }),
    xdrVoid,
  ),
  ConnectDomainEventCallbackRegisterAny: proc(
    316,
    "connect-domain-event-callback-register-any",
    struct({ eventID: int, dom: optional(Domain) }),
    struct({ callbackID: int }),
  ),
  ConnectDomainEventCallbackDeregisterAny: proc(
    317,
    "connect-domain-event-callback-deregister-any",
    struct({ callbackID: int }),
    xdrVoid,
  ),
  /** Guest agent: freezes the guest's file systems; returns how many it froze (thaw: thawed). */
  DomainFsFreeze: proc(335, "domain-fsfreeze", fsFreezeArgs, fsFreezeRet),
  DomainFsThaw: proc(336, "domain-fsthaw", fsFreezeArgs, fsFreezeRet),
  NetworkGetDhcpLeases: proc(
    341,
    "network-get-dhcp-leases",
    struct({ net: Network, mac: remoteString, need_results: int, flags }),
    struct({
      leases: array(
        struct({
          iface: nonnullString,
          expirytime: hyper,
          type: int,
          mac: remoteString,
          iaid: remoteString,
          ipaddr: nonnullString,
          prefix: uint,
          hostname: remoteString,
          clientid: remoteString,
        }),
        65536,
      ),
      ret: uint,
    }),
  ),
  ConnectGetAllDomainStats: proc(
    344,
    "connect-get-all-domain-stats",
    struct({ doms: array(Domain, LIST_MAX), stats: uint, flags }),
    struct({ retStats: array(struct({ dom: Domain, params: array(TypedParamCodec, 262144) }), LIST_MAX) }),
  ),
  DomainDefineXmlFlags: proc(350, "domain-define-xml-flags", struct({ xml: nonnullString, flags }), domRet),
} as const;

/** Asynchronous messages the server sends (type MESSAGE) for registered callbacks. */
export const EventProc = {
  Lifecycle: 318,
  Reboot: 319,
  DeviceRemoved: 333,
} as const;

export const LifecycleEventMsg = struct({
  callbackID: int,
  msg: struct({ dom: Domain, event: int, detail: int }),
});
export const RebootEventMsg = struct({ callbackID: int, msg: struct({ dom: Domain }) });
export const DeviceRemovedEventMsg = struct({
  callbackID: int,
  msg: struct({ dom: Domain, devAlias: nonnullString }),
});
