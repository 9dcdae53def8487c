// Tenants' addresses and identities against the real stack (API server, controller, node
// agent, libvirtd): DHCP reservations of VMs whose names read alike in two namespaces, MACs
// and UUIDs another VM holds, and libvirt networks outside a namespace's allowlist — refused
// by the controller, and by the node agent on its own for objects forged past the controller.
// The VMs stay Halted: their domains are defined (and their addresses reserved) without a guest.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DOMAIN_FINALIZER, NODE_LABEL } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { stopDaemon } from "../../src/cmd/local/processes.ts";
import { dhcpHostName, legacyDhcpHostName } from "../../src/controllers/node/dhcp.ts";
import { ALLOWED_NETWORKS_ANNOTATION } from "../../src/controllers/tenant-policy.ts";
import { placedNode } from "../../src/controllers/vm-placement.ts";
import { parseDhcpHosts } from "../../src/hypervisor/network.ts";
import {
  actAsTenant,
  applyVm,
  getVm,
  startTestOperator,
  stopTestOperator,
  virsh,
  waitForEvent,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, TEST_STACK, testNamespace } from "../support/stack.ts";

const SLOT = Number(process.env.TEST_STACK_SLOT ?? 0);
/** A libvirt network of this slot's own (libvirtd is shared by the slots): DHCP pools of both families. */
const NET = `lvo-tid-${SLOT}`;
const SUBNET = `10.251.${SLOT}`;
// Never a zero group (fd00:7a1:251:0:: would be written fd00:7a1:251:: in status).
const SUBNET6 = `fd00:7a1:251:${SLOT + 1}`;
/** Locally administered MACs of this slot; the generated ones are 52:54:00:…. */
const mac = (n: number) =>
  `02:71:d0:${SLOT.toString(16).padStart(2, "0")}:00:${n.toString(16).padStart(2, "0")}`;
const uuid = (n: number) =>
  `7e0a1d00-71d0-4000-8000-${SLOT.toString(16).padStart(4, "0")}${n.toString(16).padStart(8, "0")}`;
/** A domain an admin defined by hand, not through the operator. */
const FOREIGN = `lvo-tid-foreign-${SLOT}`;
/** Another admin's guest, transient (created, never defined): libvirt says only that it started. */
const FOREIGN_TRANSIENT = `lvo-tid-transient-${SLOT}`;

let workDir = "";
const namespaces: string[] = [];

function networkXml(seed: string): string {
  return `<network>
  <name>${NET}</name>
  <bridge name='lvotid${SLOT}' stp='on' delay='0'/>
  <ip address='${SUBNET}.1' netmask='255.255.255.0'>
    <dhcp><range start='${SUBNET}.2' end='${SUBNET}.254'/>${seed}</dhcp>
  </ip>
  <ip family='ipv6' address='${SUBNET6}::1' prefix='64'>
    <dhcp><range start='${SUBNET6}::100' end='${SUBNET6}::1ff'/></dhcp>
  </ip>
</network>`;
}

async function removeNetwork() {
  await virsh("net-destroy", NET).catch(() => undefined);
  await virsh("net-undefine", NET).catch(() => undefined);
}

async function removeForeignDomain() {
  await virsh("undefine", FOREIGN).catch(() => undefined);
  await virsh("destroy", FOREIGN_TRANSIENT).catch(() => undefined);
}

/** Namespaces of this file; domains named <namespace>_… are its VMs'. */
const NAMESPACES = [
  "b-tid-dhcp",
  "tid-dhcp",
  "tid-ids-a",
  "tid-ids-b",
  "tid-net",
  "tid-forged",
  "tid-forged-holder",
  "tid-addr-holder",
  "tid-addr-forged",
];

/**
 * Domains an earlier run of this file left in the shared libvirtd (its stack went down before
 * its agent removed them): they belong to no cluster now and would hold the test's UUIDs and MACs.
 */
