#!/usr/bin/env bash
# Injects one real fault into the three-broker cluster of `hack/dev-up.sh --brokers 3`, and
# undoes it by itself after a bounded time.
#
# Every fault is undone by a watchdog started (detached, in its own session) before the
# fault is applied: killing this script, or the process that called it, still ends the
# fault on time. The script waits for the watchdog and exits 0 once the cluster is whole
# again (exit 1 when it is not back within RECOVER_TIMEOUT_S), unless --no-wait.
#
# Usage: hack/kafka-fault.sh COMMAND [args] [--for SECS] [--no-wait]
#   leader TOPIC PARTITION       print the id of the partition's leader (from kafka-topics
#                                --describe), nothing else
#   kill BROKER                  kill -9 broker 1, 2 or 3; restarted after --for (10 s)
#   kill-leader TOPIC PARTITION  kill -9 the partition's current leader, as `kill`
#   hang BROKER                  SIGSTOP the broker, SIGCONT after --for (15 s: longer than
#                                the brokers' 9 s session with the controller, so the
#                                cluster fences it and moves its leaders, while it is alive)
#   cut                          take broker 3's link down inside its network namespace and
#                                bring it back after --for (20 s): packets to and from it
#                                are dropped, so clients and peers see timeouts, not refused
#                                connections
#   heal                         undo every hang and cut at once (SIGCONT, link up)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

# How long a restarted broker may take to rejoin: a JVM start on two busy cores.
RECOVER_TIMEOUT_S=180
# Longest fault accepted: everything here must end by itself soon.
MAX_FAULT_S=600

usage() { die "$1" "use: hack/kafka-fault.sh leader|kill|kill-leader|hang|cut|heal ... [--for SECS] [--no-wait] (see its header)"; }

[ "$(kafka_brokers)" = 3 ] || die "the local Kafka is not the three-broker cluster" "make dev-up ARGS='--brokers 3'"

cmd="${1:-}"
[ $# -gt 0 ] && shift
pos=()
secs=""
wait_done=1
while [ $# -gt 0 ]; do
  case "$1" in
    --for) secs="${2:-}" && shift ;;
    --no-wait) wait_done=0 ;;
    *) pos+=("$1") ;;
  esac
  shift
done
if [ -n "$secs" ]; then
  if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt "$MAX_FAULT_S" ]; then
    usage "--for must be a whole number of seconds from 1 to $MAX_FAULT_S, not '$secs'"
  fi
fi

# leader_of TOPIC PARTITION: the leader's id from the cluster's metadata; fails when the
# partition has none (-1 while it is being elected, or `none`).
leader_of() {
  local out l
  out="$("$EC_ROOT/hack/kafka-cli.sh" topics --bootstrap-server "$(kafka_bootstrap)" --describe --topic "$1")" ||
    die "cannot describe topic $1" "check that it exists: hack/kafka-cli.sh topics --list"
  l="$(awk -v p="$2" '{ for (i = 1; i < NF; i++) { if ($i == "Partition:") part = $(i+1); if ($i == "Leader:" && part == p) { print $(i+1); exit } } }' <<<"$out")"
  [[ "$l" =~ ^[1-3]$ ]] || die "partition $2 of $1 has no leader now (${l:-no such partition})" "retry in a few seconds"
  echo "$l"
}

broker_pid() {
  local name
  name="$(kafka_component "$1")"
  running "$name" || die "broker $1 ($name) is not running" "make dev-up ARGS='--brokers 3' starts it"
  running_pid "$name"
}

check_broker() { [[ "${1:-}" =~ ^[1-3]$ ]] || usage "BROKER must be 1, 2 or 3, not '${1:-}'"; }

# watchdog SECS CMD: run CMD after SECS in a detached session of its own (see the header);
# print its pid.
watchdog() {
  local s="$1" what="$2"
  mkdir -p "$EC_LOG_DIR"
  setsid nohup bash -c "sleep $s; $what" >>"$EC_LOG_DIR/kafka-fault.log" 2>&1 </dev/null &
  echo $!
}

