//! The eventconsumer worker: delivery loop, handlers, gateway and demo.
#![forbid(unsafe_code)]
