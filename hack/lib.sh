# shellcheck shell=bash disable=SC2034 # (its variables are used by the scripts that source it)
# Shared functions of the hack/ scripts: where things live, logging, port checks and
# tracking of the processes the local stack starts. Source it; it does nothing by itself.

EC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/versions.env
. "$EC_ROOT/hack/versions.env"

# The cache lives in $HOME by default: CI runs in a fresh clone on the same machine, so a
# cache inside the repository would be cold on every run.
EC_CACHE_DIR="${EC_CACHE_DIR:-$HOME/.cache/eventconsumer}"
EC_DEV_DIR="$EC_ROOT/.dev"
EC_LOG_DIR="$EC_DEV_DIR/logs"
EC_PID_DIR="$EC_DEV_DIR/pids"
EC_DATA_DIR="$EC_DEV_DIR/data"
EC_PKI_DIR="$EC_DEV_DIR/pki"

K8S_BIN="$EC_CACHE_DIR/k8s-$K8S_VERSION/bin"
ETCD_BIN="$EC_CACHE_DIR/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$EC_CACHE_DIR/kwok-$KWOK_VERSION/bin"
HELM_BIN="$EC_CACHE_DIR/helm-$HELM_VERSION/bin"
KAFKA_HOME="$EC_CACHE_DIR/kafka-$KAFKA_VERSION"
KIND_HOME="$EC_CACHE_DIR/kind-$KIND_VERSION"
K8S_NODE_BIN="$EC_CACHE_DIR/k8s-node-$K8S_VERSION/bin"

# cached COMPONENT: true when the cache holds the pinned version of COMPONENT complete.
cached() {
  local v
  case "$1" in
    k8s) v="$K8S_VERSION" ;;
    etcd) v="$ETCD_VERSION" ;;
    kwok) v="$KWOK_VERSION" ;;
    helm) v="$HELM_VERSION" ;;
    kafka) v="$KAFKA_VERSION" ;;
    *) return 1 ;;
  esac
  [ -f "$EC_CACHE_DIR/$1-$v/.complete" ]
}

# Ports, all on 127.0.0.1. Each can be moved with its EC_*_PORT variable.
KAFKA_PORT="${EC_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${EC_KAFKA_CONTROLLER_PORT:-9093}"
ETCD_PORT="${EC_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${EC_ETCD_PEER_PORT:-2380}"
APISERVER_PORT="${EC_APISERVER_PORT:-6443}"
KCM_PORT="${EC_KCM_PORT:-10257}"
SCHEDULER_PORT="${EC_SCHEDULER_PORT:-10259}"
KWOK_PORT="${EC_KWOK_PORT:-10247}"

# Brokers 2 and 3 of the three-broker cluster (`hack/dev-up.sh --brokers 3`). Their own
# defaults, away from the single broker's 9092/9093, so that a cluster and a single-broker
# stack of another checkout never fight over a port.
KAFKA2_PORT="${EC_KAFKA2_PORT:-9192}"
KAFKA2_CONTROLLER_PORT="${EC_KAFKA2_CONTROLLER_PORT:-9193}"
KAFKA3_PORT="${EC_KAFKA3_PORT:-9292}"
KAFKA3_CONTROLLER_PORT="${EC_KAFKA3_CONTROLLER_PORT:-9293}"

# How many brokers Kafka runs with in this checkout: dev-up writes it, `dev-down` of the
# whole stack removes it, so that stopping and starting Kafka alone (as the chaos run does)
# keeps a cluster a cluster while a fresh `make dev-up` is one broker again.
EC_KAFKA_BROKERS_FILE="$EC_DEV_DIR/kafka/brokers"
kafka_brokers() {
  local n=1
  [ ! -f "$EC_KAFKA_BROKERS_FILE" ] || read -r n <"$EC_KAFKA_BROKERS_FILE" || n=1
  echo "${n:-1}"
}

# The cluster's network: broker 3 runs in its own network namespace, joined to the host by
# a veth pair, so that its link can be cut (hack/kafka-fault.sh cut). Brokers 1 and 2 listen
# on the host end, broker 3 on the namespace end. The addresses come from the benchmarking
# range 198.18.0.0/15 (RFC 2544) only: one /30 per checkout, picked by its Kafka port so that
# two checkouts' clusters never share one. Names carry the port for the same reason.
KAFKA_NETNS="eckafka-$KAFKA_PORT"
KAFKA_VETH_HOST="eck${KAFKA_PORT}h"
KAFKA_VETH_NS="eck${KAFKA_PORT}n"
kafka_net_addr() { # kafka_net_addr HOST_OFFSET: 1 = host end, 2 = namespace end
  local off=$(((KAFKA_PORT % 32768) * 4 + $1))
  echo "198.$((18 + off / 65536)).$(((off / 256) % 256)).$((off % 256))"
}
KAFKA_NET_HOST="$(kafka_net_addr 1)"
KAFKA_NET_NS="$(kafka_net_addr 2)"

# kafka_broker_addr N: host:port clients reach broker N at (N = 1 is the single broker in
# one-broker mode).
kafka_broker_addr() {
  if [ "$(kafka_brokers)" = 1 ]; then
    echo "127.0.0.1:$KAFKA_PORT"
    return
  fi
  case "$1" in
    1) echo "$KAFKA_NET_HOST:$KAFKA_PORT" ;;
    2) echo "$KAFKA_NET_HOST:$KAFKA2_PORT" ;;
    3) echo "$KAFKA_NET_NS:$KAFKA3_PORT" ;;
  esac
}

