// The test-only mode for libvirt's test driver (LIBVIRT_TEST_DRIVER=true in the agent): its
// hosts offer kvm and qemu backed by domain type "test"; off, they offer nothing.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { offerTestDriverDomains, parseCapabilities } from "../../src/hypervisor/capabilities.ts";
import { buildDomainXml, type DomainDefinition } from "../../src/hypervisor/domain/xml.ts";

const testdata = join(import.meta.dirname, "testdata");
// `virsh -c test:///default capabilities` of libvirt 9.0: hvm guests for i686, type "test" only.
const testDriverCaps = readFileSync(join(testdata, "capabilities-test-driver.xml"), "utf8");
const qemuCaps = readFileSync(join(testdata, "capabilities-qemu-7.2.xml"), "utf8");

const vm: DomainDefinition = {
  name: "ns_t",
  uuid: "6f1c2a3e-0b7d-4c55-9e3f-2a1b0c9d8e7f",
  owner: { cluster: "c1", namespace: "ns", name: "t", uid: "u" },
  hypervisor: "qemu",
  memoryBytes: 64 * 2 ** 20,
  cpu: { sockets: 1, cores: 1, threads: 1 },
  boot: {},
  disks: [],
  nics: [],
};

describe("libvirt test driver mode", () => {
  afterEach(() => offerTestDriverDomains(false));

  it("is off by default: the test driver's host offers no hypervisor we use", () => {
    assert.throws(() => parseCapabilities(testDriverCaps), /no hvm guests for x86_64/);
  });

  it("offers kvm and qemu backed by domain type test", () => {
    offerTestDriverDomains(true);
    assert.deepEqual(parseCapabilities(testDriverCaps), {
      emulator: "/usr/bin/test-hv",
      arch: "x86_64",
      machine: "pc",
      domainType: "test",
      hypervisors: ["kvm", "qemu"],
    });
  });

  it("leaves real hosts as they are", () => {
    offerTestDriverDomains(true);
    assert.equal(parseCapabilities(qemuCaps).domainType, undefined);
  });

  it("builds domains of type test, the rest as for QEMU", () => {
    offerTestDriverDomains(true);
    const host = parseCapabilities(testDriverCaps);
    const xml = buildDomainXml(vm, host);
    assert.match(xml, /^<domain type="test">/);
    assert.match(xml, /<type arch="x86_64" machine="pc">hvm<\/type>/);
    assert.equal(
      xml.replace('type="test"', 'type="qemu"'),
      buildDomainXml(vm, { ...host, domainType: undefined }),
    );
  });
});
