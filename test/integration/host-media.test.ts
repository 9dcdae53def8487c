// Host files through a VM's CD-ROM, kernel and initrd, tried as a tenant would against the real
// stack: another namespace's volume, /etc/shadow, a symlink out of the media directory, a file
// in a storage pool or import directory inside it, and "..". Each is refused with a Failure
// condition and a Warning Event, and libvirt never sees it. Media the admin provides work (the
// domain gets the resolved path); a tenant's ISO comes as a VMDisk attached read-only.
import assert from "node:assert/strict";
import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DISK_PROTECTION_FINALIZER } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../src/api/vmdisk.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { BOOTED, ensureGuest, type Guest, guestVmSpec, waitForConsole } from "../support/guest.ts";
import {
  actAsTenant,
  applyObject,
  applyVm,
  consoleLogOf,
  getVm,
  isPrintable,
  startTestOperator,
  stopTestOperator,
  TEST_MEDIA_DIR,
  virsh,
  waitForEvent,
  waitForObject,
  waitForVm,
} from "../support/operator.ts";
import { kubectl, kubectlError, testNamespace } from "../support/stack.ts";

const SLOT = Number(process.env.TEST_STACK_SLOT ?? 0);
/** A libvirt pool whose directory lies inside the media directory (libvirtd is shared by slots). */
const INNER_POOL = `lvo-host-media-${SLOT}`;
const CMDLINE = "console=ttyS0 panic=-1";

let guest: Guest;
let ns = "";
let other = "";
let media = "";
let importDir = "";
let victimPath = "";

const domainOf = (name: string) => `${ns}_${name}`;
const failureOf = (vm: VirtualMachine | undefined) =>
  vm?.status?.conditions?.find((c) => c.type === "Failure");
const cdromOf = (xml: string) => /<disk type='file' device='cdrom'>[\s\S]*?<\/disk>/.exec(xml)?.[0] ?? "";

async function domainExists(name: string): Promise<boolean> {
  return virsh("dominfo", domainOf(name)).then(
    () => true,
    () => false,
  );
}

async function patchSpec(name: string, patch: Record<string, unknown>) {
  await kubectl(["patch", "vm", name, "-n", ns, "--type=merge", "-p", JSON.stringify({ spec: patch })]);
}

/** The VM gets a HostPathRefused Failure naming FIELD and matching RULE, and a Warning Event saying it. */
async function expectRefused(name: string, field: string, rule: RegExp) {
  const vm = await waitForVm(
    ns,
    name,
    (v) => failureOf(v)?.reason === "HostPathRefused" && failureOf(v)!.message.startsWith(`${field}:`),
    `refused for ${field}`,
    180_000,
  );
  const message = failureOf(vm)!.message;
  assert.match(message, rule, `${name}: ${message}`);
  assert.equal(failureOf(vm)?.status, "True");
  const event = await waitForEvent(
    ns,
    name,
    (e) => e.reason === "HostPathRefused" && e.message === message,
    "HostPathRefused",
  );
  assert.equal(event.type, "Warning");
}

/** A spec that puts PATH into FIELD of an otherwise bootable test guest. */
function specWith(field: string, path: string): Record<string, unknown> {
  const base = { interfaces: [] };
  if (field === "spec.cdrom.image") return guestVmSpec(guest, { ...base, cdrom: { image: path } });
  if (field === "spec.boot.kernel")
    return guestVmSpec(guest, { ...base, boot: { kernel: path, initrd: guest.initrd, cmdline: CMDLINE } });
  return guestVmSpec(guest, { ...base, boot: { kernel: guest.kernel, initrd: path, cmdline: CMDLINE } });
}

