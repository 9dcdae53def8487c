import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseLibvirtUri } from "../../../src/hypervisor/libvirt/uri.ts";

describe("parseLibvirtUri", () => {
  it("qemu:///system goes to the system socket", () => {
    assert.deepEqual(parseLibvirtUri("qemu:///system"), {
      driver: "qemu",
      endpoint: { transport: "unix", path: "/var/run/libvirt/libvirt-sock" },
      name: "qemu:///system",
    });
  });

  it("read-only connections use the read-only socket", () => {
    assert.deepEqual(parseLibvirtUri("qemu:///system", { readOnly: true }).endpoint, {
      transport: "unix",
      path: "/var/run/libvirt/libvirt-sock-ro",
    });
  });

  it("test+unix:///default opens the test driver through the daemon", () => {
    const p = parseLibvirtUri("test+unix:///default");
    assert.equal(p.name, "test:///default");
    assert.equal(p.endpoint.transport, "unix");
  });

  it("qemu+tcp carries host and port, default 16509, and drops transport parameters", () => {
    assert.deepEqual(parseLibvirtUri("qemu+tcp://node1:1234/system?no_tty=1&foo=bar"), {
      driver: "qemu",
      endpoint: { transport: "tcp", host: "node1", port: 1234 },
      name: "qemu:///system?foo=bar",
    });
    assert.deepEqual(parseLibvirtUri("qemu+tcp://node1/system").endpoint, {
      transport: "tcp",
      host: "node1",
      port: 16509,
    });
  });

  it("a socket parameter overrides the path", () => {
    assert.deepEqual(parseLibvirtUri("test+unix:///default?socket=/tmp/x.sock").endpoint, {
      transport: "unix",
      path: "/tmp/x.sock",
    });
  });

  it("explains what it cannot do", () => {
    assert.throws(() => parseLibvirtUri("not a uri"), /invalid libvirt URI/);
    assert.throws(() => parseLibvirtUri("qemu+ssh://h/system"), /transport "ssh" is not supported/);
    assert.throws(() => parseLibvirtUri("qemu+tcp:///system"), /needs a host/);
    assert.throws(() => parseLibvirtUri("qemu:///system?socket=rel"), /absolute/);
  });
});
