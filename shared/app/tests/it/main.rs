//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod collector_panic;
mod credential_sources;
mod metrics;
mod outbound;
mod rating_webhook;
mod serve;
mod statement_pass;
mod statements;
mod webhook;
