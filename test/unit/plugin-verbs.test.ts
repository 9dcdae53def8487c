// The verbs' requests against a fake API server: what each reads and writes (merge patches of
// spec and annotations, creates, deletes; never status), dry runs, and the 409 retry of a list.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FROZEN_ANNOTATION } from "../../src/api/names.ts";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import { parseCommandLine } from "../../src/cli/args.ts";
import type { PluginClient } from "../../src/cli/client.ts";
import { runVerb } from "../../src/cli/verbs.ts";
import { ApiError } from "../../src/kube/http.ts";

interface Call {
  verb: "get" | "list" | "create" | "patch" | "delete";
  plural: string;
  name?: string;
  body?: Record<string, unknown>;
  dryRun?: string;
}

const notFound = (plural: string, name: string) =>
  new ApiError(404, { kind: "Status", reason: "NotFound", message: `${plural} "${name}" not found` });

/** A fake API holding OBJECTS by "plural/name"; PATCH answers CONFLICTS 409s first. */
function fakeApi(objects: Record<string, Record<string, unknown>>, conflicts = 0) {
  const calls: Call[] = [];
  let conflictsLeft = conflicts;
  const find = (plural: string, name: string) => {
    const obj = objects[`${plural}/${name}`];
    if (!obj) throw notFound(plural, name);
    return structuredClone(obj);
  };
  const client: PluginClient = {
    namespace: "ns",
    get: async () => ({ items: [] }),
    close: () => undefined,
    custom: {
      getNamespacedCustomObject: async (p) => {
        calls.push({ verb: "get", plural: p.plural, name: p.name });
        return find(p.plural, p.name);
      },
      listNamespacedCustomObject: async (p) => {
        calls.push({ verb: "list", plural: p.plural });
        return {
          items: Object.entries(objects)
            .filter(([k]) => k.startsWith(`${p.plural}/`))
            .map(([, o]) => o),
        };
      },
      listClusterCustomObject: async (p) => {
        calls.push({ verb: "list", plural: p.plural });
        return { items: [] };
      },
      createNamespacedCustomObject: async (p) => {
        calls.push({
          verb: "create",
          plural: p.plural,
          body: p.body as Record<string, unknown>,
          ...(p.dryRun ? { dryRun: p.dryRun } : {}),
        });
        return { ...p.body, metadata: { ...(p.body as { metadata: object }).metadata, generation: 1 } };
      },
      patchNamespacedCustomObject: async (p) => {
        calls.push({
          verb: "patch",
          plural: p.plural,
          name: p.name,
          body: p.body as Record<string, unknown>,
          ...(p.dryRun ? { dryRun: p.dryRun } : {}),
        });
        const obj = find(p.plural, p.name);
        if (conflictsLeft > 0) {
          conflictsLeft--;
          throw new ApiError(409, {
            kind: "Status",
            reason: "Conflict",
            message: "the object has been modified",
          });
        }
        return { ...obj, metadata: { ...(obj.metadata as object), generation: 2 } };
      },
      deleteNamespacedCustomObject: async (p) => {
        calls.push({
          verb: "delete",
          plural: p.plural,
          name: p.name,
          ...(p.dryRun ? { dryRun: p.dryRun } : {}),
        });
        return {};
      },
    },
  };
  return { client, calls };
}

const web = (spec: VirtualMachine["spec"] = {}, annotations?: Record<string, string>) => ({
  apiVersion: "vm.libvirt-operator.io/v1alpha1",
  kind: "VirtualMachine",
  metadata: { name: "web", namespace: "ns", resourceVersion: "7", ...(annotations ? { annotations } : {}) },
  spec,
});

async function run(argv: string[], objects: Record<string, Record<string, unknown>>, conflicts = 0) {
  const { client, calls } = fakeApi(objects, conflicts);
  let out = "";
  let err = "";
  const result = await runVerb(client, parseCommandLine(argv), {
    out: (s) => (out += s),
    err: (s) => (err += s),
  })
    .then(() => undefined)
    .catch((e: Error) => e);
  return { calls, out, err, error: result };
}

/** Writes touch metadata.annotations, metadata.resourceVersion (a list's guard) and spec only. */
function assertOnlySpecAndAnnotations(calls: Call[]) {
  for (const c of calls.filter((x) => x.verb === "patch")) {
    assert.deepEqual(
      Object.keys(c.body ?? {}).filter((k) => k !== "spec" && k !== "metadata"),
      [],
      JSON.stringify(c.body),
    );
    const metadata = (c.body?.metadata ?? {}) as Record<string, unknown>;
    assert.deepEqual(
      Object.keys(metadata).filter((k) => k !== "annotations" && k !== "resourceVersion"),
      [],
    );
  }
}

