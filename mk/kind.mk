# kind quickstart: the whole system on a local kind cluster, plus the chart's checks.
# The root Makefile includes mk/*.mk. The quickstart needs Docker, kind, kubectl and helm.
#
#   make kind-up images kind-load deploy samples   # then curl the gateway (examples/README.md)
#   make kind-down
#
# Every variable can be overridden on the command line, e.g. `make deploy HELM_NAMESPACE=ec`.

# Pinned versions (KIND_VERSION, K8S_VERSION, ...): the file is KEY=VALUE lines.
include hack/versions.env
EC_CACHE_DIR ?= $(HOME)/.cache/eventconsumer
DOCKER ?= docker
# The tools on PATH, else the project's pinned builds (hack/provision.sh kind k8s helm).
tool = $(or $(shell command -v $(1) 2>/dev/null),$(wildcard $(EC_CACHE_DIR)/$(2)/bin/$(1)),$(1))
KIND ?= $(call tool,kind,kind-$(KIND_VERSION))
KUBECTL ?= $(call tool,kubectl,k8s-$(K8S_VERSION))
HELM ?= $(call tool,helm,helm-$(HELM_VERSION))

KIND_CLUSTER ?= eventconsumer
KIND_CONFIG ?= kind-config.yaml
# Node image: the Kubernetes version the project is built and tested against. kind-up
# pulls it, or where no registry answers builds a stand-in (hack/images.sh node); empty
# means the default of the installed kind release.
KIND_NODE_IMAGE ?= kindest/node:$(K8S_VERSION)
# kind names the kubeconfig context kind-<cluster>; every command below targets it
# explicitly, so a deploy never lands on whatever cluster the current context points at.
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
# How long kind-up waits for the node to be Ready: a node image already pulled is up in
# about 30 s; 2 minutes covers a slow laptop.
KIND_WAIT ?= 120s

CHART_DIR ?= charts/eventconsumer
# Image tags follow the chart's appVersion, like the chart's defaults: the tags built here
# are the ones the chart asks for, with no --set needed.
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(CHART_DIR)/Chart.yaml)
IMAGE_TAG ?= $(APP_VERSION)
OPERATOR_IMAGE ?= eventconsumer/operator
WORKER_IMAGE ?= eventconsumer/worker
# The last build stage, kept tagged as the cache of the next `make images`.
BUILD_CACHE_IMAGE ?= eventconsumer/build-cache
DOCKER_BUILD_FLAGS ?=

HELM_RELEASE ?= eventconsumer
HELM_NAMESPACE ?= eventconsumer-system
# Values for kind: the chart's Kafka and the gateway on NodePort 30080.
KIND_VALUES ?= examples/kind-values.yaml
# The examples' bootstrapServers name the Kafka of release "eventconsumer" in
# "eventconsumer-system"; keep HELM_RELEASE and HELM_NAMESPACE at their defaults for `samples`.
SAMPLES_NAMESPACE ?= default
# The chart's Kafka image (values.yaml kafka.image), loaded too when present locally, so a
# cluster without registry access can run it.
KAFKA_IMAGE ?= apache/kafka:$(KAFKA_VERSION)
# Extra flags for `helm upgrade --install`, e.g. HELM_EXTRA_FLAGS='--set operator.logLevel=debug'.
HELM_EXTRA_FLAGS ?=
# kind pulls apache/kafka, starts a JVM and formats storage: a first deploy can take
# minutes on a laptop.
DEPLOY_TIMEOUT ?= 10m
# Worker pods start in seconds once the images are loaded; 3 minutes covers a slow laptop.
SAMPLES_TIMEOUT ?= 180s

# An existing namespace to render into for helm-dry-run (objects in a missing namespace
# are refused even in a dry run).
DRY_RUN_NAMESPACE ?= default
# Kubernetes version helm lints and renders against (the local stack's, hack/versions.env).
HELM_KUBE_VERSION ?= $(K8S_VERSION:v%=%)
# Values the schema must refuse (helm-schema-check): a wrong type, an unknown key, an enum
# miss, a malformed bootstrap list, an out-of-range port. Each must make `helm template` fail.
HELM_BAD_SETS ?= \
	operator.replicas=two \
	operator.typo=1 \
	operator.image.pullPolicy=Sometimes \
	gateway.bootstrapServers=no-port \
	gateway.service.nodePort=80 \
	kafka.clusterId=short \
	metrics.serviceMonitor.interval=30

