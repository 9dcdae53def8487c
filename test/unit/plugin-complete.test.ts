// Shell completion (kubectl_complete-vm): what each position offers, against a fake API.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CompletionSource, complete, completionOutput } from "../../src/cli/complete.ts";

const asked: string[] = [];
const source: CompletionSource = {
  names: async (kind, namespace, vm) => {
    asked.push(`${kind}${vm ? ` of ${vm}` : ""} in ${namespace ?? "(context)"}`);
    const all: Record<string, string[]> = {
      vm: ["web", "db", "worker"],
      template: ["small"],
      vmdisk: ["iso", "data"],
      snapshot: vm === "web" ? ["web-s1", "web-s2"] : [],
    };
    return all[kind] ?? [];
  },
  vmDisks: async (vm) => (vm === "web" ? ["root", "data"] : []),
  namespaces: async () => ["default", "prod"],
  contexts: () => ["kind", "prod-cluster"],
};

async function words(...typed: string[]) {
  return (await complete(typed, source)).candidates.map((c) => c.split("\t")[0]);
}

describe("kubectl vm completion", () => {
  it("first word: verbs and groups with their summaries, filtered by what is typed", async () => {
    const c = await complete(["st"], source);
    assert.deepEqual(
      c.candidates.map((x) => x.split("\t")[0]),
      ["status", "stats", "start", "stop"],
    );
    assert.match(c.candidates[0] ?? "", /^status\tList VMs/);
    assert.equal(c.directive, 4);
    assert.ok((await words("")).includes("disk"));
    assert.ok(!(await words("")).includes("disk attach"));
  });
  it("a group's sub-verbs", async () => {
    assert.deepEqual(await words("disk", ""), ["attach", "activate", "deactivate", "detach"]);
    assert.deepEqual(await words("cdrom", "e"), ["eject"]);
  });
  it("VM names where a VM goes, from the namespace typed", async () => {
    asked.length = 0;
    assert.deepEqual(await words("-n", "prod", "stop", "w"), ["web", "worker"]);
    assert.deepEqual(asked, ["vm in prod"]);
    assert.deepEqual(await words("disk", "attach", "web", ""), ["data", "iso"], "VMDisks to attach");
    assert.deepEqual(
      await words("disk", "detach", "web", ""),
      ["root", "data"],
      "the VM's own disks, in its order",
    );
    assert.deepEqual(await words("create-from-template", ""), ["small"]);
  });
  it("snapshots of the VM named before them", async () => {
    asked.length = 0;
    assert.deepEqual(await words("restore", "web", ""), ["web-s1", "web-s2"]);
    assert.deepEqual(asked, ["snapshot of web in (context)"]);
    assert.deepEqual(await words("clone", "web", "--from-snapshot", ""), ["web-s1", "web-s2"]);
    assert.deepEqual(await words("clone", "web", "--from-snapshot=web-s"), [
      "--from-snapshot=web-s1",
      "--from-snapshot=web-s2",
    ]);
  });
  it("flags of the verb and the globals that apply to it", async () => {
    const stop = await words("stop", "web", "--");
    for (const f of ["--force", "--grace-period", "--wait", "--dry-run=server", "--namespace"])
      assert.ok(stop.includes(f), f);
    assert.ok(!stop.includes("--all-namespaces"));
    assert.deepEqual(await words("snapshot", "web", "--me"), ["--memory"]);
    assert.ok((await words("status", "--a")).includes("--all-namespaces"));
  });
  it("flag values: enums, namespaces, contexts, output formats; nothing for a new name", async () => {
    assert.deepEqual(await words("disk", "attach", "web", "data", "--bus", "s"), ["scsi", "sata"]);
    assert.deepEqual(await words("status", "-n", ""), ["default", "prod"]);
    assert.deepEqual(await words("status", "--context", "p"), ["prod-cluster"]);
    assert.deepEqual(await words("status", "-o", "y"), ["yaml"]);
    assert.deepEqual(await words("snapshot", "web", "--name", ""), []);
    assert.deepEqual(await words("start", "web", "--cdrom", ""), ["data", "iso"]);
  });
  it("files where files go: --kubeconfig, a host path for the CD-ROM", async () => {
    assert.equal((await complete(["status", "--kubeconfig", ""], source)).directive, 0);
    assert.equal((await complete(["cdrom", "insert", "web", "/med"], source)).directive, 0);
  });
  it("nothing past the last argument", async () => {
    assert.deepEqual(await words("stop", "web", ""), []);
    assert.deepEqual(await words("bogus", ""), []);
  });
  it("help completes verbs, then a group's sub-verbs", async () => {
    assert.ok((await words("help", "")).includes("rotation"));
    assert.deepEqual(await words("help", "cdrom", ""), ["insert", "eject"]);
  });
  it("prints cobra's format: one candidate a line, then :directive", () => {
    assert.equal(completionOutput({ candidates: ["a", "b\tdesc"], directive: 4 }), "a\nb\tdesc\n:4\n");
    assert.equal(completionOutput({ candidates: [], directive: 4 }), ":4\n");
  });
});
