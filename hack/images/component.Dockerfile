# One image of the Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, etcd, CoreDNS, pause) for the stand-in kind node image, built
# by hack/images.sh from binaries it built from Go modules. kubeadm's static pods call the
# binaries by name, so they sit on PATH; MAIN is also the entry point (CoreDNS and pause are
# run without a command). PACKAGES: what the binary runs (kube-proxy: iptables, conntrack).
ARG DEBIAN_RELEASE=trixie
FROM debian:${DEBIAN_RELEASE}-slim
ARG PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "${PACKAGES}" ]; then apt-get update \
      && apt-get install -y --no-install-recommends ${PACKAGES} && rm -rf /var/lib/apt/lists/*; fi
COPY bin/ /usr/local/bin/
ARG MAIN
RUN ln -s "/usr/local/bin/${MAIN}" /entrypoint
ENTRYPOINT ["/entrypoint"]
