// libvirt volume work the node's disk reconciler does: look volumes up, grow them (live
// through a running guest when one has them open), and import images through a staging volume.
import { setTimeout as sleep } from "node:timers/promises";
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
import { type ImportLimits, maximumText } from "./image-limits.ts";
import { ImageSourceError, openImage } from "./image-source.ts";
import { redactUrl } from "./url-redaction.ts";

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
  /** Directories no file import may read, even inside importDirs (the agent's own state). */
  refusedDirs?: readonly string[];
  limits: ImportLimits;
  log: Logger;
  /** The image is open and checked: the copy starts. */
  started(facts: ImageFacts): Promise<void>;
  /** Percent done (the upload is the first 90, the conversion the rest). */
  progress(percent: number): void;
}

/**
 * Streams the image into a staging volume of its own format, checks that libvirt reads it the
 * same way (no backing file), converts it into the disk's volume (qemu-img through
 * virStorageVolCreateXMLFrom), and drops the staging volume. On any failure (a refused or too
 * large image, a stopped download) the staging volume goes and the disk's volume was never
 * made: nothing is left in the pool.
 */
export async function importImage(
  libvirt: LibvirtClient,
  r: ImportRequest,
): Promise<{ vol: StorageVolRef; facts: ImageFacts; bytes: number }> {
  const shown = redactUrl(r.url);
  const refused = [...(await poolDirs(libvirt)), ...(r.refusedDirs ?? [])];
  const image = await openImage(r.url, r.importDirs, refused, r.limits);
  const facts = sniffImage(image.header, image.length);
  const stagingName = `${r.definition.name}.import`;
  let staging: StorageVolRef;
  try {
    if (facts.refused) throw new ImageSourceError(`${shown}: ${facts.refused}`);
    if ((facts.virtualSize ?? 0) > r.limits.maxBytes)
      throw new ImageSourceError(
        `${shown}: the ${facts.format} image's virtual size, ${facts.virtualSize} bytes, is more than ` +
          maximumText(r.limits.maxBytes),
      );
    await r.started(facts);
    await deleteStaging(libvirt, r.pool, stagingName, r.log);
    // The upload replaces the staged file's bytes with the image's (a raw image of unknown
    // length grows the file as it comes).
    staging = await libvirt.createVolume(
      r.pool,
      volumeXml({
        name: stagingName,
        format: facts.format,
        capacityBytes: facts.virtualSize ?? image.length ?? 0,
        allocationBytes: 0,
      }),
    );
  } catch (err) {
    image.close();
    throw err;
  }
  try {
    const length = image.length;
    const sent = await libvirt.uploadVolume(staging, image.chunks, {
      ...(length !== undefined
        ? { length, onProgress: (n: number) => r.progress(Math.min(90, Math.floor((n / length) * 90))) }
        : {}),
    });
    if (length !== undefined && sent !== length)
      throw new ImageSourceError(`${shown} ended after ${sent} of ${length} bytes`);
    const staged = await unlessNotFound(libvirt.lookupVolume(r.pool, stagingName));
    if (!staged) throw new Error(`staging volume ${stagingName} vanished during the import`);
    const refused = uncopyableReason(await libvirt.volumeXml(staged), facts.format);
    if (refused) throw new ImageSourceError(`${shown}: ${refused}`);
    r.progress(90);
    const capacityBytes = Math.max(r.definition.capacityBytes, facts.virtualSize ?? sent);
    const vol = await libvirt.cloneVolume(
      r.pool,
      volumeXml({ ...r.definition, capacityBytes }),
      staged,
      r.createFlags,
    );
    r.progress(100);
    return { vol, facts, bytes: sent };
  } finally {
    image.close();
    await deleteStaging(libvirt, r.pool, stagingName, r.log);
  }
}

/**
 * Deletes the staging volume if it is there. libvirt refuses while an aborted upload is still
 * being closed on its side, so a refusal is tried again for a few seconds.
 */
async function deleteStaging(libvirt: LibvirtClient, pool: StoragePoolRef, name: string, log: Logger) {
  for (let attempt = 1; ; attempt++) {
    try {
      const left = await unlessNotFound(libvirt.lookupVolume(pool, name));
      if (left) await unlessNotFound(libvirt.deleteVolume(left));
      return;
    } catch (err) {
      if (attempt >= 20) {
        log.warn({ err: describeError(err), volume: name }, "staging volume not deleted");
        return;
      }
      await sleep(250);
    }
  }
}
