//! Rating and statements: collected usage becomes money an operator can invoice.
//!
//! The data model, bottom up:
//!
//! - [`PriceBook`] (`book.rs`): an id, an ISO 4217 [`Currency`] and effective-dated
//!   [`BookVersion`]s; a version prices meters ([`MeterPrice`]: unit, by property, tiered or zero
//!   with a reason; an optional unit multiplier), sets fees and a tax rate, and may derive from a
//!   parent book with a markup or discount.
//! - [`Assignment`] (`assign.rs`): which book a billing subscription rates with, a default plus
//!   per-subscription overrides, each effective from a UTC hour.
//! - [`RateCard`]: a book version flattened with its parents at one hour; [`rate`] (`rate.rs`) turns
//!   one usage row and the card in force at its usage hour into a [`RatedLine`], exact.
//! - [`Statement`] (`statement.rs`): per billing subscription per UTC [`Month`]: lines per meter,
//!   book lineage and price component (correction lines name the month they correct), fees, tax,
//!   totals rounded by the rule in `money.rs`, the unpriced meters, each stamp's proof, and the
//!   [`Blocker`]s that keep it a draft.
//! - `statement_csv.rs`: a statement as CSV for the customer (its lines, fees, tax and totals).
//! - `focus.rs`: statements as FOCUS rows (the FinOps Open Cost and Usage Specification).
//! - `margin.rs`: revenue less the operator's cost (the cost book) per meter and stamp, for a month
//!   or one statement.
//! - `rerate.rs`: price corrections of a final month, a what-if until confirmed onto the next draft.
//! - `html.rs`: a statement as an HTML page from the `statement.html` template.
//! - `ports.rs`: `PriceBookStore` and `StatementStore`, what a store implements to keep them.

pub mod assign;
pub mod book;
pub mod book_csv;
pub mod focus;
pub mod html;
pub mod margin;
pub mod money;
pub mod ports;
pub mod rate;
pub mod rerate;
pub mod statement;
pub mod statement_csv;

pub use assign::{Assignment, Assignments};
pub use book::{BookVersion, MeterPrice, Price, PriceBook, PriceBooks, RateCard};
pub use money::{Currency, Month, round_to_minor_unit};
pub use rate::{Charge, Component, RatedLine, Unrated, rate};
pub use statement::{
    Blocker, RatableRow, StampEvidence, Statement, StatementRequest, StatementSettings, Statements,
    SubscriptionTerm, VerifyRecord, finalize,
};
