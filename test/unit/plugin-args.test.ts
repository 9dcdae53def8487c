import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseCommandLine, parseDuration, UsageError } from "../../src/cli/args.ts";
import { DEFAULT_WAIT_MS, findVerb, subVerbs, topLevelWords, VERB_GROUPS } from "../../src/cli/commands.ts";

describe("kubectl vm argument parsing", () => {
  it("reads global flags before and after the verb", () => {
    const c = parseCommandLine([
      "-n",
      "prod",
      "status",
      "web",
      "--context=kind",
      "--kubeconfig",
      "/k",
      "-oyaml",
    ]);
    assert.equal(c.verb.name, "status");
    assert.deepEqual(c.args, ["web"]);
    assert.equal(c.global.namespace, "prod");
    assert.equal(c.global.context, "kind");
    assert.equal(c.global.kubeconfig, "/k");
    assert.equal(c.global.output, "yaml");
  });
  it("takes -A, --namespace=, -n=", () => {
    assert.equal(parseCommandLine(["status", "-A"]).global.allNamespaces, true);
    assert.equal(parseCommandLine(["status", "--namespace=a"]).global.namespace, "a");
    assert.equal(parseCommandLine(["status", "-n=b"]).global.namespace, "b");
  });
  it("no verb, -h and --help mean help, for the verb or group typed", () => {
    assert.equal(parseCommandLine([]).verb.name, "help");
    assert.deepEqual(parseCommandLine(["stop", "-h"]).args, ["stop"]);
    assert.equal(parseCommandLine(["--help"]).verb.name, "help");
    assert.deepEqual(parseCommandLine(["disk", "-h"]).args, ["disk"]);
    assert.deepEqual(parseCommandLine(["disk", "attach", "vm", "--help"]).args, ["disk", "attach"]);
    assert.deepEqual(parseCommandLine(["help", "cdrom", "eject"]).args, ["cdrom", "eject"]);
  });
  it("reads verb flags: bool, string with = or next token, int", () => {
    const c = parseCommandLine(["snapshot", "web", "--memory", "--name", "s1", "--sticky=false"]);
    assert.deepEqual(c.args, ["web"]);
    assert.deepEqual(c.flags, { memory: true, name: "s1", sticky: false });
    const t = parseCommandLine(["create-from-template", "tpl", "--name=web", "--amount", "3", "--start=5"]);
    assert.deepEqual(t.flags, { name: "web", amount: 3, start: 5 });
    assert.deepEqual(parseCommandLine(["stop", "web", "--grace-period", "5"]).flags, { "grace-period": 5 });
  });
  it("a bool flag before a positional leaves it positional", () => {
    assert.deepEqual(parseCommandLine(["snapshot", "--memory", "web"]).args, ["web"]);
    assert.deepEqual(parseCommandLine(["stop", "--force", "web"]).args, ["web"]);
  });
  it("--dry-run must be server; --wait takes an optional attached duration", () => {
    assert.equal(parseCommandLine(["pause", "web", "--dry-run=server"]).global.dryRun, true);
    assert.throws(() => parseCommandLine(["pause", "web", "--dry-run"]), UsageError);
    assert.throws(() => parseCommandLine(["pause", "web", "--dry-run=client"]), UsageError);
    assert.equal(parseCommandLine(["start", "--wait", "web"]).global.waitMs, DEFAULT_WAIT_MS);
    assert.deepEqual(parseCommandLine(["start", "--wait", "web"]).args, ["web"]);
    assert.equal(parseCommandLine(["start", "web", "--wait=90s"]).global.waitMs, 90_000);
  });
  it("-- ends the flags", () => {
    assert.deepEqual(parseCommandLine(["status", "--", "-odd-name"]).args, ["-odd-name"]);
  });
});

