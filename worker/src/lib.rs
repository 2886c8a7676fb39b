//! The eventconsumer worker: delivery loop, handlers, gateway and demo.
#![forbid(unsafe_code)]

pub mod events;
pub mod http;
pub mod kafka;
pub mod telemetry;
