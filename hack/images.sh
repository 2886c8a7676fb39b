#!/usr/bin/env bash
# Makes sure every image the Dockerfiles, the chart and kind name is present in the local
# Docker engine. For each: an image already present is used; otherwise it is pulled; only
# when the pull fails (no container registry reachable, as on this project's CI machines)
# a stand-in is built here from the package registries, honouring the real image's contract.
# A stand-in carries the label dev.eventconsumer.stand-in=<hash of its recipe>, so a changed
# recipe rebuilds it and a real image is never replaced. `docker rmi` one to build it again.
#
#   hack/images.sh base   debian:<release>-slim, rust:<version>-slim-<release>, apache/kafka:<version>
#   hack/images.sh node   the kind node image kindest/node:<k8s version> (and base first)
#   hack/images.sh all    both (default)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

DEBIAN_IMAGE="debian:$DEBIAN_RELEASE-slim"
RUST_IMAGE="rust:$RUST_IMAGE_VERSION-slim-$DEBIAN_RELEASE"
KAFKA_IMAGE="apache/kafka:$KAFKA_VERSION"
NODE_IMAGE="kindest/node:$K8S_VERSION"
LABEL=dev.eventconsumer.stand-in
RECIPES="$EC_ROOT/hack/images"
# A pull that gets no answer within this is taken as "no registry" (a refused one fails at once).
PULL_TIMEOUT=120

# recipe_key BUILD_FUNCTION WORDS...: hash of the function's text, the named recipe files
# and the extra words (versions): what decides the stand-in's content, and nothing else.
recipe_key() {
  local f
  {
    declare -f "$1"
    shift
    for f in "$@"; do if [ -f "$f" ]; then cat "$f"; else printf '%s\n' "$f"; fi; done
  } | sha256sum | cut -c1-16
}

# ensure IMAGE KEY BUILD_FUNCTION: present, pulled, or built as a stand-in.
ensure() {
  local image="$1" key="$2" build="$3" have start
  if have="$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$image" 2>/dev/null)"; then
    case "$have" in
      "" | "<no value>") log "$image: present (not a stand-in)"; return 0 ;;
      "$key") log "$image: stand-in present"; return 0 ;;
      *) log "$image: stand-in recipe changed; building it again" ;;
    esac
  elif timeout "$PULL_TIMEOUT" docker pull -q "$image" >/dev/null 2>&1; then
    log "$image: pulled"
    return 0
  else
    log "$image: cannot be pulled; building a stand-in"
  fi
  start="$(now_s)"
  "$build" "$image" "$key"
  log "$image: stand-in built in $(($(now_s) - start))s ($(image_size "$image"))"
}

image_size() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%d MB", $1 / 1e6}'; }

# new_workdir: a scratch directory in $WORK, removed when the script exits.
new_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/ec-image.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap must remove this directory.
  trap "rm -rf '$WORK'" EXIT
}

# need_apt_tool COMMAND PACKAGE: on a CI machine install it; elsewhere say what is missing.
need_apt_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "${CI:-}" = true ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $2 (CI machine)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    die "$1 is needed to build a stand-in image (no registry reachable)" "apt-get install $2"
  fi
}

