// libvirt volume work the node's disk reconciler does: look volumes up, grow them (live
// through a running guest when one has them open), and import images through a staging volume.
import type { BlockList } from "node:net";
import { keyOfDomain } from "../../hypervisor/domain/from-spec.ts";
import { parseLiveDevices } from "../../hypervisor/domain/xml.ts";
import {
  type LibvirtClient,
  ListDomains,
  type StoragePoolRef,
  type StorageVolRef,
  StorageVolResizeFlags,
  unlessNotFound,
} from "../../hypervisor/libvirt/index.ts";
import {
  type ImageFacts,
  parsePoolXml,
  sniffImage,
  uncopyableReason,
  type VolumeDefinition,
  volumeXml,
} from "../../hypervisor/storage/volume.ts";
import { describeError } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import { ImageSourceError, openImage } from "./image-source.ts";

/** Target directories of this node's pools: images are never imported from a volume. */
export async function poolDirs(libvirt: LibvirtClient): Promise<string[]> {
  const dirs: string[] = [];
  for (const ref of await libvirt.listStoragePools()) {
    const { path } = parsePoolXml(await libvirt.storagePoolXml(ref));
    if (path) dirs.push(path);
  }
  return dirs;
}

/** Grows the volume: live through a running guest on this node that has it open, else offline. */
export async function growVolume(
  libvirt: LibvirtClient,
  vol: StorageVolRef,
  path: string,
  bytes: number,
  preallocate: boolean,
): Promise<string> {
  for (const dom of await libvirt.listAllDomains(ListDomains.Active)) {
    const disks = parseLiveDevices(await libvirt.domainXml(dom)).disks;
    if (!Object.values(disks).some((d) => d.path === path)) continue;
    await libvirt.blockResize(dom, path, bytes);
    return `live (VirtualMachine ${keyOfDomain(dom.name)?.split("/")[1] ?? dom.name} is running)`;
  }
  await libvirt.resizeVolume(vol, bytes, preallocate ? StorageVolResizeFlags.Allocate : 0);
  return "offline";
}

export interface ImportRequest {
  pool: StoragePoolRef;
  /** The disk's own volume; its capacity grows to the image's size when that is larger. */
  definition: VolumeDefinition;
  createFlags: number;
  url: string;
  importDirs: readonly string[];
  blockedNetworks: BlockList;
  log: Logger;
  /** The image is open and checked: the copy starts. */
  started(facts: ImageFacts): Promise<void>;
  /** Percent done (the upload is the first 90, the conversion the rest). */
  progress(percent: number): void;
}

/**
 * Streams the image into a staging volume of its own format, checks that libvirt reads it the
 * same way (no backing file), converts it into the disk's volume (qemu-img through
 * virStorageVolCreateXMLFrom), and drops the staging volume.
 */
export async function importImage(
  libvirt: LibvirtClient,
  r: ImportRequest,
): Promise<{ vol: StorageVolRef; facts: ImageFacts; bytes: number }> {
  const image = await openImage(r.url, r.importDirs, await poolDirs(libvirt), r.blockedNetworks);
  const facts = sniffImage(image.header, image.length);
  const stagingName = `${r.definition.name}.import`;
  let staging: StorageVolRef;
  try {
    if (facts.refused) throw new ImageSourceError(`${r.url}: ${facts.refused}`);
    await r.started(facts);
    const leftover = await unlessNotFound(libvirt.lookupVolume(r.pool, stagingName));
    if (leftover) await libvirt.deleteVolume(leftover);
    // The upload replaces the staged file's bytes with the image's.
    staging = await libvirt.createVolume(
      r.pool,
      volumeXml({
        name: stagingName,
        format: facts.format,
        capacityBytes: facts.virtualSize ?? image.length,
        allocationBytes: 0,
      }),
    );
  } catch (err) {
    image.close();
    throw err;
  }
  try {
    const sent = await libvirt.uploadVolume(staging, image.chunks, {
      length: image.length,
      onProgress: (n) => r.progress(Math.min(90, Math.floor((n / image.length) * 90))),
    });
    if (sent !== image.length)
      throw new ImageSourceError(`${r.url} ended after ${sent} of ${image.length} bytes`);
    const staged = await unlessNotFound(libvirt.lookupVolume(r.pool, stagingName));
    if (!staged) throw new Error(`staging volume ${stagingName} vanished during the import`);
    const refused = uncopyableReason(await libvirt.volumeXml(staged), facts.format);
    if (refused) throw new ImageSourceError(`${r.url}: ${refused}`);
    r.progress(90);
    const capacityBytes = Math.max(r.definition.capacityBytes, facts.virtualSize ?? 0);
    const vol = await libvirt.cloneVolume(
      r.pool,
      volumeXml({ ...r.definition, capacityBytes }),
      staged,
      r.createFlags,
    );
    r.progress(100);
    return { vol, facts, bytes: image.length };
  } finally {
    const left = await unlessNotFound(libvirt.lookupVolume(r.pool, stagingName)).catch(() => undefined);
    if (left)
      await libvirt
        .deleteVolume(left)
        .catch((err) => r.log.warn({ err: describeError(err) }, "staging volume not deleted"));
  }
}
