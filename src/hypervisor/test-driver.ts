// Test-only (the agent's LIBVIRT_TEST_DRIVER=true): the calls libvirt's test driver refuses,
// made to fit in this one place so the reconcilers run unchanged on it. What the domain XML
// needs instead goes through HostFacts (parseCapabilities, offerTestDriverDomains).
import { DomainUndefineFlags, type LibvirtClient } from "./libvirt/index.ts";

export function fitTestDriver(libvirt: LibvirtClient): void {
  // testDomainShutdownFlags takes no flags ("unsupported flags (0x1)" for the ACPI power
  // button); without them its guests power off at once, as a guest honouring ACPI would.
  const shutdown = libvirt.shutdownDomain.bind(libvirt);
  libvirt.shutdownDomain = (dom) => shutdown(dom, 0);
  // testDomainUndefineFlags knows managed save and snapshot metadata, not NVRAM (0x4): its
  // domains have no NVRAM file to remove.
  const undefine = libvirt.undefineDomain.bind(libvirt);
  libvirt.undefineDomain = (dom, flags = 0) => undefine(dom, flags & ~DomainUndefineFlags.Nvram);
}
