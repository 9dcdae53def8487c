import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DomainDefinitions } from "../../../src/controllers/node/domain-definitions.ts";
import type { DomainRef } from "../../../src/hypervisor/libvirt/index.ts";

const dom = (name: string, uuidByte = 1): DomainRef => ({ name, uuid: Buffer.alloc(16, uuidByte), id: -1 });

/**
 * A fake node: domains with their XML, counting lists, lookups and reads; a read or a list may be
 * held until released.
 */
function node(initial: Record<string, string>) {
  const xml = new Map(Object.entries(initial));
  const uuids = new Map<string, number>();
  let reads = 0;
  let lists = 0;
  let lookups = 0;
  const reads_ = gate();
  const lists_ = gate();
  return {
    xml,
    uuids,
    reads: () => reads,
    lists: () => lists,
    lookups: () => lookups,
    /** Reads wait until the function returned is called. */
    holdReads: () => reads_.hold(),
    /** Lists (made at once) answer when the function returned is called. */
    holdList: () => lists_.hold(),
    source: {
      list: async () => {
        lists++;
        const listed = [...xml.keys()].map((n) => dom(n, uuids.get(n) ?? 1));
        await lists_.passed();
        return listed;
      },
      lookup: async (name: string) => {
        lookups++;
        return xml.has(name) ? dom(name, uuids.get(name) ?? 1) : undefined;
      },
      read: async (d: DomainRef) => {
        reads++;
        const text = xml.get(d.name);
        await reads_.passed();
        return text;
      },
    },
  };
}

/** A wait that callers pass at once, unless held (until the function hold returns is called). */
function gate() {
  let closed: Promise<void> | undefined;
  return {
    passed: async () => closed,
    hold(): () => void {
      let open: () => void = () => undefined;
      closed = new Promise((r) => (open = r));
      return () => {
        closed = undefined;
        open();
      };
    },
  };
}

/** Definitions of node N on a clock the test sets, read again after 1 s. */
function clocked(n: ReturnType<typeof node>) {
  const clock = { now: 0 };
  const defs = new DomainDefinitions({
    source: n.source,
    digest: (x: string) => x,
    maxAgeMs: 1000,
    now: () => clock.now,
  });
  return { defs, clock };
}

