// The statistics collector publishes a sample on /metrics before it writes the sample's figures
// to status: whoever reads a figure in status and scrapes next finds it there (or a later one).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { pino } from "pino";
import { Registry } from "prom-client";
import { API_VERSION, NODE_LABEL } from "../../../src/api/names.ts";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import type { VMDisk } from "../../../src/api/vmdisk.ts";
import { StatsCollector } from "../../../src/controllers/node/stats-collector.ts";
import type { DomainStatsRecord, LibvirtClient } from "../../../src/hypervisor/libvirt/index.ts";
import type { Kube } from "../../../src/runtime/kube.ts";

const NODE = "node-a";
const vm = {
  apiVersion: API_VERSION,
  kind: "VirtualMachine",
  metadata: { name: "writer", namespace: "t1", uid: "u1" },
  spec: {},
  status: { nodeName: NODE, domainName: "t1_writer" },
} as unknown as VirtualMachine & KubernetesObject;
const disk = {
  apiVersion: API_VERSION,
  kind: "VMDisk",
  metadata: { name: "data", namespace: "t1", labels: { [NODE_LABEL]: NODE } },
  spec: {},
  status: { path: "/pool/t1_data.qcow2" },
} as unknown as VMDisk & KubernetesObject;

/** A domain's statistics with the disk's written bytes at WRITTEN. */
const record = (written: number): DomainStatsRecord => ({
  domain: { name: "t1_writer", uuid: Buffer.alloc(16, 1), id: 1 },
  stats: {
    "state.state": 1,
    "cpu.time": 1_000_000_000n,
    "block.count": 1,
    "block.0.path": "/pool/t1_data.qcow2",
    "block.0.wr.bytes": BigInt(written),
    "block.0.rd.bytes": 0n,
  },
});

describe("statistics collector", () => {
  it("a VMDisk's written bytes are on /metrics before its status says them", async () => {
    const registry = new Registry();
    let written = 0;
    const scrapedAtWrite: Array<{ kind: string; writeBytes: unknown; metrics: string }> = [];
    const kube = {
      custom: {
        patchNamespacedCustomObjectStatus: async (req: { body: { kind: string; status: never } }) => {
          const stats = (req.body.status as { statistics: { writeBytes?: number } }).statistics;
          scrapedAtWrite.push({
            kind: req.body.kind,
            writeBytes: stats.writeBytes,
            metrics: await registry.metrics(),
          });
          return req.body;
        },
      },
    } as unknown as Kube;
    const libvirt = {
      allDomainStats: async () => [record(written)],
      domainXml: async () => "<domain><devices/></domain>",
    } as unknown as LibvirtClient;
    const collector = new StatsCollector({
      kube,
      libvirt,
      vms: { list: () => [vm] },
      disks: { list: () => [disk], get: () => disk },
      nodeName: NODE,
      registry,
      intervalMs: 60_000,
      log: pino({ level: "silent" }),
    });
    written = 1024;
    await collector.sample();
    written = 5 * 1024 * 1024;
    await collector.sample();
    const diskWrite = scrapedAtWrite.find((w) => w.kind === "VMDisk");
    assert.ok(diskWrite, "the second sample writes the disk's statistics");
    assert.equal(diskWrite.writeBytes, 5 * 1024 * 1024);
    assert.match(
      diskWrite.metrics,
      /libvirt_operator_vmdisk_write_bytes_total\{namespace="t1",name="data",vm="writer"\} 5242880\n/,
    );
  });
});
