import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mountsUnder, shellWords } from "../../src/cmd/local/node-host.ts";

describe("the local node's host clean-up", () => {
  it("reads iptables -S rules with quoted comments as arguments", () => {
    assert.deepEqual(
      shellWords('-A KUBE-FIREWALL ! -s 127.0.0.0/8 -m comment --comment "block incoming localnet" -j DROP'),
      [
        "-A",
        "KUBE-FIREWALL",
        "!",
        "-s",
        "127.0.0.0/8",
        "-m",
        "comment",
        "--comment",
        "block incoming localnet",
        "-j",
        "DROP",
      ],
    );
  });

  it("finds the mounts under the node's directory only, deepest first, with escaped spaces decoded", () => {
    const mountinfo = [
      "36 35 98:0 / / rw - ext4 /dev/vda rw",
      "90 36 0:50 / /s/node/kubelet rw shared:40 - ext4 /dev/vda rw",
      "91 90 0:51 / /s/node/kubelet/pods/a/volumes/token rw - tmpfs tmpfs rw",
      "92 36 0:52 / /s/node2/kubelet rw - ext4 /dev/vda rw",
      "93 36 0:53 / /s/node/containerd/state/io\\040x/rootfs rw - overlay overlay rw",
      "94 36 0:54 / /s/node/kubelet rw - ext4 /dev/vda rw",
    ].join("\n");
    assert.deepEqual(mountsUnder(mountinfo, "/s/node"), [
      "/s/node/kubelet/pods/a/volumes/token",
      "/s/node/containerd/state/io x/rootfs",
      "/s/node/kubelet",
    ]);
  });
});
