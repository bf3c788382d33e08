//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod azure_handler;
mod azure_queue;
mod azure_statements;
mod lambda_bootstrap;
mod lambda_emulator;
mod lambda_queue;
mod packaging;
