#!/usr/bin/env bash
# Starts the local stack on loopback: Apache Kafka (KRaft, one node) and a Kubernetes
# control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with kwok
# playing one Ready node. Provisions what the cache lacks first (hack/provision.sh).
#
# --brokers 3: Kafka as a three-node KRaft cluster instead (every node controller and
# broker, replication factor 3, min.insync.replicas 2), broker 3 in its own network
# namespace so that hack/kafka-fault.sh can cut it off (needs root; see hack/lib.sh). The
# count sticks to the checkout until `make dev-down` of the whole stack.
#
# Idempotent: a component that already runs (per .dev/pids) is reused, not restarted.
# Writes .dev/env (source it), .dev/kubeconfig, logs under .dev/logs/.
#
# Usage: hack/dev-up.sh [--brokers 1|3] [kafka|k8s ...]   (default: both; k8s = control plane + kwok)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=hack/kafka-security.sh
. "$(dirname "$0")/kafka-security.sh"

# Timeouts of the readiness polls, generous for a cold JVM or apiserver on 2 busy cores.
READY_TIMEOUT_S=180

STARTED=()
REUSED=()

write_env() {
  mkdir -p "$EC_DEV_DIR"
  cat >"$EC_DEV_DIR/env" <<EOF
# Written by hack/dev-up.sh: source it (. .dev/env) to use the local stack.
export KUBECONFIG="$EC_DEV_DIR/kubeconfig"
export KAFKA_BOOTSTRAP="$(kafka_bootstrap)"
export EC_DEV_DIR="$EC_DEV_DIR"
# Our kubectl ($K8S_VERSION), helm and kwok first on PATH, once.
$(kafka_security_env)
case ":\$PATH:" in
  *":$K8S_BIN:"*) ;;
  *) export PATH="$K8S_BIN:$HELM_BIN:$KWOK_BIN:$ETCD_BIN:\$PATH" ;;
esac
EOF
}

# ---------------------------------------------------------------- Kafka

KAFKA_CONF_DIR="$EC_DEV_DIR/kafka"
KAFKA_DATA="$EC_DATA_DIR/kafka"
# Kafka's own tools start a JVM each; a small heap and the C1 compiler only make a
# one-shot admin command start faster.
KAFKA_TOOL_OPTS=(-Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

kafka_tool() {
  java "${KAFKA_TOOL_OPTS[@]}" -Dlog4j2.configurationFile="file:$EC_ROOT/hack/kafka/log4j2-tools.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_ready() {
  port_open "$KAFKA_PORT" &&
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list
}

# kafka_jvm NAME CONFIG [PREFIX...]: start one broker JVM in the background, tracked as
# NAME. PREFIX runs it (e.g. inside a network namespace).
kafka_jvm() {
  local name="$1" conf="$2"
  shift 2
  # Heap 128..512 MiB: the issue caps it at 512 MiB, and a test broker needs far less.
  # G1 with short pauses as in Kafka's own start script.
  start_bg "$name" "$conf" "$@" \
    java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$EC_LOG_DIR" \
    -Dlog4j2.configurationFile="file:$EC_ROOT/hack/kafka/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$conf"
  STARTED+=("$name")
}

start_kafka() {
  if running kafka; then
    REUSED+=(kafka)
    return 0
  fi
  need_java
  require_port_free kafka "$KAFKA_PORT" EC_KAFKA_PORT
  require_port_free "kafka (controller)" "$KAFKA_CONTROLLER_PORT" EC_KAFKA_CONTROLLER_PORT
  require_kafka_secured_ports_free
  mkdir -p "$KAFKA_CONF_DIR" "$KAFKA_DATA"
  local security_sed
  mapfile -t security_sed < <(kafka_security_sed)
  (
    umask 077 # the PLAIN users' passwords are in it
    sed "${security_sed[@]}" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$EC_ROOT/hack/kafka/server.properties" >"$KAFKA_CONF_DIR/server.properties"
  )
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    local cluster_id scram
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)"
    mapfile -t scram < <(kafka_scram_args)
    # The SCRAM users go into the first metadata records, so no admin call is needed later.
    kafka_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" "${scram[@]}" \
      -c "$KAFKA_CONF_DIR/server.properties" >>"$EC_LOG_DIR/kafka.log" 2>&1 ||
      die "formatting Kafka's storage failed (log: .dev/logs/kafka.log)" "make dev-down ARGS=--purge, then make dev-up"
    kafka_scram_fingerprint >"$KAFKA_DATA/$KAFKA_SCRAM_MARKER_NAME"
  fi
  kafka_jvm kafka "$KAFKA_CONF_DIR/server.properties"
}

