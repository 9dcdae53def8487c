// The README's Events table lists exactly the reasons in src/controllers/event-reasons.ts (same
// type, kinds and meaning), and every listed reason is one the sources can emit.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  EVENT_REASONS,
  type EventReason,
  isEventReason,
  Reason,
} from "../../../src/controllers/event-reasons.ts";
import { powerActionFailed } from "../../../src/controllers/node/vm-power.ts";

const root = join(import.meta.dirname, "..", "..", "..");
const BEGIN = "<!-- event-reasons:begin -->";
const END = "<!-- event-reasons:end -->";

/** The table as the README must show it, one row per reason, in the module's order. */
function expectedRows(): string[] {
  return Object.entries(EVENT_REASONS).map(
    ([reason, r]) => `| \`${reason}\` | ${r.type} | ${r.kinds.join(", ")} | ${r.when} |`,
  );
}

async function readmeRows(): Promise<string[]> {
  const readme = await readFile(join(root, "README.md"), "utf8");
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  assert.ok(start >= 0 && end > start, `README.md has no ${BEGIN} … ${END} section`);
  return readme
    .slice(start + BEGIN.length, end)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("| `"));
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => join(e.parentPath, e.name));
}

describe("Event reasons", () => {
  it("the README's Events table lists every reason, with its type, kinds and meaning", async () => {
    const rows = await readmeRows();
    const listed = rows.map((r) => /^\| `(\w+)`/.exec(r)?.[1] ?? r);
    const missing = Object.keys(EVENT_REASONS).filter((r) => !listed.includes(r));
    const unknown = listed.filter((r) => !isEventReason(r));
    assert.deepEqual({ missing, unknown }, { missing: [], unknown: [] });
    // Same rows in the same order: the table is the module's, to the word (copy these on failure).
    assert.deepEqual(rows, expectedRows());
  });

  it("names each reason once, as itself, Warning or Normal, on at least one kind", () => {
    for (const [name, info] of Object.entries(EVENT_REASONS)) {
      assert.equal(Reason[name as EventReason], name);
      assert.match(name, /^[A-Z][A-Za-z]+$/);
      assert.ok(info.type === "Normal" || info.type === "Warning", name);
      assert.ok(info.kinds.length > 0, name);
      assert.equal(new Set(info.kinds).size, info.kinds.length, `${name}: a kind twice`);
      assert.ok(info.when.length > 0 && !info.when.includes("|"), name);
    }
    assert.equal(isEventReason("toString"), false);
    assert.equal(isEventReason("NoSuchReason"), false);
  });

  it("every reason is used by the sources (no reason listed that nothing emits)", async () => {
    const files = (await sourceFiles(join(root, "src"))).filter((f) => !f.endsWith("event-reasons.ts"));
    const text = (await Promise.all(files.map((f) => readFile(f, "utf8")))).join("\n");
    const unused = Object.keys(EVENT_REASONS).filter(
      (r) => !text.includes(`Reason.${r}`) && !text.includes(`"${r}"`),
    );
    assert.deepEqual(unused, []);
  });

  it("every reason the integration tests look for is one of them", async () => {
    const files = (await sourceFiles(join(root, "test", "integration"))).filter((f) =>
      f.endsWith(".test.ts"),
    );
    const text = (await Promise.all(files.map((f) => readFile(f, "utf8")))).join("\n");
    const asserted = new Set(
      [...text.matchAll(/\be\.reason === "(\w+)"|events.*\/"reason": "(\w+)"\//g)].map(
        (m) => m[1] ?? m[2] ?? "",
      ),
    );
    assert.ok(asserted.has("StartFailed") && asserted.has("DeletionBlocked"), [...asserted].join(", "));
    assert.deepEqual(
      [...asserted].filter((r) => !isEventReason(r)),
      [],
    );
  });

  it("names a power action's failure after the action; steps without a libvirt call share one", () => {
    assert.equal(powerActionFailed("start"), Reason.StartFailed);
    assert.equal(powerActionFailed("power-cycle"), Reason.PowerCycleFailed);
    assert.equal(powerActionFailed("none"), Reason.PowerActionFailed);
  });
});
