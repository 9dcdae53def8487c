// Requests made through annotations: per-request grace periods, freeze, file-system freeze and
// refresh (what kubectl vm writes), decided without libvirt.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  FROZEN_ANNOTATION,
  FSFREEZE_ANNOTATION,
  FSTHAW_ANNOTATION,
  REFRESH_ANNOTATION,
  RESTART_ANNOTATION,
  START_ANNOTATION,
  STOP_ANNOTATION,
} from "../../../src/api/names.ts";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  decidePower,
  isFrozen,
  ShutoffReason,
  shouldRun,
  stopGraceMs,
} from "../../../src/controllers/node/vm-decide.ts";
import { pendingFilesystemRequest, pendingRefresh } from "../../../src/controllers/node/vm-requests.ts";
import { agentStatus } from "../../../src/controllers/node/vm-status.ts";
import { DomainState } from "../../../src/hypervisor/libvirt/constants.ts";

function vm(
  spec: Partial<VirtualMachine["spec"]> = {},
  annotations: Record<string, string> = {},
  status: VirtualMachine["status"] = {},
): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "v", namespace: "ns", generation: 1, annotations },
    spec: { memory: "1Gi", ...spec },
    status,
  };
}
const running = { state: DomainState.Running, reason: 1, id: 3 };
const off = { state: DomainState.Shutoff, reason: ShutoffReason.Destroyed, id: -1 };
const now = 1_000_000;
const t1 = "2026-11-26T10:00:00.000Z";
const t2 = "2026-11-26T10:00:05.000Z";

describe("a stop request's own grace period", () => {
  it("--force (0) forces a VM of any run strategy off at once; the spec's grace is left alone", () => {
    for (const runStrategy of ["Halted", "Manual"] as const) {
      const v = vm({ runStrategy }, { [STOP_ANNOTATION]: `${t1};grace=0` });
      assert.deepEqual(decidePower(v, running, { startCount: 1 } as never, now), {
        type: "destroy",
        why: "asked",
      });
    }
  });

  it("--grace-period 5 forces off five seconds after the ACPI shutdown", () => {
    const v = vm({ runStrategy: "Halted" }, { [STOP_ANNOTATION]: `${t1};grace=5` });
    assert.equal(stopGraceMs(v), 5000);
    assert.equal(decidePower(v, running, {}, now).type, "shutdown");
    const asked = { shutdownRequestedAt: now - 4000, lastPressAt: now - 1000 };
    assert.equal(decidePower(v, running, asked, now).type, "wait-shutdown");
    assert.deepEqual(decidePower(v, running, { ...asked, shutdownRequestedAt: now - 5000 }, now), {
      type: "destroy",
      why: "grace-expired",
    });
  });

  it("applies only while its stop request is pending: once off, it is handled and the spec's grace is back", () => {
    const annotations = { [STOP_ANNOTATION]: `${t1};grace=0` };
    const v = vm({ runStrategy: "Halted" }, annotations);
    assert.deepEqual(decidePower(v, off, {}, now), {
      type: "mark-request-handled",
      value: `stop@${t1};grace=0`,
    });
    const later = vm({ runStrategy: "Halted" }, annotations, { powerRequestHandled: `stop@${t1};grace=0` });
    assert.equal(stopGraceMs(later), 180_000);
    // A start request newer than the stop: the stop's grace is no longer asked for.
    const started = vm({ runStrategy: "Manual" }, { ...annotations, [START_ANNOTATION]: t2 });
    assert.equal(stopGraceMs(started), 180_000);
  });

  it("an annotation that is no whole number of seconds is ignored", () => {
    for (const bad of ["-1", "1.5", "soon", "", "99999999"]) {
      const v = vm({ runStrategy: "Halted" }, { [STOP_ANNOTATION]: `${t1};grace=${bad}` });
      assert.equal(stopGraceMs(v), 180_000, bad);
    }
  });
});

describe("a restart request's own grace period", () => {
  it("0 resets a running guest at once and marks the request handled", () => {
    const v = vm({}, { [RESTART_ANNOTATION]: `${t1};grace=0` });
    assert.deepEqual(decidePower(v, running, {}, now), {
      type: "reset",
      why: "asked",
      value: `${t1};grace=0`,
    });
  });

  it("0 with changes to apply power-cycles (forced off at once) instead", () => {
    const v = vm({}, { [RESTART_ANNOTATION]: `${t1};grace=0` });
    assert.deepEqual(decidePower(v, running, {}, now, false), {
      type: "power-cycle",
      value: `${t1};grace=0`,
    });
    const cycling = { shutdownRequestedAt: now - 1, powerCycle: true };
    assert.deepEqual(decidePower(v, running, cycling, now, false), { type: "destroy", why: "grace-expired" });
  });

  it("N seconds: the ACPI reboot is reset after N", () => {
    const v = vm({}, { [RESTART_ANNOTATION]: `${t1};grace=3` }, { restartRequestHandled: `${t1};grace=3` });
    const p = { rebootRequestedAt: now - 3000, lastPressAt: now - 1000 };
    assert.deepEqual(decidePower(v, running, p, now), { type: "reset", why: "grace-expired" });
  });
});

