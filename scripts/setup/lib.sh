# Shared helpers for the set-up scripts: cache location, pinned versions, progress.
# Sourced, never run. Everything cached lives outside the repository.
set -euo pipefail

CACHE_DIR="${LIBVIRT_OPERATOR_CACHE:-$HOME/.cache/libvirt-operator}"
BIN_DIR="$CACHE_DIR/bin"
mkdir -p "$BIN_DIR"

# Pinned versions: change here, and every cache key follows.
KUBERNETES_VERSION="v1.35.4"
ETCD_VERSION="v3.6.16"
HELM_VERSION="v3.21.4"
# crictl: the local node's pods are stopped through the CRI (their networks torn down) by make local-down.
CRI_TOOLS_VERSION="v1.34.0"

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

# timed NAME CMD...: runs CMD, then prints how long it took (for the set-up notes).
timed() {
  local name="$1"; shift
  local start=$SECONDS
  "$@"
  note "$name took $((SECONDS - start))s"
}
NODE_VERSION="24.21.0"
NODE_DIR="$CACHE_DIR/node-v$NODE_VERSION"
