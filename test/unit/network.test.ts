import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { assignAddresses, takenAmong } from "../../src/controllers/cluster/ipam.ts";
import {
  bigIntToIp,
  dhcpHostXml,
  ipElementIndex,
  ipToBigInt,
  lowestFree,
  parseDhcpHosts,
  parseDhcpLayout,
  parseNetworkPools,
} from "../../src/hypervisor/network.ts";

const NETWORK = `<network>
  <name>default</name>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
      <host mac='52:54:00:aa:bb:cc' name='a-ns' ip='192.168.122.9'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:7a1:0:1::1' prefix='64'>
    <dhcp>
      <range start='fd00:7a1:0:1::100' end='fd00:7a1:0:1::1ff'/>
      <host name='a-ns' ip='fd00:7a1:0:1::100'/>
    </dhcp>
  </ip>
</network>`;

describe("network XML", () => {
  it("finds both pools, the reservations and the <ip> index of each family", () => {
    assert.deepEqual(parseNetworkPools(NETWORK), {
      ipv4: { start: "192.168.122.2", end: "192.168.122.254" },
      ipv6: { start: "fd00:7a1:0:1::100", end: "fd00:7a1:0:1::1ff" },
    });
    assert.deepEqual(parseDhcpHosts(NETWORK), [
      { ip: "192.168.122.9", mac: "52:54:00:aa:bb:cc", name: "a-ns" },
      { ip: "fd00:7a1:0:1::100", name: "a-ns" },
    ]);
    assert.equal(ipElementIndex(NETWORK, "ipv6"), 1);
    assert.equal(ipElementIndex("<network><ip address='10.0.0.1'/></network>", "ipv6"), -1);
    assert.deepEqual(parseDhcpLayout(NETWORK), {
      hosts: parseDhcpHosts(NETWORK),
      ipIndex: { ipv4: 0, ipv6: 1 },
    });
  });

  it("builds escaped host entries", () => {
    assert.equal(
      dhcpHostXml({ mac: "52:54:00:00:00:01", name: "x", ip: "192.168.122.3" }),
      `<host mac="52:54:00:00:00:01" name="x" ip="192.168.122.3"/>`,
    );
  });

  it("converts addresses both ways, compressing IPv6 zeros", () => {
    fc.assert(fc.property(fc.ipV4(), (ip) => bigIntToIp(ipToBigInt(ip), "ipv4") === ip));
    fc.assert(
      fc.property(fc.ipV6(), (ip) => ipToBigInt(bigIntToIp(ipToBigInt(ip), "ipv6")) === ipToBigInt(ip)),
    );
    assert.equal(bigIntToIp(ipToBigInt("fd00:7a1:0:1::100") + 1n, "ipv6"), "fd00:7a1:0:1::101");
    // An IPv4 part in dotted form is the last two groups (one address, however it is spelled).
    assert.equal(bigIntToIp(ipToBigInt("fd00::10.0.0.5"), "ipv6"), "fd00::a00:5");
    assert.equal(bigIntToIp(ipToBigInt("0:0:0:0:0:ffff:1.2.3.4"), "ipv6"), "::ffff:102:304");
    // A scoped address is none a pool hands out.
    assert.throws(() => ipToBigInt("fd00::5%eth0"), /not an IP address/);
    // Every IPv6 address, written with its last 32 bits dotted, is the same number.
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (n) => {
        const groups = bigIntToIp(n, "ipv6");
        const full = Array.from({ length: 6 }, (_, i) =>
          ((n >> BigInt((7 - i) * 16)) & 0xffffn).toString(16),
        );
        const dotted = `${full.join(":")}:${bigIntToIp(n & 0xffffffffn, "ipv4")}`;
        return ipToBigInt(dotted) === n && ipToBigInt(groups) === n;
      }),
    );
  });

  it("hands out the lowest free address", () => {
    const range = { start: "192.168.122.2", end: "192.168.122.4" };
    assert.equal(lowestFree(range, new Set(["192.168.122.2"]), "ipv4"), "192.168.122.3");
    assert.equal(
      lowestFree(range, new Set(["192.168.122.2", "192.168.122.3", "192.168.122.4"]), "ipv4"),
      undefined,
    );
  });
});

describe("assignAddresses", () => {
  const pools = { default: parseNetworkPools(NETWORK) };

  it("keeps an interface's addresses while its node's pools are unknown for a moment", () => {
    const previous = { ipv4: "192.168.122.9", ipv6: "fd00:7a1:0:1::109" };
    const none = takenAmong(new Map());
    assert.deepEqual(assignAddresses([{ name: "a", network: "default", previous }], undefined, none), [
      previous,
    ]);
    assert.deepEqual(assignAddresses([{ name: "a", network: "other", previous }], pools, none), [previous]);
    assert.deepEqual(assignAddresses([{ name: "a", network: "default" }], undefined, none), [{}]);
  });

  it("gives each interface an IPv4 and an IPv6 nobody holds, and never the same twice", () => {
    const used = new Set(["192.168.122.2"]);
    const a = assignAddresses(
      [{ name: "a", network: "default" }],
      pools,
      takenAmong(new Map([["default", used]])),
    );
    for (const ip of Object.values(a[0]!)) used.add(ip);
    const b = assignAddresses(
      [{ name: "b", network: "default" }],
      pools,
      takenAmong(new Map([["default", used]])),
    );
    assert.deepEqual(a, [{ ipv4: "192.168.122.3", ipv6: "fd00:7a1:0:1::100" }]);
    assert.deepEqual(b, [{ ipv4: "192.168.122.4", ipv6: "fd00:7a1:0:1::101" }]);
    // Two interfaces of one VM on one network: two addresses; an address spelled otherwise is still taken.
    const both = assignAddresses(
      [
        { name: "a", network: "default" },
        { name: "b", network: "default" },
      ],
      pools,
      takenAmong(new Map([["default", new Set(["fd00:07a1:0000:0001::100"])]])),
    );
    assert.deepEqual(both, [
      { ipv4: "192.168.122.2", ipv6: "fd00:7a1:0:1::101" },
      { ipv4: "192.168.122.3", ipv6: "fd00:7a1:0:1::102" },
    ]);
  });

  it("keeps an interface's addresses while they are in the pool and not taken", () => {
    const previous = { ipv4: "192.168.122.77", ipv6: "fd00:7a1:0:1::1aa" };
    assert.deepEqual(
      assignAddresses([{ name: "a", network: "default", previous }], pools, () => false),
      [previous],
    );
  });

  it("gives nothing on a network without pools", () => {
    assert.deepEqual(
      assignAddresses([{ name: "a", network: "isolated" }], pools, () => false),
      [{}],
    );
  });
});