# ---------------------------------------------------------------- the three-broker cluster

KAFKA_CLUSTER_DATA="$EC_DATA_DIR/kafka-cluster"

# kafka_node_ports N: broker N's client and controller ports.
kafka_node_ports() {
  case "$1" in
    1) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
    2) echo "$KAFKA2_PORT $KAFKA2_CONTROLLER_PORT" ;;
    3) echo "$KAFKA3_PORT $KAFKA3_CONTROLLER_PORT" ;;
  esac
}
kafka_node_host() { if [ "$1" = 3 ]; then echo "$KAFKA_NET_NS"; else echo "$KAFKA_NET_HOST"; fi; }

# kafka_net_up: the network namespace of broker 3 and the veth pair joining it to the host
# (see hack/lib.sh). Idempotent.
kafka_net_up() {
  command -v ip >/dev/null 2>&1 || die "ip is not on PATH (the cluster puts broker 3 in a network namespace)" "apt-get install -y iproute2"
  local fix="run dev-up as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN); one broker needs none: make dev-up"
  if ! ip netns list | grep -qw "$KAFKA_NETNS"; then
    ip netns add "$KAFKA_NETNS" 2>>"$EC_LOG_DIR/kafka-net.log" ||
      die "cannot create the network namespace $KAFKA_NETNS (log: .dev/logs/kafka-net.log)" "$fix"
  fi
  if ! ip link show "$KAFKA_VETH_HOST" >/dev/null 2>&1; then
    ip link add "$KAFKA_VETH_HOST" type veth peer name "$KAFKA_VETH_NS" netns "$KAFKA_NETNS" 2>>"$EC_LOG_DIR/kafka-net.log" ||
      die "cannot create the veth pair $KAFKA_VETH_HOST/$KAFKA_VETH_NS (log: .dev/logs/kafka-net.log)" "$fix"
  fi
  ip addr replace "$KAFKA_NET_HOST/30" dev "$KAFKA_VETH_HOST"
  ip link set "$KAFKA_VETH_HOST" up
  ip -n "$KAFKA_NETNS" addr replace "$KAFKA_NET_NS/30" dev "$KAFKA_VETH_NS"
  ip -n "$KAFKA_NETNS" link set lo up
  ip -n "$KAFKA_NETNS" link set "$KAFKA_VETH_NS" up
}

# kafka_node_conf N VOTERS: write broker N's configuration (server.properties with the
# keys of cluster.properties replaced) and print its path.
kafka_node_conf() {
  local n="$1" voters="$2" port cport host conf
  read -r port cport < <(kafka_node_ports "$n")
  host="$(kafka_node_host "$n")"
  conf="$KAFKA_CONF_DIR/cluster-$n.properties"
  mkdir -p "$KAFKA_CLUSTER_DATA/$n"
  awk -F= 'NR == FNR { if ($0 !~ /^#/ && NF > 1) over[$1] = 1; next }
    !($1 in over) { print }' "$EC_ROOT/hack/kafka/cluster.properties" "$EC_ROOT/hack/kafka/server.properties" |
    cat - "$EC_ROOT/hack/kafka/cluster.properties" |
    sed -e "s|@NODE_ID@|$n|g" -e "s|@QUORUM_VOTERS@|$voters|g" -e "s|@HOST@|$host|g" \
      -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$KAFKA_CLUSTER_DATA/$n|g" >"$conf"
  echo "$conf"
}

