// CausedEvents: the libvirt events the VM reconciler's own define and start calls cause wake no
// second reconcile; any other event does.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CausedEvents } from "../../../src/controllers/node/caused-events.ts";

const DEFINED = 0;
const STARTED = 2;
const STOPPED = 5;

describe("CausedEvents", () => {
  it("an expected event is consumed once; others and other domains' are not", () => {
    const caused = new CausedEvents();
    caused.expect("ns_a", DEFINED, 0);
    caused.expect("ns_a", STARTED, 0);
    assert.equal(caused.consume("ns_b", DEFINED, 1), false);
    assert.equal(caused.consume("ns_a", STOPPED, 1), false, "a crash is never ours");
    assert.equal(caused.consume("ns_a", STARTED, 1), true);
    assert.equal(caused.consume("ns_a", STARTED, 2), false, "a second start is someone else's");
    assert.equal(caused.consume("ns_a", DEFINED, 2), true);
  });

  it("an expectation never met is forgotten after a while", () => {
    const caused = new CausedEvents();
    caused.expect("ns_a", STARTED, 0);
    assert.equal(caused.consume("ns_a", STARTED, 10_001), false);
  });

  it("a call that failed expects nothing", async () => {
    const caused = new CausedEvents();
    await assert.rejects(
      caused.around("ns_a", STARTED, async () => {
        throw new Error("refused");
      }),
    );
    assert.equal(caused.consume("ns_a", STARTED), false);
    assert.equal(await caused.around("ns_a", STARTED, async () => "ok"), "ok");
    assert.equal(caused.consume("ns_a", STARTED), true);
  });
});
