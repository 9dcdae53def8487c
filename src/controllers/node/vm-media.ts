// What a VM's CD-ROM and direct kernel boot use on this node: host paths judged by the media
// rules (media-paths.ts), or a VMDisk of the VM's namespace as the CD-ROM medium
// (spec.cdrom.diskRef). The VMDisk object only says which volume and whether the VM may use it
// now; its path comes from libvirt (the volume looked up in its pool), never from its status.
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { type LibvirtClient, unlessNotFound } from "../../hypervisor/libvirt/index.ts";
import { parsePoolXml } from "../../hypervisor/storage/volume.ts";
import type { Refusal } from "../tenant-policy.ts";
import { type HostMedia, type MediaEnvironment, resolveHostMedia } from "./media-paths.ts";
import { volumePathsOf } from "./volume-paths.ts";

/** Phases in which a volume exists and may be read by a guest. */
const USABLE_PHASES = new Set(["Ready", "Resizing"]);

export type CdromDiskDecision =
  | { use: true }
  /** Not ready yet (being imported, attachment not recorded): the VM waits. */
  | { waiting: string }
  /** The user has to act. */
  | { blocked: string };

/** Pure: whether VM may use DISK (undefined: missing) as its CD-ROM medium on NODE_NAME now. */
export function cdromDiskDecision(
  vm: VirtualMachine,
  disk: VMDisk | undefined,
  nodeName: string,
): CdromDiskDecision {
  const what = `VMDisk ${vm.spec.cdrom?.diskRef?.name ?? ""} (spec.cdrom.diskRef)`;
  if (!disk) return { waiting: `${what} does not exist` };
  const s = disk.status;
  if (disk.metadata.deletionTimestamp) return { blocked: `${what} is being deleted` };
  const format = disk.spec.format ?? "qcow2";
  if (format !== "raw")
    return { blocked: `${what} has format ${format}; a CD-ROM medium is a raw image (spec.format: raw)` };
  if (s?.nodeName && s.nodeName !== nodeName && !s.storagePoolShared)
    return { blocked: `${what} lives on node ${s.nodeName}, the VM runs on ${nodeName}` };
  if (!s?.phase || !USABLE_PHASES.has(s.phase)) return { waiting: `${what} is ${s?.phase ?? "Pending"}` };
  const holders = s.attachedTo ?? [];
  if (!holders.includes(vm.metadata.name)) return { waiting: `${what} has not recorded the attachment yet` };
  if (!disk.spec.shareable && holders[0] !== vm.metadata.name)
    return {
      blocked: `${what} is attached to VirtualMachine ${holders[0]} and is not shareable (spec.shareable)`,
    };
  return { use: true };
}

export interface MediaContext extends MediaEnvironment {
  libvirt: LibvirtClient;
  diskNamed(namespace: string, name: string): VMDisk | undefined;
  /** The agent's default storage pool (a VMDisk without spec.storagePool is there). */
  defaultPool: string;
}

/** The files the domain gets; a CD-ROM VMDisk not usable yet leaves the drive empty meanwhile. */
export interface ResolvedMedia extends HostMedia {
  cdromWaiting?: string;
  cdromBlocked?: string;
}

/** Host paths resolved and judged, the CD-ROM VMDisk looked up in libvirt; or the refusal. */
export async function resolveVmMedia(
  vm: VirtualMachine,
  ctx: MediaContext,
): Promise<{ media: ResolvedMedia } | { refused: Refusal }> {
  const host = await resolveHostMedia(vm, ctx);
  const ref = vm.spec.cdrom?.diskRef?.name;
  if ("refused" in host || !ref) return host;
  const namespace = vm.metadata.namespace ?? "default";
  const disk = ctx.diskNamed(namespace, ref);
  const decision = cdromDiskDecision(vm, disk, ctx.nodeName);
  if ("waiting" in decision) return { media: { ...host.media, cdromWaiting: decision.waiting } };
  if ("blocked" in decision) return { media: { ...host.media, cdromBlocked: decision.blocked } };
  const path = (await volumePathsOf(ctx.libvirt, namespace, [disk!], ctx.defaultPool)).get(ref);
  if (!path)
    return {
      media: {
        ...host.media,
        cdromWaiting: `VMDisk ${ref} (spec.cdrom.diskRef) has no volume on node ${ctx.nodeName} yet`,
      },
    };
  return { media: { ...host.media, cdromImage: path } };
}

/** Every storage pool libvirt has on the node, by its target directory (host paths never reach one). */
export async function poolTargets(libvirt: LibvirtClient): Promise<Array<{ pool: string; dir: string }>> {
  const pools = await libvirt.listStoragePools();
  // A pool undefined between the list and its read is no pool any more (not a failed check).
  const paths = await Promise.all(
    pools.map(async (ref) => {
      const xml = await unlessNotFound(libvirt.storagePoolXml(ref));
      return xml ? parsePoolXml(xml).path : undefined;
    }),
  );
  return pools.flatMap((ref, i) => (paths[i] ? [{ pool: ref.name, dir: paths[i] }] : []));
}
