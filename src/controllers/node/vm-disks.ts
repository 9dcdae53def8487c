// A VM's disks on its domain: hot-plug (attach/detach) of virtio and SCSI disks into the
// running guest and the persistent definition, and the disks as status reports them.
import type { VirtualMachine, VirtualMachineStatus } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { diskChanges, type ObservedDisk } from "../../hypervisor/domain/disks.ts";
import { type DiskDevice, diskDeviceXml } from "../../hypervisor/domain/xml.ts";
import { DomainAffect, type DomainRef, type LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import { describeError } from "../../runtime/kube.ts";
import type { Logger } from "../../runtime/logging.ts";
import { type EventReason, Reason } from "../event-reasons.ts";

export interface PlugResult {
  /** An attach libvirt refused: the user sees it as the VM's Failure condition. */
  failure?: { reason: EventReason; message: string };
  /** Something is still in flight (a guest acknowledging an unplug): look again soon. */
  retry: boolean;
}

/**
 * Brings the domain's hot-pluggable disks to WANTED: in the persistent definition and in the
 * running guest (CURRENT: what each has now, parsed once by the caller), each by its own diff.
 * The running guest keeps the disks of KEEP_LIVE_WRITABLE writable if it has them so.
 */
export async function plugDisks(
  libvirt: LibvirtClient,
  dom: DomainRef,
  wanted: readonly DiskDevice[],
  current: {
    persistent: Readonly<Record<string, ObservedDisk>> | undefined;
    live: Readonly<Record<string, ObservedDisk>> | undefined;
    keepLiveWritable?: ReadonlySet<string>;
    log: Logger;
  },
): Promise<PlugResult> {
  const result: PlugResult = { retry: false };
  const log = current.log;
  const targets: Array<[Readonly<Record<string, ObservedDisk>>, number]> = [];
  if (current.persistent) targets.push([current.persistent, DomainAffect.Config]);
  if (current.live) targets.push([current.live, DomainAffect.Live]);
  for (const [have, flags] of targets) {
    const where = flags === DomainAffect.Live ? "live" : "persistent";
    const keep = flags === DomainAffect.Live ? current.keepLiveWritable : undefined;
    const { attach, detach } = diskChanges(wanted, have, keep);
    for (const d of detach) {
      try {
        await libvirt.detachDevice(dom, diskDeviceXml(asDevice(d)), flags);
        log.info({ disk: d.name, target: d.target, where }, "disk detached");
      } catch (err) {
        // An unplug the guest has not acknowledged yet shows up again here; it finishes later.
        log.warn({ disk: d.name, where, err: describeError(err) }, "disk detach not done yet");
        result.retry = true;
      }
    }
    for (const d of attach) {
      try {
        await libvirt.attachDevice(dom, diskDeviceXml(d), flags);
        log.info({ disk: d.name, target: d.target, where }, "disk attached");
      } catch (err) {
        const message = `attaching disk ${d.name} (${where}) failed: ${describeError(err)}`;
        log.warn({ disk: d.name, where, err: describeError(err) }, "disk attach failed");
        result.failure = { reason: Reason.HotplugFailed, message };
        result.retry = true;
      }
    }
  }
  return result;
}

/** libvirt finds the disk to detach by its target; the rest only has to be well-formed. */
function asDevice(d: ObservedDisk): DiskDevice {
  const bus = (["virtio", "scsi", "sata", "ide"] as const).find((b) => b === d.bus) ?? "virtio";
  return { name: d.name, path: d.path, format: "raw", bus, target: d.target, readOnly: d.readOnly };
}

type DiskStatus = NonNullable<VirtualMachineStatus["disks"]>[number];

/**
 * status.disks (seed 000 vdisks/vpools) from the disks the domain has, and storedData: what they
 * take on the node plus SNAPSHOT_BYTES, what the VM's snapshots stored.
 */
export function diskStatus(
  vm: VirtualMachine,
  attached: ReadonlyArray<{ name: string; path: string }>,
  diskNamed: (name: string) => VMDisk | undefined,
  snapshotBytes = 0,
): { disks: DiskStatus[]; storedData: number } {
  const refs = new Map((vm.spec.disks ?? []).map((d) => [d.name, d.diskRef.name]));
  let storedData = snapshotBytes;
  const disks = attached.map((a) => {
    const ref = refs.get(a.name);
    const s = ref ? diskNamed(ref)?.status : undefined;
    storedData += s?.actualSize ?? 0;
    return {
      name: a.name,
      path: a.path,
      ...(s?.pool ? { pool: s.pool } : {}),
      ...(s?.provisionedSize !== undefined ? { provisionedSize: s.provisionedSize } : {}),
      ...(s?.actualSize !== undefined ? { actualSize: s.actualSize } : {}),
    };
  });
  return { disks, storedData };
}

/**
 * Applies in-place device changes (NIC link, CD-ROM medium): live and persistent on a running
 * domain. Returns the first refusal as a failure to report instead of throwing.
 */
export async function updateDevicesInPlace(
  libvirt: LibvirtClient,
  dom: DomainRef,
  updates: readonly string[],
  active: boolean,
  log: Logger,
): Promise<{ reason: EventReason; message: string } | undefined> {
  for (const xml of updates) {
    try {
      await libvirt.updateDevice(
        dom,
        xml,
        active ? DomainAffect.Live | DomainAffect.Config : DomainAffect.Config,
      );
      log.info({ domain: dom.name, device: xml.split("\n")[0] }, "device updated in place");
    } catch (err) {
      return {
        reason: Reason.DeviceUpdateFailed,
        message: `changing a device in place failed: ${describeError(err)}`,
      };
    }
  }
  return undefined;
}
