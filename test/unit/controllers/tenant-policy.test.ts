import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { V1Namespace } from "@kubernetes/client-node";
import {
  ALLOWED_NETWORKS_ANNOTATION,
  ALLOWED_POOLS_ANNOTATION,
  DISK_BYTES_LIMIT_ANNOTATION,
  isAllowed,
  networkRefusal,
  parseAllowed,
  poolRefusal,
  tenancyDefaultsFromEnv,
  tenantPolicy,
} from "../../../src/controllers/tenant-policy.ts";

const namespace = (name: string, annotations: Record<string, string> = {}): V1Namespace => ({
  metadata: { name, annotations },
});
const defaults = tenancyDefaultsFromEnv({});
const nics = (...networks: string[]) => networks.map((network, i) => ({ name: `nic${i}`, network }));

describe("parseAllowed", () => {
  it("reads a comma-separated list, * for any, empty for none", () => {
    const two = parseAllowed(" default , lab ,,");
    assert.ok(isAllowed(two, "default") && isAllowed(two, "lab") && !isAllowed(two, "Lab"));
    assert.ok(isAllowed(parseAllowed("lab,*"), "anything"));
    assert.ok(!isAllowed(parseAllowed(""), "default"));
  });
});

describe("tenancyDefaultsFromEnv", () => {
  it("allows the default network and the chart's pool unless told otherwise", () => {
    assert.ok(isAllowed(defaults.networks, "default") && !isAllowed(defaults.networks, "lab"));
    assert.ok(isAllowed(defaults.storagePools, "libvirt-operator"));
    assert.equal(defaults.diskBytesLimit, undefined);
    const set = tenancyDefaultsFromEnv({
      TENANT_ALLOWED_NETWORKS: "lab,dmz",
      TENANT_DISK_BYTES_LIMIT: "1Gi",
    });
    assert.ok(isAllowed(set.networks, "dmz") && !isAllowed(set.networks, "default"));
    assert.equal(set.diskBytesLimit, 2 ** 30);
  });

  it("rejects a limit that is not a quantity, naming the variable", () => {
    assert.throws(
      () => tenancyDefaultsFromEnv({ TENANT_DISK_BYTES_LIMIT: "lots" }),
      /TENANT_DISK_BYTES_LIMIT: "lots"/,
    );
  });
});

describe("tenantPolicy and networkRefusal", () => {
  it("refuses a network outside the cluster default, naming the field, the allowed ones and the source", () => {
    const refusal = networkRefusal(nics("default", "lab"), tenantPolicy(namespace("t"), defaults));
    assert.deepEqual(refusal, {
      field: "spec.interfaces[1].network",
      reason: "NetworkNotAllowed",
      message:
        "spec.interfaces[1].network: network lab is not allowed in this namespace (allowed: default, set by the cluster default)",
    });
    assert.equal(networkRefusal(nics("default"), tenantPolicy(namespace("t"), defaults)), undefined);
  });

  it("lets the namespace's annotation replace the default, both ways", () => {
    const wider = tenantPolicy(namespace("t", { [ALLOWED_NETWORKS_ANNOTATION]: "default,lab" }), defaults);
    assert.equal(networkRefusal(nics("lab", "default"), wider), undefined);
    const narrower = tenantPolicy(namespace("t", { [ALLOWED_NETWORKS_ANNOTATION]: "lab" }), defaults);
    assert.match(
      networkRefusal(nics("default"), narrower)?.message ?? "",
      new RegExp(`allowed: lab, set by the annotation ${ALLOWED_NETWORKS_ANNOTATION} of namespace t\\)`),
    );
    const none = tenantPolicy(namespace("t", { [ALLOWED_NETWORKS_ANNOTATION]: "" }), defaults);
    assert.match(networkRefusal(nics("default"), none)?.message ?? "", /allowed: none/);
    const any = tenantPolicy(namespace("t", { [ALLOWED_NETWORKS_ANNOTATION]: "*" }), defaults);
    assert.equal(networkRefusal(nics("whatever"), any), undefined);
  });

  it("falls back to the defaults for a namespace not known yet", () => {
    assert.ok(networkRefusal(nics("lab"), tenantPolicy(undefined, defaults)));
  });
});

describe("poolRefusal and the disk limit", () => {
  it("refuses a pool outside the allowlist; absent means the node's default pool", () => {
    const policy = tenantPolicy(namespace("t", { [ALLOWED_POOLS_ANNOTATION]: "fast" }), defaults);
    assert.equal(poolRefusal(undefined, policy), undefined);
    assert.equal(poolRefusal("fast", policy), undefined);
    assert.equal(poolRefusal("libvirt-operator", policy)?.field, "spec.storagePool");
  });

  it("takes a valid limit annotation over the default and ignores a bad one", () => {
    const withDefault = tenancyDefaultsFromEnv({ TENANT_DISK_BYTES_LIMIT: "10Gi" });
    const set = tenantPolicy(namespace("t", { [DISK_BYTES_LIMIT_ANNOTATION]: "1Gi" }), withDefault);
    assert.equal(set.diskBytesLimit, 2 ** 30);
    const bad = tenantPolicy(namespace("t", { [DISK_BYTES_LIMIT_ANNOTATION]: "-1" }), withDefault);
    assert.equal(bad.diskBytesLimit, 10 * 2 ** 30);
    assert.equal(bad.source.diskBytesLimit, "the cluster default");
  });
});
