//! End-to-end tests of the local stack live in `tests/`; this library is empty.
//!
//! `tests/kafka.rs` proves Kafka is real (topics, produce, consume, committed offsets);
//! `tests/kubernetes.rs` proves the control plane is (readiness, the kwok node,
//! Deployment → ReplicaSet → Pod, garbage collection); `tests/system.rs` tests the whole
//! system on them: the Helm chart, the operator as the chart's ServiceAccount, a worker per
//! pod of the examples, and the gateway.
#![forbid(unsafe_code)]
