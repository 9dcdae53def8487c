#!/usr/bin/env bash
# Builds the operator image without Docker: Node 24, the app (dist/: the controller and the agent
# compiled by tsc -p tsconfig.build.json; crds/, production node_modules) and qemu-img (the agent
# converts and inspects volumes with it), each binary with the shared libraries it links, on an
# otherwise empty root file system; packed as an OCI image
# by umoci (Debian's) into $CACHE_DIR/images/operator-<content hash>.tar, named as the chart's
# default image (repository:appVersion). Prints the tarball's path. Idempotent: keyed by content.
#   operator-image.sh [SOURCE_DIR]   SOURCE_DIR: another checkout (an earlier release), default this one
source "$(dirname "$0")/../setup/lib.sh"

SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
REPO="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
# tsc of this checkout compiles (emit only: no types needed, so a checkout without node_modules works).
TSC="$(cd "$(dirname "$0")/../.." && pwd)/node_modules/typescript/bin/tsc"
# A checkout without tsconfig.build.json (a release before the compiled build) ships its sources,
# which its chart runs through Node's type stripping.
COMPILED=false
[[ -f "$REPO/tsconfig.build.json" ]] && COMPILED=true
if $COMPILED && [[ ! -f "$TSC" ]]; then
  echo "operator-image.sh: $TSC missing: run npm ci (make setup) first" >&2
  exit 1
fi
NODE_BIN="$NODE_DIR/bin/node"
[[ -x "$NODE_BIN" ]] || NODE_BIN="$(command -v node)"
QEMU_IMG="$(command -v qemu-img)"
USER_ID=65532

# What goes in decides the cache key: the app's files, the lock file, the chart's appVersion (the
# tag), node, qemu-img and their libraries, the CA certificates, this script.
key=$(
  cd "$REPO"
  {
    inputs=(src crds package.json package-lock.json helm/libvirt-operator/Chart.yaml)
    if $COMPILED; then inputs+=(tsconfig.json tsconfig.build.json); fi
    find "${inputs[@]}" -type f -print0 | sort -z | xargs -0 sha256sum
    # The compiler's version decides the emitted JavaScript.
    if $COMPILED; then sha256sum <"$(dirname "$TSC")/../package.json"; fi
    # Contents only: the same sources in another checkout hit the same image.
    sha256sum "$NODE_BIN" "$QEMU_IMG" /etc/ssl/certs/ca-certificates.crt | cut -d' ' -f1
    sha256sum <"$SELF"
    # The libraries copied in with them: an apt upgrade of one makes a new image.
    ldd "$NODE_BIN" "$QEMU_IMG" | awk '/=> \// { print $3 } /^[ \t]*\/lib/ { print $1 }' | sort -u \
      | xargs -r readlink -f | xargs -r sha256sum
  } | sha256sum | cut -c1-12
)
OUT="$CACHE_DIR/images/operator-$key.tar"
if [[ -f "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi

step "building the operator image (node $("$NODE_BIN" --version), the app, qemu-img)"
started=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/app" "$rootfs/tmp" "$rootfs/etc/ssl/certs"
chmod 1777 "$rootfs/tmp"

note "the app and its production dependencies (npm ci --omit=dev)"
cp -a "$REPO/package.json" "$REPO/package-lock.json" "$REPO/crds" "$rootfs/app/"
if $COMPILED; then
  # JavaScript, not TypeScript: type stripping would cost each process ~25 MiB of RSS.
  note "the controller and the agent compiled (tsc -p tsconfig.build.json)"
  "$NODE_BIN" "$TSC" -p "$REPO/tsconfig.build.json" --outDir "$rootfs/app/dist" >&2
  entry=dist/cmd/controller.js
else
  cp -a "$REPO/src" "$rootfs/app/"
  entry=src/cmd/controller.ts
fi
(cd "$rootfs/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
  --cache "$CACHE_DIR/npm-cache" >/dev/null)

# BIN to DEST in the image, with every library the dynamic loader would load for it.
with_libraries() {
  local bin="$1" dest="$2"
  install -D -m 0755 "$bin" "$rootfs$dest"
  ldd "$bin" | awk '/=> \// { print $3 } /^[ \t]*\/lib/ { print $1 }' | while read -r lib; do
    [[ -e "$rootfs$lib" ]] || cp -L --parents "$lib" "$rootfs"
  done
}
note "node and qemu-img with their libraries"
with_libraries "$NODE_BIN" /usr/local/bin/node
with_libraries "$QEMU_IMG" /usr/bin/qemu-img

# A user without a shell, and the CAs the agent's https image imports check against.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$USER_ID" "$USER_ID" >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$USER_ID" >"$rootfs/etc/group"
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"

note "packing (umoci)"
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/helm/libvirt-operator/Chart.yaml")
umoci init --layout "$work/layout"
umoci new --image "$work/layout:$tag"
umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$work/layout:$tag" "$work/bundle"
umoci config --image "$work/layout:$tag" --architecture amd64 --os linux \
  --config.user "$USER_ID:$USER_ID" --config.workingdir /app \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env NODE_ENV=production \
  --config.cmd node --config.cmd "$entry"
umoci gc --layout "$work/layout"
mkdir -p "$(dirname "$OUT")"
tar -C "$work/layout" -cf "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
note "operator image ($tag): $OUT, $(du -h "$OUT" | cut -f1) packed, $(du -sh "$rootfs" | cut -f1) unpacked, in $((SECONDS - started))s"
echo "$OUT"
