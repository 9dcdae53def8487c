// Test-only (the agent's LIBVIRT_TEST_DRIVER=true): the calls libvirt's test driver refuses,
// made to fit in this one place so the reconcilers run unchanged on it. What the domain XML
// needs instead goes through HostFacts (parseCapabilities, offerTestDriverDomains).
import type { LibvirtClient } from "./libvirt/index.ts";

export function fitTestDriver(libvirt: LibvirtClient): void {
  // testDomainShutdownFlags takes no flags ("unsupported flags (0x1)" for the ACPI power
  // button); without them its guests power off at once, as a guest honouring ACPI would.
  const shutdown = libvirt.shutdownDomain.bind(libvirt);
  libvirt.shutdownDomain = (dom) => shutdown(dom, 0);
}
