# Entry points of the repository. The scripts under hack/ do the work; see
# `hack/<script>.sh` for details and options.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

# Extra arguments for dev-up/dev-down, e.g. `make dev-down ARGS=--purge`.
ARGS ?=
# `make dev-up BROKERS=3` is `make dev-up ARGS="--brokers 3"`: a three-broker Kafka cluster.
BROKERS ?=

.PHONY: help provision dev-up dev-down dev-status test fmt lint module-cycles

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-12s %s\n", $$1, $$2 }'

provision: ## Build or fetch every part of the local stack into the cache.
	hack/provision.sh

dev-up: ## Start Kafka and the Kubernetes control plane on loopback (idempotent); then `. .dev/env`.
	hack/dev-up.sh $(if $(BROKERS),--brokers $(BROKERS)) $(ARGS)

dev-down: ## Stop what dev-up started (ARGS=--purge also deletes the stack's state).
	hack/dev-down.sh $(ARGS)

dev-status: ## Show what of the local stack runs, and its memory.
	hack/dev-status.sh

test: ## Every lint and test against the local stack; ends with `N passed, N failed`.
	hack/test.sh

fmt: ## Format the Rust code.
	cargo fmt --all

lint: module-cycles ## rustfmt check, clippy with warnings as errors, and no import cycle.
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Every crate with modules of its own (the others are one file).
MODULE_TREES := contract/src operator/src worker/src testkit/src bench/src

module-cycles: ## Fail when modules of a crate import each other in a cycle (hack/module-cycles.py)
	hack/module-cycles.py --self-test
	hack/module-cycles.py $(MODULE_TREES)

# More targets (demo, crds, bench, ...) live in mk/*.mk, one file per topic.
-include $(wildcard mk/*.mk)

.PHONY: crds
# One file per CRD, named like crdgen's argument.
CRDS := eventconsumer deadletterredrive

crds: ## Regenerate crds/*.yaml from the operator's types (then `make chart-crds`).
	@set -e; for c in $(CRDS); do \
		cargo run -q -p eventconsumer-operator --bin crdgen -- $$c > crds/$$c.yaml.tmp; \
		mv crds/$$c.yaml.tmp crds/$$c.yaml; \
	done