before(async () => {
  guest = await ensureGuest();
  ns = await testNamespace("host-media");
  // Domains an interrupted earlier run left behind (another cluster's, for a fresh stack).
  for (const name of (await virsh("list", "--all", "--name"))
    .split("\n")
    .filter((n) => n.startsWith(`${ns}_`))) {
    await virsh("destroy", name).catch(() => undefined);
    await virsh("undefine", name).catch(() => undefined);
  }
  other = await testNamespace("host-media-other");
  mkdirSync(TEST_MEDIA_DIR, { recursive: true });
  media = realpathSync(await mkdtemp(join(TEST_MEDIA_DIR, "host-media-")));
  importDir = await mkdtemp(join(tmpdir(), "lvo-host-media-import-"));
  mkdirSync(join(media, "real"));
  mkdirSync(join(media, "imports"));
  mkdirSync(join(media, "pool"));
  mkdirSync(join(importDir, "iso-content"));
  writeFileSync(join(importDir, "iso-content", "README"), "installer\n");
  await run("xorriso", [
    "-as",
    "mkisofs",
    "-quiet",
    "-o",
    join(media, "real", "disc.iso"),
    "-V",
    "ADMIN",
    join(importDir, "iso-content"),
  ]);
  await run("xorriso", [
    "-as",
    "mkisofs",
    "-quiet",
    "-o",
    join(importDir, "tenant.iso"),
    "-V",
    "TENANT",
    join(importDir, "iso-content"),
  ]);
  symlinkSync(join(media, "real", "disc.iso"), join(media, "link.iso"));
  symlinkSync("/etc/shadow", join(media, "shadow-link"));
  writeFileSync(join(media, "pool", "ns_data.img"), "a volume\n");
  writeFileSync(join(media, "imports", "upload.iso"), "an upload\n");
  await virsh("pool-destroy", INNER_POOL).catch(() => undefined);
  await virsh("pool-undefine", INNER_POOL).catch(() => undefined);
  await virsh("pool-define-as", INNER_POOL, "dir", "--target", join(media, "pool"));
  await virsh("pool-start", INNER_POOL);
  // The media directory holds an import directory of its own: never a source of media.
  process.env.IMAGE_IMPORT_DIRS = `${importDir}:${join(media, "imports")}`;
  await startTestOperator();
  // The attacker: a tenant of the namespace with the built-in edit role, nothing more.
  await actAsTenant(ns);
  // Another tenant's disk: its volume file is what an attacker would point at.
  await applyObject("VMDisk", other, "victim", { provisionedSize: "16Mi", format: "raw" });
  const victim = await waitForObject<VMDisk>(
    "vmdisk",
    other,
    "victim",
    (d) => d?.status?.phase === "Ready" && Boolean(d.status.path),
    "Ready",
  );
  victimPath = victim!.status!.path!;
  symlinkSync(victimPath, join(media, "victim-link"));
});

