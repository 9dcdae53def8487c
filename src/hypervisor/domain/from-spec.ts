// Pure: a VirtualMachine (spec + what the controller assigned in status) → the domain it
// should have. Names, sizes and defaults are resolved here, once.
import { parseQuantity } from "../../api/quantity.ts";
import type { VirtualMachine } from "../../api/virtualmachine.ts";
import type { DiskDevice, DomainDefinition, NicDevice } from "./xml.ts";

/** libvirt domain name of a VM: <namespace>_<name> (seed 000 devicename). */
export function domainNameOf(namespace: string, name: string): string {
  return `${namespace}_${name}`;
}

/** The VM key (<namespace>/<name>) of a domain name; namespaces cannot contain "_". */
export function keyOfDomain(domainName: string): string | undefined {
  const i = domainName.indexOf("_");
  return i > 0 ? `${domainName.slice(0, i)}/${domainName.slice(i + 1)}` : undefined;
}

/** The VM's NICs: spec.interfaces, or one default NIC when the list is absent (seed 001). */
export function desiredInterfaces(vm: VirtualMachine) {
  const spec = vm.spec.interfaces ?? [{ name: "default" }];
  return spec.map((i) => ({
    name: i.name,
    network: i.network ?? "default",
    model: i.model ?? "virtio",
    macAddress: i.macAddress,
    linked: i.linked ?? true,
    plugged: i.plugged ?? true,
  }));
}

export interface ResolvedInputs {
  /** Identity of the cluster that owns the domain. */
  cluster: string;
  uuid: string;
  /** MAC per interface name, as assigned (status.interfaces). */
  macs: Record<string, string>;
  disks: DiskDevice[];
  consoleLog?: string;
  /** The next boot is the CD-ROM's one boot (seed 004 cdimage_once). */
  bootCdromFirst?: boolean;
  /**
   * Host files as the node agent resolved and checked them (CD-ROM medium, kernel, initrd): the
   * only paths the domain gets; spec paths never reach it unchecked. No CD-ROM medium: empty drive.
   */
  media?: { cdromImage?: string; kernel?: string; initrd?: string };
}

export function domainDefinitionFor(vm: VirtualMachine, inputs: ResolvedInputs): DomainDefinition {
  const { spec, metadata } = vm;
  const namespace = metadata.namespace ?? "default";
  const nics: NicDevice[] = desiredInterfaces(vm)
    .filter((i) => i.plugged)
    .flatMap((i) => {
      const mac = i.macAddress ?? inputs.macs[i.name];
      return mac
        ? [{ name: i.name, mac: mac.toLowerCase(), network: i.network, model: i.model, linked: i.linked }]
        : [];
    });
  return {
    name: domainNameOf(namespace, metadata.name),
    uuid: inputs.uuid,
    owner: { cluster: inputs.cluster, namespace, name: metadata.name, uid: metadata.uid ?? "" },
    ...(spec.description ? { description: spec.description } : {}),
    hypervisor: spec.hypervisor ?? "kvm",
    memoryBytes: spec.memory === undefined ? 0 : parseQuantity(spec.memory),
    cpu: {
      sockets: spec.cpu?.sockets ?? 1,
      cores: spec.cpu?.cores ?? 1,
      threads: spec.cpu?.threads ?? 1,
      ...(spec.cpu?.cputune ? { cputune: spec.cpu.cputune } : {}),
      ...(spec.cpu?.numa
        ? {
            numa: spec.cpu.numa.map((c) => ({
              index: c.index,
              memoryBytes: parseQuantity(c.memory),
              cpus: c.cpus,
              ...(c.hostNodes ? { hostNodes: c.hostNodes } : {}),
            })),
          }
        : {}),
    },
    // Keys in the API server's (alphabetical) order: the spec hash of existing domains stays.
    boot: {
      ...(spec.boot?.cmdline !== undefined ? { cmdline: spec.boot.cmdline } : {}),
      ...(spec.boot?.firmware ? { firmware: spec.boot.firmware } : {}),
      ...(inputs.media?.initrd ? { initrd: inputs.media.initrd } : {}),
      ...(inputs.media?.kernel ? { kernel: inputs.media.kernel } : {}),
      ...(spec.boot?.order ? { order: spec.boot.order } : {}),
    },
    disks: inputs.disks,
    ...(spec.cdrom
      ? {
          cdrom: {
            image: inputs.media?.cdromImage ?? "",
            bus: spec.cdrom.bus ?? "sata",
            bootFirst: Boolean(inputs.bootCdromFirst),
          },
        }
      : {}),
    nics,
    ...(inputs.consoleLog ? { consoleLog: inputs.consoleLog } : {}),
  };
}

/** vCPUs and bytes a VM takes from its node (placement and capacity). */
export function resourcesOf(vm: VirtualMachine): { cpus: number; memoryBytes: number } {
  const c = vm.spec.cpu;
  return {
    cpus: (c?.sockets ?? 1) * (c?.cores ?? 1) * (c?.threads ?? 1),
    memoryBytes: vm.spec.memory === undefined ? 0 : parseQuantity(vm.spec.memory),
  };
}
