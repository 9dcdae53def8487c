import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import yaml from "js-yaml";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { parseCapabilities } from "../../src/hypervisor/capabilities.ts";
import { resolveDisks } from "../../src/hypervisor/domain/disks.ts";
import {
  domainDefinitionFor,
  domainNameOf,
  keyOfDomain,
  resourcesOf,
} from "../../src/hypervisor/domain/from-spec.ts";
import {
  buildDomainXml,
  metadataElement,
  parseLiveDevices,
  parseOwnership,
} from "../../src/hypervisor/domain/xml.ts";

const testdata = join(import.meta.dirname, "testdata");
const host = { emulator: "/usr/bin/qemu-system-x86_64", arch: "x86_64", machine: "pc" };
const inputs = {
  cluster: "c1",
  uuid: "6f1c2a3e-0b7d-4c55-9e3f-2a1b0c9d8e7f",
  macs: { eth0: "52:54:00:00:00:01", backend: "52:54:00:00:00:02", default: "52:54:00:00:00:03" },
  disks: [],
  consoleLog: "/var/log/libvirt/qemu/ns_web-console.log",
};

/** The VMDisks of the examples, Ready in /pool and held by VM "web". */
function readyDisk(name: string): VMDisk {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VMDisk",
    metadata: { name, namespace: "ns" },
    spec: { provisionedSize: "1Gi" },
    status: {
      phase: "Ready",
      nodeName: "n1",
      path: `/pool/ns_${name}.qcow2`,
      format: "qcow2",
      attachedTo: ["web"],
    },
  };
}
/** The host paths of VM as the node agent passes them on once checked (media-paths.ts). */
function checkedMedia(vm: VirtualMachine) {
  return {
    ...(vm.spec.cdrom?.image ? { cdromImage: vm.spec.cdrom.image } : {}),
    ...(vm.spec.boot?.kernel ? { kernel: vm.spec.boot.kernel } : {}),
    ...(vm.spec.boot?.initrd ? { initrd: vm.spec.boot.initrd } : {}),
  };
}
const fullInputs = {
  ...inputs,
  disks: resolveDisks(example("vm-full.yaml"), readyDisk, "n1", {}, (n) => readyDisk(n).status?.path).devices,
  media: checkedMedia(example("vm-full.yaml")),
};

function example(file: string): VirtualMachine {
  const docs = yaml.loadAll(
    readFileSync(join(import.meta.dirname, "..", "..", "examples", file), "utf8"),
  ) as VirtualMachine[];
  const vm = docs.find((d) => d.kind === "VirtualMachine")!;
  vm.metadata = { ...vm.metadata, namespace: "ns", uid: "uid-1" };
  return vm;
}

