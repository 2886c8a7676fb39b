# The project's two images from one build: `--target operator` (eventconsumer-operator) and
# `--target worker` (eventconsumer-worker: consumer `run`, `gateway` and `demo`), each on a
# slim Debian as a non-root user. Build from the repository root (the context must hold the
# whole Cargo workspace), as `make images` does:
#
#   docker build -f docker/eventconsumer.Dockerfile --target worker   -t eventconsumer/worker:0.1.0 .
#   docker build -f docker/eventconsumer.Dockerfile --target operator -t eventconsumer/operator:0.1.0 .
#
# Stages: chef (toolchain, C build tools, cargo-chef) -> planner (dependency recipe) ->
# builder (dependencies incl. librdkafka, then both binaries) -> runtime -> operator, worker.
# Both binaries share one dependency build: the second image costs seconds. The dependency
# layer is rebuilt only when a Cargo.toml or Cargo.lock changes. Nothing here needs BuildKit.

# Toolchain of the developers' machines; the workspace's rust-version (1.89) is the floor.
ARG RUST_VERSION=1.95
# One Debian release for builder and runtime: the binaries link the builder's glibc, libssl
# and zlib, and the runtime must ship the same sonames.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# Marks every image this file builds, so that `make images` can prune the ones a newer
# build replaced (a builder holds a Rust target directory of a few GB).
LABEL dev.eventconsumer.dockerfile=eventconsumer
# What rdkafka-sys (rdkafka with features tokio + ssl; both binaries link it: the operator
# measures lag, counts dead letters, creates retry topics and redrives) needs to build
# librdkafka from source with its configure script and make:
#   make, g++      - librdkafka's build (`make libs` also builds its C++ wrapper);
#                    gcc and libc6-dev come with the slim Rust image
#   pkg-config     - how openssl-sys and libz-sys find the system libraries
#   libssl-dev     - the `ssl` feature: TLS and SASL/SCRAM, linked dynamically
#   zlib1g-dev     - rdkafka-sys's default `libz` feature (gzip-compressed batches)
#   python3        - librdkafka's linker-script generator
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
# Strip symbols from release binaries (the images get several times smaller). Set here so
# the cook and build steps share it: a profile difference would rebuild every dependency.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /src

FROM chef AS planner
COPY . .
# The recipe: every workspace manifest and the lockfile, no source.
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    --package eventconsumer-operator --package eventconsumer-worker
COPY . .
RUN cargo build --release --locked --package eventconsumer-operator --bin eventconsumer-operator \
    --package eventconsumer-worker --bin eventconsumer-worker

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
LABEL dev.eventconsumer.dockerfile=eventconsumer
# Shared libraries the binaries link besides glibc and libgcc_s: libssl3t64 (trixie's name
# for libssl3 after Debian's 64-bit time_t transition) and zlib1g (in the base already,
# listed to state the dependency); librdkafka itself is linked statically.
# ca-certificates: brokers or API servers behind a public CA are verified against the
# system roots when no CA is given.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3t64 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Numeric UID/GID 65532 (the usual "nonroot" id): Kubernetes' runAsNonRoot can only verify
# a numeric user, and no passwd entry is needed. The chart and the operator's worker pods
# set the same ids.
USER 65532:65532
# /healthz, /readyz, /metrics, and the gateway's API (contract::HTTP_PORT).
EXPOSE 8080

FROM runtime AS operator
COPY --from=builder /src/target/release/eventconsumer-operator /usr/local/bin/eventconsumer-operator
# Fails the build when a shared library the binary links is missing from this image (the
# log shows what it links).
RUN libs="$(ldd /usr/local/bin/eventconsumer-operator)" && echo "$libs" \
 && case "$libs" in *"not found"*) exit 1 ;; esac
# Exec form: the binary is PID 1 and receives SIGTERM directly; no shell is involved.
ENTRYPOINT ["/usr/local/bin/eventconsumer-operator"]

FROM runtime AS worker
COPY --from=builder /src/target/release/eventconsumer-worker /usr/local/bin/eventconsumer-worker
RUN libs="$(ldd /usr/local/bin/eventconsumer-worker)" && echo "$libs" \
 && case "$libs" in *"not found"*) exit 1 ;; esac
# SIGTERM starts the worker's drain (finish in-flight work, commit offsets, leave the group).
ENTRYPOINT ["/usr/local/bin/eventconsumer-worker"]
CMD ["run"]
