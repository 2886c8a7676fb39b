//! End-to-end tests of the local stack live in `tests/`; this library is empty.
//!
//! `tests/kafka.rs` proves Kafka is real (topics, produce, consume, committed offsets);
//! `tests/kubernetes.rs` proves the control plane is (readiness, the kwok node,
//! Deployment → ReplicaSet → Pod, garbage collection).
#![forbid(unsafe_code)]
