#!/usr/bin/env bash
# Produces records to a topic of the chart's Kafka: one record per stdin line, written as
# KEY|JSON (the key decides the partition, as in the seed). For what the gateway does not
# publish: video uploads, and hand-made bad events to see the dead-letter topic at work.
#
#   echo 'v-1|{"video_id":"v-1","s3_key":"uploads/v-1.mp4","user_id":"u-1","size_bytes":52428800}' \
#     | examples/produce.sh video.uploaded
#
# Environment: KAFKA_NAMESPACE, KAFKA_POD, KUBE_CONTEXT as for examples/topics.sh.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 TOPIC   (records on stdin as KEY|JSON lines)" >&2
  exit 2
fi
topic="$1"
ns="${KAFKA_NAMESPACE:-eventconsumer-system}"
pod="${KAFKA_POD:-eventconsumer-kafka-0}"
kubectl=(kubectl)
[[ -n "${KUBE_CONTEXT:-}" ]] && kubectl+=(--context "$KUBE_CONTEXT")

# acks=all and idempotence, like the gateway: a record is written once, on every replica.
# (--command-property/--reader-property are the Kafka 4.x names of the older
# --producer-property/--property.)
"${kubectl[@]}" -n "$ns" exec -i "$pod" -c kafka -- \
  /opt/kafka/bin/kafka-console-producer.sh --bootstrap-server localhost:9092 --topic "$topic" \
  --command-property acks=all --command-property enable.idempotence=true \
  --reader-property parse.key=true --reader-property 'key.separator=|'
