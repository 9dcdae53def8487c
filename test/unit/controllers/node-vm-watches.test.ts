import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import { identityWaiters } from "../../../src/controllers/node/vm-watches.ts";

type Vm = VirtualMachine & KubernetesObject;

const vm = (name: string, failure?: { status: "True" | "False"; reason: string }): Vm =>
  ({
    metadata: { name, namespace: "ns" },
    spec: {},
    status: failure ? { conditions: [{ type: "Failure", message: "", ...failure }] } : {},
  }) as unknown as Vm;

describe("identityWaiters", () => {
  it("keeps the VMs refused for a MAC or UUID another holds, from the informer's events", () => {
    const informer = new EventEmitter();
    const waiting = identityWaiters(informer as never);
    informer.emit("add", vm("a", { status: "True", reason: "MacAddressInUse" }));
    informer.emit("add", vm("b", { status: "True", reason: "UuidInUse" }));
    informer.emit("add", vm("c", { status: "True", reason: "HostPathRefused" }));
    informer.emit("add", vm("d"));
    assert.deepEqual([...waiting].sort(), ["ns/a", "ns/b"]);
    // a got its MAC; b is gone; d now waits.
    informer.emit("update", vm("a", { status: "False", reason: "NoFailure" }));
    informer.emit("delete", vm("b", { status: "True", reason: "UuidInUse" }));
    informer.emit("update", vm("d", { status: "True", reason: "MacAddressInUse" }));
    assert.deepEqual([...waiting], ["ns/d"]);
  });
});
