#!/usr/bin/env bash
# Prints what of the local stack runs: each component's pid, resident memory and port,
# and the total. Exit status 0 when every component runs, 1 otherwise.
#
# Usage: hack/dev-status.sh [-q]   (-q: print nothing, only set the exit status)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

quiet=0
[ "${1:-}" != -q ] || quiet=1

declare -A addr=(
  [kafka]="$(kafka_broker_addr 1)" [kafka-2]="$(kafka_broker_addr 2)" [kafka-3]="$(kafka_broker_addr 3) (netns $KAFKA_NETNS)"
  [etcd]="127.0.0.1:$ETCD_PORT" [kube-apiserver]="127.0.0.1:$APISERVER_PORT"
  [kube-controller-manager]="127.0.0.1:$KCM_PORT" [kube-scheduler]="127.0.0.1:$SCHEDULER_PORT" [kwok]="127.0.0.1:$KWOK_PORT"
)
all=0
total_kib=0
[ $quiet = 1 ] || printf '%-24s %-8s %8s  %s\n' COMPONENT PID RSS ADDRESS
for c in "${EC_COMPONENTS[@]}"; do
  if running "$c"; then
    pid="$(running_pid "$c")"
    rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
    total_kib=$((total_kib + rss_kib))
    [ $quiet = 1 ] || printf '%-24s %-8s %6d Mi  %s\n' "$c" "$pid" $((rss_kib / 1024)) "${addr[$c]}"
  else
    all=1
    [ $quiet = 1 ] || printf '%-24s %-8s %8s  %s\n' "$c" - - "not running"
  fi
done
if [ $quiet = 0 ]; then
  printf '%-24s %-8s %6d Mi\n' total "" $((total_kib / 1024))
  if [ $all = 0 ]; then
    echo "Everything runs. Use it with:  . .dev/env"
  else
    echo "Not everything runs: 'make dev-up' starts what is missing."
  fi
fi
exit $all
