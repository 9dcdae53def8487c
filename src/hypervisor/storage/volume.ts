// Pure: libvirt storage pool and volume XML, volume names that stay inside their pool, and
// what an image to import is (qcow2 or raw, its size, whether it is safe to use).
import { createHash } from "node:crypto";
import { XMLBuilder, XMLParser } from "fast-xml-parser";

export type VolumeFormat = "qcow2" | "raw";

export interface VolumeDefinition {
  name: string;
  format: VolumeFormat;
  capacityBytes: number;
  /** Bytes allocated up front: 0 for sparse volumes, the capacity when preallocated. */
  allocationBytes: number;
  /** A thin qcow2 volume on top of this one (a linked clone): what it does not hold is read from it. */
  backing?: BackingFile;
}

/** A backing file and its format: recorded in the qcow2 header, so nobody probes the file's content. */
export interface BackingFile {
  path: string;
  format: VolumeFormat;
}

/** Pool types whose volumes every node sees (a disk there is not tied to one node). */
export const SHARED_POOL_TYPES: ReadonlySet<string> = new Set([
  "netfs",
  "gluster",
  "rbd",
  "iscsi",
  "iscsi-direct",
  "sheepdog",
  "vstorage",
]);

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: "@_", format: true });
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@_", parseTagValue: false });

/** Characters a volume file name may use: it becomes a path inside the pool directory. */
const SAFE_VOLUME_NAME = /^[a-z0-9][a-z0-9._-]*$/;

export class UnsafeNameError extends Error {}

/**
 * The volume of VMDisk NAMESPACE/NAME: "<namespace>_<name>.qcow2" (or ".img" for raw). Kubernetes
 * names cannot hold "/" or "_", but the name is checked again here: it becomes a file path.
 */
export function volumeNameOf(namespace: string, name: string, format: VolumeFormat): string {
  for (const part of [namespace, name]) {
    if (!SAFE_VOLUME_NAME.test(part) || part.includes("..") || part.includes("\0"))
      throw new UnsafeNameError(`"${part}" cannot name a volume: use lowercase letters, digits, ".", "-"`);
  }
  return `${namespace}_${name}.${format === "qcow2" ? "qcow2" : "img"}`;
}

export function volumeXml(v: VolumeDefinition): string {
  return builder.build({
    volume: {
      name: v.name,
      capacity: { "@_unit": "bytes", "#text": String(v.capacityBytes) },
      allocation: { "@_unit": "bytes", "#text": String(v.allocationBytes) },
      // qcow2 v3 (compat 1.1), not libvirt's default v2: v2 cannot be resized once it holds
      // internal snapshots, and lacks zero clusters.
      target: { format: { "@_type": v.format }, ...(v.format === "qcow2" ? { compat: "1.1" } : {}) },
      ...(v.backing
        ? { backingStore: { path: v.backing.path, format: { "@_type": v.backing.format } } }
        : {}),
    },
  }) as string;
}

/** Longest file name the node's file systems take (bytes; our names are ASCII). */
export const FILE_NAME_MAX = 255;

/**
 * STEM + SUFFIX as a file name. One that would be too long keeps the start of STEM and a hash
 * of all of it, so it stays unique and the same every time.
 */
export function fileNameFitting(stem: string, suffix: string): string {
  if (stem.length + suffix.length <= FILE_NAME_MAX) return stem + suffix;
  const hash = createHash("sha256").update(stem).digest("hex").slice(0, 16);
  return `${stem.slice(0, FILE_NAME_MAX - suffix.length - hash.length - 1)}-${hash}${suffix}`;
}

/** Name of the copy of a disk's volume that snapshot TIMESTAMP holds ("_" never occurs in a disk's own). */
export function snapshotVolumeNameOf(
  namespace: string,
  name: string,
  format: VolumeFormat,
  timestamp: number,
): string {
  const own = volumeNameOf(namespace, name, format);
  const dot = own.lastIndexOf(".");
  return fileNameFitting(own.slice(0, dot), `_snap-${Math.trunc(timestamp)}${own.slice(dot)}`);
}

