import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  desiredReservations,
  dhcpHostName,
  legacyDhcpHostName,
  ownershipOf,
  planReservations,
} from "../../../src/controllers/node/dhcp.ts";
import type { DhcpHost } from "../../../src/hypervisor/network.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const k8sName = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);

function vm(
  namespace: string,
  name: string,
  nics: Array<{ name: string; mac: string; ipv4: string; ipv6?: string }>,
) {
  return {
    metadata: { namespace, name },
    spec: { memory: "64Mi" },
    status: { interfaces: nics.map((n) => ({ network: "default", ...n })) },
  } as unknown as VirtualMachine;
}

describe("dhcpHostName", () => {
  it("tells apart the namespace/name pairs that read alike (b-c/a and c/a-b)", () => {
    assert.equal(legacyDhcpHostName("b-c", "a", "default"), legacyDhcpHostName("c", "a-b", "default"));
    const p = dhcpHostName("b-c", "a", "default");
    const q = dhcpHostName("c", "a-b", "default");
    assert.notEqual(p, q);
    assert.ok(p.startsWith("a-b-c-") && q.startsWith("a-b-c-"), `${p} / ${q} keep a readable part`);
    // The interface is part of the triple too: VM a-eth1 and VM a's NIC eth1 differ.
    assert.notEqual(dhcpHostName("ns", "a-eth1", "default"), dhcpHostName("ns", "a", "eth1"));
  });

  it("is a DNS label of at most 63 characters, for long names too", () => {
    const long = dhcpHostName("namespace", "a".repeat(240), "default");
    assert.ok(long.length <= 63 && DNS_LABEL.test(long), long);
    assert.notEqual(long, dhcpHostName("namespace", `${"a".repeat(239)}b`, "default"));
  });

  it("never gives two different triples one name", () => {
    fc.assert(
      fc.property(
        fc.tuple(k8sName, k8sName, k8sName),
        fc.tuple(k8sName, k8sName, k8sName),
        ([n1, v1, i1], [n2, v2, i2]) => {
          const a = dhcpHostName(n1, v1, i1);
          assert.ok(DNS_LABEL.test(a) && a.length <= 63, a);
          if (n1 !== n2 || v1 !== v2 || i1 !== i2) assert.notEqual(a, dhcpHostName(n2, v2, i2));
        },
      ),
    );
  });
});

describe("planReservations", () => {
  const p = vm("b-c", "a", [
    { name: "default", mac: "52:54:00:00:00:01", ipv4: "10.0.0.2", ipv6: "fd00::2" },
  ]);
  const q = vm("c", "a-b", [
    { name: "default", mac: "52:54:00:00:00:02", ipv4: "10.0.0.3", ipv6: "fd00::3" },
  ]);
  const hostsOf = (v: VirtualMachine) => desiredReservations(v).map((r) => r.host);

  /** Applies each VM's plan in turn, as their reconciles would. */
  function converge(existing: DhcpHost[], vms: VirtualMachine[], rounds = 2): DhcpHost[] {
    let hosts = existing;
    for (let r = 0; r < rounds; r++)
      for (const v of vms) {
        const plan = planReservations(hosts, hostsOf(v), ownershipOf(v, "default"));
        hosts = [...hosts.filter((h) => !plan.remove.includes(h)), ...plan.add];
      }
    return hosts;
  }

  it("reserves only on the network the spec asks for, whatever the placement names", () => {
    const elsewhere = {
      ...p,
      status: {
        interfaces: [{ name: "default", network: "admin-net", mac: "52:54:00:00:00:07", ipv4: "10.9.0.2" }],
      },
    } as unknown as VirtualMachine;
    assert.deepEqual(desiredReservations(elsewhere), []);
    assert.equal(desiredReservations(p).length, 2);
  });

  it("lets the two VMs whose old names collided both keep their reservations", () => {
    const hosts = converge([], [p, q]);
    assert.deepEqual(
      hosts.sort((a, b) => a.ip.localeCompare(b.ip)),
      [...hostsOf(p), ...hostsOf(q)].sort((a, b) => a.ip.localeCompare(b.ip)),
    );
    // Once there, a reconcile of either changes nothing.
    for (const v of [p, q])
      assert.deepEqual(planReservations(hosts, hostsOf(v), ownershipOf(v, "default")), {
        remove: [],
        add: [],
      });
  });

  it("replaces a VM's entries of the old naming and leaves other VMs' old entries alone", () => {
    const legacy = legacyDhcpHostName("b-c", "a", "default"); // "a-b-c", also q's old name
    const old: DhcpHost[] = [
      { mac: "52:54:00:00:00:01", name: legacy, ip: "10.0.0.200" }, // p's, by its MAC
      { name: legacy, ip: "fd00::2" }, // p's IPv6, by its address
      { mac: "52:54:00:00:00:09", name: legacy, ip: "10.0.0.201" }, // neither's
      { name: legacy, ip: "fd00::99" }, // neither's
      { mac: "52:54:00:00:00:07", name: "admin-box", ip: "10.0.0.250" }, // an admin's own
    ];
    const plan = planReservations(old, hostsOf(p), ownershipOf(p, "default"));
    assert.deepEqual(plan.remove, [old[0], old[1]]);
    assert.deepEqual(plan.add, hostsOf(p));
    const after = converge(old, [p, q]);
    for (const kept of old.slice(2)) assert.ok(after.includes(kept), `${JSON.stringify(kept)} kept`);
  });

  it("drops the VM's own entries it no longer wants, and an entry blocking a wanted one", () => {
    const moved = vm("b-c", "a", [{ name: "default", mac: "52:54:00:00:00:01", ipv4: "10.0.0.9" }]);
    const stale = hostsOf(p); // p's earlier addresses under its exact name
    const blocker = { mac: "52:54:00:00:00:05", name: "gone-vm", ip: "10.0.0.9" }; // a dead VM's
    const plan = planReservations([...stale, blocker], hostsOf(moved), ownershipOf(moved, "default"));
    assert.deepEqual(plan.remove, [...stale, blocker]);
    assert.deepEqual(plan.add, hostsOf(moved));
  });
});
