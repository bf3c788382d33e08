//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod common;
mod discovery_and_tokens;
mod faults;
mod throughput;
mod usage_api;
