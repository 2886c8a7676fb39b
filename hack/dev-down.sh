#!/usr/bin/env bash
# Stops the processes of the local stack that hack/dev-up.sh started (per .dev/pids).
# Never touches a process it did not start.
#
# Usage: hack/dev-down.sh [--purge] [component ...]
#   component: one of kafka etcd kube-apiserver kube-controller-manager kube-scheduler kwok,
#              or kafka-2/kafka-3 (one broker of the three-broker cluster; kafka stops all)
#   --purge:   also delete the stack's state (.dev/data, .dev/pki, .dev/kafka, .dev/kafka-pki), so the next
#              dev-up starts from empty Kafka and etcd stores.
# Stopping the whole stack (no component named) also forgets its broker count, so the next
# `make dev-up` runs one broker again; the cluster's network namespace goes once no broker
# runs.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

purge=0
want=()
for a in "$@"; do
  case "$a" in
    --purge) purge=1 ;;
    kafka) want+=(kafka kafka-2 kafka-3) ;;
    kafka-2 | kafka-3 | etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok) want+=("$a") ;;
    *) die "unknown argument '$a'" "use: hack/dev-down.sh [--purge] [${EC_COMPONENTS[*]}]" ;;
  esac
done
whole=0
[ ${#want[@]} -gt 0 ] || { whole=1 && want=(kafka kafka-2 kafka-3 etcd kube-apiserver kube-controller-manager kube-scheduler kwok); }

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
stop_selected kafka kafka-2 kafka-3 kube-apiserver kube-controller-manager kube-scheduler kwok
stop_selected etcd

# The cluster's network (hack/lib.sh), once none of its brokers is left in it.
if ! running kafka && ! running kafka-2 && ! running kafka-3; then
  if ip link show "$KAFKA_VETH_HOST" >/dev/null 2>&1; then ip link del "$KAFKA_VETH_HOST" || true; fi
  if ip netns list 2>/dev/null | grep -qw "$KAFKA_NETNS"; then
    ip netns del "$KAFKA_NETNS" || true
    log "dev-down: network namespace $KAFKA_NETNS removed"
  fi
fi
[ $whole = 0 ] || rm -f "$EC_KAFKA_BROKERS_FILE"

if [ $purge = 1 ]; then
  for c in kafka-2 kafka-3 "${EC_COMPONENTS[@]}"; do
    running "$c" && die "$c still runs; its state cannot be purged" "run hack/dev-down.sh --purge without component names"
  done
  rm -rf "$EC_DATA_DIR" "$EC_PKI_DIR" "$EC_DEV_DIR/kafka" "$EC_DEV_DIR/kafka-pki"
  log "dev-down: state purged"
fi