/** Lets what is under way reach its next wait. */
const turn = () => new Promise((r) => setImmediate(r));

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
    defs.forget("c"); // its Defined event
    assert.deepEqual(await facts(defs), { a: "A2", b: "B1", c: "C1" });
    assert.equal(n.reads(), 4, "a again and the new c");
  });

  it("lists once, then keeps to what libvirt's events say: one lookup per name they name", async () => {
    const n = node({ a: "A1", b: "B1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    await defs.all();
    assert.equal(n.lists(), 1);
    assert.equal(n.lookups(), 0);
    // b undefined, a undefined and defined again with another UUID, t started (transient).
    n.xml.delete("b");
    defs.forget("b");
    n.xml.set("a", "A-new");
    n.uuids.set("a", 2);
    defs.forget("a");
    n.xml.set("t", "T1");
    defs.started("t");
    defs.started("a"); // a known domain starting is no news
    assert.deepEqual(await facts(defs), { a: "A-new", t: "T1" });
    assert.equal(defs.size, 2);
    assert.equal(n.lists(), 1);
    assert.equal(n.lookups(), 3);
  });

  it("a change heard while listing is looked up, and our own define while listing stays", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    const release = n.holdList();
    const first = defs.all(); // lists a alone
    await turn();
    n.xml.set("b", "B1");
    defs.started("b"); // someone else's domain, after the list was made
    n.xml.set("c", "C1");
    defs.remember(dom("c"), "C1"); // ours
    release();
    await first;
    assert.deepEqual(await facts(defs), { a: "A1", b: "B1", c: "C1" });
    assert.equal(n.lists(), 1);
  });

  it("a domain made again under a known name while listing is not lost", async () => {
    const n = node({ a: "A1", x: "X1" });
    const { defs, clock } = clocked(n);
    await defs.all();
    n.xml.delete("x"); // a transient domain stopped: gone
    defs.forget("x");
    clock.now = 1000; // the next answer lists again
    const release = n.holdList();
    const relisting = defs.all(); // its list is made before x comes back
    await turn();
    n.xml.set("x", "X2");
    n.uuids.set("x", 2);
    defs.started("x"); // x is still in the set being replaced
    release();
    await relisting;
    assert.deepEqual(await facts(defs), { a: "A1", x: "X2" });
  });

  it("a list that failed is made again, and our define leaves another's change to be looked up", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    for (let i = 0; i < 20; i++) {
      n.xml.set(`d${i}`, `D${i}`);
      defs.forget(`d${i}`);
    }
    const list = n.source.list;
    n.source.list = async () => {
      throw new Error("timed out");
    };
    await assert.rejects(defs.all(), /timed out/);
    n.source.list = list;
    assert.equal((await defs.all()).length, 21, "the 20 named before the failure are there");
    // a is redefined by someone else, then by us: the lookup after tells which is there now.
    defs.forget("a");
    n.xml.set("a", "A-theirs");
    n.uuids.set("a", 2);
    defs.remember(dom("a", 1), "A-ours");
    const lookups = n.lookups();
    assert.equal((await facts(defs)).a, "A-theirs");
    assert.equal(n.lookups(), lookups + 1);
  });

  it("lists rather than looks up when events named many domains", async () => {
    const n = node({});
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    for (let i = 0; i < 40; i++) {
      n.xml.set(`d${i}`, `D${i}`);
      defs.forget(`d${i}`);
    }
    assert.equal((await defs.all()).length, 40);
    assert.equal(n.lists(), 2);
    assert.equal(n.lookups(), 0);
  });

  it("lists again after a reconnect heard while listing, and after maxAgeMs", async () => {
    const n = node({ a: "A1" });
    const { defs, clock } = clocked(n);
    const release = n.holdList();
    const first = defs.all();
    await turn();
    defs.forgetAll();
    n.xml.set("b", "B1"); // defined while no event could tell
    release();
    assert.deepEqual(Object.keys(Object.fromEntries((await first).map((x) => [x.dom.name, 1]))).sort(), [
      "a",
      "b",
    ]);
    assert.equal(n.lists(), 2);
    n.xml.set("c", "C1"); // no event
    clock.now = 999;
    assert.deepEqual(Object.keys(await facts(defs)).sort(), ["a", "b"]);
    clock.now = 1000;
    assert.deepEqual(Object.keys(await facts(defs)).sort(), ["a", "b", "c"]);
    assert.equal(n.lists(), 3);
  });

  it("leaves out a domain gone between the list and the read, and forgets all on a reconnect", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({
      source: { ...n.source, read: async () => undefined },
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
    const release = n.holdReads();
    const first = defs.all();
    await turn();
    n.xml.set("a", "A2"); // libvirt redefined it while the old definition was on its way
    defs.forget("a");
    release();
    assert.deepEqual(
      (await first).map((x) => x.facts),
      ["A1"],
    );
    assert.deepEqual(await facts(defs), { a: "A2" }, "read again, not the stale one");
  });

  it("reads an entry again once it is older than maxAgeMs", async () => {
    const n = node({ a: "A1" });
    const { defs, clock } = clocked(n);
    await defs.all();
    clock.now = 999;
    await defs.all();
    assert.equal(n.reads(), 1);
    clock.now = 1000;
    await defs.all();
    assert.equal(n.reads(), 2);
  });

  it("knows a definition we wrote without reading it, and keeps no read of what it was under way", async () => {
    const n = node({ a: "A1" });
    const defs = new DomainDefinitions({ source: n.source, digest: (x) => x });
    await defs.all();
    n.xml.set("b", "B1");
    defs.remember(dom("b"), "B1");
    assert.deepEqual(await facts(defs), { a: "A1", b: "B1" });
    assert.equal(n.reads(), 1, "b was not read");
    // A read of a's old definition under way when we redefine it: ours stands.
    const release = n.holdReads();
    defs.forget("a");
    const reading = defs.all();
    await turn();
    n.xml.set("a", "A2");
    defs.remember(dom("a"), "A2");
    release();
    await reading;
    assert.deepEqual(await facts(defs), { a: "A2", b: "B1" });
  });
});
