#!/usr/bin/env bash
# The body of `make cluster-test`: the tests of broker faults on the three-broker cluster
# (the gateway, the operator's measurements, the small three-broker chaos run). They are
# `#[ignore]`d in `make test`, whose Kafka is one broker.
#
# Starts the stack with `--brokers 3` when nothing of it runs (and stops it afterwards,
# unless EC_KEEP_STACK=1), reuses a running cluster, and refuses a running single broker.
# The tests run one at a time: each injects faults into the one shared cluster. Ends with
# the line `N passed, N failed`.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$EC_ROOT"

export CARGO_TERM_COLOR=never
START="$(now_s)"
mkdir -p "$EC_LOG_DIR"

if running kafka && [ "$(kafka_brokers)" != 3 ]; then
  die "the local Kafka runs with one broker" "hack/dev-down.sh kafka, then make cluster-test again"
fi
STARTED=0
if ! hack/dev-status.sh -q; then
  running kafka || running etcd || STARTED=1
  log "cluster-test: starting the stack with three brokers (log: .dev/logs/dev-up.log)"
  hack/dev-up.sh --brokers 3 >"$EC_LOG_DIR/dev-up.log" 2>&1 || {
    tail -n 30 "$EC_LOG_DIR/dev-up.log" >&2
    die "the stack did not start (log: .dev/logs/dev-up.log)" "read the log above"
  }
fi
# shellcheck disable=SC2317 # called through the trap
on_exit() {
  local rc=$?
  if [ $STARTED = 1 ] && [ "${EC_KEEP_STACK:-0}" != 1 ]; then hack/dev-down.sh; fi
  exit "$rc"
}
trap on_exit EXIT
# shellcheck source=/dev/null
. "$EC_DEV_DIR/env"

LOG="$EC_LOG_DIR/cluster-test.log"
: >"$LOG"
rc=0
# The chaos test starts the worker binary of this profile.
cargo build --workspace --bins 2>&1 | tee -a "$LOG" || rc=1
# --workspace, as `make test` builds: the same features, so nothing is compiled again.
cargo test --workspace --test cluster_gateway --test cluster_faults --test cluster_chaos \
  -- --ignored --test-threads 1 --nocapture 2>&1 | tee -a "$LOG" || rc=1
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$LOG")
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
[ $((passed + failed)) -gt 0 ] || failed=1
log "cluster-test: done in $(($(now_s) - START))s (output: .dev/logs/cluster-test.log)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
