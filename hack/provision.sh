#!/usr/bin/env bash
# Downloads and builds every part of the local stack into the cache
# (${EC_CACHE_DIR:-$HOME/.cache/eventconsumer}/<component>-<version>/), from the package
# registries only: the Go module proxy for the control plane, kwok and helm, Maven Central
# for Kafka. Idempotent: a component already in the cache is reused as it is.
#
# Usage: hack/provision.sh [kafka|etcd|k8s|kwok|helm|kind|k8s-node|coredns ...]
#        (default: the local stack's five; kind, k8s-node and coredns are for the kind flow)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

mkdir -p "$EC_CACHE_DIR" "$EC_LOG_DIR"

# Version ldflags, so that the binaries report their real versions instead of
# v0.0.0-master (Kubernetes) or a default helm version.
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done

# lock NAME: hold the cache's lock for component NAME until this script exits, so two
# checkouts provisioning at once (a developer's make test beside CI's) build it only once.
lock() {
  local fd
  exec {fd}>"$EC_CACHE_DIR/.lock-$1"
  if ! flock -n "$fd"; then
    log "$1: another provision run is building it; waiting"
    flock "$fd"
  fi
}

# check_pin DIR MODULE VERSION: the wrapper module's go.mod must require what versions.env pins.
check_pin() {
  local got
  got="$(cd "$EC_ROOT/hack/$1" && go list -m -f '{{.Version}}' "$2" 2>"$EC_LOG_DIR/provision-$1.log")" ||
    die "cannot resolve the Go modules of hack/$1 (log: .dev/logs/provision-$1.log)" \
      "check that the Go module proxy is reachable (go env GOPROXY), then retry 'make provision'"
  [ "$got" = "$3" ] ||
    die "hack/$1/go.mod requires $2 $got but hack/versions.env pins $3" \
      "run 'cd hack/$1 && go get -tool <cmd package>@$3' (or fix versions.env) and commit go.mod and go.sum"
}

# into_cache DEST BUILDER ARGS...: fill DEST/bin with `BUILDER TMP/bin ARGS...`, atomically
# (a half-built directory is never taken for a cached one) and once: a cached DEST is used
# as it is, and two provision runs at once build it only once. Named after DEST's basename
# (k8s-v1.37.2, ...) in the log and the lock.
into_cache() {
  local dest="$1" builder="$2" name tmp start
  shift 2
  name="${dest##*/}"
  if [ -f "$dest/.complete" ]; then
    log "$name: cached in $dest"
    return 0
  fi
  need_go
  lock "$name"
  if [ -f "$dest/.complete" ]; then
    log "$name: built meanwhile by another provision run"
    return 0
  fi
  start="$(now_s)"
  log "$name: building into $dest (cold: this takes a while; log: .dev/logs/provision-$name.log)"
  tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/bin"
  if ! "$builder" "$tmp/bin" "$@" >"$EC_LOG_DIR/provision-$name.log" 2>&1; then
    tail -n 15 "$EC_LOG_DIR/provision-$name.log" >&2
    rm -rf "$tmp"
    die "building $name failed (log: .dev/logs/provision-$name.log)" \
      "read the log above; a network error means the Go module proxy was unreachable: retry 'make provision'"
  fi
  echo "built $(date -u +%FT%TZ) in $(($(now_s) - start))s" >"$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  log "$name: built in $(($(now_s) - start))s"
}

