import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VirtualMachine } from "../../src/api/virtualmachine.ts";
import type { VMSnapshot } from "../../src/api/vmsnapshot.ts";
import { humanBytes, STATUS_HEADERS, snapshotRow, statisticsRows, statusRow } from "../../src/cli/rows.ts";
import { age, humanDuration, renderTable } from "../../src/cli/table.ts";

describe("renderTable", () => {
  it("aligns like kubectl's tabwriter: upper-case headers, width+3, at least 6, last column unpadded", () => {
    const text = renderTable(
      ["Name", "Status", "IP"],
      [
        ["web-1", "Running", "10.0.0.5"],
        ["a", "Stopped", ""],
      ],
    );
    assert.equal(
      text,
      "NAME    STATUS    IP\n" + "web-1   Running   10.0.0.5\n" + "a       Stopped   <none>\n",
    );
  });
  it("keeps short columns six wide", () => {
    assert.equal(renderTable(["A", "B"], [["x", "y"]]), "A     B\nx     y\n");
  });
});

describe("humanDuration (kubectl ages)", () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  const cases: Array<[number, string]> = [
    [-500, "0s"],
    [-5 * s, "<invalid>"],
    [59 * s, "59s"],
    [119 * s, "119s"],
    [2 * m, "2m"],
    [5 * m + 7 * s, "5m7s"],
    [45 * m, "45m"],
    [3 * h, "3h"],
    [3 * h + 20 * m, "3h20m"],
    [20 * h, "20h"],
    [3 * d + 4 * h, "3d4h"],
    [30 * d, "30d"],
    [800 * d, "2y70d"],
    [3650 * d, "10y"],
  ];
  for (const [ms, text] of cases) it(`${ms} ms → ${text}`, () => assert.equal(humanDuration(ms), text));
  it("age of a timestamp, unknown without one", () => {
    const now = new Date("2025-01-01T00:10:00Z");
    assert.equal(age("2025-01-01T00:00:00Z", now), "10m");
    assert.equal(age(undefined, now), "<unknown>");
  });
});

const now = new Date("2025-03-04T05:06:07.890Z");

describe("status rows (seed 004: name, status, node, addresses, status change)", () => {
  const vm: VirtualMachine = {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "web", namespace: "ns", creationTimestamp: "2025-03-04T04:06:07Z" },
    spec: { runStrategy: "Always" },
    status: {
      printableStatus: "Running",
      nodeName: "n1",
      interfaces: [
        { name: "a", ipv4: "10.0.0.2", ipv6: "fd00::2" },
        { name: "b" },
        { name: "c", ipv4: "10.0.1.2" },
      ],
      statusChangedAt: "2025-03-04T05:00:00Z",
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "Running",
          message: "running",
          lastTransitionTime: "2025-03-04T05:00:00Z",
        },
      ],
    },
  };
  it("addresses IPv4 first, then IPv6; ages as kubectl prints them", () => {
    assert.deepEqual(STATUS_HEADERS, ["NAME", "STATUS", "NODE", "ADDRESSES", "STATUS-CHANGE", "AGE"]);
    assert.deepEqual(statusRow(vm, now), [
      "web",
      "Running",
      "n1",
      "10.0.0.2,10.0.1.2,fd00::2",
      "6m7s",
      "60m",
    ]);
    assert.deepEqual(statusRow(vm, now, true).slice(6), ["Always", "True", "running"]);
  });
  it("a VM without status yet: empty cells, which the table prints as <none>", () => {
    const bare = { ...vm, status: undefined };
    assert.deepEqual(statusRow(bare, now), ["web", "", "", "", "", "60m"]);
    assert.match(
      renderTable(STATUS_HEADERS, [statusRow(bare, now)]),
      /^web {4}<none> {3}<none> {3}<none> {6}<none> {10}60m$/m,
    );
  });
});

describe("snapshot rows", () => {
  it("name, display, phase, ready, memory, age", () => {
    const snap: VMSnapshot = {
      apiVersion: "vm.libvirt-operator.io/v1alpha1",
      kind: "VMSnapshot",
      metadata: { name: "s1", creationTimestamp: "2025-03-04T05:06:00Z" },
      spec: { vmName: "web", displayName: "Before_Upgrade", memory: true },
      status: { phase: "Succeeded", readyToUse: true },
    };
    assert.deepEqual(snapshotRow(snap, now), ["s1", "Before_Upgrade", "Succeeded", "true", "true", "7s"]);
  });
});

describe("statistics (kubectl vm stats)", () => {
  it("human units: binary bytes, rates, percents", () => {
    assert.equal(humanBytes(0), "0 B");
    assert.equal(humanBytes(1023), "1023 B");
    assert.equal(humanBytes(1536), "1.5 KiB");
    assert.equal(humanBytes(268_435_456), "256 MiB");
    assert.equal(humanBytes(12.34 * 2 ** 30), "12.3 GiB");
  });
  it("one row a figure sampled, updatedAt last with its age; unsampled figures left out", () => {
    const rows = statisticsRows(
      {
        cpuGuestPercent: 12.345,
        memoryInstalledBytes: 268_435_456,
        diskWriteBytesPerSecond: 2048,
        networkErrors: 3,
        updatedAt: "2025-03-04T05:06:05Z",
      },
      now,
    );
    assert.deepEqual(rows, [
      ["cpu.guest", "12.3%"],
      ["memory.installed", "256 MiB"],
      ["disk.write", "2 KiB/s"],
      ["network.errors", "3"],
      ["updatedAt", "2025-03-04T05:06:05Z (2s ago)"],
    ]);
  });
});