# finish WATCHDOG_PID WHAT: wait for the watchdog (unless --no-wait), then for a whole cluster.
finish() {
  local w="$1" what="$2" deadline
  if [ $wait_done = 0 ]; then
    log "kafka-fault: $what; undone by watchdog pid $w"
    return 0
  fi
  while alive "$w"; do sleep 0.2; done
  deadline=$(($(now_s) + RECOVER_TIMEOUT_S))
  until cluster_whole; do
    [ "$(now_s)" -lt "$deadline" ] || die "the cluster is not whole ${RECOVER_TIMEOUT_S}s after: $what (log: .dev/logs/kafka-fault.log)" "hack/kafka-fault.sh heal; make dev-up ARGS='--brokers 3'"
    sleep 1
  done
  log "kafka-fault: $what — over, all three brokers back"
}

# cluster_whole: every broker runs, none is stopped, the link is up, all three registered.
cluster_whole() {
  local n pid
  for n in 1 2 3; do
    running "$(kafka_component "$n")" || return 1
    pid="$(running_pid "$(kafka_component "$n")")"
    [ "$(awk '{ print $3 }' "/proc/$pid/stat")" != T ] || return 1
  done
  ip -n "$KAFKA_NETNS" link show "$KAFKA_VETH_NS" | grep -q 'state UP' || return 1
  [ "$("$EC_ROOT/hack/kafka-cli.sh" broker-api-versions --bootstrap-server "$(kafka_bootstrap)" 2>/dev/null |
    grep -c 'isFenced: false')" = 3 ]
}

link_up_cmd="ip -n $KAFKA_NETNS link set $KAFKA_VETH_NS up"

case "$cmd" in
  leader)
    [ ${#pos[@]} = 2 ] || usage "leader takes TOPIC PARTITION"
    leader_of "${pos[0]}" "${pos[1]}"
    ;;
  kill | kill-leader)
    if [ "$cmd" = kill ]; then
      [ ${#pos[@]} = 1 ] || usage "kill takes BROKER"
      b="${pos[0]}"
      check_broker "$b"
    else
      [ ${#pos[@]} = 2 ] || usage "kill-leader takes TOPIC PARTITION"
      b="$(leader_of "${pos[0]}" "${pos[1]}")"
    fi
    pid="$(broker_pid "$b")"
    # The restart goes through dev-up, which starts only the brokers that are missing.
    w="$(watchdog "${secs:-10}" "'$EC_ROOT/hack/dev-up.sh' kafka")"
    kill -KILL "$pid"
    log "kafka-fault: kill -9 broker $b (pid $pid); restart in ${secs:-10}s"
    finish "$w" "broker $b killed"
    ;;
  hang)
    [ ${#pos[@]} = 1 ] || usage "hang takes BROKER"
    check_broker "${pos[0]}"
    pid="$(broker_pid "${pos[0]}")"
    w="$(watchdog "${secs:-15}" "kill -CONT $pid")"
    kill -STOP "$pid"
    log "kafka-fault: SIGSTOP broker ${pos[0]} (pid $pid) for ${secs:-15}s"
    finish "$w" "broker ${pos[0]} hung"
    ;;
  cut)
    [ ${#pos[@]} = 0 ] || usage "cut takes no broker: broker 3 is the one in its own network namespace"
    w="$(watchdog "${secs:-20}" "$link_up_cmd")"
    ip -n "$KAFKA_NETNS" link set "$KAFKA_VETH_NS" down
    log "kafka-fault: broker 3's link ($KAFKA_VETH_NS in $KAFKA_NETNS) down for ${secs:-20}s"
    finish "$w" "broker 3 cut off"
    ;;
  heal)
    for n in 1 2 3; do
      if running "$(kafka_component "$n")"; then kill -CONT "$(running_pid "$(kafka_component "$n")")"; fi
    done
    $link_up_cmd
    log "kafka-fault: every broker continued, broker 3's link up"
    ;;
  *) usage "unknown command '${cmd}'" ;;
esac
