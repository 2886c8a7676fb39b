# The three-broker cluster's fault tests (hack/cluster-test.sh). Included from the root
# Makefile.

.PHONY: cluster-test

cluster-test: ## Broker faults on a three-broker cluster: gateway, operator, small chaos; ends with `N passed, N failed`.
	hack/cluster-test.sh
