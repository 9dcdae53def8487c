// The TCG test guest's abilities for snapshot tests, against real libvirtd and QEMU: a QEMU
// guest agent that answers and freezes exactly one file system (lvo.ext4), and a counter kept
// on its own disk (lvo.counter) that tells a memory snapshot's restore (counter and uptime go
// back, no new boot) from a disk snapshot's (the next boot reads the value at the snapshot).
// virsh drives libvirt here: what is tested is the guest, not the operator's client.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/cmd/local/tools.ts";
import {
  AGENT_STARTED,
  BOOTED,
  COUNTER_BOOT,
  consoleText,
  counterBoots,
  counterReadings,
  ensureGuest,
  type Guest,
  guestDomainXml,
  MOUNTED,
  waitForConsole,
  waitForConsoleText,
} from "../support/guest.ts";

const DOMAIN = `lvo-guest-${process.pid}`;
let guest: Guest;
let workDir: string;
let consoleLog: string;
let counterDisk: string;

const virsh = async (...args: string[]) =>
  (await run("virsh", ["-c", "qemu:///system", ...args], { timeoutMs: 180_000 })).stdout.trim();
const agent = (command: string) =>
  virsh("qemu-agent-command", DOMAIN, JSON.stringify({ execute: command })).then(
    (out) => (JSON.parse(out) as { return: unknown }).return,
  );

/** The counter as the disk holds it (the domain shut off): the first line of its first sector. */
async function counterOnDisk(): Promise<number> {
  const sector = join(workDir, "sector.raw");
  await rm(sector, { force: true });
  await run("qemu-img", [
    "dd",
    "-f",
    "qcow2",
    "-O",
    "raw",
    "bs=512",
    "count=1",
    `if=${counterDisk}`,
    `of=${sector}`,
  ]);
  const line = (await readFile(sector, "latin1")).split("\n")[0] ?? "";
  assert.match(
    line,
    /^\d+$/,
    `the counter sector starts with a number: ${JSON.stringify(line.slice(0, 40))}`,
  );
  return Number(line);
}

/** The value the boot after offset FROM read from the counter's disk. */
function waitForCounterBoot(from: number) {
  return waitForConsoleText(consoleLog, (text) => counterBoots(text)[0], COUNTER_BOOT, 60_000, from);
}

/** Waits for the counter lines after offset FROM until one says at least N. */
function waitForCount(n: number, from: number) {
  return waitForConsoleText(
    consoleLog,
    (text) => counterReadings(text).find((r) => r.n >= n),
    `a counter line reaching ${n}`,
    60_000,
    from,
  );
}

before(async () => {
  guest = await ensureGuest();
  workDir = await mkdtemp(join(tmpdir(), "lvo-guest-"));
  consoleLog = join(workDir, "console.log");
  const fsDisk = join(workDir, "fs.qcow2");
  counterDisk = join(workDir, "counter.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", fsDisk, "32M"]);
  await run("qemu-img", ["create", "-q", "-f", "qcow2", counterDisk, "1M"]);
  const xml = join(workDir, "domain.xml");
  await writeFile(
    xml,
    guestDomainXml({
      name: DOMAIN,
      guest,
      consoleLog,
      consoleAppend: true, // offsets into the log stay valid across restarts
      agentChannel: true,
      cmdline: "lvo.ext4=vda lvo.counter=vdb",
      disks: [
        { path: fsDisk, format: "qcow2", dev: "vda" },
        { path: counterDisk, format: "qcow2", dev: "vdb" },
      ],
    }),
  );
  await virsh("define", xml);
});

after(async () => {
  // Leave nothing behind, whatever failed.
  await virsh("destroy", DOMAIN).catch(() => undefined);
  await virsh("undefine", DOMAIN, "--snapshots-metadata").catch(() => undefined);
  await rm(workDir, { recursive: true, force: true });
});