# kafka_bootstrap: the comma-separated list of every broker (what $KAFKA_BOOTSTRAP holds).
kafka_bootstrap() {
  local n b out=""
  n="$(kafka_brokers)"
  for b in $(seq 1 "$n"); do out="$out${out:+,}$(kafka_broker_addr "$b")"; done
  echo "$out"
}

# kafka_component N: the name broker N's process is tracked under (.dev/pids, logs).
kafka_component() { if [ "$1" = 1 ]; then echo kafka; else echo "kafka-$1"; fi; }

# The stack's components in start order; dev-down stops them in reverse. Brokers 2 and 3
# belong to it while the checkout runs a cluster.
EC_COMPONENTS=(kafka etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
[ "$(kafka_brokers)" = 1 ] || EC_COMPONENTS=(kafka kafka-2 kafka-3 etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

export GOTOOLCHAIN=local

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# die WHAT HOW: the one line a person needs, then exit.
die() {
  printf 'error: %s — fix: %s\n' "$1" "$2" >&2
  exit 1
}

# now_s: seconds since the epoch, for durations.
now_s() { date +%s; }

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "go is not on PATH (Go >= $GO_MIN_VERSION is needed to build the control plane)" \
      "install Go $GO_MIN_VERSION+ (e.g. to /usr/local/go) and put /usr/local/go/bin on PATH"
  local v
  v="$(go env GOVERSION)"
  v="${v#go}"
  version_ge "$v" "$GO_MIN_VERSION" ||
    die "go $v is too old (need >= $GO_MIN_VERSION)" "install Go $GO_MIN_VERSION+ and put it first on PATH"
}

need_java() {
  command -v java >/dev/null 2>&1 ||
    die "java is not on PATH (Kafka $KAFKA_VERSION needs Java >= $JAVA_MIN_VERSION)" \
      "apt-get install -y openjdk-$JAVA_MIN_VERSION-jre-headless"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
  version_ge "$v" "$JAVA_MIN_VERSION" ||
    die "java $v is too old (Kafka $KAFKA_VERSION needs >= $JAVA_MIN_VERSION)" \
      "apt-get install -y openjdk-$JAVA_MIN_VERSION-jre-headless"
}

need_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn is not on PATH (it resolves the Kafka jars)" "apt-get install -y maven"
}

# version_ge A B: true when dotted version A >= B.
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# debian_mirror: the Debian mirror this machine's apt uses (so that no host is written in
# the repository); empty when there is none.
debian_mirror() {
  local uri
  uri="$(sed -n 's/^URIs: *\([^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  [ -n "$uri" ] || uri="$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  printf '%s' "$uri"
}

# port_open PORT [HOST]: true when something accepts TCP connections on HOST:PORT
# (127.0.0.1 unless given).
port_open() {
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

# require_port_free NAME PORT VAR: die unless PORT is free to listen on.
require_port_free() {
  local name="$1" port="$2" var="$3" holder
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q . || port_open "$port"; then
    holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1 | sed 's/users:(("//; s/",pid=/ pid /')"
    die "port $port needed by $name is already in use${holder:+ by $holder}" \
      "stop that process, or start the stack on another port with $var=<port>"
  fi
}

pid_file() { echo "$EC_PID_DIR/$1.pid"; }

# running NAME: true when the process recorded for NAME is alive and still the program we
# started (its command line contains the path stored beside the pid), so a recycled pid is
# never mistaken for ours.
running() {
  local f pid marker
  f="$(pid_file "$1")"
  [ -f "$f" ] || return 1
  read -r pid marker <"$f" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

running_pid() {
  local pid _m
  read -r pid _m <"$(pid_file "$1")"
  echo "$pid"
}

# start_bg NAME MARKER CMD...: start CMD detached from the terminal with its output in
# .dev/logs/NAME.log, and record its pid. MARKER is a string of its command line that
# identifies it later (see running).
start_bg() {
  local name="$1" marker="$2"
  shift 2
  mkdir -p "$EC_LOG_DIR" "$EC_PID_DIR"
  nohup "$@" >>"$EC_LOG_DIR/$name.log" 2>&1 </dev/null &
  echo "$! $marker" >"$(pid_file "$name")"
}

# alive PID: true while PID runs (a zombie waiting for its parent to reap it does not).
alive() {
  local state
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop NAME: stop the process recorded for NAME, if it is still ours; SIGKILL after 20 s.
stop() {
  local name="$1" pid
  if ! running "$name"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  pid="$(running_pid "$name")"
  # A broker hung by hack/kafka-fault.sh (SIGSTOP) must run again to hear the TERM.
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  # 20 s: Kafka's controlled shutdown and etcd's snapshot finish well within it here.
  local deadline=$(($(now_s) + 20))
  while alive "$pid" && [ "$(now_s)" -lt "$deadline" ]; do
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) did not stop in 20 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
  log "$name stopped (pid $pid)"
}

# wait_until NAME TIMEOUT_S CMD...: poll CMD every 0.25 s until it succeeds. On timeout,
# or when NAME's process has exited, show the end of its log and fail.
wait_until() {
  local name="$1" timeout="$2" deadline
  shift 2
  deadline=$(($(now_s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      tail -n 20 "$EC_LOG_DIR/$name.log" >&2 || true
      die "$name exited while starting (log: .dev/logs/$name.log)" "read the log above; 'make dev-down' then 'make dev-up' retries"
    fi
    if [ "$(now_s)" -ge "$deadline" ]; then
      tail -n 20 "$EC_LOG_DIR/$name.log" >&2 || true
      die "$name was not ready after ${timeout}s (log: .dev/logs/$name.log)" "read the log above; 'make dev-down' then 'make dev-up' retries"
    fi
    sleep 0.25
  done
}
