# Stand-in for the kind node image (kindest/node:<k8s version>), built by hack/images.sh only
# where that image cannot be pulled. `kind build node-image` cannot run without a container
# registry: it pulls its base image and several images. This assembles the same thing from
# parts that are reachable:
#   - kind's own base-image files (entrypoint, systemd units, containerd and kubelet
#     configuration), taken at build time from the pinned kind module (hack/versions.env);
#   - systemd, containerd, runc, CNI plugins, iptables and the rest from Debian's packages;
#   - kubeadm, kubelet and kubectl built from k8s.io/kubernetes like the local stack's
#     control plane (hack/provision.sh k8s-node).
# hack/images.sh then imports the control-plane images into the node's containerd and
# commits the result.
ARG DEBIAN_RELEASE=trixie
FROM debian:${DEBIAN_RELEASE}-slim
ARG K8S_VERSION
ARG PAUSE_IMAGE
COPY kind-base/usr/local/bin/ /usr/local/bin/
COPY kind-base/kind/ /kind/
COPY kind-base/etc/ /etc/
# The packages of kind's base image, Debian's containerd, runc and CNI plugins in place of the
# ones kind compiles, and jq for the runtime spec below. --force-confold: kind's
# /etc/containerd/config.toml, copied above, stays (dpkg would ask).
# hadolint ignore=DL3008
RUN chmod 0755 /usr/local/bin/* /kind /kind/bin /kind/bin/* \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \
      systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz e2fsprogs bash ca-certificates curl jq procps \
      containerd runc containernetworking-plugins \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 # Only the units a node needs start: nothing of a desktop or server boot.
 && find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \
 && echo "ReadKMsg=no" >>/etc/systemd/journald.conf \
 && ln -sf /usr/lib/systemd/systemd /sbin/init \
 # kind's units name the binaries it compiles into /usr/local/bin and /opt/cni/bin.
 && ln -s /usr/bin/containerd /usr/local/bin/containerd \
 && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && mkdir -p /etc/kubernetes/manifests
COPY node/ /
COPY bin/ /usr/bin/
# - restrict_oom_score_adj: runc cannot set a negative oom_score_adj where the host's
#   capability bounding set lacks CAP_SYS_RESOURCE; every pod sandbox would fail.
# - the sandbox image is the pause image kubeadm asks for (imported by hack/images.sh).
# - cri-base.json: containerd's default runtime spec without its 1024-file rlimit, as kind's.
# - --fail-cgroupv1=false: kubelet >= 1.35 refuses cgroup v1 hosts unless told otherwise.
RUN sed -i -e 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1true/' \
      -e "s|^\(\s*sandbox_image\s*=\s*\).*|\1\"${PAUSE_IMAGE}\"|" /etc/containerd/config.toml \
 && grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml \
 && ctr oci spec | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json \
 && sed -i 's|^KUBELET_EXTRA_ARGS=\(.*\)|KUBELET_EXTRA_ARGS=\1 --fail-cgroupv1=false|' /etc/default/kubelet \
 && grep -q -- '--fail-cgroupv1=false' /etc/default/kubelet \
 && echo "${K8S_VERSION}" >/kind/version \
 && mkdir -p /var/local-volumes/pv1 /var/local-volumes/pv2 /var/local-volumes/pv3 /var/local-volumes/pv4 \
 && kubelet --version && kubeadm version -o short && containerd --version && runc --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
