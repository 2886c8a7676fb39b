//! The eventconsumer worker: delivery loop, handlers, gateway and demo.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod duration;
pub mod events;
pub mod gateway;
pub mod handlers;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod producer;
pub mod telemetry;
pub mod testing;
pub mod transactions;