describe("verbs against the API", () => {
  it("pause is one PATCH and no read", async () => {
    const { calls, out } = await run(["pause", "web"], { "virtualmachines/web": web() });
    assert.deepEqual(calls, [
      { verb: "patch", plural: "virtualmachines", name: "web", body: { spec: { paused: true } } },
    ]);
    assert.equal(out, "virtualmachine.vm.libvirt-operator.io/web paused\n");
  });
  it("--dry-run=server reaches every write", async () => {
    const objects = {
      "virtualmachines/web": web({ runStrategy: "Manual" }),
      "vmsnapshots/s1": { metadata: { name: "s1" }, spec: { vmName: "web" } },
    };
    for (const argv of [
      ["stop", "web"],
      ["snapshot", "web"],
      ["delete-snapshot", "web", "s1"],
      ["restore", "web", "s1"],
    ]) {
      const { calls, out } = await run([...argv, "--dry-run=server"], objects);
      const writes = calls.filter((c) => c.verb !== "get" && c.verb !== "list");
      assert.equal(writes.length, 1, argv.join(" "));
      assert.equal(writes[0]?.dryRun, "All", argv.join(" "));
      assert.match(out, /\(server dry run\)/);
    }
  });
  it("disk attach reads the VMDisk and the VM, and sends the list with the resourceVersion read", async () => {
    const objects = { "virtualmachines/web": web(), "vmdisks/data": { metadata: { name: "data" } } };
    const { calls } = await run(["disk", "attach", "web", "data"], objects);
    assert.deepEqual(
      calls.map((c) => `${c.verb} ${c.plural}`),
      ["get vmdisks", "get virtualmachines", "patch virtualmachines"],
    );
    assert.deepEqual(calls[2]?.body, {
      metadata: { resourceVersion: "7" },
      spec: { disks: [{ name: "data", diskRef: { name: "data" } }] },
    });
  });
  it("a 409 Conflict reads the VM again and retries, a few times, then says so", async () => {
    const objects = { "virtualmachines/web": web({ disks: [{ name: "d", diskRef: { name: "d" } }] }) };
    const retried = await run(["disk", "detach", "web", "d"], objects, 2);
    assert.equal(retried.error, undefined);
    assert.deepEqual(
      retried.calls.map((c) => c.verb),
      ["get", "patch", "get", "patch", "get", "patch"],
    );
    const gaveUp = await run(["disk", "detach", "web", "d"], objects, 10);
    assert.equal((gaveUp.error as ApiError).code, 409);
    assert.equal(gaveUp.calls.filter((c) => c.verb === "patch").length, 4);
  });
  it("a missing VM is the API server's NotFound; nothing is written", async () => {
    const { calls, error } = await run(["snapshot", "ghost"], {});
    assert.equal((error as ApiError).code, 404);
    assert.deepEqual(
      calls.map((c) => c.verb),
      ["get"],
    );
  });
  it("delete-snapshot and clone refuse another VM's snapshot before writing", async () => {
    const objects = { "vmsnapshots/s1": { metadata: { name: "s1" }, spec: { vmName: "db" } } };
    for (const argv of [
      ["delete-snapshot", "web", "s1"],
      ["clone", "web", "--from-snapshot", "s1", "--to", "x"],
    ]) {
      const { calls, error } = await run(argv, objects);
      assert.match(String(error), /snapshot "s1" is of VM "db", not of "web"/);
      assert.deepEqual(
        calls.map((c) => c.verb),
        ["get"],
      );
    }
  });
  it("start of a frozen VM writes the request and warns", async () => {
    const { calls, err } = await run(["start", "web"], {
      "virtualmachines/web": web({ runStrategy: "Manual" }, { [FROZEN_ANNOTATION]: "t" }),
    });
    assert.equal(calls.filter((c) => c.verb === "patch").length, 1);
    assert.match(err, /^warning: VM "web" is frozen/);
  });
  it("create-from-template -o yaml talks to no API server", async () => {
    const { calls, out } = await run(
      ["create-from-template", "small", "--name", "w", "--amount", "2", "-o", "yaml"],
      {},
    );
    assert.deepEqual(calls, []);
    assert.equal(out.split("---\n").length, 2);
  });
  it("every verb's writes touch spec and annotations only, never status", async () => {
    const objects = {
      "virtualmachines/web": web({ runStrategy: "Halted", disks: [{ name: "d", diskRef: { name: "d" } }] }),
      "vmdisks/iso": { metadata: { name: "iso" } },
    };
    const all: Call[] = [];
    for (const argv of [
      ["start", "web", "--cdrom", "iso", "--once"],
      ["stop", "web", "--force"],
      ["restart", "web", "--grace-period", "3"],
      ["freeze", "web"],
      ["unfreeze", "web"],
      ["rotation", "web", "--schedule", "@daily", "--keep", "2"],
      ["cdrom", "insert", "web", "iso"],
      ["cdrom", "eject", "web"],
      ["disk", "deactivate", "web", "d"],
      ["unpause", "web"],
    ]) {
      const { calls, error } = await run(argv, objects);
      assert.equal(error, undefined, `${argv.join(" ")}: ${error}`);
      all.push(...calls);
    }
    assert.equal(all.filter((c) => c.verb === "patch").length, 10);
    assertOnlySpecAndAnnotations(all);
  });
});
