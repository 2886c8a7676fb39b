#!/usr/bin/env bash
# Creates the Kafka topics the examples use. The brokers run with automatic topic creation
# off, so a typo in a topic list fails loudly instead of creating a stray topic, and every
# topic here gets a deliberate partition count.
#
# Usage:
#   examples/topics.sh            create them in the chart's Kafka pod (kubectl exec)
#   examples/topics.sh --print    print "topic partitions" lines, one per topic
#
# Environment:
#   KAFKA_NAMESPACE, KAFKA_POD   where the chart's Kafka runs
#                                (default eventconsumer-system, eventconsumer-kafka-0)
#   KUBE_CONTEXT                 kubeconfig context (default: the current one)
#   KAFKA_TOPICS_CMD             instead of kubectl exec, run this kafka-topics command on
#                                this machine, e.g. /opt/kafka/bin/kafka-topics.sh (may
#                                hold arguments: it is run through bash)
#   KAFKA_BOOTSTRAP              brokers for KAFKA_TOPICS_CMD (default 127.0.0.1:9092)
#   REPLICATION_FACTOR           default 1: the chart's Kafka has one broker
#
# Idempotent: existing topics are left as they are (--if-not-exists).
set -euo pipefail

# Partition counts. Sources and outputs get 3: up to three workers of one consumer group
# share a topic, as in the seed. Dead-letter topics get 1: they are low-volume, read by
# people, and one partition keeps them in the order failures happened. analytics.counts
# gets 1 so window results stay in time order for a dashboard reading them.
TOPICS=(
  "order.placed 3"
  "order.inventory 3"
  "order.payment 3"
  "order.email 3"
  "order.analytics 3"
  "order.placed.dlq 1"
  "user.events 3"
  "user.events.dlq 1"
  "analytics.counts 1"
  "video.uploaded 3"
  "video.uploaded.dlq 1"
  "video.transcoded 3"
  "video.transcoded.dlq 1"
  "video.ready 3"
)

if [[ "${1:-}" == "--print" ]]; then
  printf '%s\n' "${TOPICS[@]}"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "usage: $0 [--print]" >&2
  exit 2
fi

rf="${REPLICATION_FACTOR:-1}"

# One kafka-topics invocation per topic: the tool creates one topic per call. The tool is
# printed as given, so KAFKA_TOPICS_CMD may be a command with arguments (a java -cp line).
commands() {
  local bootstrap="$1" tool="$2" t
  for t in "${TOPICS[@]}"; do
    read -r name partitions <<<"$t"
    printf '%s --bootstrap-server %q --create --if-not-exists --topic %q --partitions %q --replication-factor %q\n' \
      "$tool" "$bootstrap" "$name" "$partitions" "$rf"
  done
}

if [[ -n "${KAFKA_TOPICS_CMD:-}" ]]; then
  bootstrap="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
  echo "creating ${#TOPICS[@]} topics on $bootstrap with $KAFKA_TOPICS_CMD"
  commands "$bootstrap" "$KAFKA_TOPICS_CMD" | bash -euo pipefail
else
  ns="${KAFKA_NAMESPACE:-eventconsumer-system}"
  pod="${KAFKA_POD:-eventconsumer-kafka-0}"
  kubectl=(kubectl)
  [[ -n "${KUBE_CONTEXT:-}" ]] && kubectl+=(--context "$KUBE_CONTEXT")
  # Kafka may still be starting right after `helm install`; wait for the pod first.
  # 300 s: JVM start plus storage format on a slow laptop.
  "${kubectl[@]}" -n "$ns" wait --for=condition=Ready "pod/$pod" --timeout=300s >/dev/null
  echo "creating ${#TOPICS[@]} topics in $ns/$pod"
  # One exec running all commands: a single round-trip instead of one per topic.
  commands localhost:9092 /opt/kafka/bin/kafka-topics.sh |
    "${kubectl[@]}" -n "$ns" exec -i "$pod" -c kafka -- bash -euo pipefail
fi
echo "topics ready:"
printf '  %s\n' "${TOPICS[@]%% *}"