async function removeLeftoverDomains() {
  const names = (await virsh("list", "--all", "--name")).split("\n").map((n) => n.trim());
  for (const name of names.filter((n) => NAMESPACES.some((ns) => n.startsWith(`${ns}_`)))) {
    await virsh("destroy", name).catch(() => undefined);
    await virsh("undefine", name).catch(() => undefined);
  }
}

async function ns(name: string, allowedNetworks?: string): Promise<string> {
  assert.ok(NAMESPACES.includes(name), `${name} is listed in NAMESPACES`);
  await testNamespace(name);
  if (allowedNetworks !== undefined)
    await kubectl([
      "annotate",
      "namespace",
      name,
      "--overwrite",
      `${ALLOWED_NETWORKS_ANNOTATION}=${allowedNetworks}`,
    ]);
  namespaces.push(name);
  // Its VMs are applied by its tenant (the built-in edit role), as an attacker would.
  await actAsTenant(name);
  return name;
}

/** A Halted VM without disks: its domain is defined, no guest runs. */
function haltedVm(extra: Record<string, unknown> = {}) {
  return { hypervisor: "qemu", memory: "64Mi", cpu: { cores: 1 }, runStrategy: "Halted", ...extra };
}

const conditionOf = (vm: VirtualMachine | undefined, type: string) =>
  vm?.status?.conditions?.find((c) => c.type === type);

async function domainExists(name: string): Promise<boolean> {
  return virsh("domstate", name).then(
    () => true,
    () => false,
  );
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (last !== undefined) return last;
    await sleep(250);
  }
  throw new Error(`never ${what}`);
}

/** Waits until the VM's domain is defined by the agent (domainName reported). */
const defined = (namespace: string, name: string) =>
  waitForVm(
    namespace,
    name,
    (vm) => Boolean(vm?.status?.domainName && vm.status.printableStatus === "Stopped"),
    "defined",
  );

/** Waits for the controller's refusal (Admitted=False) and returns the VM. */
const refused = (namespace: string, name: string) =>
  waitForVm(
    namespace,
    name,
    (vm) => conditionOf(vm, "Admitted")?.status === "False",
    "refused (Admitted=False)",
    30_000,
  );

async function dhcpHosts() {
  return parseDhcpHosts(await virsh("net-dumpxml", NET));
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "lvo-tid-"));
  await removeForeignDomain();
  await removeLeftoverDomains();
  await removeNetwork();
  // Entries an earlier operator version left under the old, ambiguous name a-b-tid-dhcp: one is
  // VM b-tid-dhcp/a's (its MAC), one belongs to neither VM of the test.
  const legacy = legacyDhcpHostName("b-tid-dhcp", "a", "default");
  const seed =
    `<host mac='${mac(1)}' name='${legacy}' ip='${SUBNET}.200'/>` +
    `<host mac='${mac(9)}' name='${legacy}' ip='${SUBNET}.201'/>`;
  await writeFile(join(workDir, "net.xml"), networkXml(seed));
  await virsh("net-define", join(workDir, "net.xml"));
  await virsh("net-start", NET);
  // Tenants may use the default network unless their namespace says otherwise.
  delete process.env.TENANT_ALLOWED_NETWORKS;
  await startTestOperator();
});

after(async () => {
  await Promise.all(
    namespaces.map((n) =>
      kubectl(["delete", "vm", "--all", "-n", n, "--wait=true", "--timeout=60s"]).catch(() => undefined),
    ),
  );
  await stopTestOperator();
  await removeForeignDomain();
  await removeLeftoverDomains();
  await removeNetwork();
  await rm(workDir, { recursive: true, force: true });
});

