#!/usr/bin/env bash
# Builds the test-only kstatus checker (test/tools/kstatus) into $CACHE_DIR/bin. The binary's
# name carries a hash of its sources, so editing them rebuilds and an unchanged tree is a no-op.
source "$(dirname "$0")/lib.sh"

main() {
  command -v go >/dev/null || { echo "go is required to build the kstatus checker" >&2; exit 1; }
  local src
  src="$(cd "$(dirname "$0")/../../test/tools/kstatus" && pwd)"
  local hash
  hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  local out="$BIN_DIR/kstatus-$hash"
  if [[ ! -x "$out" ]]; then
    step "building kstatus checker from test/tools/kstatus (cold: 1-3 min on 2 cores; cached afterwards)"
    local started=$SECONDS
    (
      cd "$src"
      # -mod=mod fetches what go.sum pins through the module proxy; the build cache stays Go's
      # default, outside the repository.
      export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
      go build -trimpath -ldflags "-s -w" -o "$out.tmp" .
    )
    mv "$out.tmp" "$out"
    note "kstatus ready in $((SECONDS - started))s: $out"
  fi
  ln -sfn "kstatus-$hash" "$BIN_DIR/kstatus"
}

main "$@"
