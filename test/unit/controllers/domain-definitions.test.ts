import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DomainDefinitions } from "../../../src/controllers/node/domain-definitions.ts";
import type { DomainRef } from "../../../src/hypervisor/libvirt/index.ts";

const dom = (name: string, uuidByte = 1): DomainRef => ({ name, uuid: Buffer.alloc(16, uuidByte), id: -1 });

/** A fake node: domains with their XML, counting reads; a read may be held until released. */
function node(initial: Record<string, string>) {
  const xml = new Map(Object.entries(initial));
  const uuids = new Map<string, number>();
  let reads = 0;
  let hold: Promise<void> | undefined;
  return {
    xml,
    uuids,
    reads: () => reads,
    holdReads(until: Promise<void>) {
      hold = until;
    },
    source: {
      list: async () => [...xml.keys()].map((n) => dom(n, uuids.get(n) ?? 1)),
      read: async (d: DomainRef) => {
        reads++;
        const text = xml.get(d.name);
        if (hold) await hold;
        return text;
      },
    },
  };
}

const facts = (defs: DomainDefinitions<string>) =>
  defs.all().then((all) => Object.fromEntries(all.map((a) => [a.dom.name, a.facts])));

describe("DomainDefinitions", () => {
  it("reads each definition once until libvirt says the domain changed", async () => {
    const n = node({ a: "A1", b: "B1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    assert.deepEqual(await facts(defs), { a: "A1", b: "B1" });
    assert.deepEqual(await facts(defs), { a: "A1", b: "B1" });
    assert.equal(n.reads(), 2);
    n.xml.set("a", "A2");
    n.xml.set("c", "C1");
    defs.forget("a");
    assert.deepEqual(await facts(defs), { a: "A2", b: "B1", c: "C1" });
    assert.equal(n.reads(), 4, "a again and the new c");
  });

  it("drops domains no longer listed and reads one of the same name with another UUID", async () => {
    const n = node({ a: "A1", b: "B1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    n.xml.delete("b");
    n.xml.set("a", "A-new");
    n.uuids.set("a", 2);
    assert.deepEqual(await facts(defs), { a: "A-new" });
    assert.equal(defs.size, 1);
  });

  it("leaves out a domain gone between the list and the read, and forgets all on a reconnect", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({
      source: { list: n.source.list, read: async () => undefined },
      digest: (x) => x,
    });
    assert.deepEqual(await facts(defs), {});
    const kept = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await kept.all();
    kept.forgetAll();
    await kept.all();
    assert.equal(n.reads(), 2);
  });

  it("does not keep a read that a change heard meanwhile may have overtaken", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    let release: () => void = () => undefined;
    n.holdReads(new Promise((r) => (release = r)));
    const first = defs.all();
    await new Promise((r) => setImmediate(r));
    n.xml.set("a", "A2"); // libvirt redefined it while the old definition was on its way
    defs.forget("a");
    release();
    assert.deepEqual(
      (await first).map((x) => x.facts),
      ["A1"],
    );
    n.holdReads(Promise.resolve());
    assert.deepEqual(await facts(defs), { a: "A2" }, "read again, not the stale one");
  });

  it("reads an entry again once it is older than maxAgeMs", async () => {
    const n = node({ a: "A1" });
    let now = 0;
    const defs = new DomainDefinitions({
      source: n.source,
      digest: (x) => x,
      maxAgeMs: 1000,
      now: () => now,
    });
    await defs.all();
    now = 999;
    await defs.all();
    assert.equal(n.reads(), 1);
    now = 1000;
    await defs.all();
    assert.equal(n.reads(), 2);
  });

  it("knows a definition we wrote without reading it, and keeps no read of what it was under way", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    n.xml.set("b", "B1");
    defs.remember("b", Buffer.alloc(16, 1).toString("hex"), "B1");
    assert.deepEqual(await facts(defs), { a: "A1", b: "B1" });
    assert.equal(n.reads(), 1, "b was not read");
    // A read of a's old definition under way when we redefine it: ours stands.
    let release: () => void = () => undefined;
    n.holdReads(new Promise((r) => (release = r)));
    defs.forget("a");
    const reading = defs.all();
    await new Promise((r) => setImmediate(r));
    n.xml.set("a", "A2");
    defs.remember("a", Buffer.alloc(16, 1).toString("hex"), "A2");
    release();
    await reading;
    n.holdReads(Promise.resolve());
    assert.deepEqual(await facts(defs), { a: "A2", b: "B1" });
  });
});
