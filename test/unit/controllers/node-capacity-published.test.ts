// What the agent publishes of its storage pools on the Node (storage-pools.ts roundedForNode):
// free space in whole GiB that does not flap when it wavers around a GiB boundary — each change
// is a Node write, and steady state should write nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { roundedForNode } from "../../../src/controllers/node/storage-pools.ts";
import type { StoragePoolFacts } from "../../../src/controllers/node-facts.ts";

const GIB = 2 ** 30;
const pool = (availableBytes: number): Record<string, StoragePoolFacts> => ({
  default: { type: "dir", shared: false, capacityBytes: 100 * GIB, availableBytes },
});
const free = (p: Record<string, StoragePoolFacts>) => p.default?.availableBytes;

describe("pool free space on the Node", () => {
  it("is rounded down to whole GiB at first", () => {
    assert.equal(free(roundedForNode(pool(10 * GIB + 5))), 10 * GIB);
    assert.equal(free(roundedForNode(pool(10 * GIB - 5))), 9 * GIB);
  });

  it("keeps the published figure while free space wavers around a boundary", () => {
    let published = roundedForNode(pool(10 * GIB - 5)); // 9 GiB
    const figures: Array<number | undefined> = [];
    for (const bytes of [10 * GIB + 5, 10 * GIB - 5, 10 * GIB + 200 * 2 ** 20, 10 * GIB - 1, 10 * GIB + 1]) {
      published = roundedForNode(pool(bytes), published);
      figures.push(free(published));
    }
    assert.deepEqual(figures, Array(5).fill(9 * GIB));
  });

  it("follows a fall below the published figure at once, and a rise of 256 MiB past the next GiB", () => {
    const published = roundedForNode(pool(10 * GIB)); // 10 GiB
    assert.equal(free(roundedForNode(pool(10 * GIB - 1), published)), 9 * GIB, "never more than there is");
    assert.equal(free(roundedForNode(pool(11 * GIB + 256 * 2 ** 20 - 1), published)), 10 * GIB);
    assert.equal(free(roundedForNode(pool(11 * GIB + 256 * 2 ** 20), published)), 11 * GIB);
  });
});
