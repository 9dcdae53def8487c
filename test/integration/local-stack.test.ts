// The embedded stack itself: starting it twice is safe, the node is registered for VMs,
// and libvirtd answers with the settings QEMU needs here.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { NODE_ENABLED_LABEL } from "../../src/cmd/local/kube.ts";
import { runningPid } from "../../src/cmd/local/processes.ts";
import { stackUp } from "../../src/cmd/local/stack.ts";
import { run } from "../../src/cmd/local/tools.ts";
import { kubectl, TEST_STACK } from "../support/stack.ts";

describe("local stack", () => {
  it("starting it again keeps the same processes and a working kubeconfig", async () => {
    const before = ["etcd", "kube-apiserver"].map((n) => runningPid(TEST_STACK.stateDir, n));
    assert.ok(
      before.every((p) => p !== undefined),
      "etcd and kube-apiserver run",
    );
    await stackUp(TEST_STACK);
    const after = ["etcd", "kube-apiserver"].map((n) => runningPid(TEST_STACK.stateDir, n));
    assert.deepEqual(after, before);
    const { stdout } = await kubectl(["get", "--raw", "/readyz"]);
    assert.equal(stdout.trim(), "ok");
  });

  it("registers this host as a Node labelled for VMs", async () => {
    const { stdout } = await kubectl(["get", "node", TEST_STACK.nodeName, "-o", "json"]);
    assert.equal(JSON.parse(stdout).metadata.labels[NODE_ENABLED_LABEL], "true");
  });

  it("authorizes with RBAC: an unknown user may not list VMs", async () => {
    const out = await kubectl(["auth", "can-i", "list", "virtualmachines", "--as", "nobody"]).then(
      (r) => r.stdout,
      (err: Error) => err.message,
    );
    assert.match(out, /\bno\b/);
  });

  it("libvirtd answers on qemu:///system, QEMU set up to run as root without a security driver", async () => {
    const { stdout } = await run("virsh", ["-c", "qemu:///system", "uri"]);
    assert.equal(stdout.trim(), "qemu:///system");
    const conf = await readFile("/etc/libvirt/qemu.conf", "utf8");
    assert.match(conf, /^security_driver = "none"$/m);
    assert.match(conf, /^user = "root"$/m);
  });
});