/** Compares with testdata/NAME; UPDATE_GOLDEN=1 rewrites it. */
function golden(name: string, actual: string) {
  const path = join(testdata, name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  assert.equal(actual, readFileSync(path, "utf8"), `${name} differs (UPDATE_GOLDEN=1 to accept)`);
}

describe("domain XML", () => {
  it("the full example matches its golden file", () => {
    golden(
      "domain-vm-full.xml",
      buildDomainXml(domainDefinitionFor(example("vm-full.yaml"), fullInputs), host),
    );
  });

  it("the minimal example matches its golden file", () => {
    golden(
      "domain-vm-minimal.xml",
      buildDomainXml(domainDefinitionFor(example("vm-minimal.yaml"), inputs), host),
    );
  });

  it("direct kernel boot carries kernel, initrd and cmdline and no boot devices", () => {
    golden(
      "domain-vm-direct-kernel.xml",
      buildDomainXml(
        domainDefinitionFor(example("vm-direct-kernel.yaml"), {
          ...inputs,
          media: checkedMedia(example("vm-direct-kernel.yaml")),
        }),
        host,
      ),
    );
  });

  it("escapes every value: names, descriptions and paths cannot inject XML", () => {
    const vm = example("vm-minimal.yaml");
    vm.spec.description = `</description><devices><hostdev/></devices><description>`;
    vm.spec.boot = { kernel: `/k'"<>&` };
    const xml = buildDomainXml(domainDefinitionFor(vm, { ...inputs, media: checkedMedia(vm) }), host);
    assert.ok(!xml.includes("<hostdev"), "no element smuggled in");
    assert.match(xml, /<description>&lt;\/description&gt;&lt;devices&gt;/);
    assert.match(xml, /<kernel>\/k&apos;&quot;&lt;&gt;&amp;<\/kernel>/);
  });

  it("records ownership that parses back, whatever prefix libvirt keeps", () => {
    const xml = buildDomainXml(domainDefinitionFor(example("vm-minimal.yaml"), inputs), host);
    const owner = parseOwnership(xml);
    assert.equal(owner?.cluster, "c1");
    assert.equal(owner?.uid, "uid-1");
    assert.equal(owner?.name, "tiny");
    assert.match(owner?.specHash ?? "", /^[0-9a-f]{16}$/);
    assert.equal(parseOwnership(xml.replaceAll("lvo:", "x:").replace("xmlns:lvo", "xmlns:x"))?.uid, "uid-1");
    assert.equal(parseOwnership("<domain><metadata><other xmlns='u'/></metadata></domain>"), undefined);
  });

  it("reads ownership from the domain's own <metadata> alone, nested elements of that name and all", () => {
    const xml = buildDomainXml(domainDefinitionFor(example("vm-minimal.yaml"), inputs), host);
    const record = metadataElement(xml) ?? "";
    assert.match(record, /^<metadata>[\s\S]*uid-1[\s\S]*<\/metadata>$/);
    // Another application's metadata holding an element named metadata, before ours.
    const nested = xml.replace(
      "<metadata>",
      "<metadata><app:x xmlns:app='u'><metadata>a</metadata><metadata/></app:x>",
    );
    assert.equal(parseOwnership(nested)?.uid, "uid-1");
    // An owner record anywhere else (in a device, say) is not the domain's.
    const elsewhere = xml
      .replace(record, "<metadata/>")
      .replace("</devices>", `${record.replace(/metadata/g, "x")}</devices>`);
    assert.equal(parseOwnership(elsewhere), undefined);
    // Comments and CDATA in another application's metadata: the whole definition is read.
    for (const hidden of ["<!-- </metadata> -->", "<![CDATA[</metadata>]]>", "<!-- <metadata> -->"]) {
      const withHidden = xml.replace("<metadata>", `<metadata><app:x xmlns:app='u'>${hidden}</app:x>`);
      assert.equal(parseOwnership(withHidden)?.uid, "uid-1", hidden);
    }
    for (const broken of [
      "<domain><metadata><a/></domain>",
      "<domain></metadata></domain>",
      "<domain><metadata/></domain>",
      "<domain/>",
    ])
      assert.equal(metadataElement(broken), undefined, broken);
  });

  it("the spec hash changes with the spec and not with the owner", () => {
    const hashOf = (vm: VirtualMachine, cluster = "c1") =>
      parseOwnership(buildDomainXml(domainDefinitionFor(vm, { ...inputs, cluster }), host))?.specHash;
    const vm = example("vm-minimal.yaml");
    assert.equal(hashOf(vm), hashOf(vm, "c2"));
    assert.notEqual(hashOf(vm), hashOf({ ...vm, spec: { ...vm.spec, memory: "512Mi" } }));
  });

  it("always has the guest agent's channel, for QEMU and libvirt's test driver alike", () => {
    const channel =
      /<channel type="unix">\s*<source mode="bind"\/>\s*<target type="virtio" name="org\.qemu\.guest_agent\.0"\/>\s*<\/channel>/;
    for (const vm of [example("vm-minimal.yaml"), example("vm-direct-kernel.yaml")]) {
      const definition = domainDefinitionFor(vm, inputs);
      assert.match(buildDomainXml(definition, host), channel);
      assert.match(buildDomainXml(definition, { ...host, domainType: "test" }), channel);
    }
  });

  it("reads NIC link states and the CD-ROM medium back from live XML", () => {
    const xml = buildDomainXml(domainDefinitionFor(example("vm-full.yaml"), fullInputs), host);
    assert.deepEqual(parseLiveDevices(xml), {
      links: { eth0: true, backend: false },
      cdromImage: "/var/lib/libvirt/images/installer.iso",
      disks: {
        root: {
          name: "root",
          path: "/pool/ns_debian-root.qcow2",
          target: "vda",
          bus: "virtio",
          readOnly: false,
        },
        data: { name: "data", path: "/pool/ns_data.qcow2", target: "vdb", bus: "virtio", readOnly: false },
      },
    });
  });

  it("domain names and VM keys map to each other, names with '_' included", () => {
    assert.equal(domainNameOf("ns", "a_b"), "ns_a_b");
    assert.equal(keyOfDomain(domainNameOf("ns", "a_b")), "ns/a_b");
    assert.equal(keyOfDomain("nounderscore"), undefined);
  });

  it("counts a VM's resources as sockets × cores × threads and bytes", () => {
    assert.deepEqual(resourcesOf(example("vm-full.yaml")), { cpus: 2, memoryBytes: 2 * 2 ** 30 });
  });
});

describe("host capabilities", () => {
  it("finds the emulator, machine and hypervisors", () => {
    const caps = parseCapabilities(readFileSync(join(testdata, "capabilities-qemu-7.2.xml"), "utf8"));
    assert.deepEqual(caps, {
      emulator: "/usr/bin/qemu-system-x86_64",
      arch: "x86_64",
      machine: "pc",
      hypervisors: ["kvm", "qemu"],
    });
  });
});