after(async () => {
  await kubectl(["delete", "vm", "--all", "-n", ns, "--wait=true", "--timeout=120s"]).catch(() => undefined);
  await kubectl(["delete", "vmdisk", "--all", "-n", ns, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await kubectl(["delete", "vmdisk", "--all", "-n", other, "--wait=true", "--timeout=60s"]).catch(
    () => undefined,
  );
  await stopTestOperator();
  await virsh("pool-destroy", INNER_POOL).catch(() => undefined);
  await virsh("pool-undefine", INNER_POOL).catch(() => undefined);
  await rm(media, { recursive: true, force: true });
  await rm(importDir, { recursive: true, force: true });
});

describe("host paths: only the admin's media directories, resolved", () => {
  const FIELDS = ["spec.cdrom.image", "spec.boot.kernel", "spec.boot.initrd"] as const;
  const short = { "spec.cdrom.image": "cd", "spec.boot.kernel": "kernel", "spec.boot.initrd": "initrd" };

  it("another namespace's volume, /etc/shadow and symlinks out of a media directory are refused; libvirt sees none", async () => {
    const attacks = FIELDS.flatMap((field) => [
      {
        name: `${short[field]}-volume`,
        field,
        path: () => victimPath,
        rule: /is not inside a media directory of node/,
      },
      {
        name: `${short[field]}-shadow`,
        field,
        path: () => "/etc/shadow",
        rule: /is not inside a media directory/,
      },
      {
        name: `${short[field]}-link-out`,
        field,
        path: () => join(media, "shadow-link"),
        rule: /resolves \(after following symlinks\) to a file outside the media directories/,
      },
      {
        name: `${short[field]}-link-volume`,
        field,
        path: () => join(media, "victim-link"),
        rule: /lies inside storage pool \S+ \(after following symlinks\)/,
      },
    ]);
    attacks.push(
      {
        name: "cd-inner-pool",
        field: "spec.cdrom.image",
        path: () => join(media, "pool", "ns_data.img"),
        rule: new RegExp(`lies inside storage pool ${INNER_POOL};`),
      },
      {
        name: "cd-import-dir",
        field: "spec.cdrom.image",
        path: () => join(media, "imports", "upload.iso"),
        rule: /lies inside an image import directory/,
      },
    );
    await Promise.all(attacks.map((a) => applyVm(ns, a.name, specWith(a.field, a.path()))));
    for (const a of attacks) await expectRefused(a.name, a.field, a.rule);
    for (const a of attacks) assert.equal(await domainExists(a.name), false, `${a.name}: no domain defined`);
    await deleteVms(attacks.map((a) => a.name)); // they hold vCPUs of the small test node
  });

  it("the API server refuses '..', NUL and relative paths with a clear message", async () => {
    const apply = (name: string, spec: Record<string, unknown>) =>
      kubectlError(
        ["apply", "--server-side", "-f", "-"],
        JSON.stringify({
          apiVersion: "vm.libvirt-operator.io/v1alpha1",
          kind: "VirtualMachine",
          metadata: { name, namespace: ns },
          spec,
        }),
      );
    const out = `${media}/../../../../../../etc/shadow`; // as written: join() would fold the ".."
    for (const field of FIELDS) {
      const err = await apply(`${short[field]}-dotdot`, specWith(field, out));
      assert.match(err, new RegExp(`${field.replaceAll(".", "\\.")} must not contain a '\\.\\.' segment`));
    }
    assert.match(
      await apply("cd-nul", specWith("spec.cdrom.image", `${media}/real/disc.iso\0`)),
      /must not contain a NUL/,
    );
    assert.match(
      await apply("kernel-rel", specWith("spec.boot.kernel", "vmlinuz")),
      /spec\.boot\.kernel must be an absolute path/,
    );
    assert.match(
      await apply("cd-both", guestVmSpec(guest, { cdrom: { image: "", diskRef: { name: "x" } } })),
      /spec\.cdrom needs exactly one of image .* or diskRef/,
    );
    for (const field of FIELDS) assert.equal(await domainExists(`${short[field]}-dotdot`), false);
  });

  it("an ISO in a media directory works, resolved; a change to a forbidden path leaves the domain as it is", async () => {
    const disc = join(media, "real", "disc.iso");
    await applyVm(ns, "admin-iso", guestVmSpec(guest, { cdrom: { image: join(media, "link.iso") } }));
    await waitForVm(ns, "admin-iso", isPrintable("Running"), "Running", 300_000);
    await waitForConsole(consoleLogOf(ns, "admin-iso"), BOOTED, 180_000);
    const live = cdromOf(await virsh("dumpxml", domainOf("admin-iso")));
    assert.match(live, new RegExp(`<source file='${disc}'`), "the resolved path, not the symlink");
    const inactiveBefore = await virsh("dumpxml", "--inactive", domainOf("admin-iso"));

    await patchSpec("admin-iso", { cdrom: { image: join(media, "victim-link") } });
    await expectRefused("admin-iso", "spec.cdrom.image", /lies inside storage pool/);
    await patchSpec("admin-iso", {
      cdrom: { image: join(media, "link.iso") },
      boot: { kernel: "/etc/shadow" },
    });
    await expectRefused("admin-iso", "spec.boot.kernel", /is not inside a media directory/);
    assert.match(
      cdromOf(await virsh("dumpxml", domainOf("admin-iso"))),
      new RegExp(`<source file='${disc}'`),
    );
    assert.equal(
      await virsh("dumpxml", "--inactive", domainOf("admin-iso")),
      inactiveBefore,
      "definition unchanged",
    );
    assert.equal(
      (await getVm(ns, "admin-iso"))?.status?.printableStatus,
      "Running",
      "the guest keeps running",
    );

    await patchSpec("admin-iso", { boot: { kernel: guest.kernel } });
    await waitForVm(ns, "admin-iso", (v) => failureOf(v)?.status === "False", "no longer refused", 120_000);
    await deleteVms(["admin-iso"]);
  });
});

describe("a tenant's ISO as a VMDisk (spec.cdrom.diskRef)", () => {
  it("is attached read-only from the volume libvirt has; the VM holds it; eject and insert live", async () => {
    await applyObject("VMDisk", ns, "installer", {
      provisionedSize: "1Mi",
      format: "raw",
      source: { image: { url: join(importDir, "tenant.iso") } },
    });
    await applyVm(ns, "from-disk", guestVmSpec(guest, { cdrom: { diskRef: { name: "installer" } } }));
    await waitForVm(ns, "from-disk", isPrintable("Running"), "Running", 300_000);
    const volume = (await virsh("vol-path", "--pool", "libvirt-operator", `${ns}_installer.img`)).trim();
    const cd = cdromOf(await virsh("dumpxml", domainOf("from-disk")));
    assert.match(cd, new RegExp(`<source file='${volume}'`), cd);
    assert.match(cd, /<readonly\/>/);
    const disk = await waitForObject<VMDisk>(
      "vmdisk",
      ns,
      "installer",
      (d) => d?.status?.attachedTo?.includes("from-disk") ?? false,
      "held by from-disk",
    );
    assert.deepEqual(disk?.status?.attachedTo, ["from-disk"]);
    assert.ok(disk?.metadata.finalizers?.includes(DISK_PROTECTION_FINALIZER), "protected while used");

    // Eject (an empty drive), then insert again: live, no restart.
    await patchSpec("from-disk", { cdrom: { diskRef: null, image: "" } });
    await waitForCdrom("from-disk", (xml) => !xml.includes("<source file="));
    await patchSpec("from-disk", { cdrom: { image: null, diskRef: { name: "installer" } } });
    await waitForCdrom("from-disk", (xml) => xml.includes(`<source file='${volume}'`));
    assert.equal((await getVm(ns, "from-disk"))?.status?.syncStatus, "SYNC", "changed in place");
  });

  it("naming another namespace's disk reaches nothing: the VM waits for a disk of its own", async () => {
    await applyVm(
      ns,
      "cross-ns",
      guestVmSpec(guest, { interfaces: [], cdrom: { diskRef: { name: "victim" } } }),
    );
    const vm = await waitForVm(
      ns,
      "cross-ns",
      (v) =>
        v?.status?.conditions?.some((c) =>
          c.message.includes("VMDisk victim (spec.cdrom.diskRef) does not exist"),
        ) ?? false,
      "waiting for its own VMDisk victim",
      180_000,
    );
    assert.notEqual(vm?.status?.printableStatus, "Running");
    if (await domainExists("cross-ns"))
      assert.doesNotMatch(cdromOf(await virsh("dumpxml", "--inactive", domainOf("cross-ns"))), /<source/);
  });
});

async function deleteVms(names: string[]) {
  await kubectl(["delete", "vm", ...names, "-n", ns, "--wait=true", "--timeout=180s"]);
}

async function waitForCdrom(name: string, check: (cdrom: string) => boolean, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = cdromOf(await virsh("dumpxml", domainOf(name)));
    if (check(last)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the CD-ROM of ${name} never got there: ${last}`);
}