start_kafka_cluster() {
  local n port cport voters="" conf name cluster_id
  for n in 1 2 3; do
    read -r port cport < <(kafka_node_ports "$n")
    voters="$voters${voters:+,}$n@$(kafka_node_host "$n"):$cport"
  done
  need_java
  kafka_net_up
  mkdir -p "$KAFKA_CONF_DIR" "$KAFKA_CLUSTER_DATA"
  [ -f "$KAFKA_CLUSTER_DATA/cluster-id" ] || kafka_tool kafka.tools.StorageTool random-uuid >"$KAFKA_CLUSTER_DATA/cluster-id"
  read -r cluster_id <"$KAFKA_CLUSTER_DATA/cluster-id"
  for n in 1 2 3; do
    name="$(kafka_component "$n")"
    if running "$name"; then
      REUSED+=("$name")
      continue
    fi
    conf="$(kafka_node_conf "$n" "$voters")"
    if [ ! -f "$KAFKA_CLUSTER_DATA/$n/meta.properties" ]; then
      kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" >>"$EC_LOG_DIR/$name.log" 2>&1 ||
        die "formatting broker $n's storage failed (log: .dev/logs/$name.log)" "make dev-down ARGS=--purge, then make dev-up ARGS='--brokers 3'"
    fi
    if [ "$n" = 3 ]; then
      kafka_jvm "$name" "$conf" ip netns exec "$KAFKA_NETNS"
    else
      kafka_jvm "$name" "$conf"
    fi
  done
}

# kafka_cluster_ready: every broker accepts connections and the cluster lists all three as
# registered and unfenced.
kafka_cluster_ready() {
  local n addr
  for n in 1 2 3; do
    addr="$(kafka_broker_addr "$n")"
    port_open "${addr##*:}" "${addr%:*}" || return 1
  done
  [ "$(kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(kafka_bootstrap)" |
    grep -c 'isFenced: false')" = 3 ]
}

# ---------------------------------------------------------------- PKI and kubeconfigs

APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
# Cluster-internal ranges. Nothing ever sends traffic to them: the Service range only
# feeds the allocator, and kwok's fake pod IPs are loopback addresses on purpose.
SERVICE_CIDR="10.96.0.0/16"
POD_CIDR="127.64.0.0/16"

gen_pki() {
  [ -f "$EC_PKI_DIR/.complete" ] && return 0
  log "pki: generating a local CA, serving cert, service-account key and tokens in .dev/pki"
  rm -rf "$EC_PKI_DIR"
  mkdir -p "$EC_PKI_DIR"
  (
    cd "$EC_PKI_DIR"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=eventconsumer-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    # Service-account token signing key (apiserver signs, controller-manager's token
    # controller signs legacy tokens with the same key).
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static bearer tokens: the admin user (system:masters) and one identity per
    # component, so that RBAC's default bindings apply to controller-manager and scheduler.
    {
      echo "$(openssl rand -hex 24),admin,admin-uid,\"system:masters\""
      echo "$(openssl rand -hex 24),system:kube-controller-manager,kcm-uid"
      echo "$(openssl rand -hex 24),system:kube-scheduler,scheduler-uid"
      echo "$(openssl rand -hex 24),kwok,kwok-uid,\"system:masters\""
    } >tokens.csv
  )
  touch "$EC_PKI_DIR/.complete"
}

token_of() { awk -F, -v u="$1" '$2 == u { print $1 }' "$EC_PKI_DIR/tokens.csv"; }

