//! The EventConsumer operator: the `EventConsumer` CRD and the reconciler that turns each one
//! into a Deployment of `eventconsumer-worker` pods.
//!
//! One reconcile: dereference (read the CR and the Secrets it names) → [`config::validate`] into
//! a [`config::ValidConsumer`] → [`deployment::build`] (pure) → server-side apply when
//! [`drift`] finds a difference → [`status::compute`] from the Deployment → status patch when it
//! changed. [`observer`] measures lag and dead letters from Kafka beside the reconciler and
//! writes the autoscaler's decisions, which the reconciler turns into replicas.
//! [`manager::run`] runs it under [`leader`] election; `main.rs` adds the CLI and
//! [`http`] endpoints.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod cli;
pub mod config;
pub mod context;
pub mod crd;
pub mod deployment;
pub mod drift;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod observer;
pub mod reconcile;
pub mod redrive;
pub mod status;

#[cfg(test)]
mod test_fixtures;
