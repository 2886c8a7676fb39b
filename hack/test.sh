#!/usr/bin/env bash
# The body of `make test`: every check and test of the repository against the real local
# stack. Brings the stack up (or reuses what runs), runs the lints and
# `cargo test --workspace --no-fail-fast`, stops what it started, and ends with the line
# `N passed, N failed`. Exits non-zero on any failure, including a crate that does not
# compile and a run that found no tests at all.
#
# EC_KEEP_STACK=1 leaves a stack this run started running afterwards.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$EC_ROOT"

export CARGO_TERM_COLOR=never # the summary parses cargo's output
START="$(now_s)"
PASSED=0
FAILED=0
mkdir -p "$EC_LOG_DIR"

# Components running before this run are someone else's: never stopped here.
BEFORE=()
for c in "${EC_COMPONENTS[@]}"; do
  if running "$c"; then BEFORE+=("$c"); fi
done

UP_PID=""
# stop_ours: stop the components this run started (idempotent).
stop_ours() {
  local c b ours=()
  if [ -n "$UP_PID" ]; then
    kill "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    UP_PID=""
  fi
  for c in "${EC_COMPONENTS[@]}"; do
    running "$c" || continue
    for b in "${BEFORE[@]}"; do [ "$b" != "$c" ] || continue 2; done
    ours+=("$c")
  done
  if [ ${#ours[@]} -gt 0 ]; then
    if [ "${EC_KEEP_STACK:-0}" = 1 ]; then
      log "test: leaving the stack running (EC_KEEP_STACK=1): ${ours[*]}"
    else
      "$EC_ROOT/hack/dev-down.sh" "${ours[@]}"
    fi
  fi
}
# finish: stop what this run started, then print the summary as the very last line.
finish() {
  stop_ours
  log "test: done in $(($(now_s) - START))s"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] || exit 1
  exit 0
}
# shellcheck disable=SC2317 # called through the trap
on_exit() {
  local rc=$?
  stop_ours
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# The stack starts in the background while the lints run: both take a while, and the
# lints need no stack.
if [ ${#BEFORE[@]} -eq ${#EC_COMPONENTS[@]} ]; then
  log "test: reusing the running stack"
else
  log "test: starting the local stack (log: .dev/logs/dev-up.log)"
fi
"$EC_ROOT/hack/dev-up.sh" >"$EC_LOG_DIR/dev-up.log" 2>&1 &
UP_PID=$!

# check NAME CMD...: run one lint; it counts as one test.
check() {
  local name="$1" out
  shift
  out="$EC_LOG_DIR/test-$name.log"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    log "test: $name ok"
  else
    FAILED=$((FAILED + 1))
    tail -n 60 "$out" >&2
    log "test: $name FAILED (full output: .dev/logs/test-$name.log)"
  fi
}
check fmt cargo fmt --all --check
check clippy cargo clippy --workspace --all-targets -- -D warnings
check module-cycles make --no-print-directory module-cycles

if ! wait "$UP_PID"; then
  UP_PID=""
  tail -n 30 "$EC_LOG_DIR/dev-up.log" >&2
  log "test: the local stack did not start (log: .dev/logs/dev-up.log); no test ran"
  FAILED=$((FAILED + 1))
  finish
fi
UP_PID=""
grep -h 'dev-up: ready' "$EC_LOG_DIR/dev-up.log" >&2 || true
# shellcheck source=/dev/null
. "$EC_DEV_DIR/env"

# The chart: its CRD is the generated one, it lints clean, its schema refuses bad values
# (helm comes from the stack's cache, now on PATH).
check chart-crds make --no-print-directory chart-crds-check
check helm-lint make --no-print-directory helm-lint
check helm-schema make --no-print-directory helm-schema-check

CARGO_LOG="$EC_LOG_DIR/cargo-test.log"
: >"$CARGO_LOG"
# cargo stops at the first crate that does not compile, and then runs no test at all.
# So each crate that fails to compile is counted as a failure and left out of a rerun,
# and the others' tests still run and count.
EXCLUDED=()
no_build=0
cargo_rc=0
while :; do
  args=(--workspace --no-fail-fast)
  for p in "${EXCLUDED[@]}"; do args+=(--exclude "$p"); done
  set +e
  cargo test "${args[@]}" 2>&1 | tee "$CARGO_LOG.run"
  cargo_rc=${PIPESTATUS[0]}
  set -e
  cat "$CARGO_LOG.run" >>"$CARGO_LOG"
  broken=()
  # shellcheck disable=SC2016 # the backquotes are cargo's, not a shell expansion
  while read -r pkg; do
    for p in "${EXCLUDED[@]}"; do [ "$p" != "$pkg" ] || continue 2; done
    broken+=("$pkg")
  done < <(sed -n 's/^error: could not compile `\([^`]*\)`.*/\1/p' "$CARGO_LOG.run" | sort -u)
  n="$(grep -c '^error: could not compile' "$CARGO_LOG.run" || true)"
  no_build=$((no_build + n))
  [ ${#broken[@]} -gt 0 ] || break
  log "test: does not compile: ${broken[*]}; running the other crates' tests without it"
  EXCLUDED+=("${broken[@]}")
done
rm -f "$CARGO_LOG.run"

# Sum cargo's `test result: ok. 3 passed; 1 failed; ...` lines (unit, integration, doc).
read -r t_passed t_failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$CARGO_LOG")
PASSED=$((PASSED + t_passed))
FAILED=$((FAILED + t_failed))
# A crate target that does not compile runs no test: count each as a failure.
if [ "$no_build" -gt 0 ]; then
  log "test: $no_build crate target(s) failed to compile: ${EXCLUDED[*]}"
  FAILED=$((FAILED + no_build))
fi
if [ "$cargo_rc" -ne 0 ] && [ "$t_failed" -eq 0 ] && [ "$no_build" -eq 0 ]; then
  log "test: cargo test exited $cargo_rc without a failed test to show for it"
  FAILED=$((FAILED + 1))
fi
if [ $((t_passed + t_failed)) -eq 0 ]; then
  log "test: cargo test ran no tests at all, which is never right here"
  FAILED=$((FAILED + 1))
fi

finish