.PHONY: kind-up images image-bases image-operator image-worker kind-load deploy samples kind-down kind-test \
	chart-crds chart-crds-check helm-lint helm-schema-check helm-dry-run helm-template

kind-up: ## Create the kind cluster (kind-config.yaml: one node, gateway port 30080 on localhost)
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) already exists"; \
	else \
		$(if $(KIND_NODE_IMAGE),hack/images.sh node &&) \
		$(KIND) create cluster --name '$(KIND_CLUSTER)' --config '$(KIND_CONFIG)' \
			$(if $(KIND_NODE_IMAGE),--image '$(KIND_NODE_IMAGE)') --wait '$(KIND_WAIT)'; \
	fi

images: image-worker image-operator ## Build the operator and worker images (docker/eventconsumer.Dockerfile)
	@# The builder stage's image, tagged (every step is cached: seconds), keeps the dependency
	@# layer the next build reuses; what a newer build replaced is then an untagged leaf
	@# (a builder is a few GB) and pruned, or every source change would leave one behind.
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -q -f docker/eventconsumer.Dockerfile --target builder -t '$(BUILD_CACHE_IMAGE):$(IMAGE_TAG)' . >/dev/null
	$(DOCKER) image prune -f --filter label=dev.eventconsumer.dockerfile=eventconsumer

# The public images the build and the chart start from: present, pulled, or (only where no
# registry answers) stand-ins built locally by hack/images.sh.
image-bases:
	hack/images.sh base

# Worker first: the operator's build then reuses every layer up to its own last two.
image-worker: image-bases
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -f docker/eventconsumer.Dockerfile --target worker -t '$(WORKER_IMAGE):$(IMAGE_TAG)' .

image-operator: image-bases
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -f docker/eventconsumer.Dockerfile --target operator -t '$(OPERATOR_IMAGE):$(IMAGE_TAG)' .

kind-load: ## Copy the built images into the kind node (no registry needed)
	$(KIND) load docker-image --name '$(KIND_CLUSTER)' '$(OPERATOR_IMAGE):$(IMAGE_TAG)' '$(WORKER_IMAGE):$(IMAGE_TAG)' \
		$$($(DOCKER) image inspect '$(KAFKA_IMAGE)' >/dev/null 2>&1 && echo '$(KAFKA_IMAGE)')

# helm installs crds/ only on the first install and never upgrades it, so the CRD is
# applied server-side first: a changed schema reaches the cluster on every deploy.
deploy: ## helm upgrade --install the chart with Kafka and the gateway (examples/kind-values.yaml)
	$(KUBECTL) --context '$(KUBE_CONTEXT)' apply --server-side --force-conflicts -f '$(CHART_DIR)/crds/'
	$(HELM) upgrade --install '$(HELM_RELEASE)' '$(CHART_DIR)' --kube-context '$(KUBE_CONTEXT)' \
		--namespace '$(HELM_NAMESPACE)' --create-namespace -f '$(KIND_VALUES)' \
		--set operator.image.repository='$(OPERATOR_IMAGE)' --set-string operator.image.tag='$(IMAGE_TAG)' \
		--set worker.image.repository='$(WORKER_IMAGE)' --set-string worker.image.tag='$(IMAGE_TAG)' \
		$(HELM_EXTRA_FLAGS) --wait --timeout '$(DEPLOY_TIMEOUT)'

samples: ## Create the example topics, apply the example EventConsumers and wait until they are Ready
	@# The Kafka pod by its labels: its name depends on how the release is named.
	pod="$$($(KUBECTL) --context '$(KUBE_CONTEXT)' -n '$(HELM_NAMESPACE)' get pods -o name \
		-l 'app.kubernetes.io/instance=$(HELM_RELEASE),app.kubernetes.io/component=kafka')"; \
	test -n "$$pod" || { echo "no Kafka pod of release $(HELM_RELEASE) in $(HELM_NAMESPACE): run make deploy" >&2; exit 1; }; \
	KUBE_CONTEXT='$(KUBE_CONTEXT)' KAFKA_NAMESPACE='$(HELM_NAMESPACE)' KAFKA_POD="$${pod#pod/}" examples/topics.sh
	$(KUBECTL) --context '$(KUBE_CONTEXT)' apply -n '$(SAMPLES_NAMESPACE)' -f examples/consumers/
	$(KUBECTL) --context '$(KUBE_CONTEXT)' wait -n '$(SAMPLES_NAMESPACE)' --for=condition=Ready \
		eventconsumers --all --timeout='$(SAMPLES_TIMEOUT)'
	$(KUBECTL) --context '$(KUBE_CONTEXT)' get -n '$(SAMPLES_NAMESPACE)' eventconsumers

