// Our resources follow kstatus' conventions (Ready/Reconciling/Stalled conditions and
// observedGeneration) so Flux, Argo CD and cli-utils can tell when they are done. These
// hand-written objects pin what both kstatus builds say, so a checker that drifts from them
// (or a broken build of it) shows up here before integration tests rely on it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kstatus, kstatusMany } from "../support/kstatus.ts";

type Condition = { type: string; status: "True" | "False" | "Unknown"; reason: string; message?: string };

function vm(
  name: string,
  opts: { generation?: number; observed?: number; conditions?: Condition[]; deleting?: boolean } = {},
): Record<string, unknown> {
  const generation = opts.generation ?? 2;
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: {
      name,
      namespace: "default",
      generation,
      ...(opts.deleting
        ? { deletionTimestamp: "2025-01-01T00:00:00Z", finalizers: ["vm.libvirt-operator.io/domain"] }
        : {}),
    },
    spec: {},
    status: { observedGeneration: opts.observed ?? generation, conditions: opts.conditions ?? [] },
  };
}

const ready: Condition = { type: "Ready", status: "True", reason: "Running" };

const cases: Array<[string, Record<string, unknown>, string]> = [
  ["Ready=True at the observed generation", vm("ready", { conditions: [ready] }), "Current"],
  [
    "Reconciling=True",
    vm("reconciling", { conditions: [{ type: "Reconciling", status: "True", reason: "Defining" }] }),
    "InProgress",
  ],
  [
    "Stalled=True",
    vm("stalled", {
      conditions: [{ type: "Stalled", status: "True", reason: "NoNode", message: "no node" }],
    }),
    "Failed",
  ],
  [
    "observedGeneration behind generation",
    vm("behind", { generation: 3, observed: 2, conditions: [ready] }),
    "InProgress",
  ],
  ["deletionTimestamp set", vm("deleting", { conditions: [ready], deleting: true }), "Terminating"],
];

describe("kstatus checker (upstream cli-utils and Flux's fork)", () => {
  for (const [what, obj, want] of cases) {
    it(`${what} → ${want}`, async () => {
      const got = await kstatus(obj);
      assert.equal(got.upstream.status, want, `upstream: ${got.upstream.message}`);
      assert.equal(got.flux.status, want, `flux: ${got.flux.message}`);
    });
  }

  it("answers one line per object, in order, for a batch", async () => {
    const got = await kstatusMany(cases.map(([, obj]) => obj));
    assert.deepEqual(
      got.map((r) => [r.kind, r.namespace, r.name, r.upstream.status, r.flux.status]),
      cases.map(([, obj, want]) => {
        const meta = obj["metadata"] as { name: string };
        return ["VirtualMachine", "default", meta.name, want, want];
      }),
    );
  });

  it("reports a Compute error in the line instead of failing", async () => {
    const got = await kstatus({ ...vm("bad"), metadata: { name: "bad", generation: "two" } });
    assert.equal(got.upstream.status, "Unknown");
    assert.match(got.upstream.message, /generation/);
    assert.equal(got.flux.status, "Unknown");
  });
});
