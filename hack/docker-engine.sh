#!/usr/bin/env bash
# Makes sure a Docker engine that kind can use (>= 23, see below) answers on the default
# socket. A running engine, yours or anyone's, is used as it is and never stopped.
#
#   hack/docker-engine.sh            check; start an installed dockerd that is not running
#   hack/docker-engine.sh --install  also install Debian's docker.io when none is installed
#                                    (changes this machine: for CI machines; CI=true implies it)
#   hack/docker-engine.sh --stop     stop the dockerd this script started, if any
#
# Why >= 23: kind runs its nodes --privileged, and Docker 20.10 grants a privileged container
# every capability it knows, which fails where the host's bounding set lacks one
# (moby/moby#42906, fixed in 23). Debian bookworm ships 20.10, trixie ships 26.1, and
# trixie's docker.io installs on bookworm, so --install takes it from the trixie suite of
# the Debian mirror this machine already uses, pinned so that nothing else upgrades.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

DOCKER_MIN_VERSION=23
PIDFILE="$EC_CACHE_DIR/dockerd.pid"
DOCKERD_LOG="$EC_CACHE_DIR/dockerd.log"

# dockerd_version: the installed daemon's version ("Docker version 26.1.5+dfsg1, build …").
dockerd_version() { /usr/sbin/dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9.]*\).*/\1/p'; }

server_version() { docker version --format '{{.Server.Version}}' 2>/dev/null; }

check_version() {
  local v
  v="$(server_version)"
  version_ge "${v%%[-+~]*}" "$DOCKER_MIN_VERSION" ||
    die "the running Docker engine is $v; kind needs >= $DOCKER_MIN_VERSION here (privileged nodes)" \
      "upgrade Docker (on Debian bookworm: docker.io from the trixie suite, 'hack/docker-engine.sh --install' does it on a CI machine)"
  log "docker: engine $v answers"
}

install_engine() {
  local uri
  command -v apt-get >/dev/null 2>&1 ||
    die "no Docker engine and no apt-get to install one" "install Docker >= $DOCKER_MIN_VERSION by hand"
  uri="$(debian_mirror)"
  [ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt" "install docker.io >= $DOCKER_MIN_VERSION by hand"
  log "docker: installing docker.io from Debian trixie ($uri), pinned to that one package set"
  cat >/etc/apt/sources.list.d/eventconsumer-trixie.sources <<EOF
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Priority 100: trixie is never chosen unless asked for with -t.
  cat >/etc/apt/preferences.d/eventconsumer-trixie <<'EOF'
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF
  apt-get update -qq >"$EC_CACHE_DIR/docker-install.log" 2>&1 ||
    { tail -n 5 "$EC_CACHE_DIR/docker-install.log" >&2; die "apt-get update failed" "retry; the log is $EC_CACHE_DIR/docker-install.log"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie --no-install-recommends \
    docker.io containerd runc tini iptables >>"$EC_CACHE_DIR/docker-install.log" 2>&1 ||
    { tail -n 15 "$EC_CACHE_DIR/docker-install.log" >&2; die "installing docker.io failed" "read $EC_CACHE_DIR/docker-install.log"; }
}

start_engine() {
  local _
  log "docker: starting /usr/sbin/dockerd (log: $DOCKERD_LOG)"
  # There is no systemd here to start it: run it in the background, detached from this
  # shell so that it outlives the make target that started it.
  setsid /usr/sbin/dockerd --host unix:///var/run/docker.sock >"$DOCKERD_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    server_version >/dev/null && return 0
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 1
  done
  tail -n 15 "$DOCKERD_LOG" >&2
  die "dockerd did not answer within 60 s" "read $DOCKERD_LOG"
}

stop_engine() {
  local pid
  [ -f "$PIDFILE" ] || { log "docker: no engine started by this script"; return 0; }
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "docker: stopping the dockerd started by this script (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PIDFILE"
}

main() {
  local install=false
  case "${1:-}" in
    --stop) stop_engine; return ;;
    --install) install=true ;;
    "") [ "${CI:-}" = true ] && install=true ;;
    *) die "unknown argument '$1'" "use --install or --stop" ;;
  esac
  mkdir -p "$EC_CACHE_DIR"
  command -v docker >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || $install ||
    die "no Docker engine found (kind needs Docker >= $DOCKER_MIN_VERSION)" \
      "install and start Docker, or on a CI machine run 'hack/docker-engine.sh --install'"
  if server_version >/dev/null; then check_version; return; fi
  if [ ! -x /usr/sbin/dockerd ] || ! version_ge "$(dockerd_version)" "$DOCKER_MIN_VERSION"; then
    $install || die "Docker is not running and no dockerd >= $DOCKER_MIN_VERSION is installed (kind needs Docker >= $DOCKER_MIN_VERSION)" \
      "start your Docker engine, or on a CI machine run 'hack/docker-engine.sh --install'"
    install_engine
  fi
  if [ -e /var/run/docker.sock ] && [ ! -f "$PIDFILE" ] && ! $install; then
    die "Docker's socket exists but no engine answers on it" "start your Docker engine"
  fi
  start_engine
  check_version
}

main "$@"
