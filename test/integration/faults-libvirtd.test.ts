// Fault injection: libvirtd SIGKILLed while each operation is under way, then started again; the
// agent reconnects on its own (the suite and what it checks: test/support/fault-suite.ts).
import assert from "node:assert/strict";
import { it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startLibvirt } from "../../src/cmd/local/libvirt.ts";
import { runningPid } from "../../src/cmd/local/processes.ts";
import { faultSuite } from "../support/fault-suite.ts";
import { TEST_STACK } from "../support/stack.ts";

const libvirtd = () => runningPid(TEST_STACK.stateDir, "libvirtd");

if (libvirtd() === undefined) {
  // A libvirtd this test stack did not start serves another stack's guests too (make local).
  it("libvirtd SIGKILLed during each operation", {
    skip: "libvirtd was running before the test stack started (another stack's): not killed",
  });
} else {
  faultSuite({
    name: "libvirtd SIGKILL",
    namespace: "faults-libvirtd",
    async inject() {
      const pid = libvirtd();
      assert.ok(pid, "libvirtd runs");
      process.kill(pid, "SIGKILL");
      await sleep(1000);
      const { started } = await startLibvirt(TEST_STACK.stateDir);
      assert.ok(started, "libvirtd started again");
    },
  });
}
