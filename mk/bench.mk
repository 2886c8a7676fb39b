# Benchmarks and chaos tests against the local stack (bench/). Included from the root
# Makefile. Both need `make dev-up` first; they say so and stop if it has not run.
#
#   make bench                          # the full run: 1,000,000 messages, 3 runs each
#   make bench BENCH_ARGS="--messages 50000 --runs 1 --scale-consumers 100"
#   make bench-throughput               # the contenders only; needs only `make dev-up ARGS=kafka`
#   make bench-long                     # the healthy contenders over 5,000,000 messages
#   make bench-ordering                 # the slow-sink contenders only (ordering key vs partition)
#   make chaos                          # 1,000,000 messages, 20 kills, broker restart
#   make chaos CHAOS_ARGS="--messages 50000 --kills 5"

BENCH_ARGS ?=
CHAOS_ARGS ?=
# Release binaries live here; the Go and Java contenders are built next to them.
BENCH_TARGET_DIR ?= $(CURDIR)/target
BENCH_SEEDLOOP := $(BENCH_TARGET_DIR)/bench/seedloop
BENCH_FRANZGO := $(BENCH_TARGET_DIR)/bench/franzgo
BENCH_SPRING := $(BENCH_TARGET_DIR)/bench/spring-orders.jar
BENCH_PARALLEL := $(BENCH_TARGET_DIR)/bench/parallel-orders.jar
BENCH_BIN = . .dev/env && $(BENCH_TARGET_DIR)/release/bench --seedloop-bin $(BENCH_SEEDLOOP) \
	--franzgo-bin $(BENCH_FRANZGO) --spring-jar $(BENCH_SPRING) --parallel-jar $(BENCH_PARALLEL)
# The healthy contenders, whose start-up must not decide the result: 5,000,000 messages.
BENCH_LONG_ARGS := --messages 5000000 --scale-consumers 0 --no-idle --results-suffix=-5m \
	--contenders ceiling,kafka-perf,same-work,ours,spring1,spring6,franz

.PHONY: bench bench-throughput bench-long bench-ordering chaos bench-build bench-stack bench-kafka

bench-stack:
	@hack/dev-status.sh -q || { echo "error: the local stack is not running — fix: make dev-up (then run this again)" >&2; exit 1; }

bench-kafka:
	@[ -f .dev/env ] && . .dev/env && (exec 3<>/dev/tcp/$${KAFKA_BOOTSTRAP%:*}/$${KAFKA_BOOTSTRAP##*:}) 2>/dev/null || { echo "error: the local stack's Kafka is not running — fix: make dev-up ARGS=kafka (then run this again)" >&2; exit 1; }

# The Go module proxy serves kafka-go and franz-go; each go.sum pins them.
$(BENCH_SEEDLOOP): bench/seedloop/main.go bench/seedloop/go.mod bench/seedloop/go.sum
	mkdir -p $(dir $@)
	cd bench/seedloop && GOTOOLCHAIN=local go build -o $@ .

$(BENCH_FRANZGO): $(wildcard bench/franzgo/*.go) bench/franzgo/go.mod bench/franzgo/go.sum
	mkdir -p $(dir $@)
	cd bench/franzgo && GOTOOLCHAIN=local go build -o $@ .

# Maven Central serves Spring Boot, spring-kafka and kafka-clients; the pom pins them.
$(BENCH_SPRING): bench/spring/pom.xml $(shell find bench/spring/src -type f 2>/dev/null)
	mkdir -p $(dir $@)
	cd bench/spring && mvn -B -q -DskipTests -Dbench.build.dir=$(BENCH_TARGET_DIR)/bench/spring-build package
	cp $(BENCH_TARGET_DIR)/bench/spring-build/spring-orders.jar $@

# Maven Central serves the Confluent Parallel Consumer; the pom pins it.
$(BENCH_PARALLEL): bench/parallel/pom.xml $(shell find bench/parallel/src -type f 2>/dev/null)
	mkdir -p $(dir $@)
	cd bench/parallel && mvn -B -q -DskipTests -Dbench.build.dir=$(BENCH_TARGET_DIR)/bench/parallel-build package
	cp $(BENCH_TARGET_DIR)/bench/parallel-build/parallel-orders.jar $@

bench-build: $(BENCH_SEEDLOOP) $(BENCH_FRANZGO) $(BENCH_SPRING) $(BENCH_PARALLEL)
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --release -p eventconsumer-worker -p eventconsumer-operator -p eventconsumer-bench

bench: bench-stack bench-build ## Throughput vs the ceilings, Spring Kafka, franz-go and the seed's loop, operator scale test; writes bench/results/.
	$(BENCH_BIN) $(BENCH_ARGS)

bench-throughput: bench-kafka bench-build ## The contenders only (no operator scale test); needs only `make dev-up ARGS=kafka`.
	$(BENCH_BIN) --scale-consumers 0 $(BENCH_ARGS)

bench-ordering: bench-kafka bench-build ## The slow-sink contenders only: ordering key vs partition vs the Parallel Consumer.
	$(BENCH_BIN) --scale-consumers 0 --no-idle --results-suffix=-ordering \
		--contenders sink-partition,sink-key,sink-parallel-key $(BENCH_ARGS)

bench-long: bench-kafka bench-build ## The healthy contenders over 5,000,000 messages (start-up cannot decide the result).
	$(BENCH_BIN) $(BENCH_LONG_ARGS) $(BENCH_ARGS)

chaos: bench-stack ## kill -9 workers, restart the broker, rescale 1→3→1; then count every message (lost must be 0).
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --release -p eventconsumer-worker -p eventconsumer-bench
	. .dev/env && $(BENCH_TARGET_DIR)/release/chaos $(CHAOS_ARGS)