# write_kubeconfig FILE USER: a kubeconfig for USER's static token, with the CA embedded
# so that the file still works when copied elsewhere.
write_kubeconfig() {
  local file="$1" user="$2" ca
  ca="$(base64 -w0 <"$EC_PKI_DIR/ca.crt")"
  : >"$file.tmp"
  chmod 600 "$file.tmp"
  cat >>"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: eventconsumer-local
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $(token_of "$user")
contexts:
- name: eventconsumer-local
  context:
    cluster: eventconsumer-local
    user: $user
    namespace: default
current-context: eventconsumer-local
EOF
  mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------- control plane

etcd_ready() { [ "$(curl -sf "http://127.0.0.1:$ETCD_PORT/health")" = '{"health":"true","reason":""}' ]; }

apiserver_ready() {
  [ "$(curl -sf --cacert "$EC_PKI_DIR/ca.crt" -H "Authorization: Bearer $(token_of admin)" \
    "$APISERVER_URL/readyz")" = ok ]
}

healthz_ok() { [ "$(curl -sfk "https://127.0.0.1:$1/healthz")" = ok ]; }

kwok_ready() { [ "$(curl -sf "http://127.0.0.1:$KWOK_PORT/healthz")" = ok ]; }

start_etcd() {
  if running etcd; then
    REUSED+=(etcd)
    return 0
  fi
  require_port_free etcd "$ETCD_PORT" EC_ETCD_PORT
  require_port_free "etcd (peer)" "$ETCD_PEER_PORT" EC_ETCD_PEER_PORT
  mkdir -p "$EC_DATA_DIR/etcd"
  # --unsafe-no-fsync: a throwaway dev store; fsync on every write only slows tests.
  # --quota-backend-bytes 2 GiB (the default): plenty, and bounded.
  start_bg etcd "$EC_DATA_DIR/etcd" "$ETCD_BIN/etcd" --name eventconsumer \
    --data-dir "$EC_DATA_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "eventconsumer=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  STARTED+=(etcd)
}

start_apiserver() {
  if running kube-apiserver; then
    REUSED+=(kube-apiserver)
    return 0
  fi
  require_port_free kube-apiserver "$APISERVER_PORT" EC_APISERVER_PORT
  local p="$EC_PKI_DIR"
  # Admission: the default plugin set, which includes ServiceAccount (we run the
  # controller-manager that backs it). --profiling off: nothing to profile here.
  # --endpoint-reconciler-type=none: the reconciler refuses a loopback advertise address,
  # and nothing here reaches the API server through the `kubernetes` Service anyway.
  start_bg kube-apiserver "--secure-port=$APISERVER_PORT" "$K8S_BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --token-auth-file="$p/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --endpoint-reconciler-type=none --allow-privileged=true --profiling=false
  STARTED+=(kube-apiserver)
}

start_kcm() {
  if running kube-controller-manager; then
    REUSED+=(kube-controller-manager)
    return 0
  fi
  require_port_free kube-controller-manager "$KCM_PORT" EC_KCM_PORT
  local p="$EC_PKI_DIR" kc="$EC_DEV_DIR/kube-controller-manager.kubeconfig"
  write_kubeconfig "$kc" system:kube-controller-manager
  # --controllers=*: every default controller, among them the garbage collector,
  # Deployment/ReplicaSet, ServiceAccount and its token controller.
  # --use-service-account-credentials: each controller acts as its own ServiceAccount.
  # --leader-elect=false: one instance only; skips the Lease round-trips.
  start_bg kube-controller-manager "--secure-port=$KCM_PORT" "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --controllers='*' --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --leader-elect=false --profiling=false
  STARTED+=(kube-controller-manager)
}

start_scheduler() {
  if running kube-scheduler; then
    REUSED+=(kube-scheduler)
    return 0
  fi
  require_port_free kube-scheduler "$SCHEDULER_PORT" EC_SCHEDULER_PORT
  local kc="$EC_DEV_DIR/kube-scheduler.kubeconfig"
  write_kubeconfig "$kc" system:kube-scheduler
  start_bg kube-scheduler "--secure-port=$SCHEDULER_PORT" "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false
  STARTED+=(kube-scheduler)
}

start_kwok() {
  if running kwok; then
    REUSED+=(kwok)
    return 0
  fi
  require_port_free kwok "$KWOK_PORT" EC_KWOK_PORT
  local kc="$EC_DEV_DIR/kwok.kubeconfig" s="$EC_ROOT/hack/kwok/stages" st
  write_kubeconfig "$kc" kwok
  local configs=()
  for st in node-initialize node-heartbeat pod-ready pod-complete pod-delete; do
    configs+=(--config="$s/$st.yaml")
  done
  start_bg kwok "--server-address=127.0.0.1:$KWOK_PORT" "$KWOK_BIN/kwok" \
    --kubeconfig="$kc" --manage-all-nodes=true "${configs[@]}" \
    --server-address="127.0.0.1:$KWOK_PORT" --node-ip=127.0.0.1 --cidr="$POD_CIDR"
  STARTED+=(kwok)
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig="$EC_DEV_DIR/kubeconfig" "$@"; }

node_ready() {
  [ "$(kubectl_admin get node kwok-node-0 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

up_k8s() {
  gen_pki
  write_kubeconfig "$EC_DEV_DIR/kubeconfig" admin
  start_etcd
  wait_until etcd "$READY_TIMEOUT_S" etcd_ready
  start_apiserver
  wait_until kube-apiserver "$READY_TIMEOUT_S" apiserver_ready
  start_kcm
  start_scheduler
  start_kwok
  wait_until kube-controller-manager "$READY_TIMEOUT_S" healthz_ok "$KCM_PORT"
  wait_until kube-scheduler "$READY_TIMEOUT_S" healthz_ok "$SCHEDULER_PORT"
  wait_until kwok "$READY_TIMEOUT_S" kwok_ready
  kubectl_admin apply -f "$EC_ROOT/hack/kwok/node.yaml" >/dev/null
  wait_until kwok "$READY_TIMEOUT_S" node_ready
  # Pods cannot be created in a namespace before its default ServiceAccount exists.
  wait_until kube-controller-manager "$READY_TIMEOUT_S" kubectl_admin -n default get serviceaccount default
}

# preflight: check every port of every component that will be started, before starting
# any, so that a taken port stops dev-up with nothing half-started.
preflight() {
  local want_kafka="$1" want_k8s="$2"
  if [ "$want_kafka" = 1 ] && ! running kafka; then
    require_port_free kafka "$KAFKA_PORT" EC_KAFKA_PORT
    require_port_free "kafka (controller)" "$KAFKA_CONTROLLER_PORT" EC_KAFKA_CONTROLLER_PORT
    require_kafka_secured_ports_free
  fi
  if [ "$want_kafka" = 1 ] && [ "$(kafka_brokers)" = 3 ]; then
    if ! running kafka-2; then
      require_port_free kafka-2 "$KAFKA2_PORT" EC_KAFKA2_PORT
      require_port_free "kafka-2 (controller)" "$KAFKA2_CONTROLLER_PORT" EC_KAFKA2_CONTROLLER_PORT
    fi
    # Broker 3 listens inside its own network namespace: no host port to check.
  fi
  [ "$want_k8s" = 1 ] || return 0
  if ! running etcd; then
    require_port_free etcd "$ETCD_PORT" EC_ETCD_PORT
    require_port_free "etcd (peer)" "$ETCD_PEER_PORT" EC_ETCD_PEER_PORT
  fi
  running kube-apiserver || require_port_free kube-apiserver "$APISERVER_PORT" EC_APISERVER_PORT
  running kube-controller-manager || require_port_free kube-controller-manager "$KCM_PORT" EC_KCM_PORT
  running kube-scheduler || require_port_free kube-scheduler "$SCHEDULER_PORT" EC_SCHEDULER_PORT
  running kwok || require_port_free kwok "$KWOK_PORT" EC_KWOK_PORT
}

# set_brokers N: make N (1 or 3) the broker count of this checkout's Kafka, unless brokers of
# another count run.
set_brokers() {
  local want="$1" have b
  have="$(kafka_brokers)"
  case "$want" in
    1 | 3) ;;
    *) die "--brokers must be 1 or 3, not '$want'" "use: hack/dev-up.sh --brokers 3" ;;
  esac
  if [ "$want" != "$have" ]; then
    for b in kafka kafka-2 kafka-3; do
      running "$b" && die "Kafka runs here with $have broker(s), not $want" \
        "stop it first: hack/dev-down.sh kafka (then dev-up again)"
    done
  fi
  mkdir -p "$(dirname "$EC_KAFKA_BROKERS_FILE")"
  echo "$want" >"$EC_KAFKA_BROKERS_FILE"
}

main() {
  local groups=() g start want_kafka=0 want_k8s=0 brokers=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers) brokers="${2:-}" && shift ;;
      --brokers=*) brokers="${1#--brokers=}" ;;
      *) groups+=("$1") ;;
    esac
    shift
  done
  [ ${#groups[@]} -gt 0 ] || groups=(kafka k8s)
  for g in "${groups[@]}"; do
    case "$g" in
      kafka) want_kafka=1 ;;
      k8s) want_k8s=1 ;;
      *) die "unknown component group '$g'" "use: hack/dev-up.sh [--brokers 1|3] [kafka] [k8s]" ;;
    esac
  done
  # Without --brokers: the count this checkout's Kafka last ran with (see kafka_brokers).
  [ $want_kafka = 0 ] || set_brokers "${brokers:-$(kafka_brokers)}"
  start="$(now_s)"
  preflight "$want_kafka" "$want_k8s"
  command -v curl >/dev/null 2>&1 || die "curl is not on PATH (readiness checks use it)" "apt-get install -y curl"
  command -v openssl >/dev/null 2>&1 || die "openssl is not on PATH (it makes the local CA)" "apt-get install -y openssl"
  local comps=()
  [ $want_kafka = 0 ] || comps+=(kafka)
  [ $want_k8s = 0 ] || comps+=(etcd k8s kwok helm)
  # Cold: something had to be built or fetched first; warm: the cache had everything.
  local kind=warm c prov_start
  for c in "${comps[@]}"; do
    cached "$c" || kind=cold
  done
  prov_start="$(now_s)"
  "$EC_ROOT/hack/provision.sh" "${comps[@]}"
  [ "$kind" = warm ] || kind="cold: provisioning took $(($(now_s) - prov_start))s"
  mkdir -p "$EC_LOG_DIR" "$EC_PID_DIR" "$EC_DATA_DIR"
  gen_kafka_pki
  write_env
  # Kafka's JVM starts in the background while the control plane comes up.
  if [ $want_kafka = 1 ] && [ "$(kafka_brokers)" = 3 ]; then
    start_kafka_cluster
  elif [ $want_kafka = 1 ]; then
    start_kafka
  fi
  [ $want_k8s = 0 ] || up_k8s
  # The secured listeners (and their SCRAM users) are the single broker's; the three-broker
  # cluster speaks PLAINTEXT only.
  if [ $want_kafka = 1 ] && [ "$(kafka_brokers)" = 3 ]; then
    wait_until kafka "$READY_TIMEOUT_S" kafka_cluster_ready
  elif [ $want_kafka = 1 ]; then
    wait_until kafka "$READY_TIMEOUT_S" kafka_ready
    ensure_scram_users "$KAFKA_DATA"
  fi
  log "dev-up: ready in $(($(now_s) - start))s ($kind; started: ${STARTED[*]:-none}; reused: ${REUSED[*]:-none})"
  echo "Local stack is up. Use it with:  . .dev/env"
}

main "$@"
