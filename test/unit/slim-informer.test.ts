// Informer caches without managedFields and Node images: the list and a watch event served by a
// plain-http server on loopback, as the API server sends them, and what the cache and the
// handlers then hold.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { KubernetesObject } from "@kubernetes/client-node";
import { HttpApi } from "../../src/kube/http.ts";
import { InformerRetry } from "../../src/runtime/kube.ts";
import { makeSlimInformer, slimmed } from "../../src/runtime/slim-informer.ts";
import { closeAll, kubeConfigFor, serve } from "../support/http-servers.ts";

const T = { timeout: 10_000 };
afterEach(closeAll);

const managedFields = [
  { manager: "controller", operation: "Apply", fieldsType: "FieldsV1", fieldsV1: { "f:status": {} } },
];
const vm = (name: string, rv: string) => ({
  apiVersion: "vm.libvirt-operator.io/v1alpha1",
  kind: "VirtualMachine",
  metadata: { name, namespace: "ns", resourceVersion: rv, labels: { a: "b" }, managedFields },
  spec: { memory: "64Mi" },
  status: { nodeName: "n1" },
});

describe("slim informer", () => {
  it("drops managedFields and a Node's images, and nothing else", () => {
    const node = {
      metadata: { name: "n1", annotations: { x: "y" }, managedFields },
      status: { images: [{ names: ["img"], sizeBytes: 1 }], capacity: { cpu: "4" } },
    };
    assert.deepEqual(slimmed(node), {
      metadata: { name: "n1", annotations: { x: "y" } },
      status: { capacity: { cpu: "4" } },
    });
    const plain = vm("a", "1");
    const { managedFields: _mf, ...meta } = plain.metadata;
    assert.deepEqual(slimmed(structuredClone(plain)), { ...plain, metadata: meta });
    assert.equal(slimmed(undefined), undefined);
  });

  it("caches listed and watched objects without managedFields", T, async () => {
    const server = await serve((req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      if (!req.url?.includes("watch=true")) {
        const list = {
          apiVersion: "v1",
          kind: "List",
          metadata: { resourceVersion: "1" },
          items: [vm("listed", "1")],
        };
        return res.end(JSON.stringify(list));
      }
      res.write(`${JSON.stringify({ type: "ADDED", object: vm("watched", "2") })}\n`);
      // The watch stays open, as the API server's does.
    });
    const http = await HttpApi.connect(kubeConfigFor(server));
    const informer = makeSlimInformer<KubernetesObject>(
      http,
      "/apis/vm.libvirt-operator.io/v1alpha1/virtualmachines",
    );
    const added: KubernetesObject[] = [];
    informer.on("add", (o) => added.push(o));
    await informer.start();
    for (let i = 0; i < 100 && added.length < 2; i++) await sleep(20);
    await informer.stop();
    http.close();
    assert.deepEqual(
      added.map((o) => o.metadata?.name),
      ["listed", "watched"],
    );
    for (const name of ["listed", "watched"]) {
      const cached = informer.get(name, "ns");
      assert.ok(cached, name);
      assert.equal(cached.metadata?.managedFields, undefined);
      assert.deepEqual(cached.metadata?.labels, { a: "b" });
      assert.deepEqual((cached as unknown as { spec: unknown }).spec, { memory: "64Mi" });
    }
  });
});

describe("retries of a failed list or watch", () => {
  it("wait 1 s, doubling to 30 s, spread ±20 %, and start over after a quiet minute", () => {
    const mid = new InformerRetry(() => 0.5);
    const waits = Array.from({ length: 8 }, (_, i) => mid.next(1000 * i));
    assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(mid.next(7000 + 60_001), 1000, "a minute without failure: from 1 s again");
    assert.equal(new InformerRetry(() => 0).next(), 800);
    assert.equal(new InformerRetry(() => 1).next(), 1200);
  });
});