describe("DHCP reservations of VMs whose names read alike", () => {
  it("b-tid-dhcp/a and tid-dhcp/a-b both keep their reservations; old entries are replaced, others' kept", async () => {
    assert.equal(
      legacyDhcpHostName("b-tid-dhcp", "a", "default"),
      legacyDhcpHostName("tid-dhcp", "a-b", "default"),
    );
    const p = await ns("b-tid-dhcp", `default,${NET}`);
    const q = await ns("tid-dhcp", `default,${NET}`);
    const t = Date.now();
    await applyVm(p, "a", haltedVm({ interfaces: [{ name: "default", network: NET, macAddress: mac(1) }] }));
    await applyVm(
      q,
      "a-b",
      haltedVm({ interfaces: [{ name: "default", network: NET, macAddress: mac(2) }] }),
    );
    const [vmP, vmQ] = await Promise.all([defined(p, "a"), defined(q, "a-b")]);
    const want = [
      { vm: vmP!, name: dhcpHostName(p, "a", "default"), mac: mac(1) },
      { vm: vmQ!, name: dhcpHostName(q, "a-b", "default"), mac: mac(2) },
    ];
    const expected = (hosts: Awaited<ReturnType<typeof dhcpHosts>>) =>
      want.every(({ vm, name, mac: m }) => {
        const nic = vm.status?.interfaces?.[0];
        return (
          hosts.some((h) => h.name === name && h.mac === m && h.ip === nic?.ipv4) &&
          hosts.some((h) => h.name === name && h.mac === undefined && h.ip === nic?.ipv6)
        );
      });
    let hosts = await waitFor(async () => {
      const h = await dhcpHosts();
      return expected(h) ? h : undefined;
    }, "saw both VMs' reservations");
    process.stderr.write(`# both reservations in place in ${Date.now() - t} ms\n`);
    assert.ok(vmP?.status?.interfaces?.[0]?.ipv4?.startsWith(`${SUBNET}.`));
    assert.ok(vmP?.status?.interfaces?.[0]?.ipv6?.startsWith(`${SUBNET6}::`));

    // Reconciles go on (a spec change on each); nobody's entries are taken back and forth.
    for (const [n, name] of [
      [p, "a"],
      [q, "a-b"],
    ] as const)
      await kubectl(["annotate", "vm", name, "-n", n, "--overwrite", `test/touch=${Date.now()}`]);
    await sleep(3_000);
    hosts = await dhcpHosts();
    assert.ok(expected(hosts), `reservations after more reconciles: ${JSON.stringify(hosts)}`);
    // a's entry of the old naming went; the old entry that is neither VM's stayed untouched.
    assert.ok(!hosts.some((h) => h.ip === `${SUBNET}.200`), "the old entry of b-tid-dhcp/a was replaced");
    assert.ok(
      hosts.some((h) => h.ip === `${SUBNET}.201` && h.mac === mac(9)),
      "an old entry of another VM is kept",
    );
    assert.equal(hosts.length, 5, JSON.stringify(hosts));
  });
});

