#!/usr/bin/env bash
# Builds the pod sandbox ("pause") image the local node's containerd runs first in every pod:
# a static binary from scripts/image/pause.c on an empty root file system, packed as an OCI image
# with umoci (Debian's), into $CACHE_DIR/images/pause-<hash>.tar. Idempotent: keyed by the source.
source "$(dirname "$0")/../setup/lib.sh"

SRC="$(cd "$(dirname "$0")" && pwd)/pause.c"
HASH=$(sha256sum "$SRC" | cut -c1-12)
OUT="$CACHE_DIR/images/pause-$HASH.tar"
if [[ -f "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi
step "building the pause image (static binary from scripts/image/pause.c)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -static -Os -s -o "$work/pause" "$SRC"
umoci init --layout "$work/layout"
umoci new --image "$work/layout:$HASH"
umoci unpack --image "$work/layout:$HASH" "$work/bundle" >/dev/null
install -m 0755 "$work/pause" "$work/bundle/rootfs/pause"
umoci repack --image "$work/layout:$HASH" "$work/bundle"
umoci config --image "$work/layout:$HASH" --config.entrypoint /pause --config.user 65535:65535 \
  --architecture amd64 --os linux
umoci gc --layout "$work/layout"
mkdir -p "$(dirname "$OUT")"
tar -C "$work/layout" -cf "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
note "pause image: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
