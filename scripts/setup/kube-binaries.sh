#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy, crictl and helm from their Go modules (pinned in lib.sh)
# into $CACHE_DIR/bin. Idempotent: a binary already built for its version is kept.
source "$(dirname "$0")/lib.sh"

# Builds package PKG of module MOD@VER into $BIN_DIR/NAME-VER through a throwaway module.
# EXTRA_GOMOD (optional) is appended to the throwaway go.mod (replace directives).
build_from_module() {
  local name="$1" mod="$2" ver="$3" pkg="$4" ldflags="${5:-}" extra_gomod="${6:-}"
  local out="$BIN_DIR/$name-$ver"
  if [[ -x "$out" ]]; then
    ln -sfn "$name-$ver" "$BIN_DIR/$name"
    return 0
  fi
  step "building $name $ver from $mod (cold: minutes; cached afterwards)"
  local started=$SECONDS
  local work="$CACHE_DIR/build/$name-$ver"
  rm -rf "$work" && mkdir -p "$work"
  cat >"$work/go.mod" <<GOMOD
module libvirt-operator.local/build/$name

go 1.24

require $mod $ver
$extra_gomod
GOMOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$work/tools.go"
  (
    cd "$work"
    export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
    note "resolving modules"
    go mod tidy >/dev/null
    note "compiling (go build -v shows each package)"
    go build -v -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg" 2>&1 \
      | awk '{ n++; if (n % 100 == 0) printf "    ... %d packages compiled\n", n > "/dev/stderr" }'
    [[ -x "$out.tmp" ]] || { echo "build of $name failed" >&2; exit 1; }
    mv "$out.tmp" "$out"
  )
  ln -sfn "$name-$ver" "$BIN_DIR/$name"
  note "$name ready in $((SECONDS - started))s: $out"
}

# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging/...; a module
# that depends on it must replace each with the published v0.x.y of the same release.
kubernetes_replaces() {
  local gomod
  gomod=$(cd "$CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local staging_ver="v0${KUBERNETES_VERSION#v1}"
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u \
    | while read -r m; do echo "replace $m => $m $staging_ver"; done
}

kube_ldflags() {
  local v="$KUBERNETES_VERSION" minor
  minor=$(echo "$v" | cut -d. -f2)
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$f"
}

# Helm's default Kubernetes version (for `helm template` and kubeVersion checks) is set at
# link time from the client-go it was built with, as helm's own Makefile does.
helm_ldflags() {
  local gomod minor
  gomod=$(cd "$CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  minor=$(grep -E '^\s*k8s.io/client-go v0\.' "$gomod" | sed -E 's/.*v0\.([0-9]+)\..*/\1/')
  local f="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    f+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  echo "$f"
}

main() {
  command -v go >/dev/null || { echo "go is required to build the Kubernetes binaries" >&2; exit 1; }
  build_from_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  local need_kube=0
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do [[ -x "$BIN_DIR/$b-$KUBERNETES_VERSION" ]] || need_kube=1; done
  local replaces="" ldflags=""
  if (( need_kube )); then replaces=$(kubernetes_replaces); ldflags=$(kube_ldflags); fi
  build_from_module kube-apiserver k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" "$replaces"
  build_from_module kube-controller-manager k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags" "$replaces"
  build_from_module kube-scheduler k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-scheduler "$ldflags" "$replaces"
  build_from_module kubectl k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kubectl "$ldflags" "$replaces"
  # The local cluster's real node: its kubelet and kube-proxy (containerd and runc are Debian's).
  build_from_module kubelet k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kubelet "$ldflags" "$replaces"
  build_from_module kube-proxy k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-proxy "$ldflags" "$replaces"
  build_from_module crictl sigs.k8s.io/cri-tools "$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  local helm_flags=""
  [[ -x "$BIN_DIR/helm-$HELM_VERSION" ]] || helm_flags=$(helm_ldflags)
  build_from_module helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$helm_flags"
}

main "$@"