# The official slim image: a minbase debootstrap without documentation, as one layer.
build_debian() {
  local image="$1" key="$2" dir mirror
  need_apt_tool debootstrap debootstrap
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || die "no Debian mirror configured in /etc/apt" "set one up, or make $image pullable"
  new_workdir
  dir="$WORK"
  log "$image: debootstrap --variant=minbase $DEBIAN_RELEASE (log: $EC_LOG_DIR/image-debian.log)"
  debootstrap --variant=minbase "$DEBIAN_RELEASE" "$dir/rootfs" "$mirror" >"$EC_LOG_DIR/image-debian.log" 2>&1 ||
    { tail -n 10 "$EC_LOG_DIR/image-debian.log" >&2; die "debootstrap failed" "read $EC_LOG_DIR/image-debian.log"; }
  # As the slim images: no documentation or locales now, and none installed later.
  cat >"$dir/rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  find "$dir/rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  # Files only: maintainer scripts (update-alternatives) expect the man directories to exist.
  find "$dir"/rootfs/usr/share/{man,info,locale} ! -type d -delete
  rm -rf "$dir"/rootfs/var/cache/apt/*.bin \
    "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/* "$dir"/rootfs/var/log/*
  tar -C "$dir/rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' --change "LABEL $LABEL=$key" - "$image" >/dev/null
}

build_rust() {
  local image="$1" key="$2" dir sysroot v
  v="$(rustc --version 2>/dev/null | awk '{print $2}')"
  case "$v" in
    "$RUST_IMAGE_VERSION" | "$RUST_IMAGE_VERSION".*) ;;
    *) die "the stand-in $image copies this machine's Rust toolchain, but rustc here is '${v:-missing}'" \
      "install Rust $RUST_IMAGE_VERSION (rustup toolchain install $RUST_IMAGE_VERSION), or make $image pullable" ;;
  esac
  sysroot="$(rustc --print sysroot)"
  new_workdir
  dir="$WORK"
  mkdir -p "$dir/ca" "$dir/toolchain"
  cp /usr/local/share/ca-certificates/*.crt "$dir/ca/" 2>/dev/null || true
  # The toolchain without its HTML documentation (a third of it).
  tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$dir/toolchain" -x
  docker build -q -f "$RECIPES/rust.Dockerfile" --build-arg "DEBIAN_RELEASE=$DEBIAN_RELEASE" \
    --build-arg "RUST_VERSION=$v" --label "$LABEL=$key" -t "$image" "$dir" >/dev/null
}

build_kafka() {
  local image="$1" key="$2" dir
  "$EC_ROOT/hack/provision.sh" kafka
  new_workdir
  dir="$WORK"
  cp -r "$KAFKA_HOME/libs" "$dir/libs"
  cp "$RECIPES/kafka-run" "$EC_ROOT/hack/kafka/log4j2.properties" "$EC_ROOT/hack/kafka/log4j2-tools.properties" "$dir/"
  # The real image's /opt/kafka/bin scripts that the examples and kind-test call.
  mkdir "$dir/bin"
  awk -F'\t' '!/^#/ { print $1, $2 }' "$EC_ROOT/hack/kafka/tools.tsv" | while read -r name class; do
    # shellcheck disable=SC2016 # expanded by the generated script, not here
    printf '#!/bin/bash\nexec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties -cp "/opt/kafka/libs/*" %s "$@"\n' \
      "$class" >"$dir/bin/kafka-$name.sh"
  done
  chmod 0755 "$dir"/bin/*
  docker build -q -f "$RECIPES/kafka.Dockerfile" --build-arg "DEBIAN_RELEASE=$DEBIAN_RELEASE" \
    --label "$LABEL=$key" -t "$image" "$dir" >/dev/null
}

# component IMAGE MAIN "PACKAGES" BINARY...: one control-plane image for the node.
component() {
  local image="$1" main="$2" packages="$3" dir
  shift 3
  dir="$(mktemp -d "${TMPDIR:-/tmp}/ec-component.XXXXXX")"
  mkdir "$dir/bin"
  cp "$@" "$dir/bin/"
  docker build -q -f "$RECIPES/component.Dockerfile" --build-arg "DEBIAN_RELEASE=$DEBIAN_RELEASE" \
    --build-arg "MAIN=$main" --build-arg "PACKAGES=$packages" -t "$image" "$dir" >/dev/null
  rm -rf "$dir"
}

# The kind node: node.Dockerfile, then the images kubeadm needs imported into its containerd
# (as `kind build node-image` does, with `ctr images import`), then committed.
build_node() {
  local image="$1" key="$2" dir kind_dir images=() img pause="" name cid imported
  "$EC_ROOT/hack/provision.sh" k8s k8s-node etcd kind coredns
  new_workdir
  dir="$WORK"
  kind_dir="$(cd "$EC_ROOT/hack" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$kind_dir/images/base/files" ] ||
    die "kind $KIND_VERSION's base-image files are not in its module ($kind_dir)" "check KIND_VERSION in hack/versions.env"
  mkdir -p "$dir/ctx/kind-base" "$dir/ctx/bin" "$dir/images"
  cp -r "$kind_dir/images/base/files/usr" "$kind_dir/images/base/files/kind" "$kind_dir/images/base/files/etc" "$dir/ctx/kind-base/"
  chmod -R u+w "$dir/ctx/kind-base"
  cp -r "$RECIPES/node/." "$dir/ctx/node"
  cp "$K8S_NODE_BIN/kubeadm" "$K8S_NODE_BIN/kubelet" "$K8S_BIN/kubectl" "$dir/ctx/bin/"

  while read -r img; do
    name="${img##*/}"
    case "${name%%:*}" in
      kube-apiserver | kube-controller-manager | kube-scheduler)
        component "$img" "${name%%:*}" "" "$K8S_BIN/${name%%:*}" ;;
      kube-proxy) component "$img" kube-proxy "iptables nftables conntrack" "$K8S_NODE_BIN/kube-proxy" ;;
      # kubeadm may ask for a newer etcd than the local stack's: the pinned one stands in
      # (kubeadm only warns), see the README's kind section.
      etcd) component "$img" etcd "" "$ETCD_BIN/etcd" ;;
      coredns)
        [ "${name#*:}" = "$COREDNS_VERSION" ] ||
          die "kubeadm $K8S_VERSION deploys CoreDNS ${name#*:}, hack/versions.env pins $COREDNS_VERSION" \
            "set COREDNS_VERSION=${name#*:} in hack/versions.env"
        component "$img" coredns "" "$EC_CACHE_DIR/coredns-$COREDNS_VERSION/bin/coredns" ;;
      pause)
        gcc -static -O2 -o "$dir/pause" "$RECIPES/pause.c"
        component "$img" pause "" "$dir/pause"
        pause="$img" ;;
      *) die "kubeadm asks for an image this script cannot build: $img" "extend build_node in hack/images.sh" ;;
    esac
    images+=("$img")
  done < <("$K8S_NODE_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
  [ -n "$pause" ] || die "kubeadm listed no pause image" "check kubeadm config images list"
  log "$image: control-plane images built: ${images[*]##*/}"
  docker save -o "$dir/images/images.tar" "${images[@]}"

  docker build -q -f "$RECIPES/node.Dockerfile" --build-arg "DEBIAN_RELEASE=$DEBIAN_RELEASE" \
    --build-arg "K8S_VERSION=$K8S_VERSION" --build-arg "PAUSE_IMAGE=$pause" \
    -t eventconsumer/kind-node-build "$dir/ctx" >/dev/null
  cid="$(docker run -d --init --privileged --entrypoint sleep -v "$dir/images:/images:ro" eventconsumer/kind-node-build infinity)"
  # shellcheck disable=SC2064
  trap "docker rm -f '$cid' >/dev/null 2>&1; rm -rf '$dir'" EXIT
  docker exec "$cid" sh -c 'containerd >/tmp/containerd.log 2>&1 &'
  for _ in $(seq 1 30); do
    docker exec "$cid" ctr version >/dev/null 2>&1 && break
    sleep 1
  done
  docker exec "$cid" ctr -n k8s.io images import --all-platforms --no-unpack --digests /images/images.tar >/dev/null
  imported="$(docker exec "$cid" ctr -n k8s.io images ls -q)"
  for img in "${images[@]}"; do
    grep -qxF "$img" <<<"$imported" || die "$img is missing from the node's containerd" "read the import output"
  done
  docker exec "$cid" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; rm -f /tmp/containerd.log'
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL $LABEL=$key" "$cid" "$image" >/dev/null
  docker rm -f "$cid" >/dev/null
  docker rmi eventconsumer/kind-node-build "${images[@]}" >/dev/null 2>&1 || true
}

