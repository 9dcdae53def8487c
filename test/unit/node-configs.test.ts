import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { load } from "js-yaml";
import { cniConflist, containerdConfig, kubeletConfig } from "../../src/cmd/local/node-configs.ts";

const paths = {
  root: "/s/containerd/root",
  state: "/s/containerd/state",
  socket: "/s/containerd/containerd.sock",
  cniBinDir: "/usr/lib/cni",
  cniConfDir: '/s/cni "net.d"',
};

describe("the local node's configuration files", () => {
  it("containerd: its own root, state and socket, our pause image, oom_score_adj restricted", () => {
    const toml = containerdConfig(paths, "localhost/libvirt-operator/pause:abc");
    assert.match(toml, /^root = "\/s\/containerd\/root"$/m);
    assert.match(toml, /^ {2}address = "\/s\/containerd\/containerd.sock"$/m);
    assert.match(toml, /^ {2}sandbox_image = "localhost\/libvirt-operator\/pause:abc"$/m);
    assert.match(toml, /^ {2}restrict_oom_score_adj = true$/m);
    assert.match(toml, /^ {8}SystemdCgroup = false$/m);
    // A quote in a path stays inside its string.
    assert.match(toml, /^ {4}conf_dir = "\/s\/cni \\"net.d\\""$/m);
  });

  it("kubelet: cgroup v1 allowed, cgroupfs, the CRI socket, webhook authentication, no read-only port", () => {
    const cfg = load(
      kubeletConfig({ socket: paths.socket, port: 20250, healthzPort: 20248, clientCAFile: "/s/pki/ca.crt" }),
    ) as Record<string, unknown>;
    assert.equal(cfg.kind, "KubeletConfiguration");
    assert.equal(cfg.failCgroupV1, false);
    assert.equal(cfg.cgroupDriver, "cgroupfs");
    assert.equal(cfg.containerRuntimeEndpoint, "unix:///s/containerd/containerd.sock");
    assert.equal(cfg.readOnlyPort, 0);
    assert.deepEqual(cfg.authentication, {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: "/s/pki/ca.crt" },
    });
  });

  it("CNI: a bridge with the host as gateway and addresses from the subnet", () => {
    const list = JSON.parse(cniConflist("lvo-cni0", "10.244.0.0/24"));
    assert.equal(list.cniVersion, "1.0.0");
    assert.equal(list.plugins[0].bridge, "lvo-cni0");
    assert.equal(list.plugins[0].isGateway, true);
    assert.deepEqual(list.plugins[0].ipam.ranges, [[{ subnet: "10.244.0.0/24" }]]);
  });
});
