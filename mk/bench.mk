# Benchmarks and chaos tests against the local stack (bench/). Included from the root
# Makefile. Both need `make dev-up` first; they say so and stop if it has not run.
#
#   make bench                          # the full run: 1,000,000 messages, 3 runs each
#   make bench BENCH_ARGS="--messages 50000 --runs 1 --scale-consumers 100"
#   make chaos                          # 1,000,000 messages, 20 kills, broker restart
#   make chaos CHAOS_ARGS="--messages 50000 --kills 5"

BENCH_ARGS ?=
CHAOS_ARGS ?=
# Release binaries live here; the seed's Go loop is built next to them.
BENCH_TARGET_DIR ?= $(CURDIR)/target
BENCH_SEEDLOOP := $(BENCH_TARGET_DIR)/bench/seedloop

.PHONY: bench chaos bench-build bench-stack

bench-stack:
	@hack/dev-status.sh -q || { echo "error: the local stack is not running — fix: make dev-up (then run this again)" >&2; exit 1; }

# The Go module proxy serves kafka-go; go.sum pins it.
$(BENCH_SEEDLOOP): bench/seedloop/main.go bench/seedloop/go.mod bench/seedloop/go.sum
	mkdir -p $(dir $@)
	cd bench/seedloop && GOTOOLCHAIN=local go build -o $@ .

bench-build: $(BENCH_SEEDLOOP)
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --release -p eventconsumer-worker -p eventconsumer-operator -p eventconsumer-bench

bench: bench-stack bench-build ## Throughput vs raw librdkafka and the seed's kafka-go loop, operator scale test; writes bench/results/.
	. .dev/env && $(BENCH_TARGET_DIR)/release/bench --seedloop-bin $(BENCH_SEEDLOOP) $(BENCH_ARGS)

chaos: bench-stack ## kill -9 workers, restart the broker, rescale 1→3→1; then count every message (lost must be 0).
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --release -p eventconsumer-worker -p eventconsumer-bench
	. .dev/env && $(BENCH_TARGET_DIR)/release/chaos $(CHAOS_ARGS)
