#!/usr/bin/env bash
# make kind-test: the README's kind quickstart as a user types it, on a real kind cluster,
# then checks of what a user would look at. Ends with "N passed, N failed".
#
# Uses the Docker engine, kind, kubectl and helm it finds; where one is missing it builds the
# pinned version into the cache (kind, kubectl, helm: from Go modules), and it installs or
# starts a Docker engine only on a CI machine (CI=true) or with --install-engine. What it
# started (the cluster, a dockerd) it stops again; KEEP=1 keeps the cluster for a look.
# Logs of every pod go to .dev/kind-logs/ when a check fails.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$EC_ROOT"

NS=eventconsumer-system
SAMPLES_NS=default
CTX=kind-eventconsumer
GATEWAY=http://localhost:30080
LOGS="$EC_DEV_DIR/kind-logs"
# Traffic sizes: enough to cross partitions and windows, small enough for two cores.
ORDERS=40
BURST=150
PAGE_VIEWS=30
VIDEOS=10
# The chart's Kafka also listens with SASL_SSL (PLAIN) on 9094, for one consumer
# (order-secured) that reaches it with credentials and a CA from Secrets only.
SECURED_HOST="eventconsumer-kafka.$NS.svc"
SECURED_FLAGS="--set kafka.secured.enabled=true --set kafka.secured.secretName=kafka-secured"
# Free disk the run needs under Docker's root when nothing is built yet (measured on a cold
# run: see the README's kind section); a warm run needs far less, but cannot know in advance.
KIND_TEST_MIN_FREE_GB="${KIND_TEST_MIN_FREE_GB:-15}"
passed=0
failed=0
failures=()
started_engine=false
t0="$(now_s)"

pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL %s\n' "$1"; }
# check NAME COMMAND...: one named check, passed when the command succeeds.
check() {
  local name="$1"
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
step() { printf '\n== %s (%ss)\n' "$*" "$(($(now_s) - t0))"; }
k() { kubectl --context "$CTX" "$@"; }

tools() {
  local missing=()
  if [ "${CI:-}" = true ] || [ "${1:-}" = --install-engine ]; then
    docker version >/dev/null 2>&1 || started_engine=true
    hack/docker-engine.sh --install
  else
    hack/docker-engine.sh
  fi
  # kind, kubectl and helm: the user's when on PATH, else the pinned ones (built once).
  command -v kind >/dev/null 2>&1 || missing+=(kind)
  command -v kubectl >/dev/null 2>&1 || missing+=(k8s)
  command -v helm >/dev/null 2>&1 || missing+=(helm)
  if [ ${#missing[@]} -gt 0 ]; then hack/provision.sh "${missing[@]}"; fi
  export PATH="$PATH:$KIND_HOME/bin:$K8S_BIN:$HELM_BIN"
  enough_disk
}

# A full disk fails the image build deep inside cargo ("No space left on device", which
# once cost a whole CI run): check first and say what takes the space.
enough_disk() {
  local root free
  root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)"
  [ -d "$root" ] || root="$(dirname "$root")"
  free="$(df -P -BG "$root" | awk 'NR == 2 { sub("G", "", $4); print $4 }')"
  if [ "${free:-0}" -lt "$KIND_TEST_MIN_FREE_GB" ]; then
    docker system df >&2 || true
    die "only ${free} GB free under $root; kind-test needs $KIND_TEST_MIN_FREE_GB GB (images, node, cluster)" \
      "free space: 'docker image prune' drops unused layers, old Cargo target/ directories are the other usual culprit"
  fi
  log "kind-test: ${free} GB free under $root"
}

consume() { # consume TOPIC [PROPS...]: key<TAB>value of every record, as the examples' consume()
  k -n "$NS" exec eventconsumer-kafka-0 -c kafka -- \
    /opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server localhost:9092 --topic "$1" \
    --from-beginning --timeout-ms 8000 --formatter-property print.key=true "${@:2}" 2>/dev/null
}

# keys_cover TOPIC FILE: every key listed in FILE is a key of TOPIC (waits up to 90 s).
keys_cover() {
  local topic="$1" want="$2" i missing
  for i in $(seq 1 9); do
    missing="$(comm -23 <(sort -u "$want") <(consume "$topic" | cut -f1 | sort -u) | wc -l)"
    [ "$missing" -eq 0 ] && return 0
    sleep 10
  done
  echo "  $topic: $missing of $(sort -u "$want" | wc -l) keys missing" >&2
  return 1
}

order() { # order CUSTOMER: POST one valid order; prints the order id and a newline on 202
  {
    curl -s -m 10 -X POST "$GATEWAY/checkout" -H 'content-type: application/json' \
      -d "{\"customer_id\":\"$1\",\"items\":[{\"product_id\":\"SKU-001\",\"quantity\":2,\"price\":29.99}],\"total\":59.98}"
    echo # the body has no newline of its own
  } | sed -n 's/.*"order_id":"\([^"]*\)".*/\1/p'
}

# secured_broker DIR: a throw-away CA and a broker certificate naming SECURED_HOST (openssl),
# and the broker's Secret (key and chain as one PEM file, its one PLAIN user) in NS.
secured_broker() {
  local d="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=eventconsumer kind-test CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$SECURED_HOST" \
    -keyout "$d/broker.key" -out "$d/broker.csr" 2>/dev/null
  openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=DNS:%s\n' "$SECURED_HOST") -out "$d/broker.crt" 2>/dev/null
  cat "$d/broker.key" "$d/broker.crt" >"$d/keystore.pem"
  openssl rand -hex 16 >"$d/password"
  k -n "$NS" create secret generic kafka-secured --from-file=keystore.pem="$d/keystore.pem" \
    --from-literal=jaas="org.apache.kafka.common.security.plain.PlainLoginModule required user_consumer=\"$(cat "$d/password")\";" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
}

# secured_consumer DIR: the consumer's CA and credentials Secrets, its topics, and
# order-secured (payment, into order.secured) over SASL_SSL; waits until it is Ready.
secured_consumer() {
  local d="$1" topic
  k -n "$SAMPLES_NS" create secret generic kafka-ca --from-file=ca.crt="$d/ca.crt" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "$SAMPLES_NS" create secret generic kafka-user --from-literal=username=consumer \
    --from-literal=password="$(cat "$d/password")" --dry-run=client -o yaml | k apply -f - >/dev/null
  for topic in "order.secured 3" "order.secured.dlq 1"; do
    k -n "$NS" exec eventconsumer-kafka-0 -c kafka -- /opt/kafka/bin/kafka-topics.sh \
      --bootstrap-server localhost:9092 --create --if-not-exists --topic "${topic% *}" \
      --partitions "${topic#* }" >/dev/null
  done
  k -n "$SAMPLES_NS" apply -f - >/dev/null <<EOF
apiVersion: eventconsumer.dev/v1alpha1
kind: EventConsumer
metadata:
  name: order-secured
spec:
  handler: order
  order:
    action: payment
    outputTopic: order.secured
  kafka:
    bootstrapServers: $SECURED_HOST:9094
    topics: [order.placed]
    consumerGroup: secured-payment
    sasl:
      mechanism: PLAIN
      secretRef:
        name: kafka-user
    tls:
      caSecretRef:
        name: kafka-ca
  delivery:
    deadLetterTopic: order.secured.dlq
EOF
  k -n "$SAMPLES_NS" wait --for=condition=Ready ec/order-secured --timeout=180s >/dev/null ||
    { k -n "$SAMPLES_NS" get ec order-secured -o yaml >&2; return 1; }
}

# No secret value in the consumer's Deployment, its status or the operator's log.
secured_password_nowhere() {
  local password
  password="$(cat "$1/password")"
  ! { k -n "$SAMPLES_NS" get deploy order-secured -o yaml
    k -n "$SAMPLES_NS" get ec order-secured -o yaml
    k -n "$NS" logs -l app.kubernetes.io/component=operator --tail=-1; } | grep -qF "$password"
}

all_pods_running() {
  local bad
  bad="$(k get pods -A --no-headers | awk '$4 != "Running" && $4 != "Completed"')"
  [ -z "$bad" ] || { echo "$bad" >&2; return 1; }
}

orders_reach_outputs() {
  local t ok=0
  for t in order.inventory order.payment order.email order.analytics; do
    keys_cover "$t" "$1" || ok=1
  done
  return "$ok"
}

page_views_counted() {
  local i got
  for i in $(seq 1 9); do
    got="$(consume analytics.counts | cut -f2- | python3 -c '
import json, sys
n = {}
for line in sys.stdin:
    try: r = json.loads(line)
    except ValueError: continue
    for p, c in (r.get("page_views") or r.get("counts", {}).get("page_views") or {}).items():
        n[p] = n.get(p, 0) + c
print(" ".join(f"{p}={n[p]}" for p in sorted(n)))')"
    [ "$got" = "$1" ] && return 0
    sleep 10
  done
  echo "  analytics.counts: want '$1', got '$got'" >&2
  return 1
}

poison_in_dlq() {
  local i out
  for i in $(seq 1 9); do
    out="$(consume order.placed.dlq --formatter-property print.headers=true)"
    if grep -q 'o-poison' <<<"$out" && grep -q 'ec-dlt-error-class' <<<"$out" &&
      [ "$(grep -c 'o-poison' <<<"$out")" -ge 4 ]; then return 0; fi
    sleep 10
  done
  echo "  order.placed.dlq: $(grep -c 'o-poison' <<<"$out") poison records with headers" >&2
  return 1
}

ec_columns_show_lag_and_dlq() {
  local i out rows
  for i in $(seq 1 12); do
    out="$(k -n "$SAMPLES_NS" get ec)"
    # Every consumer Ready with a lag measurement; order-payment counts its dead letter.
    rows="$(k -n "$SAMPLES_NS" get ec -o jsonpath='{range .items[*]}{.metadata.name}|{.status.conditions[?(@.type=="Ready")].status}|{.status.lag.measuredAt}|{.status.deadLetters}{"\n"}{end}')"
    if head -n 1 <<<"$out" | grep -q 'LAG *DLQ' &&
      awk -F'|' '$2 != "True" || $3 == "" { bad = 1 } $1 == "order-payment" && $4 + 0 < 1 { bad = 1 } END { exit bad }' <<<"$rows"; then
      echo "$out"
      return 0
    fi
    sleep 10
  done
  echo "$out" >&2
  echo "$rows" >&2
  return 1
}

pods_follow_scale() {
  k -n "$SAMPLES_NS" scale ec order-payment --replicas=3 >/dev/null
  k -n "$SAMPLES_NS" wait deploy -l app.kubernetes.io/instance=order-payment --for=jsonpath='{.status.readyReplicas}'=3 --timeout=120s >/dev/null &&
    k -n "$SAMPLES_NS" scale ec order-payment --replicas=1 >/dev/null &&
    k -n "$SAMPLES_NS" wait deploy -l app.kubernetes.io/instance=order-payment --for=jsonpath='{.status.replicas}'=1 --timeout=120s >/dev/null
}

# traffic FILE N: N orders, one every 0.1 s, their accepted ids into FILE; refusals counted.
traffic() {
  local i id refused=0
  : >"$1"
  for i in $(seq 1 "$2"); do
    id="$(order "c-burst-$i")"
    if [ -n "$id" ]; then echo "$id" >>"$1"; else refused=$((refused + 1)); fi
    sleep 0.1
  done
  echo "$refused" >"$1.refused"
  echo "  $(wc -l <"$1") orders accepted, $refused not accepted" >&2
}

# Two operator pods Running and the chart's Lease held by one of them. Right after a deploy the
# Lease can still name a pod that is gone, or nobody (a leader released it on SIGTERM): a
# candidate takes it within a lease duration (15 s), so this waits up to twice that.
leader_is_an_operator_pod() {
  local lease="${HELM_RELEASE:-eventconsumer}-operator" holder pods deadline=$(($(now_s) + 30))
  while :; do
    holder="$(k -n "$NS" get lease "$lease" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
    pods="$(k -n "$NS" get pods -l app.kubernetes.io/component=operator --no-headers 2>/dev/null || true)"
    if [ "$(grep -c ' Running ' <<<"$pods")" -eq 2 ] && [ -n "$holder" ] && grep -q "^$holder " <<<"$pods"; then
      return 0
    fi
    if [ "$(now_s)" -ge "$deadline" ]; then
      printf '  Lease %s is held by "%s"; operator pods:\n%s\n' "$lease" "$holder" "$pods" >&2
      return 1
    fi
    sleep 2
  done
}

worker_image_runs_demo_read_only() {
  local image uid
  image="eventconsumer/worker:$(make -s --no-print-directory print-image-tag)"
  uid="$(docker run --rm --read-only --entrypoint id "$image" -u)"
  [ "$uid" = 65532 ] || { echo "  $image runs as UID $uid" >&2; return 1; }
  docker run --rm --read-only "$image" demo 2>&1 | tail -n 3 | grep -q 'All expected records arrived'
}

# Every pod of the worker image (the consumers' `run`, the gateway's `gateway`) and the
# operator's: UID 65532, read-only root filesystem, and Ready.
pods_run_as_65532_read_only() {
  local bad
  bad="$(k get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.containers[0].image} {.spec.securityContext.runAsUser}{.spec.containers[0].securityContext.runAsUser} {.spec.containers[0].securityContext.readOnlyRootFilesystem}{"\n"}{end}' |
    awk '$2 ~ /^eventconsumer\// && ($3 !~ /^(65532)+$/ || $4 != "true")')"
  [ -z "$bad" ] || { echo "$bad" >&2; return 1; }
}

# /healthz of a pod through the API server's proxy: reachable from the host, no shell needed.
answers_healthz() {
  local ns="$1" selector="$2" pod
  pod="$(k -n "$ns" get pods -l "$selector" -o jsonpath='{.items[0].metadata.name}')"
  [ "$(k get --raw "/api/v1/namespaces/$ns/pods/$pod:8080/proxy/healthz" 2>&1)" != "" ]
}

nothing_left_of_release() {
  local i left
  # Pods and the claim go with their owners in the background: give them time to terminate.
  for i in $(seq 1 12); do
    left="$(k get all,cm,secret,sa,role,rolebinding,pvc,networkpolicy,pdb -A -l app.kubernetes.io/instance=eventconsumer --no-headers 2>/dev/null)
$(k get clusterrole,clusterrolebinding -l app.kubernetes.io/instance=eventconsumer --no-headers 2>/dev/null)"
    [ -n "${left//[[:space:]]/}" ] || return 0
    sleep 10
  done
  echo "$left" >&2
  return 1
}

save_logs() {
  local p
  mkdir -p "$LOGS"
  k get all,ec,events -A -o wide >"$LOGS/objects.txt" 2>&1 || true
  k get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    while read -r ns p; do k -n "$ns" logs "$p" --all-containers --prefix >"$LOGS/$ns.$p.log" 2>&1 || true; done ||
    true # no cluster yet (a failure before kind-up): nothing to collect, and the totals must still print
  kind export logs --name eventconsumer "$LOGS/kind" >/dev/null 2>&1 || true
  echo "logs of every pod: $LOGS" >&2
}

finish() {
  local rc=$?
  [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ] && save_logs
  if [ "${KEEP:-}" != 1 ]; then make -s kind-down >/dev/null 2>&1 || true; fi
  if $started_engine; then hack/docker-engine.sh --stop; fi
  [ "$rc" -eq 0 ] || fail "kind-test stopped early (exit $rc)"
  printf '\nkind-test took %ss\n' "$(($(now_s) - t0))"
  [ ${#failures[@]} -eq 0 ] || printf 'failed: %s\n' "${failures[@]}"
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

main() {
  trap finish EXIT
  step "engine and tools"
  tools "$@"
  step "make kind-up"
  make kind-up
  step "make images"
  make images
  check "the worker image runs demo as UID 65532 on a read-only root filesystem" worker_image_runs_demo_read_only
  step "make kind-load"
  make kind-load
  step "namespaces enforce the restricted Pod Security Standard"
  k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label --overwrite namespace "$NS" "$SAMPLES_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  step "the chart's Kafka with a SASL_SSL listener"
  local pki
  pki="$(mktemp -d)"
  secured_broker "$pki"
  step "make deploy"
  make deploy HELM_EXTRA_FLAGS="$SECURED_FLAGS"
  step "make samples"
  make samples
  check "a consumer over SASL_SSL (PLAIN, the CA and password from Secrets) is Ready" secured_consumer "$pki"
  check "every pod Running under the restricted profile" all_pods_running
  check "the operator runs two replicas and one of them holds the Lease" leader_is_an_operator_pod
  check "worker, gateway and operator pods run as UID 65532 on read-only root filesystems" pods_run_as_65532_read_only
  check "the operator image answers /healthz" answers_healthz "$NS" app.kubernetes.io/component=operator
  check "the gateway answers /healthz" answers_healthz "$NS" app.kubernetes.io/component=gateway
  check "a worker (run) answers /healthz" answers_healthz "$SAMPLES_NS" app.kubernetes.io/instance=order-payment

  step "traffic through the gateway"
  local dir
  dir="$(mktemp -d)"
  for i in $(seq 1 "$ORDERS"); do order "c-$i"; done >"$dir/orders"
  check "$ORDERS orders accepted with 202" test "$(wc -l <"$dir/orders")" -eq "$ORDERS"
  check "a wrong total is refused with 400" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$GATEWAY/checkout" \
    -H 'content-type: application/json' -d '{"customer_id":"c","items":[{"product_id":"S","quantity":1,"price":1}],"total":9}')" = 400
  for i in $(seq 1 "$PAGE_VIEWS"); do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST "$GATEWAY/events" -H 'content-type: application/json' \
      -d "{\"type\":\"page_view\",\"user_id\":\"u-$i\",\"session_id\":\"s-$((i % 4))\",\"payload\":{\"path\":\"/p$((i % 3))\"}}"
  done | sort | uniq -c >"$dir/events"
  check "$PAGE_VIEWS page views accepted with 204" grep -q "^ *$PAGE_VIEWS 204$" "$dir/events"
  for i in $(seq 1 "$VIDEOS"); do
    echo "v-$i|{\"video_id\":\"v-$i\",\"s3_key\":\"uploads/v-$i.mp4\",\"user_id\":\"u-1\",\"size_bytes\":1048576}"
  done | KUBE_CONTEXT="$CTX" examples/produce.sh video.uploaded
  seq 1 "$VIDEOS" | sed 's/^/v-/' >"$dir/videos"
  echo 'c-bad|{"order_id":"o-poison","customer_id":"c-bad","items":[],"total":0,"created_at":"2026-01-01T00:00:00Z"}' |
    KUBE_CONTEXT="$CTX" examples/produce.sh order.placed
  check "every order reaches all four outputs" orders_reach_outputs "$dir/orders"
  check "every order reaches the SASL_SSL consumer's output" keys_cover order.secured "$dir/orders"
  check "the password is in no Deployment, status or operator log" secured_password_nowhere "$pki"
  check "page views are counted right" page_views_counted "/p0=10 /p1=10 /p2=10"
  check "every video reaches video.ready" keys_cover video.ready "$dir/videos"
  check "the poison order sits in order.placed.dlq with its headers, once per order consumer" poison_in_dlq
  check "kubectl get ec: every consumer Ready, with its lag and dead letters" ec_columns_show_lag_and_dlq

  step "scale, a killed worker, a rollout"
  check "kubectl scale ec: pods follow to 3 and back to 1" pods_follow_scale
  traffic "$dir/burst" "$BURST" &
  sleep 5
  k -n "$SAMPLES_NS" delete pod --force --grace-period=0 \
    "$(k -n "$SAMPLES_NS" get pods -l app.kubernetes.io/instance=order-inventory -o name | head -n 1 | cut -d/ -f2)" >/dev/null 2>&1
  wait
  check "a worker killed mid-stream loses nothing" orders_reach_outputs "$dir/burst"
  traffic "$dir/rollout" "$BURST" &
  sleep 3
  make deploy HELM_EXTRA_FLAGS="$SECURED_FLAGS --set gateway.logLevel=debug --set operator.logLevel=debug" >/dev/null
  wait
  check "a helm upgrade rollout with traffic flowing loses no accepted order" orders_reach_outputs "$dir/rollout"
  check "the gateway refuses no request during its rollout" test "$(cat "$dir/rollout.refused")" -eq 0

  step "helm uninstall"
  k -n "$SAMPLES_NS" delete ec --all --wait=true >/dev/null
  helm --kube-context "$CTX" uninstall eventconsumer -n "$NS" --wait >/dev/null
  check "helm uninstall leaves no object of the release behind" nothing_left_of_release
  rm -rf "$dir" "$pki"
}

main "$@"
