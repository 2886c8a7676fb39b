# The embedded demo: all three use cases in one process on rdkafka's mock cluster.
# Needs only Rust (no cluster, no broker).

.PHONY: demo

demo: ## Run the three use cases on an embedded mock Kafka and print a summary (< 1 min).
	cargo run --release --quiet -p eventconsumer-worker -- demo
