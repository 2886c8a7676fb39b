//! Test helpers shared by the crates' integration tests.
#![forbid(unsafe_code)]
