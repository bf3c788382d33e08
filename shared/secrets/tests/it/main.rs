//! The integration tests of this crate, one module per behaviour, linked into one test binary
//! (one link instead of one per file).

mod aws_store;
mod behaviour;
mod common;
mod file_store;
mod key_vault_store;
mod keyvault_double;
