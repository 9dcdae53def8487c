// The agent's check that an address a VM was given is no other VM's on its node
// (node/address-claims.ts): a placement record changed by hand must not take a reservation,
// and so a guest's address, from another tenant's VM.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { addressConflicts, addressRefusal } from "../../../src/controllers/node/address-claims.ts";
import { desiredReservations, type Reservation } from "../../../src/controllers/node/dhcp.ts";
import { sameDhcpHost } from "../../../src/hypervisor/network.ts";

function vm(
  namespace: string,
  name: string,
  created: string,
  nic: { ipv4?: string; ipv6?: string; network?: string },
): VirtualMachine {
  return {
    metadata: { namespace, name, creationTimestamp: created },
    spec: { memory: "64Mi" },
    status: {
      interfaces: [{ name: "default", network: "default", mac: `52:54:00:00:00:${name.length}`, ...nic }],
    },
  } as unknown as VirtualMachine;
}

const nobodyReserved = () => false;

describe("addresses on a node", () => {
  const victim = vm("alice", "web", "2026-01-01T00:00:00Z", { ipv4: "10.0.0.5" });

  it("finds no conflict between VMs given different addresses", () => {
    const other = vm("bob", "db", "2026-01-02T00:00:00Z", { ipv4: "10.0.0.6" });
    assert.deepEqual(addressConflicts(other, [victim, other]), []);
  });

  it("refuses the newer VM given an address an older one holds, naming no other tenant", () => {
    const forged = vm("bob", "thief", "2026-01-02T00:00:00Z", { ipv4: "10.0.0.5" });
    const conflicts = addressConflicts(forged, [victim, forged]);
    assert.equal(conflicts.length, 1);
    const refusal = addressRefusal(forged, conflicts, nobodyReserved);
    assert.equal(refusal?.reason, "AddressInUse");
    assert.match(
      refusal?.message ?? "",
      /address 10\.0\.0\.5 on network default is already in use in another namespace/,
    );
    assert.doesNotMatch(refusal?.message ?? "", /alice|web/);
    // The holder itself is not refused.
    assert.equal(
      addressRefusal(victim, addressConflicts(victim, [victim, forged]), nobodyReserved),
      undefined,
    );
  });

  it("lets the VM whose reservation libvirt has keep it, however old the other", () => {
    // An old VM of the attacker's, its record changed to a newer guest's address.
    const old = vm("bob", "old", "2020-01-01T00:00:00Z", { ipv4: "10.0.0.5" });
    const reserved = (r: Reservation) =>
      desiredReservations(victim).some((v) => v.network === r.network && sameDhcpHost(v.host, r.host));
    assert.equal(addressRefusal(old, addressConflicts(old, [victim, old]), reserved)?.reason, "AddressInUse");
    assert.equal(addressRefusal(victim, addressConflicts(victim, [victim, old]), reserved), undefined);
  });

  it("sees one IPv6 address in two spellings", () => {
    const a = vm("alice", "web6", "2026-01-01T00:00:00Z", { ipv6: "fd00::5" });
    const b = vm("bob", "b6", "2026-01-02T00:00:00Z", { ipv6: "fd00:0:0:0:0:0:0:5" });
    const refusal = addressRefusal(b, addressConflicts(b, [a, b]), nobodyReserved);
    assert.equal(refusal?.reason, "AddressInUse");
  });

  it("names a holder in the same namespace, and picks the same one whatever the order", () => {
    const a = vm("ns", "a", "2026-01-01T00:00:00Z", { ipv4: "10.0.0.9" });
    const b = vm("ns", "b", "2026-01-01T00:00:00Z", { ipv4: "10.0.0.9" });
    assert.match(
      addressRefusal(b, addressConflicts(b, [b, a]), nobodyReserved)?.message ?? "",
      /used by VirtualMachine a/,
    );
    assert.equal(addressRefusal(a, addressConflicts(a, [b, a]), nobodyReserved), undefined);
  });
});
