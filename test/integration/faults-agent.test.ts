// Fault injection: the node agent SIGKILLed while each operation is under way, then started
// again (the suite and what it checks: test/support/fault-suite.ts).
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { faultSuite } from "../support/fault-suite.ts";
import { agentPid, restartLibvirtdIfCrashed, startTestOperator } from "../support/operator.ts";

faultSuite({
  name: "agent SIGKILL",
  namespace: "faults-agent",
  async inject() {
    const pid = agentPid();
    assert.ok(pid, "the agent runs");
    process.kill(pid, "SIGKILL");
    await sleep(300);
    await restartLibvirtdIfCrashed();
    await startTestOperator();
  },
});