describe("sub-verbs (cdrom, disk)", () => {
  it("a group's word and its sub-verb make the verb; arguments follow", () => {
    const c = parseCommandLine(["disk", "attach", "web", "data", "--bus", "scsi", "--boot-order=2"]);
    assert.equal(c.verb.name, "disk attach");
    assert.deepEqual(c.args, ["web", "data"]);
    assert.deepEqual(c.flags, { bus: "scsi", "boot-order": 2 });
    assert.equal(parseCommandLine(["cdrom", "eject", "web"]).verb.name, "cdrom eject");
    assert.equal(parseCommandLine(["-n", "x", "cdrom", "insert", "web", "/iso/a.iso"]).args[1], "/iso/a.iso");
  });
  it("a group without its sub-verb, or with an unknown one, says which exist", () => {
    assert.throws(
      () => parseCommandLine(["disk"]),
      /needs a sub-command: attach, activate, deactivate, detach/,
    );
    assert.throws(
      () => parseCommandLine(["cdrom", "spin", "web"]),
      /unknown command "spin" .*insert, eject/s,
    );
  });
  it("the table lists the groups and their sub-verbs", () => {
    assert.deepEqual([...VERB_GROUPS], ["cdrom", "disk"]);
    assert.deepEqual(subVerbs("cdrom"), ["insert", "eject"]);
    assert.ok(topLevelWords().includes("disk") && !topLevelWords().includes("disk attach"));
    assert.equal(findVerb("disk detach")?.args.length, 2);
  });
});

describe("usage errors (exit code 2)", () => {
  const bad: Array<[string[], RegExp]> = [
    [["bogus"], /unknown command "bogus"/],
    [["status", "--bogus"], /unknown flag: --bogus/],
    [["snapshot"], /needs VM/],
    [["start", "a", "b"], /takes 1 argument/],
    [["status", "-o", "table"], /output format "table"/],
    [["status", "--dry-run=server"], /does not write/],
    [["snapshots", "web", "--wait"], /nothing to wait for/],
    [["pause", "web", "-A"], /one namespace/],
    [["create-from-template", "t", "--amount", "x", "--name", "a"], /want an integer/],
    [["status", "-n"], /flag needs an argument: -n/],
    [["status", "-x"], /unknown shorthand flag/],
    [["status", "--refresh"], /name the VM/],
    [["status", "-A", "web"], /leave NAME out/],
    [["status", "--wait=5s"], /--wait applies to --refresh/],
    [["stop", "web", "--force", "--grace-period", "3"], /give one of them/],
    [["restart", "web", "--grace-period=-1"], /0 to 86400/],
    [["freeze", "web", "--grace-period", "90000"], /0 to 86400/],
    [["start", "web", "--once"], /give --cdrom/],
    [["rotation", "web"], /--schedule and --keep/],
    [["rotation", "web", "--schedule", "@daily"], /--schedule and --keep/],
    [["rotation", "web", "--off", "--keep", "2"], /leave out --keep/],
    [["rotation", "web", "--schedule", "@daily", "--keep", "0"], /at least 1/],
    [["clone", "web", "--to", "b"], /--from-snapshot/],
    [["set-as-template", "web"], /needs --name/],
    [["create-from-template", "t"], /needs --name/],
    [
      ["create-from-template", "t", "--name", "w", "-o", "yaml", "--wait"],
      /creates none: --wait does not apply/,
    ],
    [["disk", "attach", "web", "d", "--boot-order", "0"], /1 to 64/],
    [["disk", "detach", "web"], /needs DISK/],
    [["disk", "attach", "web", "d", "--bus", "usb"], /--bus must be one of virtio, scsi, sata, ide/],
    [
      ["create-from-template", "t", "--name", "w", "--run-strategy", "Sometimes"],
      /--run-strategy must be one of/,
    ],
    [["unfreeze", "web", "--wait"], /nothing to wait for/],
    [["snapshot", "web", "--once"], /unknown flag: --once/],
  ];
  for (const [argv, message] of bad)
    it(argv.join(" "), () =>
      assert.throws(
        () => parseCommandLine(argv),
        (err: Error) => err instanceof UsageError && message.test(err.message),
      ),
    );
  it("flags that belong together pass", () => {
    assert.deepEqual(parseCommandLine(["rotation", "web", "--off"]).flags, { off: true });
    assert.deepEqual(parseCommandLine(["start", "web", "--cdrom", "iso", "--once"]).flags, {
      cdrom: "iso",
      once: true,
    });
    assert.equal(parseCommandLine(["status", "web", "--refresh", "--wait=10s"]).global.waitMs, 10_000);
    assert.deepEqual(parseCommandLine(["clone", "web", "--from-snapshot", "s", "--to", "b"]).args, ["web"]);
  });
});

describe("parseDuration", () => {
  const cases: Array<[string, number]> = [
    ["90s", 90_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["30", 30_000],
  ];
  for (const [text, ms] of cases) it(`${text} → ${ms}`, () => assert.equal(parseDuration(text), ms));
  for (const text of ["", "5x", "m", "5m junk"])
    it(`refuses "${text}"`, () => assert.throws(() => parseDuration(text), UsageError));
});
