//! The EventConsumer operator: CRD types and the reconciler.
#![forbid(unsafe_code)]
