//! The integration tests of this crate, one module per behaviour, linked into one test binary.

mod parity;
