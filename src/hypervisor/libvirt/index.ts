// The libvirt client: our own implementation of libvirt's RPC protocol over its socket.
export * from "./client.ts";
export * from "./constants.ts";
export * from "./errors.ts";
export type {
  DomainRef,
  NetworkRef,
  SnapshotRef,
  StoragePoolRef,
  StorageVolRef,
  TypedValue,
} from "./protocol.ts";
export type { DownloadOptions, UploadOptions } from "./stream.ts";
export { parseLibvirtUri } from "./uri.ts";
export { STREAM_PACKET_MAX } from "./wire.ts";
