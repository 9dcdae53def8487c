// Pure: the configuration files of the local cluster's real node — containerd (the CRI runtime),
// the kubelet, and the CNI bridge network its pods get addresses from. All state lives under the
// stack's directory, so a second stack on the machine does not meet this one.
import { dump } from "js-yaml";

export interface NodeRuntimePaths {
  /** containerd's persistent root (images, snapshots). */
  root: string;
  /** containerd's runtime state (sockets, shims' bundles). */
  state: string;
  /** The CRI socket the kubelet talks to. */
  socket: string;
  cniBinDir: string;
  cniConfDir: string;
}

/** A TOML basic string: JSON's escaping is a subset TOML accepts for these values. */
const toml = (s: string) => JSON.stringify(s);

/**
 * containerd 1.6's config (format version 2). `restrict_oom_score_adj`: the kubelet asks for
 * -998 for pod sandboxes, which needs CAP_SYS_RESOURCE; where root lacks it (sandboxes, this
 * machine) runc then fails every pod with "can't get final child's PID from pipe".
 */
export function containerdConfig(paths: NodeRuntimePaths, sandboxImage: string): string {
  return `version = 2
root = ${toml(paths.root)}
state = ${toml(paths.state)}

[grpc]
  address = ${toml(paths.socket)}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${toml(sandboxImage)}
  restrict_oom_score_adj = true
  # The pods' network namespaces under this containerd's state, not /var/run/netns: make
  # local-down finds and unmounts exactly its own.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${toml(paths.cniBinDir)}
    conf_dir = ${toml(paths.cniConfDir)}
`;
}

export interface KubeletSettings {
  socket: string;
  /** The kubelet's HTTPS port (logs, exec) and its healthz port. */
  port: number;
  healthzPort: number;
  /** CA that signed the API server's client certificates (webhook authentication of callers). */
  clientCAFile: string;
  /**
   * The cgroup the kubelet puts its pods under, one per stack: a kubelet removes pod cgroups it
   * does not know under its root, so two stacks' kubelets on one machine must not share it.
   */
  cgroupRoot: string;
  /** The pods' logs, in the stack's directory (a kubelet removes logs of pods it does not know). */
  podLogsDir: string;
}

/**
 * The kubelet's KubeletConfiguration. cgroup v1 machines (this one) need `failCgroupV1: false`
 * from 1.35 on; no systemd here, so the cgroupfs driver (containerd's runc agrees).
 */
export function kubeletConfig(s: KubeletSettings): string {
  return dump({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    containerRuntimeEndpoint: `unix://${s.socket}`,
    cgroupRoot: s.cgroupRoot,
    podLogsDir: s.podLogsDir,
    port: s.port,
    healthzPort: s.healthzPort,
    readOnlyPort: 0,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: s.clientCAFile },
    },
    authorization: { mode: "Webhook" },
    failSwapOn: false,
    rotateCertificates: false,
    resolvConf: "/etc/resolv.conf",
    // A developer's disk is shared with everything else: evict only when it is truly full.
    evictionHard: { "memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
  });
}

export interface PodNetwork {
  /** The CNI network's name (one per stack). */
  name: string;
  /** The host-side bridge (at most 15 characters); its address is the pods' gateway. */
  bridge: string;
  subnet: string;
  /** Where host-local keeps which addresses are taken (the stack's state, cleaned on down). */
  ipamDataDir: string;
}

/** The pods' network: a bridge with the host as gateway, addresses from the subnet, masqueraded out. */
export function cniConflist(net: PodNetwork): string {
  const { bridge, subnet } = net;
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: net.name,
      plugins: [
        {
          type: "bridge",
          bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            dataDir: net.ipamDataDir,
            ranges: [[{ subnet }]],
            routes: [{ dst: "0.0.0.0/0" }],
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeProxySettings {
  kubeconfig: string;
  nodeName: string;
  /** The pods' subnet: traffic from elsewhere to a Service is masqueraded. */
  clusterCIDR: string;
  healthzPort: number;
  metricsPort: number;
}

/**
 * kube-proxy's KubeProxyConfiguration: iptables mode (beside libvirt's NAT rules, which live in
 * chains of their own), health and metrics on loopback ports of this stack. conntrack limits
 * are left as the machine has them (0): a sandbox may not write those sysctls.
 */
export function kubeProxyConfig(s: KubeProxySettings): string {
  return dump({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "iptables",
    clientConnection: { kubeconfig: s.kubeconfig },
    hostnameOverride: s.nodeName,
    clusterCIDR: s.clusterCIDR,
    healthzBindAddress: `127.0.0.1:${s.healthzPort}`,
    metricsBindAddress: `127.0.0.1:${s.metricsPort}`,
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
    // NodePorts on 127.0.0.1 would need route_localnet=1, which opens loopback services (etcd
    // of every stack) to the network: none here.
    iptables: { localhostNodePorts: false },
  });
}
