//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod concurrent_writers;
mod conformance;
mod migrations;
mod rating;
