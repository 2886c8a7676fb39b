# syntax=docker/dockerfile:1
#
# The worker image: `eventconsumer-worker` (consumer `run`, `gateway` and `demo`
# subcommands) on a slim Debian, as a non-root user. The operator's Deployments pass
# `run` as the argument; the chart's gateway passes `gateway`.
# Build from the repository root (the context must hold the whole Cargo workspace):
#
#   docker build -f docker/worker.Dockerfile -t eventconsumer/worker:0.1.0 .
#
# Stages: chef (toolchain, C build tools, cargo-chef) -> planner (dependency recipe) ->
# builder (dependencies incl. librdkafka, then the binary) -> runtime. librdkafka is the
# slowest dependency to compile; it sits in the cached dependency layer.

# Toolchain of the developers' machines; the workspace's rust-version (1.89) is the floor.
ARG RUST_VERSION=1.95
# One Debian release for builder and runtime: the binary links the builder's glibc,
# libssl and zlib, and the runtime must ship the same sonames.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# What rdkafka-sys (rdkafka with features tokio + ssl) needs to build librdkafka from
# source with its configure script and make (cmake is only used with its cmake-build
# feature, which is off):
#   make, g++      - librdkafka's build (`make libs` also builds its C++ wrapper);
#                    gcc and libc6-dev come with the slim Rust image
#   pkg-config     - how openssl-sys and libz-sys find the system libraries
#   libssl-dev     - the `ssl` feature: TLS and SASL/SCRAM, linked dynamically
#   zlib1g-dev     - rdkafka-sys's default `libz` feature (gzip-compressed batches); with
#                    the headers present libz-sys links the system zlib
#   python3        - librdkafka's linker-script generator; without it configure only
#                    warns, but the build log stays clean with it
# zstd and curl stay disabled: rdkafka-sys builds them only with its `zstd`/`curl` features.
# Package versions are not pinned (hadolint DL3008): the suite's security updates replace
# old versions, and a pinned one would stop building; the Debian release is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ pkg-config libssl-dev zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
# cargo-chef from the Rust package registry, pinned: a new release cannot change the
# build unnoticed.
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
# Strip symbols from release binaries (the image gets several times smaller). Set here so
# the cook and build steps share it: a profile difference would rebuild every dependency.
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
# Dependencies only (librdkafka included): cached as long as recipe.json is unchanged.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    --package eventconsumer-worker --bin eventconsumer-worker
COPY . .
RUN cargo build --release --locked --package eventconsumer-worker --bin eventconsumer-worker

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# Shared libraries the binary links besides glibc and libgcc_s (checked with ldd on a
# local build: libssl.so.3, libcrypto.so.3, libz.so.1): libssl3t64 (trixie's name for
# libssl3 after Debian's 64-bit time_t transition) and zlib1g (already in the base,
# listed to state the dependency). librdkafka itself is linked statically.
# ca-certificates: brokers with certificates from a public CA are verified against the
# system roots when no CA Secret is given.
# Package versions are not pinned (hadolint DL3008): the suite's security updates replace
# old versions, and a pinned one would stop building; the Debian release is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3t64 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/eventconsumer-worker /usr/local/bin/eventconsumer-worker
# Fails the build when a shared library the binary links is missing from this image (the
# log shows what it links). ldd comes with libc-bin, part of every Debian image.
RUN libs="$(ldd /usr/local/bin/eventconsumer-worker)" && echo "$libs" \
 && case "$libs" in *"not found"*) exit 1 ;; esac
# Numeric UID/GID 65532 (the usual "nonroot" id): Kubernetes' runAsNonRoot can only verify
# a numeric user. The operator's worker pods and the chart's gateway set the same ids.
USER 65532:65532
# /healthz, /readyz, /metrics, and the gateway's API (contract::HTTP_PORT).
EXPOSE 8080
# Exec form: the binary is PID 1 and gets SIGTERM directly, which starts the worker's
# drain (finish in-flight work, commit offsets, leave the group).
ENTRYPOINT ["/usr/local/bin/eventconsumer-worker"]
CMD ["run"]
