// The node agent's owner check (runtime/kube.ts objectGone: may a domain whose VirtualMachine
// the cache lacks be destroyed?) against a small HTTP server playing the API server: only the
// API server's word that the owner is gone says yes; an error is no answer, and the work
// queue retries it with backoff instead of at once.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { VirtualMachineKind } from "../../src/api/virtualmachine.ts";
import { isTransient, type Kube, objectGone } from "../../src/runtime/kube.ts";
import { WorkQueue } from "../../src/runtime/workqueue.ts";

const OWNER = { namespace: "ns", name: "v", uid: "uid-1" };
/** What the server answers for the VM: an HTTP status and the uid of the object it has. */
let answer: { status: number; uid?: string } = { status: 503 };
const requests: number[] = [];
let server: Server;
let kube: Kube;

before(async () => {
  server = createServer((req, res) => {
    requests.push(performance.now());
    const body =
      answer.status === 200
        ? {
            apiVersion: "vm.libvirt-operator.io/v1alpha1",
            kind: "VirtualMachine",
            metadata: { ...OWNER, uid: answer.uid },
          }
        : {
            kind: "Status",
            apiVersion: "v1",
            status: "Failure",
            code: answer.status,
            message: "unavailable",
          };
    assert.match(req.url ?? "", /\/namespaces\/ns\/virtualmachines\/v$/);
    res.writeHead(answer.status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: "c",
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  kube = {
    kc,
    custom: kc.makeApiClient(CustomObjectsApi),
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
  };
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("owner check", () => {
  it("says gone only on 404 or another uid; an API error is no answer", async () => {
    answer = { status: 404 };
    assert.equal(await objectGone(kube, VirtualMachineKind, OWNER), true);
    answer = { status: 200, uid: "uid-2" };
    assert.equal(await objectGone(kube, VirtualMachineKind, OWNER), true, "a new VM of the same name");
    answer = { status: 200, uid: OWNER.uid };
    assert.equal(await objectGone(kube, VirtualMachineKind, OWNER), false);
    answer = { status: 503 };
    const err = await objectGone(kube, VirtualMachineKind, OWNER).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err, "a 503 is not taken for an answer");
    assert.ok(isTransient(err), "and is transient: Reconciling, retried");
  });

  it("an API error in the owner check is retried with the queue's backoff, not at once", async () => {
    answer = { status: 503 };
    requests.length = 0;
    const queue = new WorkQueue(
      "owner-check",
      async () => {
        await objectGone(kube, VirtualMachineKind, OWNER);
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
    assert.ok(requests.length >= 3 && requests.length <= 6, `${requests.length} requests`);
    const gaps = requests.slice(1).map((t, i) => t - requests[i]!);
    gaps.forEach((gap, i) => {
      assert.ok(
        gap >= queue.backoff(i + 1) - 5,
        `try ${i + 2} came ${gap.toFixed(0)} ms after the one before`,
      );
    });
  });
});