describe("a MAC or UUID another VM holds", () => {
  it("is refused with a condition: naming the holder in its namespace, nothing of another namespace", async () => {
    const a = await ns("tid-ids-a");
    const b = await ns("tid-ids-b");
    await applyVm(
      a,
      "holder",
      haltedVm({ uuid: uuid(1), interfaces: [{ name: "default", macAddress: mac(3) }] }),
    );
    const holderBefore = await defined(a, "holder");

    let t = Date.now();
    await applyVm(a, "same-uuid", haltedVm({ uuid: uuid(1) }));
    const sameUuid = await refused(a, "same-uuid");
    process.stderr.write(`# duplicate UUID refused in ${Date.now() - t} ms\n`);
    const c1 = conditionOf(sameUuid, "Admitted")!;
    assert.equal(c1.reason, "UuidInUse");
    assert.match(
      c1.message,
      new RegExp(`^spec\\.uuid: UUID ${uuid(1)} is already used by VirtualMachine holder;`),
    );

    t = Date.now();
    await applyVm(
      b,
      "same-mac",
      haltedVm({ interfaces: [{ name: "default", macAddress: mac(3).toUpperCase() }] }),
    );
    await applyVm(b, "same-uuid", haltedVm({ uuid: uuid(1) }));
    const sameMac = await refused(b, "same-mac");
    const otherUuid = await refused(b, "same-uuid");
    process.stderr.write(`# duplicates across namespaces refused in ${Date.now() - t} ms\n`);
    for (const [vm, reason] of [
      [sameMac, "MacAddressInUse"],
      [otherUuid, "UuidInUse"],
    ] as const) {
      const c = conditionOf(vm, "Admitted")!;
      assert.equal(c.reason, reason);
      assert.match(c.message, /is already in use in another namespace/);
      assert.doesNotMatch(c.message, /holder|tid-ids-a/);
      assert.equal(vm ? placedNode(vm) : undefined, undefined, "not placed");
      await waitForEvent(
        b,
        vm!.metadata.name,
        (e) => e.type === "Warning" && e.reason === reason && !/holder|tid-ids-a/.test(e.message),
        reason,
      );
    }
    for (const [n, name] of [
      [a, "same-uuid"],
      [b, "same-mac"],
      [b, "same-uuid"],
    ])
      assert.equal(await domainExists(`${n}_${name}`), false, `no domain for ${n}/${name}`);

    // The holder is unaffected: same identity, admitted, its domain in place.
    const holder = await getVm(a, "holder");
    assert.equal(holder?.status?.uuid, holderBefore?.status?.uuid);
    assert.equal(holder?.status?.interfaces?.[0]?.mac, mac(3));
    assert.equal(conditionOf(holder, "Admitted"), undefined);
    assert.match(await virsh("dumpxml", `${a}_holder`), new RegExp(`<uuid>${uuid(1)}</uuid>`));

    // Once the holder is gone, the VM waiting for its UUID proceeds.
    t = Date.now();
    await kubectl(["delete", "vm", "holder", "-n", a, "--wait=true", "--timeout=60s"]);
    const freed = await defined(a, "same-uuid");
    process.stderr.write(`# the UUID passed on in ${Date.now() - t} ms after the holder's deletion\n`);
    assert.equal(freed?.status?.uuid, uuid(1));
    assert.equal(conditionOf(freed, "Admitted")?.status, "True");
  });
});

describe("networks outside the namespace's allowlist", () => {
  it("are refused until the admin allows them; then the VM proceeds", async () => {
    const n = await ns("tid-net");
    let t = Date.now();
    await applyVm(n, "outside", haltedVm({ interfaces: [{ name: "default", network: NET }] }));
    const vm = await refused(n, "outside");
    process.stderr.write(`# network refused in ${Date.now() - t} ms\n`);
    const c = conditionOf(vm, "Admitted")!;
    assert.equal(c.reason, "NetworkNotAllowed");
    assert.equal(
      c.message,
      `spec.interfaces[0].network: network ${NET} is not allowed in this namespace (allowed: default, set by the cluster default)`,
    );
    assert.equal(vm ? placedNode(vm) : undefined, undefined);
    await waitForEvent(
      n,
      "outside",
      (e) => e.type === "Warning" && e.reason === "NetworkNotAllowed",
      "NetworkNotAllowed",
    );
    assert.equal(await domainExists(`${n}_outside`), false);

    t = Date.now();
    await kubectl(["annotate", "namespace", n, `${ALLOWED_NETWORKS_ANNOTATION}=default,${NET}`]);
    // Watch-driven: the annotation alone makes the controller judge the VM again at once.
    await waitForVm(
      n,
      "outside",
      (v) => conditionOf(v, "Admitted")?.status === "True" && Boolean(v?.status?.nodeName),
      "admitted and placed",
      10_000,
    );
    process.stderr.write(`# admitted and placed ${Date.now() - t} ms after the annotation\n`);
    const admitted = await defined(n, "outside");
    process.stderr.write(`# its domain defined ${Date.now() - t} ms after the annotation\n`);
    assert.equal(conditionOf(admitted, "Admitted")?.status, "True");
    assert.ok(admitted?.status?.interfaces?.[0]?.ipv4?.startsWith(`${SUBNET}.`));
    assert.match(await virsh("dumpxml", `${n}_outside`), new RegExp(`<source network='${NET}'`));
  });
});

