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

declare -A port=(
  [kafka]="$KAFKA_PORT" [etcd]="$ETCD_PORT" [kube-apiserver]="$APISERVER_PORT"
  [kube-controller-manager]="$KCM_PORT" [kube-scheduler]="$SCHEDULER_PORT" [kwok]="$KWOK_PORT"
)
all=0
total_kib=0
[ $quiet = 1 ] || printf '%-24s %-8s %8s  %s\n' COMPONENT PID RSS PORT
for c in "${EC_COMPONENTS[@]}"; do
  if running "$c"; then
    pid="$(running_pid "$c")"
    rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
    total_kib=$((total_kib + rss_kib))
    [ $quiet = 1 ] || printf '%-24s %-8s %6d Mi  127.0.0.1:%s\n' "$c" "$pid" $((rss_kib / 1024)) "${port[$c]}"
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
