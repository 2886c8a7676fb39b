# Stand-in for the public rust:<version>-slim-<release> image, built by hack/images.sh only
# where that image cannot be pulled. Same contract as the real one: Debian slim, gcc and
# libc6-dev for linking, the toolchain under RUSTUP_HOME, cargo and rustc on PATH through
# CARGO_HOME/bin. The toolchain is this machine's (same version, copied in), not downloaded.
ARG DEBIAN_RELEASE=trixie
FROM debian:${DEBIAN_RELEASE}-slim
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
# What the real image installs besides the toolchain.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Certificate authorities this machine trusts beyond Debian's (a TLS-inspecting proxy in
# front of the package registries, for instance): without them cargo cannot reach the Rust
# registry from inside a build. Empty where the machine has none.
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu/
RUN mkdir -p /usr/local/cargo/bin \
 && for b in /usr/local/rustup/toolchains/*/bin/*; do ln -s "$b" /usr/local/cargo/bin/; done \
 && cargo --version && rustc --version
