# syntax=docker/dockerfile:1
#
# The operator image: `eventconsumer-operator` on a slim Debian, as a non-root user.
# Build from the repository root (the context must hold the whole Cargo workspace):
#
#   docker build -f docker/operator.Dockerfile -t eventconsumer/operator:0.1.0 .
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder
# (dependencies, then the binary) -> runtime. The dependency layer is rebuilt only when a
# Cargo.toml or Cargo.lock changes; editing Rust sources recompiles the workspace crates
# alone.

# Toolchain of the developers' machines; the workspace's rust-version (1.89) is the floor.
ARG RUST_VERSION=1.95
# One Debian release for builder and runtime: the binary links the builder's glibc, and
# the runtime must have the same or newer.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# cargo-chef from the Rust package registry, pinned: a new release cannot change the
# build unnoticed.
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
# Strip symbols from release binaries: the image gets several times smaller, and panic
# messages keep their file and line. Set here, not on the command line, so the cook and
# build steps share it: a profile difference would make cargo rebuild every dependency.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /src

FROM chef AS planner
COPY . .
# The recipe: every workspace manifest and the lockfile, no source. Not `--bin`: that
# trims workspace members, after which Cargo.lock no longer matches and `--locked` fails
# (seen with cargo-chef 0.1.78 on this workspace for the operator binary).
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: cached as long as recipe.json is unchanged. The operator uses
# rustls (ring) for TLS, so no C library beyond the toolchain's gcc is needed.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    --package eventconsumer-operator --bin eventconsumer-operator
COPY . .
RUN cargo build --release --locked --package eventconsumer-operator --bin eventconsumer-operator

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the in-cluster client trusts the ServiceAccount's CA, but an API server
# or webhook behind a public CA (a kubeconfig for a managed cluster) needs the system roots.
# Package versions are not pinned (hadolint DL3008): the suite's security updates replace
# old versions, and a pinned one would stop building; the Debian release is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/eventconsumer-operator /usr/local/bin/eventconsumer-operator
# Fails the build when a shared library the binary links is missing from this image (the
# log shows what it links). ldd comes with libc-bin, part of every Debian image.
RUN libs="$(ldd /usr/local/bin/eventconsumer-operator)" && echo "$libs" \
 && case "$libs" in *"not found"*) exit 1 ;; esac
# Numeric UID/GID 65532 (the usual "nonroot" id): Kubernetes' runAsNonRoot can only verify
# a numeric user, and no passwd entry is needed. The chart sets the same ids.
USER 65532:65532
# /healthz, /readyz, /metrics (the chart's `http` port).
EXPOSE 8080
# Exec form: the binary is PID 1 and receives SIGTERM directly; no shell is involved.
ENTRYPOINT ["/usr/local/bin/eventconsumer-operator"]
