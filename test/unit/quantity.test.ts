import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isPositiveQuantity, parseQuantity } from "../../src/api/quantity.ts";

describe("parseQuantity", () => {
  const cases: Array<[string | number, number]> = [
    [1073741824, 1073741824],
    ["1Gi", 2 ** 30],
    ["512Mi", 512 * 2 ** 20],
    ["1.5Gi", 1.5 * 2 ** 30],
    ["1G", 1e9],
    ["100k", 100_000],
    ["1e3", 1000],
    ["10", 10],
    ["1500m", 2],
  ];
  for (const [input, bytes] of cases) {
    it(`${input} → ${bytes}`, () => assert.equal(parseQuantity(input), bytes));
  }

  it("rejects what is not a quantity", () => {
    for (const bad of ["", "Gi", "1 Gi", "1gi", "1Gib", "one"]) {
      assert.throws(() => parseQuantity(bad), /invalid quantity/, bad);
    }
  });

  it("binary suffixes are powers of 1024 of the number", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1 << 20 }), fc.constantFrom("Ki", "Mi", "Gi"), (n, s) => {
        const shift = { Ki: 10, Mi: 20, Gi: 30 }[s]!;
        return parseQuantity(`${n}${s}`) === n * 2 ** shift;
      }),
    );
  });
});

describe("isPositiveQuantity", () => {
  it("accepts positive sizes and refuses zero, negatives and junk", () => {
    for (const ok of ["1Gi", "0.5Gi", ".5Gi", "1", "10e3", 1, "+1Mi"])
      assert.ok(isPositiveQuantity(ok), String(ok));
    for (const bad of ["0", "0Gi", "0.0", "-1Gi", "abc", "1GB", 0, -5, "1 Gi"]) {
      assert.ok(!isPositiveQuantity(bad), String(bad));
    }
  });
});