describe("objects forged past the controller", () => {
  /** Places a VM as the controller would (label, finalizer, status), with the admin's kubeconfig. */
  async function placeByHand(
    namespace: string,
    name: string,
    spec: Record<string, unknown>,
    identity: { uuid: string; mac: string; ipv4?: string },
  ) {
    await applyVm(namespace, name, spec);
    await kubectl([
      "patch",
      "vm",
      name,
      "-n",
      namespace,
      "--type=merge",
      "-p",
      JSON.stringify({
        metadata: { labels: { [NODE_LABEL]: TEST_STACK.nodeName }, finalizers: [DOMAIN_FINALIZER] },
      }),
    ]);
    const network = (spec.interfaces as Array<{ network?: string }> | undefined)?.[0]?.network ?? "default";
    const status = {
      nodeName: TEST_STACK.nodeName,
      uuid: identity.uuid,
      interfaces: [
        { name: "default", network, mac: identity.mac, ...(identity.ipv4 ? { ipv4: identity.ipv4 } : {}) },
      ],
    };
    await kubectl([
      "patch",
      "vm",
      name,
      "-n",
      namespace,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status }),
    ]);
  }

  /** Waits for the agent's Failure condition with REASON. */
  const failed = (namespace: string, name: string, reason: string) =>
    waitForVm(
      namespace,
      name,
      (vm) => conditionOf(vm, "Failure")?.reason === reason,
      `Failure ${reason}`,
      30_000,
    );

  it("are refused by the node agent on its own, and nothing reaches libvirt", async () => {
    const n = await ns("tid-forged");
    const other = await ns("tid-forged-holder");
    // A VM holding a UUID, and an admin's own domain with a UUID and a MAC, before the controller stops.
    await applyVm(other, "holder", haltedVm({ uuid: uuid(2) }));
    await defined(other, "holder");
    await writeFile(
      join(workDir, "foreign.xml"),
      `<domain type='qemu'><name>${FOREIGN}</name><uuid>${uuid(3)}</uuid><memory unit='MiB'>64</memory>
        <os><type arch='x86_64'>hvm</type></os>
        <devices><interface type='network'><source network='${NET}'/><mac address='${mac(5)}'/></interface></devices></domain>`,
    );
    await virsh("define", join(workDir, "foreign.xml"));
    // Created after the agent came up and looked at the node's domains: known from its event alone.
    await writeFile(
      join(workDir, "transient.xml"),
      `<domain type='qemu'><name>${FOREIGN_TRANSIENT}</name><memory unit='MiB'>32</memory>
        <os><type arch='x86_64' machine='pc'>hvm</type></os><on_poweroff>destroy</on_poweroff>
        <devices><interface type='network'><source network='${NET}'/><mac address='${mac(6)}'/></interface></devices></domain>`,
    );
    await virsh("create", join(workDir, "transient.xml"));
    await stopDaemon(TEST_STACK.stateDir, "controller");

    const t = Date.now();
    const uid = (k: number) => uuid(0x100 + k);
    await placeByHand(n, "bad-network", haltedVm({ interfaces: [{ name: "default", network: NET }] }), {
      uuid: uid(1),
      mac: mac(0x41),
    });
    await placeByHand(n, "taken-uuid", haltedVm({ uuid: uuid(2) }), { uuid: uuid(2), mac: mac(0x42) });
    await placeByHand(n, "admins-uuid", haltedVm({ uuid: uuid(3) }), { uuid: uuid(3), mac: mac(0x43) });
    await placeByHand(n, "admins-mac", haltedVm({ interfaces: [{ name: "default", macAddress: mac(5) }] }), {
      uuid: uid(4),
      mac: mac(5),
    });
    await placeByHand(
      n,
      "transient-mac",
      haltedVm({ interfaces: [{ name: "default", macAddress: mac(6) }] }),
      { uuid: uid(5), mac: mac(6) },
    );
    const checks = [
      ["bad-network", "NetworkNotAllowed", new RegExp(`network ${NET} is not allowed in this namespace`)],
      ["taken-uuid", "UuidInUse", /UUID .* is already in use in another namespace/],
      [
        "admins-uuid",
        "UuidInUse",
        /in use by a libvirt domain on node .* that this operator does not manage/,
      ],
      [
        "admins-mac",
        "MacAddressInUse",
        /in use by a libvirt domain on node .* that this operator does not manage/,
      ],
      [
        "transient-mac",
        "MacAddressInUse",
        /in use by a libvirt domain on node .* that this operator does not manage/,
      ],
    ] as const;
    for (const [name, reason, message] of checks) {
      const vm = await failed(n, name, reason);
      assert.match(conditionOf(vm, "Failure")!.message, message);
      assert.doesNotMatch(conditionOf(vm, "Failure")!.message, /holder|tid-forged-holder/);
      await waitForEvent(n, name, (e) => e.type === "Warning" && e.reason === reason, reason);
      assert.equal(await domainExists(`${n}_${name}`), false, `no domain for ${name}`);
    }
    process.stderr.write(`# ${checks.length} forged VMs refused by the agent in ${Date.now() - t} ms\n`);
    const holder = await getVm(other, "holder");
    assert.notEqual(conditionOf(holder, "Failure")?.status, "True", "the holder is unaffected");
    assert.match(await virsh("dumpxml", `${other}_holder`), new RegExp(`<uuid>${uuid(2)}</uuid>`));
    // The admin's domain is as it was.
    assert.match(await virsh("dumpxml", FOREIGN), new RegExp(`<uuid>${uuid(3)}</uuid>`));
    await startTestOperator();
  });

  it("an address another tenant's VM holds on the node is refused by the agent; the holder keeps its reservation", async () => {
    const holderNs = await ns("tid-addr-holder", `default,${NET}`);
    const n = await ns("tid-addr-forged", `default,${NET}`);
    await applyVm(holderNs, "web", haltedVm({ interfaces: [{ name: "default", network: NET }] }));
    const holder = await defined(holderNs, "web");
    const ip = holder?.status?.interfaces?.[0]?.ipv4;
    assert.ok(ip?.startsWith(`${SUBNET}.`), `holder got ${ip}`);
    const holderEntry = (hosts: Awaited<ReturnType<typeof dhcpHosts>>) =>
      hosts.some((h) => h.ip === ip && h.name === dhcpHostName(holderNs, "web", "default"));
    await waitFor(
      async () => (holderEntry(await dhcpHosts()) ? true : undefined),
      "saw the holder's reservation",
    );
    await stopDaemon(TEST_STACK.stateDir, "controller");

    const t = Date.now();
    await placeByHand(n, "thief", haltedVm({ interfaces: [{ name: "default", network: NET }] }), {
      uuid: uuid(0x201),
      mac: mac(0x51),
      ipv4: ip,
    });
    const vm = await failed(n, "thief", "AddressInUse");
    process.stderr.write(`# forged address refused by the agent in ${Date.now() - t} ms\n`);
    const message = conditionOf(vm, "Failure")!.message;
    assert.match(
      message,
      new RegExp(
        `address ${ip!.replaceAll(".", "\\.")} on network ${NET} is already in use in another namespace`,
      ),
    );
    assert.doesNotMatch(message, /tid-addr-holder|web/);
    await waitForEvent(
      n,
      "thief",
      (e) => e.type === "Warning" && e.reason === "AddressInUse",
      "AddressInUse",
    );
    assert.equal(await domainExists(`${n}_thief`), false, "no domain for the forged VM");
    const hosts = await dhcpHosts();
    assert.ok(holderEntry(hosts), `the holder's reservation stays: ${JSON.stringify(hosts)}`);
    assert.ok(!hosts.some((h) => h.mac === mac(0x51)), "nothing reserved for the forged VM");
    await startTestOperator();
  });
});
