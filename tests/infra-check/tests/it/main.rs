//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod artifacts;
mod azapi_schema;
mod checkov;
mod dashboards;
mod environment;
mod exposure;
mod schedule;
