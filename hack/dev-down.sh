#!/usr/bin/env bash
# Stops the processes of the local stack that hack/dev-up.sh started (per .dev/pids).
# Never touches a process it did not start.
#
# Usage: hack/dev-down.sh [--purge] [component ...]
#   component: one of kafka etcd kube-apiserver kube-controller-manager kube-scheduler kwok
#   --purge:   also delete the stack's state (.dev/data, .dev/pki, .dev/kafka, .dev/kafka-pki), so the next
#              dev-up starts from empty Kafka and etcd stores.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

purge=0
want=()
for a in "$@"; do
  case "$a" in
    --purge) purge=1 ;;
    kafka | etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok) want+=("$a") ;;
    *) die "unknown argument '$a'" "use: hack/dev-down.sh [--purge] [${EC_COMPONENTS[*]}]" ;;
  esac
done
[ ${#want[@]} -gt 0 ] || want=("${EC_COMPONENTS[@]}")

# stop_selected C...: stop those of C that were asked for, all at once: each shuts down
# within seconds, and one after the other would add those seconds up.
stop_selected() {
  local c w
  for c in "$@"; do
    for w in "${want[@]}"; do
      if [ "$w" = "$c" ]; then stop "$c" & fi
    done
  done
  wait
}
# etcd last: the API server shuts down slowly once its store is gone.
stop_selected kafka kube-apiserver kube-controller-manager kube-scheduler kwok
stop_selected etcd

if [ $purge = 1 ]; then
  for c in "${EC_COMPONENTS[@]}"; do
    running "$c" && die "$c still runs; its state cannot be purged" "run hack/dev-down.sh --purge without component names"
  done
  rm -rf "$EC_DATA_DIR" "$EC_PKI_DIR" "$EC_DEV_DIR/kafka" "$EC_DEV_DIR/kafka-pki"
  log "dev-down: state purged"
fi
