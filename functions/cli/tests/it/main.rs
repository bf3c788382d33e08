//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod audit;
mod bounded_pulls;
mod catch_up_spans;
mod chaos;
mod collection;
mod common;
mod db_check;
mod html_statement;
mod margin;
mod per_subscriber;
mod quarantine;
mod rating;
mod reprocess_and_verify;
mod rerate;
mod secrets_never_leak;
mod stamp_administration;
