#!/usr/bin/env bash
# Runs one of Kafka's own command-line tools from the cached jars against the local broker,
# so no Kafka tarball is needed. --bootstrap-server defaults to $KAFKA_BOOTSTRAP (or the
# local stack's port) when not given.
#
# Usage: hack/kafka-cli.sh TOOL [args...]
#   TOOL: a name of hack/kafka/tools.tsv (topics, consumer-groups, console-consumer, ...)
# Example: hack/kafka-cli.sh topics --list
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

tool="${1:-}"
[ $# -gt 0 ] && shift
class=""
[ -z "$tool" ] || class="$(awk -F'\t' -v t="$tool" '$1 == t { print $2 }' "$EC_ROOT/hack/kafka/tools.tsv")"
[ -n "$class" ] || die "unknown Kafka tool '$tool'" \
  "use one of: $(awk -F'\t' '!/^#/ { printf "%s ", $1 }' "$EC_ROOT/hack/kafka/tools.tsv")"
cached kafka || die "Kafka $KAFKA_VERSION is not in the cache" "run 'make provision' (or 'make dev-up')"
need_java

args=("$@")
case " ${args[*]} " in
  *" --bootstrap-server "*) ;;
  *) args=(--bootstrap-server "${KAFKA_BOOTSTRAP:-$(kafka_bootstrap)}" "${args[@]}") ;;
esac
# A small heap and the C1 compiler only: these tools run for seconds.
exec java -Xmx256m -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="file:$EC_ROOT/hack/kafka/log4j2-tools.properties" \
  -cp "$KAFKA_HOME/libs/*" "$class" "${args[@]}"