# wrapper_build OUT MODULE_DIR LDFLAGS PACKAGE...: the packages of wrapper module hack/MODULE_DIR.
# -trimpath: reproducible binaries that do not embed this machine's paths.
# GOFLAGS=-mod=readonly: go.sum is committed; a build never rewrites it.
wrapper_build() {
  local out="$1" dir="$2" ldflags="$3"
  shift 3
  (cd "$EC_ROOT/hack/$dir" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$out/" "$@")
}

# go_build MODULE_DIR DEST LDFLAGS PIN PACKAGE...: build the packages of wrapper module
# hack/MODULE_DIR into DEST/bin. PIN is "module@version" that its go.mod must require.
go_build() {
  local dir="$1" dest="$2" ldflags="$3" pin="$4"
  shift 4
  if [ ! -f "$dest/.complete" ]; then
    need_go
    check_pin "$dir" "${pin%@*}" "${pin#*@}"
  fi
  into_cache "$dest" wrapper_build "$dir" "$ldflags" "$@"
}

# module_install OUT MODULE@VERSION: `go install` of a module without replace lines (its own
# go.sum), statically linked.
module_install() {
  GOBIN="$1" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$2"
}

provision_k8s() {
  if [ ! -f "$EC_CACHE_DIR/k8s-$K8S_VERSION/.complete" ]; then
    need_go
    check_pin k8s k8s.io/client-go "$K8S_STAGING_VERSION"
  fi
  go_build k8s "$EC_CACHE_DIR/k8s-$K8S_VERSION" "$K8S_LDFLAGS" "k8s.io/kubernetes@$K8S_VERSION" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

# The node binaries of the kind stand-in node image (hack/images.sh node), from the same
# wrapper module and ldflags as the control plane, into a directory of their own: the local
# stack never needs them, so `make test` does not wait for them.
provision_k8s_node() {
  go_build k8s "$EC_CACHE_DIR/k8s-node-$K8S_VERSION" "$K8S_LDFLAGS" "k8s.io/kubernetes@$K8S_VERSION" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy
}

provision_kind() {
  into_cache "$KIND_HOME" module_install "sigs.k8s.io/kind@$KIND_VERSION"
}

# CoreDNS for the stand-in node image, at the version kubeadm $K8S_VERSION deploys.
provision_coredns() {
  into_cache "$EC_CACHE_DIR/coredns-$COREDNS_VERSION" module_install "github.com/coredns/coredns@$COREDNS_VERSION"
}

provision_etcd() {
  go_build etcd "$EC_CACHE_DIR/etcd-$ETCD_VERSION" "-s -w" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    go.etcd.io/etcd/server/v3
  # The main package is the module root, so go names the binary after it ("server").
  if [ -f "$ETCD_BIN/server" ]; then mv "$ETCD_BIN/server" "$ETCD_BIN/etcd"; fi
}

provision_kwok() {
  # kwok's version string is a constant in its source: no version ldflags needed.
  go_build kwok "$EC_CACHE_DIR/kwok-$KWOK_VERSION" "-s -w" "sigs.k8s.io/kwok@$KWOK_VERSION" \
    sigs.k8s.io/kwok/cmd/kwok
}

provision_helm() {
  go_build helm "$EC_CACHE_DIR/helm-$HELM_VERSION" "$HELM_LDFLAGS" "helm.sh/helm/v3@$HELM_VERSION" \
    helm.sh/helm/v3/cmd/helm
}

provision_kafka() {
  local dest="$KAFKA_HOME" tmp start
  if [ -f "$dest/.complete" ]; then
    log "kafka: cached in $dest"
    return 0
  fi
  need_java
  need_mvn
  lock kafka
  if [ -f "$dest/.complete" ]; then
    log "kafka: resolved meanwhile by another provision run"
    return 0
  fi
  start="$(now_s)"
  log "kafka: resolving Kafka $KAFKA_VERSION jars from Maven into $dest"
  tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -f "$EC_ROOT/hack/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$EC_LOG_DIR/provision-kafka.log" 2>&1; then
    tail -n 15 "$EC_LOG_DIR/provision-kafka.log" >&2
    rm -rf "$tmp"
    die "resolving the Kafka $KAFKA_VERSION jars failed (log: .dev/logs/provision-kafka.log)" \
      "read the log above; a network error means Maven Central was unreachable: retry 'make provision'"
  fi
  [ -f "$tmp/libs/kafka_$KAFKA_SCALA_VERSION-$KAFKA_VERSION.jar" ] ||
    die "the Kafka broker jar is missing after resolution" "check hack/kafka/pom.xml"
  echo "resolved $(date -u +%FT%TZ) in $(($(now_s) - start))s" >"$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  log "kafka: resolved in $(($(now_s) - start))s"
}

main() {
  local comps=("$@") c start
  [ ${#comps[@]} -gt 0 ] || comps=(kafka etcd kwok k8s helm)
  start="$(now_s)"
  for c in "${comps[@]}"; do
    case "$c" in
      kafka | etcd | k8s | kwok | helm | kind | coredns) "provision_$c" ;;
      k8s-node) provision_k8s_node ;;
      *) die "unknown component '$c'" "use one of: kafka etcd k8s kwok helm, or for kind: kind k8s-node coredns" ;;
    esac
  done
  log "provision: done in $(($(now_s) - start))s"
}

main "$@"
