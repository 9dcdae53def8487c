import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { load } from "js-yaml";
import {
  cniConflist,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
} from "../../src/cmd/local/node-configs.ts";

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
    assert.match(toml, /^ {2}netns_mounts_under_state_dir = true$/m);
    assert.match(toml, /^ {8}SystemdCgroup = false$/m);
    // A quote in a path stays inside its string.
    assert.match(toml, /^ {4}conf_dir = "\/s\/cni \\"net.d\\""$/m);
  });

  it("kubelet: cgroup v1 allowed, cgroupfs, the CRI socket, webhook authentication, no read-only port", () => {
    const cfg = load(
      kubeletConfig({
        socket: paths.socket,
        port: 20250,
        healthzPort: 20248,
        clientCAFile: "/s/pki/ca.crt",
        cgroupRoot: "/lvo-1",
        podLogsDir: "/s/pod-logs",
      }),
    ) as Record<string, unknown>;
    assert.equal(cfg.kind, "KubeletConfiguration");
    assert.equal(cfg.failCgroupV1, false);
    assert.equal(cfg.cgroupDriver, "cgroupfs");
    assert.equal(cfg.containerRuntimeEndpoint, "unix:///s/containerd/containerd.sock");
    assert.equal(cfg.readOnlyPort, 0);
    // Its own cgroup: a kubelet removes pod cgroups it does not know under its root.
    assert.equal(cfg.cgroupRoot, "/lvo-1");
    // Its own pod logs: a kubelet removes logs of pods it does not know.
    assert.equal(cfg.podLogsDir, "/s/pod-logs");
    assert.deepEqual(cfg.authentication, {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: "/s/pki/ca.crt" },
    });
  });

  it("CNI: a bridge with the host as gateway and addresses from the subnet", () => {
    const list = JSON.parse(
      cniConflist({ name: "pods-1", bridge: "lvo-cni0", subnet: "10.244.0.0/24", ipamDataDir: "/s/ipam" }),
    );
    assert.equal(list.name, "pods-1");
    assert.equal(list.plugins[0].ipam.dataDir, "/s/ipam");
    assert.equal(list.cniVersion, "1.0.0");
    assert.equal(list.plugins[0].bridge, "lvo-cni0");
    assert.equal(list.plugins[0].isGateway, true);
    assert.deepEqual(list.plugins[0].ipam.ranges, [[{ subnet: "10.244.0.0/24" }]]);
  });

  it("kube-proxy: iptables mode for the pods' subnet, loopback health and metrics, conntrack left alone", () => {
    const cfg = load(
      kubeProxyConfig({
        kubeconfig: "/s/kp.kubeconfig",
        nodeName: "n1",
        clusterCIDR: "10.244.1.0/24",
        healthzPort: 1,
        metricsPort: 2,
      }),
    ) as Record<string, unknown>;
    assert.equal(cfg.kind, "KubeProxyConfiguration");
    assert.equal(cfg.mode, "iptables");
    assert.equal(cfg.clusterCIDR, "10.244.1.0/24");
    assert.equal(cfg.healthzBindAddress, "127.0.0.1:1");
    assert.equal(cfg.metricsBindAddress, "127.0.0.1:2");
    assert.equal((cfg.conntrack as { maxPerCore: number }).maxPerCore, 0);
    // No NodePorts on loopback: they need route_localnet, which opens loopback to the network.
    assert.deepEqual(cfg.iptables, { localhostNodePorts: false });
  });
});
