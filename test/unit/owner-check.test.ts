// The node agent's owner check (runtime/kube.ts objectGone: may a domain whose VirtualMachine
// the cache lacks be destroyed?) against a stand-in API server: only the API server's word
// that the owner is gone says yes; an error is no answer, and the work queue retries it with
// backoff instead of at once.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { VirtualMachineKind } from "../../src/api/names.ts";
import { isTransient, objectGone } from "../../src/runtime/kube.ts";
import { WorkQueue } from "../../src/runtime/workqueue.ts";
import { type StandInApi, standInApi, statusBody } from "../support/stand-in-api.ts";

const OWNER = { namespace: "ns", name: "v", uid: "uid-1" };
/** What the API server answers for the VM: an HTTP status and the uid of the object it has. */
let answer: { status: number; uid?: string } = { status: 503 };
let api: StandInApi;

before(async () => {
  api = await standInApi((req) => {
    assert.match(req.url, /\/namespaces\/ns\/virtualmachines\/v$/);
    return answer.status === 200
      ? { status: 200, body: { kind: "VirtualMachine", metadata: { ...OWNER, uid: answer.uid } } }
      : { status: answer.status, body: statusBody(answer.status, "unavailable") };
  });
});

after(() => api.close());

describe("owner check", () => {
  it("says gone only on 404 or another uid; an API error is no answer", async () => {
    answer = { status: 404 };
    assert.equal(await objectGone(api.kube, VirtualMachineKind, OWNER), true);
    answer = { status: 200, uid: "uid-2" };
    assert.equal(await objectGone(api.kube, VirtualMachineKind, OWNER), true, "a new VM of the same name");
    answer = { status: 200, uid: OWNER.uid };
    assert.equal(await objectGone(api.kube, VirtualMachineKind, OWNER), false);
    answer = { status: 503 };
    const err = await objectGone(api.kube, VirtualMachineKind, OWNER).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err, "a 503 is not taken for an answer");
    assert.ok(isTransient(err), "and is transient: Reconciling, retried");
  });

  it("an API error in the owner check is retried with the queue's backoff, not at once", async () => {
    answer = { status: 503 };
    api.requests.length = 0;
    const queue = new WorkQueue(
      "owner-check",
      async () => {
        await objectGone(api.kube, VirtualMachineKind, OWNER);
        return undefined;
      },
      { baseDelayMs: 40, maxDelayMs: 1000 },
    );
    queue.add("ns/v");
    // Events meanwhile (the agent's own status writes, libvirt lifecycle events) change nothing.
    for (let i = 0; i < 30; i++) {
      await sleep(10);
      queue.add("ns/v");
    }
    await sleep(400);
    await queue.shutdown();
    // 40, 80, 160 … ms apart: about 4 tries in 700 ms, where retrying at once would make hundreds.
    const times = api.requests.map((r) => r.at);
    assert.ok(times.length >= 3 && times.length <= 6, `${times.length} requests`);
    times.slice(1).forEach((t, i) => {
      const gap = t - times[i]!;
      assert.ok(
        gap >= queue.backoff(i + 1) - 5,
        `try ${i + 2} came ${gap.toFixed(0)} ms after the one before`,
      );
    });
  });
});
