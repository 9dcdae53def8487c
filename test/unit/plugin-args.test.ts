import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_WAIT_MS, parseCommandLine, parseDuration, UsageError } from "../../src/cli/args.ts";

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
  it("no verb, -h and --help mean help", () => {
    assert.equal(parseCommandLine([]).verb.name, "help");
    assert.deepEqual(parseCommandLine(["stop", "-h"]).args, ["stop"]);
    assert.equal(parseCommandLine(["--help"]).verb.name, "help");
  });
  it("reads verb flags: bool, string with = or next token, int", () => {
    const c = parseCommandLine(["snapshot", "web", "--memory", "--name", "s1", "--sticky=false"]);
    assert.deepEqual(c.args, ["web"]);
    assert.deepEqual(c.flags, { memory: true, name: "s1", sticky: false });
    const t = parseCommandLine(["create-from-template", "tpl", "--name=web", "--amount", "3", "--start=5"]);
    assert.deepEqual(t.flags, { name: "web", amount: 3, start: 5 });
  });
  it("a bool flag before a positional leaves it positional", () => {
    assert.deepEqual(parseCommandLine(["snapshot", "--memory", "web"]).args, ["web"]);
  });
  it("--dry-run must be server; --wait takes an optional attached duration", () => {
    assert.equal(parseCommandLine(["pause", "web", "--dry-run=server"]).global.dryRun, true);
    assert.throws(() => parseCommandLine(["pause", "web", "--dry-run"]), UsageError);
    assert.throws(() => parseCommandLine(["pause", "web", "--dry-run=client"]), UsageError);
    assert.equal(parseCommandLine(["start", "--wait", "web"]).global.waitMs, DEFAULT_WAIT_MS);
    assert.deepEqual(parseCommandLine(["start", "--wait", "web"]).args, ["web"]);
    assert.equal(parseCommandLine(["start", "web", "--wait=90s"]).global.waitMs, 90_000);
  });
  it("refuses what would be ignored or is wrong, with usage errors", () => {
    const bad: string[][] = [
      ["bogus"],
      ["status", "--bogus"],
      ["snapshot"],
      ["start", "a", "b"],
      ["status", "-o", "table"],
      ["status", "--dry-run=server"],
      ["snapshots", "web", "--wait"],
      ["pause", "web", "-A"],
      ["create-from-template", "t", "--amount", "x"],
      ["status", "-n"],
      ["status", "-x"],
    ];
    for (const argv of bad) assert.throws(() => parseCommandLine(argv), UsageError, argv.join(" "));
  });
  it("-- ends the flags", () => {
    assert.deepEqual(parseCommandLine(["status", "--", "-odd-name"]).args, ["-odd-name"]);
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