describe("frozen VMs", () => {
  const frozen = { [FROZEN_ANNOTATION]: t1 };

  it("are kept stopped, whatever the run strategy says", () => {
    for (const runStrategy of ["Always", "RerunOnFailure", "Once", "Manual"] as const) {
      const v = vm({ runStrategy }, frozen);
      assert.equal(isFrozen(v), true);
      assert.equal(shouldRun(v, off), false, runStrategy);
      assert.equal(decidePower(v, off, {}, now).type, "none", runStrategy);
    }
  });

  it("answer a start request with a refusal, so unfreezing does not start a Manual VM", () => {
    const v = vm({ runStrategy: "Manual" }, { ...frozen, [STOP_ANNOTATION]: t1, [START_ANNOTATION]: t2 });
    assert.deepEqual(decidePower(v, off, { powerRequestHandled: `stop@${t1}` }, now), {
      type: "refuse-start",
      value: `start@${t2}`,
    });
  });

  it("a running one is stopped, gracefully unless the stop request says otherwise", () => {
    assert.equal(decidePower(vm({}, frozen), running, {}, now).type, "shutdown");
    const forced = vm({}, { ...frozen, [STOP_ANNOTATION]: `${t1};grace=0` });
    assert.equal(decidePower(forced, running, {}, now).type, "destroy");
  });

  it("say Frozen, and are Ready (stopped as asked)", () => {
    const v = vm({}, frozen);
    const status = agentStatus(
      v,
      { domainName: "ns_v", domain: off, definitionInSync: true, stopping: false, startCount: 1 },
      new Date(now),
    );
    assert.equal(status.printableStatus, "Frozen");
    const ready = status.conditions?.find((c) => c.type === "Ready");
    assert.equal(ready?.status, "True");
    assert.match(ready?.message ?? "", /frozen/);
  });
});

describe("file-system freeze and refresh requests", () => {
  it("the later of freeze and thaw is pending until answered", () => {
    const v = vm({}, { [FSFREEZE_ANNOTATION]: t1, [FSTHAW_ANNOTATION]: t2 });
    assert.deepEqual(pendingFilesystemRequest(v), { verb: "thaw", tag: `thaw@${t2}` });
    assert.equal(pendingFilesystemRequest(v, `thaw@${t2}`), undefined);
    assert.deepEqual(
      pendingFilesystemRequest(vm({}, { [FSFREEZE_ANNOTATION]: t2, [FSTHAW_ANNOTATION]: t1 })),
      {
        verb: "freeze",
        tag: `freeze@${t2}`,
      },
    );
  });

  it("a refresh is pending until status.refreshHandled names its value", () => {
    assert.equal(pendingRefresh(vm({}, { [REFRESH_ANNOTATION]: t1 })), t1);
    assert.equal(pendingRefresh(vm({}, { [REFRESH_ANNOTATION]: t1 }, { refreshHandled: t1 })), undefined);
    assert.equal(pendingRefresh(vm()), undefined);
  });
});

describe("a grace period belongs to its request only", () => {
  it("a later stop request without one gets the spec's, and so does a later restart", () => {
    const manual = vm(
      { runStrategy: "Manual" },
      { [STOP_ANNOTATION]: t2 },
      { powerRequestHandled: `stop@${t1};grace=0` },
    );
    assert.equal(stopGraceMs(manual), 180_000);
    assert.equal(decidePower(manual, running, {}, now).type, "shutdown");
    const restart = vm({}, { [RESTART_ANNOTATION]: t2 }, { restartRequestHandled: `${t1};grace=0` });
    assert.deepEqual(decidePower(restart, running, {}, now), { type: "reboot", value: t2 });
  });

  it("a stop its run strategy overrode is done, so it cannot force a later deletion", () => {
    const v = vm({ runStrategy: "Always" }, { [STOP_ANNOTATION]: `${t1};grace=0` });
    assert.deepEqual(decidePower(v, running, {}, now), {
      type: "mark-request-handled",
      value: `stop@${t1};grace=0`,
    });
    const deleting = vm(
      {},
      { [STOP_ANNOTATION]: `${t1};grace=0` },
      { powerRequestHandled: `stop@${t1};grace=0` },
    );
    deleting.metadata.deletionTimestamp = t2;
    assert.equal(decidePower(deleting, running, {}, now).type, "shutdown");
  });

  it("the later of start and stop is judged by the time before the parameters", () => {
    const v = vm({ runStrategy: "Manual" }, { [STOP_ANNOTATION]: `${t1};grace=0`, [START_ANNOTATION]: t2 });
    assert.equal(shouldRun(v, off), true);
  });
});
