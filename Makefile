# libvirt-operator — everything a fresh machine needs goes through these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= $(HOME)/.cache/libvirt-operator
export LIBVIRT_OPERATOR_CACHE := $(CACHE)
NODE_VERSION := $(shell sed -n 's/^NODE_VERSION="\(.*\)"/\1/p' scripts/setup/lib.sh)
# Node 24 from the cache when the machine's node is older; the Kubernetes binaries and helm.
export PATH := $(CACHE)/node-v$(NODE_VERSION)/bin:$(CACHE)/bin:$(PATH)

NODE_TEST := node --test --test-concurrency=1 \
	--test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=./test/summary-reporter.ts --test-reporter-destination=stdout

.PHONY: help setup deps local local-down build image generate check-generated lint test test-unit test-integration bench-libvirt bench-plugin bench bench-scale soak soak-faults

help:
	@echo "make local       start the local stack (etcd, kube-apiserver, controller-manager, scheduler, libvirtd, …) on loopback"
	@echo "make local-down  stop what make local started"
	@echo "make build       compile the controller and the agent into dist/ (what the image runs; OPERATOR_BUILD=js runs it locally)"
	@echo "make image       build the operator image (no Docker) and import it into the local node"
	@echo "make test        install what is missing and run every test"
	@echo "make generate    regenerate crds/ and the chart's CRDs from src/api"
	@echo "make bench-libvirt  our libvirt RPC client against virsh per call (prints figures)"
	@echo "make bench-plugin  kubectl vm writes vs kubectl annotate and node -e '', where the time goes (prints figures)"
	@echo "make bench       VMs, disks, snapshots, restores and templates vs raw libvirt, API writes, memory, the plugin (prints figures)"
	@echo "make bench-scale 1000 VMs over 10 test-driver nodes vs a bare client + raw libvirt (BENCH_SCALE_VMS, BENCH_PROFILE=1, BENCH_HEAP_SNAPSHOT=1; prints figures, writes JSON)"
	@echo "make soak        failing VMDisks left ten minutes: attempts, agent CPU and RSS (prints figures)"
	@echo "make soak-faults 20 minutes of random operations and faults (seeded), invariants after every step"

setup: deps node_modules/.installed

deps:
	@bash scripts/setup/debs.sh
	@bash scripts/setup/node.sh >/dev/null
	@bash scripts/setup/kube-binaries.sh
	@bash scripts/setup/test-tools.sh
	@bash scripts/setup/guest.sh >/dev/null

node_modules/.installed: package.json package-lock.json
	@echo "==> npm ci"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

local: setup
	@node src/cmd/local.ts up

local-down:
	@node src/cmd/local.ts down

# The controller and the agent as the image runs them: JavaScript compiled by tsc into dist/
# (tsconfig.build.json; rebuilt from scratch, emit only — make lint checks the types). The local
# and test stacks run the sources unless OPERATOR_BUILD=js; the benches compile their own.
build: node_modules/.installed
	@rm -rf dist
	@npx --no-install tsc -p tsconfig.build.json

# The operator's image without Docker (scripts/image/operator-image.sh), imported into the
# local node when it runs: the chart's default image reference names it.
image: setup
	@node src/cmd/local.ts image

generate: node_modules/.installed
	@node src/cmd/generate.ts

check-generated: node_modules/.installed
	@node src/cmd/generate.ts --check

lint: node_modules/.installed
	@echo "==> typecheck and lint"
	@npx --no-install tsc -p tsconfig.json
	@npx --no-install biome check .

test-unit: node_modules/.installed
	@$(NODE_TEST) 'test/unit/**/*.test.ts'

test-integration: setup
	@$(NODE_TEST) --test-global-setup=./test/integration/global-setup.ts 'test/integration/**/*.test.ts'

# Everything, in one runner so the closing summary counts every test.
test: setup lint check-generated
	@$(NODE_TEST) --test-global-setup=./test/integration/global-setup.ts \
		'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts'

bench-libvirt: setup
	@node bench/libvirt.ts

bench-plugin: setup
	@node bench/plugin.ts

bench: setup
	@node bench/vm.ts
	@node bench/disk.ts
	@node bench/snapshot.ts
	@node bench/template.ts
	@node bench/plugin.ts
	@node bench/agent-metrics.ts
	@node bench/cluster-index.ts
	@node bench/node-index.ts

# BENCH_SCALE_VMS VMs (default 1000; a round of 100 first unless BENCH_SCALE_BASELINE=0) over
# test-driver nodes; BENCH_HEAP_SNAPSHOT=1 snapshots the heaps with all VMs running; BENCH_PROFILE=1
# profiles the controller. Figures also in .local/bench/scale-<time>.json.
bench-scale: setup
	@node bench/scale.ts

# Random operations and faults over test-driver nodes, invariants checked after every step
# (SOAK_SECONDS, default 1200; SOAK_SEED replays a run).
soak-faults: setup
	@$(NODE_TEST) --test-global-setup=./test/integration/global-setup.ts test/soak/faults.soak.ts

# The backoff test of make test (one minute), left ten minutes.
soak: setup
	@BACKOFF_SOAK_SECONDS=600 $(NODE_TEST) --test-global-setup=./test/integration/global-setup.ts \
		test/integration/backoff-e2e.test.ts