/** A directory pool (the agent's default): libvirt creates the directory when it builds the pool. */
export function dirPoolXml(name: string, path: string): string {
  if (!path.startsWith("/") || path.split("/").includes("..") || path.includes("\0"))
    throw new UnsafeNameError(`storage pool path "${path}" must be absolute, without ".."`);
  return builder.build({ pool: { "@_type": "dir", name, target: { path } } }) as string;
}

export interface PoolDescription {
  type: string;
  path?: string;
  shared: boolean;
}

export function parsePoolXml(xml: string): PoolDescription {
  const doc = parser.parse(xml) as { pool?: { "@_type"?: string; target?: { path?: string } } };
  const type = doc.pool?.["@_type"] ?? "unknown";
  const path = doc.pool?.target?.path;
  return { type, ...(typeof path === "string" ? { path } : {}), shared: SHARED_POOL_TYPES.has(type) };
}

/** The format libvirt reports for a volume (<target><format type=…>) and its backing file, if any. */
export function parseVolume(xml: string): { format?: string; backingPath?: string; backingFormat?: string } {
  const doc = parser.parse(xml) as {
    volume?: {
      target?: { format?: { "@_type"?: string } };
      backingStore?: { path?: unknown; format?: { "@_type"?: string } };
    };
  };
  const format = doc.volume?.target?.format?.["@_type"];
  const backing = doc.volume?.backingStore?.path;
  const backingFormat = doc.volume?.backingStore?.format?.["@_type"];
  return {
    ...(format ? { format } : {}),
    ...(typeof backing === "string" && backing ? { backingPath: backing } : {}),
    ...(typeof backing === "string" && backing && backingFormat ? { backingFormat } : {}),
  };
}

/**
 * Why libvirt must not copy a volume: libvirt probes file contents, so a raw disk whose guest
 * wrote a qcow2 header naming a host file would be copied together with that file. OURS is
 * the one backing file allowed: the base of a linked clone we made (its path as libvirt has
 * it, and its format), which the copy reads through.
 */
export function uncopyableReason(
  xml: string,
  expectedFormat: string,
  ours?: BackingFile,
): string | undefined {
  const v = parseVolume(xml);
  const isOurs = ours && v.backingPath === ours.path && v.backingFormat === ours.format;
  if (v.backingPath && !isOurs)
    return `libvirt sees a backing file (${v.backingPath}) in the volume; it is not copied`;
  // An ISO 9660 image is raw bytes to QEMU; libvirt names it "iso" when it probes the content
  // (a pool refresh may do so at any moment).
  const readsAs = v.format === "iso" ? "raw" : v.format;
  if (readsAs !== expectedFormat)
    return `libvirt reads the volume as ${v.format ?? "unknown"}, not ${expectedFormat}; it is not copied`;
  return undefined;
}

export interface ImageFacts {
  format: VolumeFormat;
  /** Size the guest sees: from the qcow2 header, or the byte length of a raw image. */
  virtualSize?: number;
  /** Why the image must not be used. */
  refused?: string;
}

/** Bytes of an image header that sniffImage needs. */
export const IMAGE_HEADER_BYTES = 512;

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** qcow2 v3 incompatible feature bit 2: guest data lives in an external file. */
const QCOW2_EXTERNAL_DATA = 1n << 2n;

/**
 * qcow2 or raw, from the first bytes of an image. A qcow2 image that names a backing file or an
 * external data file is refused: QEMU would open that host file for the guest.
 */
export function sniffImage(header: Uint8Array, totalBytes?: number): ImageFacts {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (header.byteLength < 72 || view.getUint32(0) !== QCOW2_MAGIC) {
    return { format: "raw", ...(totalBytes !== undefined ? { virtualSize: totalBytes } : {}) };
  }
  const version = view.getUint32(4);
  const backingOffset = view.getBigUint64(8);
  const virtualSize = Number(view.getBigUint64(24));
  if (backingOffset !== 0n)
    return { format: "qcow2", virtualSize, refused: "the qcow2 image names a backing file" };
  if (version >= 3 && header.byteLength >= 80 && (view.getBigUint64(72) & QCOW2_EXTERNAL_DATA) !== 0n)
    return { format: "qcow2", virtualSize, refused: "the qcow2 image keeps its data in an external file" };
  return { format: "qcow2", virtualSize };
}