describe("the TCG test guest", () => {
  it("boots with a mounted file system, a counter from 0, and then its guest agent", async (t) => {
    await virsh("start", DOMAIN);
    const bootMs = await waitForConsole(consoleLog, BOOTED);
    const agentMs = await waitForConsole(consoleLog, AGENT_STARTED);
    const text = consoleText(consoleLog);
    const uptime = /LIBVIRT-OPERATOR-GUEST-BOOTED uptime=([\d.]+)/.exec(text)?.[1];
    t.diagnostic(`BOOTED after ${bootMs} ms (guest uptime ${uptime} s), agent started ${agentMs} ms later`);
    assert.ok(text.includes(`${MOUNTED} vda`), "the ext4 disk is mounted on /data");
    assert.deepEqual(counterBoots(text), [0], "a new disk reads as 0");
    assert.ok(text.indexOf(`${COUNTER_BOOT} 0`) < text.indexOf(BOOTED), "the counter is read before BOOTED");
    const first = await waitForCount(2, 0);
    assert.ok(first.n === 2 && first.uptime > 0, `counts up by one: ${JSON.stringify(first)}`);
  });

  it("answers guest-ping and freezes and thaws exactly one file system", async () => {
    assert.deepEqual(await agent("guest-ping"), {});
    assert.match(await virsh("domfsinfo", DOMAIN), /\/data\s+vda\s+ext4/);
    assert.match(await virsh("domfsfreeze", DOMAIN), /Froze 1 filesystem/);
    try {
      assert.equal(await agent("guest-fsfreeze-status"), "frozen");
      // The counter's disk is no file system: it goes on counting while /data is frozen.
      const now = counterReadings(consoleText(consoleLog)).at(-1)!.n;
      await waitForCount(now + 2, 0);
    } finally {
      assert.match(await virsh("domfsthaw", DOMAIN), /Thawed 1 filesystem/);
    }
    assert.equal(await agent("guest-fsfreeze-status"), "thawed");
  });

  it("after a memory snapshot's restore, counter and uptime go back without a new boot", async (t) => {
    await virsh("snapshot-create-as", DOMAIN, "mem", "--atomic");
    assert.match(await virsh("snapshot-info", DOMAIN, "mem"), /State:\s+running/);
    // The snapshot's guest counted to at most the last line printed once it was taken.
    const taken = counterReadings(consoleText(consoleLog)).at(-1)!;
    const later = await waitForCount(taken.n + 3, 0);
    const from = consoleText(consoleLog).length;
    await virsh("snapshot-revert", DOMAIN, "mem");
    assert.match(await virsh("domstate", DOMAIN), /running/);
    const next = await waitForConsoleText(
      consoleLog,
      (text) => counterReadings(text)[0],
      "a counter line after the revert",
      60_000,
      from,
    );
    assert.ok(
      next.n <= taken.n + 1 && next.n < later.n,
      `counter went back: ${taken.n} → ${later.n} → ${next.n}`,
    );
    assert.ok(next.uptime < later.uptime, `uptime went back: ${later.uptime} → ${next.uptime}`);
    t.diagnostic(
      `counter ${taken.n} at the snapshot, ${later.n} (uptime ${later.uptime}) before the revert, ${next.n} (uptime ${next.uptime}) after`,
    );
    const after = consoleText(consoleLog).slice(from);
    assert.ok(!after.includes(COUNTER_BOOT) && !after.includes(BOOTED), "no new boot");
    assert.deepEqual(await agent("guest-ping"), {}, "the agent answers after the restore");
    await virsh("snapshot-delete", DOMAIN, "mem");
  });

  it("after a disk snapshot's restore, the next boot reads the counter at the snapshot", async (t) => {
    await virsh("destroy", DOMAIN);
    const atSnapshot = await counterOnDisk();
    const lastPrinted = counterReadings(consoleText(consoleLog)).at(-1)!.n;
    assert.ok(
      atSnapshot === lastPrinted || atSnapshot === lastPrinted + 1,
      `each value is written before it is printed: disk ${atSnapshot}, printed ${lastPrinted}`,
    );
    await virsh("snapshot-create-as", DOMAIN, "disk", "--atomic");
    assert.match(await virsh("snapshot-info", DOMAIN, "disk"), /State:\s+shutoff/);

    let from = consoleText(consoleLog).length;
    await virsh("start", DOMAIN);
    assert.equal(await waitForCounterBoot(from), atSnapshot, "a boot reads the value on the disk");
    assert.ok(consoleText(consoleLog).slice(from).includes(`${MOUNTED} vda`), "the file system mounts again");
    await waitForCount(atSnapshot + 3, from);
    await virsh("destroy", DOMAIN);
    const counted = await counterOnDisk();
    assert.ok(counted >= atSnapshot + 3, "the disk counted on");
    t.diagnostic(`counter ${atSnapshot} on the disk at the snapshot, ${counted} before the revert`);

    await virsh("snapshot-revert", DOMAIN, "disk");
    assert.equal(await counterOnDisk(), atSnapshot, "the restored disk holds the value at the snapshot");
    from = consoleText(consoleLog).length;
    await virsh("start", DOMAIN);
    assert.equal(await waitForCounterBoot(from), atSnapshot, "the value at the snapshot");
    const next = await waitForCount(atSnapshot + 1, from);
    assert.equal(next.n, atSnapshot + 1, "and counts on from there");
    await virsh("destroy", DOMAIN);
    await virsh("snapshot-delete", DOMAIN, "disk");
  });
});
