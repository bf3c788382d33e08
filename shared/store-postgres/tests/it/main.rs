//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file). All of them run against a real PostgreSQL server: the one
//! `AZS_USAGE_TEST_POSTGRES` names, or else one `scripts/postgres.sh start` brings up.

mod concurrency;
mod conformance;
mod rating;
mod server;