kind-down: ## Delete the kind cluster and everything in it
	$(KIND) delete cluster --name '$(KIND_CLUSTER)'

print-image-tag:
	@echo '$(IMAGE_TAG)'

kind-test: ## The kind quickstart end to end on a real kind cluster, checked; ends with "N passed, N failed"
	hack/kind-test.sh

chart-crds: ## Copy crds/*.yaml into the chart (the chart's copies must stay identical)
	@set -e; for c in $(CRDS); do \
		test -s crds/$$c.yaml || { echo "crds/$$c.yaml is missing: run make crds" >&2; exit 1; }; \
		cp crds/$$c.yaml '$(CHART_DIR)/crds/'$$c.yaml; \
	done

chart-crds-check: ## Fail when a chart CRD differs from its crds/*.yaml
	@set -e; for c in $(CRDS); do \
		cmp -s crds/$$c.yaml '$(CHART_DIR)/crds/'$$c.yaml || \
			{ echo "$(CHART_DIR)/crds/$$c.yaml differs from crds/$$c.yaml: run make chart-crds" >&2; exit 1; }; \
	done

helm-lint: ## helm lint --strict the chart with its defaults and each ci/*-values.yaml case
	$(HELM) lint --strict --kube-version '$(HELM_KUBE_VERSION)' '$(CHART_DIR)'
	@set -e; for f in $(CHART_DIR)/ci/*-values.yaml; do \
		echo "$(HELM) lint --strict --kube-version $(HELM_KUBE_VERSION) $(CHART_DIR) -f $$f"; \
		$(HELM) lint --strict --kube-version '$(HELM_KUBE_VERSION)' '$(CHART_DIR)' -f "$$f"; \
	done

helm-schema-check: ## Check that values.schema.json refuses each of HELM_BAD_SETS
	@set -e; for s in $(HELM_BAD_SETS); do \
		if out=$$($(HELM) template x '$(CHART_DIR)' --kube-version '$(HELM_KUBE_VERSION)' --set "$$s" 2>&1); then \
			echo "values.schema.json accepted --set $$s" >&2; exit 1; \
		elif ! printf '%s' "$$out" | grep -q "don't meet the specifications of the schema"; then \
			echo "--set $$s failed, but not in schema validation:" >&2; printf '%s\n' "$$out" >&2; exit 1; \
		else echo "refused by the schema, as expected: --set $$s"; fi; \
	done

# Server-side dry run against the current kubeconfig (the local stack after `. .dev/env`,
# or any cluster): nothing is created. The CRD is dry-run too; the ServiceMonitor case is
# left out because it needs the Prometheus Operator's CRDs.
helm-dry-run: ## kubectl apply --dry-run=server the CRD and the chart (defaults, kind values, one namespace)
	$(KUBECTL) apply --dry-run=server --server-side -f '$(CHART_DIR)/crds/'
	@set -e; for v in "" "-f $(KIND_VALUES)" "--set operator.watchNamespace=$(DRY_RUN_NAMESPACE)"; do \
		echo "helm template $(HELM_RELEASE) $(CHART_DIR) $$v | kubectl apply --dry-run=server --validate=strict"; \
		$(HELM) template '$(HELM_RELEASE)' '$(CHART_DIR)' --namespace '$(DRY_RUN_NAMESPACE)' \
			--kube-version '$(HELM_KUBE_VERSION)' $$v \
			| $(KUBECTL) apply --dry-run=server --validate=strict -n '$(DRY_RUN_NAMESPACE)' -f -; \
	done

helm-template: ## Render the chart with the kind values to stdout (e.g. | kubectl apply --dry-run=server -f -)
	@$(HELM) template '$(HELM_RELEASE)' '$(CHART_DIR)' --namespace '$(HELM_NAMESPACE)' \
		--kube-version '$(HELM_KUBE_VERSION)' -f '$(KIND_VALUES)'
