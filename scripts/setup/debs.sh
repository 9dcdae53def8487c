#!/usr/bin/env bash
# Installs the Debian packages the stack and the tests need, only those missing.
source "$(dirname "$0")/lib.sh"

PACKAGES=(
  libvirt-daemon-system libvirt-clients   # libvirtd, virtlogd, virsh (raw-libvirt comparisons)
  qemu-system-x86 qemu-utils              # QEMU (TCG here, KVM on real nodes), qemu-img
  dnsmasq-base                            # DHCP for libvirt networks
  openssl                                 # certificates for the local kube-apiserver
  cpio xz-utils                           # building the test guest's initramfs
  xorriso                                 # ISO images for CD-ROM tests
  procps iproute2 curl ca-certificates
  containerd runc containernetworking-plugins conntrack   # the local cluster's real node (kubelet's runtime, pod networks, kube-proxy)
  umoci                                   # packing the pause and operator images (OCI) without Docker
  prometheus                              # promtool (rule checks and unit tests) and a real Prometheus for the alert e2e
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
step "installing Debian packages: ${missing[*]}"
SUDO=""; (( EUID == 0 )) || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when they are missing or older than a day.
if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]]; then
  timed "apt-get update" $SUDO apt-get update -q
fi
timed "apt-get install" $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
