#!/usr/bin/env bash
# Builds the test-only Go tools into $CACHE_DIR/bin: the kstatus checker (test/tools/kstatus) and
# the Argo CD health-check runner (test/tools/argocd-health). Each binary's name carries a hash
# of its sources, so editing them rebuilds and an unchanged tree is a no-op.
source "$(dirname "$0")/lib.sh"

# build_tool NAME: test/tools/NAME → $BIN_DIR/NAME-<hash>, linked as $BIN_DIR/NAME.
build_tool() {
  local name=$1
  local src
  src="$(cd "$(dirname "$0")/../../test/tools/$name" && pwd)"
  local hash
  hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  local out="$BIN_DIR/$name-$hash"
  if [[ ! -x "$out" ]]; then
    step "building $name from test/tools/$name (cold: up to 1-3 min on 2 cores; cached afterwards)"
    local started=$SECONDS
    (
      cd "$src"
      # -mod=mod fetches what go.sum pins through the module proxy; the build cache stays Go's
      # default, outside the repository.
      export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
      go build -trimpath -ldflags "-s -w" -o "$out.tmp" .
    )
    mv "$out.tmp" "$out"
    note "$name ready in $((SECONDS - started))s: $out"
  fi
  ln -sfn "$name-$hash" "$BIN_DIR/$name"
}

main() {
  command -v go >/dev/null || { echo "go is required to build the test tools (kstatus, argocd-health)" >&2; exit 1; }
  # Arguments name the tools to build; none builds them all.
  local tools=("$@") name
  ((${#tools[@]})) || tools=(kstatus argocd-health)
  for name in "${tools[@]}"; do
    build_tool "$name"
  done
}

main "$@"