base() {
  ensure "$DEBIAN_IMAGE" "$(recipe_key build_debian "$DEBIAN_RELEASE")" build_debian
  ensure "$RUST_IMAGE" "$(recipe_key build_rust "$RECIPES/rust.Dockerfile" "$RUST_IMAGE_VERSION")" build_rust
  ensure "$KAFKA_IMAGE" "$(recipe_key build_kafka "$RECIPES/kafka.Dockerfile" "$RECIPES/kafka-run" \
    "$EC_ROOT/hack/kafka/log4j2.properties" "$EC_ROOT/hack/kafka/tools.tsv" "$KAFKA_VERSION")" build_kafka
}

node() {
  ensure "$NODE_IMAGE" "$(recipe_key build_node "$RECIPES/node.Dockerfile" "$RECIPES/component.Dockerfile" "$RECIPES/pause.c" \
    "$RECIPES"/node/kind/manifests/* "$RECIPES"/node/etc/cni/net.d/* "$K8S_VERSION" "$KIND_VERSION" "$COREDNS_VERSION" \
    "$ETCD_VERSION")" build_node
}

main() {
  mkdir -p "$EC_LOG_DIR"
  "$EC_ROOT/hack/docker-engine.sh"
  case "${1:-all}" in
    base) base ;;
    node | all) base; node ;;
    *) die "unknown argument '$1'" "use base, node or all" ;;
  esac
}

main "$@"
