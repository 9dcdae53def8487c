import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { age, humanDuration, renderTable } from "../../src/cli/table.ts";

describe("renderTable", () => {
  it("aligns like kubectl's tabwriter: upper-case headers, width+3, at least 6, last column unpadded", () => {
    const text = renderTable(
      ["Name", "Status", "IP"],
      [
        ["web-1", "Running", "10.0.0.5"],
        ["a", "Stopped", ""],
      ],
    );
    assert.equal(
      text,
      "NAME    STATUS    IP\n" + "web-1   Running   10.0.0.5\n" + "a       Stopped   <none>\n",
    );
  });
  it("keeps short columns six wide", () => {
    assert.equal(renderTable(["A", "B"], [["x", "y"]]), "A     B\nx     y\n");
  });
});

describe("humanDuration (kubectl ages)", () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  const cases: Array<[number, string]> = [
    [-500, "0s"],
    [-5 * s, "<invalid>"],
    [59 * s, "59s"],
    [119 * s, "119s"],
    [2 * m, "2m"],
    [5 * m + 7 * s, "5m7s"],
    [45 * m, "45m"],
    [3 * h, "3h"],
    [3 * h + 20 * m, "3h20m"],
    [20 * h, "20h"],
    [3 * d + 4 * h, "3d4h"],
    [30 * d, "30d"],
    [800 * d, "2y70d"],
    [3650 * d, "10y"],
  ];
  for (const [ms, text] of cases) it(`${ms} ms → ${text}`, () => assert.equal(humanDuration(ms), text));
  it("age of a timestamp, unknown without one", () => {
    const now = new Date("2025-01-01T00:10:00Z");
    assert.equal(age("2025-01-01T00:00:00Z", now), "10m");
    assert.equal(age(undefined, now), "<unknown>");
  });
});
