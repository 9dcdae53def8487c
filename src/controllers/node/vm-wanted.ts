// The domain a VM wants on this node: its disks resolved to volumes here (the targets they
// have in the persistent definition kept), its CD-ROM medium as admitted, its identity as the
// controller gave it, and the hash its owner record carries to tell a change.
import { join } from "node:path";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { VMDisk } from "../../api/vmdisk.ts";
import { type DiskResolution, resolveDisks } from "../../hypervisor/domain/disks.ts";
import { domainDefinitionFor } from "../../hypervisor/domain/from-spec.ts";
import {
  type DomainDefinition,
  liveDeviceUpdates,
  parseLiveDevices,
  parseOwnership,
  specHash,
} from "../../hypervisor/domain/xml.ts";
import type { DomainRef, LibvirtClient } from "../../hypervisor/libvirt/index.ts";
import type { Logger } from "../../runtime/logging.ts";
import { placementOf } from "../vm-placement.ts";
import { plugDisks, updateDevicesInPlace } from "./vm-disks.ts";
import type { ResolvedMedia } from "./vm-media.ts";
import { volumePathsOf } from "./volume-paths.ts";

export interface DiskCache {
  get(name: string, namespace?: string): (VMDisk & KubernetesObject) | undefined;
}

export interface WantedDomain {
  definition: DomainDefinition;
  wantHash: string;
  disks: DiskResolution;
  /** Our disks in the persistent definition: they keep their targets and stay attached. */
  persistentDisks: ReturnType<typeof parseLiveDevices>["disks"];
}

export async function wantedDomain(
  o: {
    libvirt: LibvirtClient;
    disks: DiskCache;
    nodeName: string;
    clusterId: string;
    consoleLogDir: string;
    defaultPool: string;
  },
  vm: VirtualMachine,
  found: { domainName: string; uuid: string; ownInactiveXml?: string },
  media: ResolvedMedia,
): Promise<WantedDomain> {
  const namespace = vm.metadata.namespace ?? "";
  const persistentDisks = found.ownInactiveXml ? parseLiveDevices(found.ownInactiveXml).disks : {};
  const vmDisks = (vm.spec.disks ?? []).flatMap((d) => o.disks.get(d.diskRef.name, namespace) ?? []);
  const paths = await volumePathsOf(o.libvirt, namespace, vmDisks, o.defaultPool);
  const disks = resolveDisks(
    vm,
    (disk) => o.disks.get(disk, namespace),
    o.nodeName,
    persistentDisks,
    (disk) => paths.get(disk),
  );
  if (media.cdromWaiting) disks.waiting.push(media.cdromWaiting);
  if (media.cdromBlocked) disks.blocked.push(media.cdromBlocked);
  const definition = domainDefinitionFor(vm, {
    cluster: o.clusterId,
    uuid: found.uuid,
    macs: Object.fromEntries(placementOf(vm).interfaces.flatMap((i) => (i.mac ? [[i.name, i.mac]] : []))),
    disks: disks.devices,
    consoleLog: join(o.consoleLogDir, `${found.domainName}-console.log`),
    media,
  });
  return { definition, wantHash: specHash(definition), disks, persistentDisks };
}

/**
 * The domain's devices brought to WANTED where that needs no restart: link state and CD-ROM
 * medium in place, disks hot-plugged (live and persistent when it runs). CURRENT_XML is the
 * definition it runs with (live) or, shut off, its persistent one. A refused change (a CD-ROM
 * image that is not there, a locked tray) is reported and never holds back what follows: a stop
 * or restart must still happen.
 */
export async function syncDevices(
  libvirt: LibvirtClient,
  dom: DomainRef,
  wanted: WantedDomain,
  now: { active: boolean; currentXml: string; justDefined: boolean },
  log: Logger,
) {
  const currentDevices = parseLiveDevices(now.currentXml);
  const deviceFailure = await updateDevicesInPlace(
    libvirt,
    dom,
    liveDeviceUpdates(wanted.definition, currentDevices),
    now.active,
    log,
  );
  const plugged = await plugDisks(libvirt, dom, wanted.definition.disks, {
    // A definition just written whole already has the wanted disks.
    persistent: now.justDefined ? undefined : wanted.persistentDisks,
    live: now.active ? currentDevices.disks : undefined,
    keepLiveWritable: new Set(wanted.disks.bases.map((b) => b.name)),
    log,
  });
  return {
    runningInSync: !now.active || parseOwnership(now.currentXml)?.specHash === wanted.wantHash,
    deviceFailure,
    plugged,
  };
}
