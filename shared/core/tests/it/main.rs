//! azs-core's integration tests: one binary, one module per subject.

mod focus;
mod html;
mod margin;
mod rating;
mod rerate;
mod statement_csv;
