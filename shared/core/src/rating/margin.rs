//! Margin: what the operator earns over what Microsoft charges it. The cost book is an ordinary
//! price book (same format, same import) stored under the reserved id [`COST_BOOK_ID`], holding the
//! pay-as-you-use prices Microsoft charges the operator per meter; it applies to every billing
//! subscription (Microsoft bills the operator one price, whoever used the meter).
//!
//! Revenue per meter and stamp is the month's statement lines (exact amounts, this month's usage;
//! correction lines belong to the month they correct and are left out). Cost is every row of the
//! month rated with the cost book version in force at its usage hour, exact. Rounding, to the
//! currency's minor unit, happens per shown amount and on the totals (each total rounds the exact
//! sum, so lines may not add up to it by a cent).

use super::book::{BookError, PriceBooks, RateCard};
use super::money::{Currency, Month, round_to_minor_unit};
use super::rate::{Charge, rate};
use super::rerate::counted_by_final;
use super::statement::{RatableRow, Statement};
use crate::stamp::StampId;
use crate::window::floor_hour;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The id the operator's cost book is imported under.
pub const COST_BOOK_ID: &str = "operator-cost";

/// One meter on one stamp in the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarginLine {
    pub meter_id: String,
    pub stamp_id: StampId,
    /// Billed to the billing subscriptions (their statement lines), exact.
    pub exact_revenue: Decimal,
    /// Charged by Microsoft (the cost book), exact.
    pub exact_cost: Decimal,
    pub revenue: Decimal,
    pub cost: Decimal,
    /// `revenue - cost`, from the exact amounts, rounded.
    pub margin: Decimal,
}

/// Rows of a meter the cost book cannot cost: listed, never costed at zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Uncosted {
    pub meter_id: String,
    pub stamp_id: StampId,
    pub rows: u64,
    pub reason: String,
}

/// A month's margin over every billing subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarginReport {
    pub month: Month,
    pub currency: Currency,
    /// By meter, then stamp.
    pub lines: Vec<MarginLine>,
    pub revenue: Decimal,
    pub cost: Decimal,
    pub margin: Decimal,
    pub uncosted: Vec<Uncosted>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarginError {
    #[error("no cost book: import the prices Microsoft charges you as price book {COST_BOOK_ID:?} ({0})")]
    NoCostBook(BookError),
    #[error(
        "the statement of {billing_subscription_id} is in {statement}, the cost book in {cost}: margin is worked out in one currency"
    )]
    CurrencyMismatch { billing_subscription_id: String, statement: String, cost: String },
}

/// The margin of `month`: `statements` are the month's (every billing subscription's), `rows` the
/// rows with usage in it (others are ignored), `books` every stored book (the cost book among them).
pub fn margin(
    month: Month,
    statements: &[Statement],
    rows: &[RatableRow],
    books: &PriceBooks,
) -> Result<MarginReport, MarginError> {
    let mut tally = MarginTally::new(month, books)?;
    for s in statements {
        tally.add_statement(s)?;
    }
    for r in rows {
        tally.add_row(r)?;
    }
    Ok(tally.report())
}

/// One statement's margin: the operator's view of it, never the customer's (the statement's JSON,
/// CSV and HTML carry no cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementMargin {
    pub billing_subscription_id: String,
    /// `draft` or `final`, as the statement is.
    pub state: &'static str,
    #[serde(flatten)]
    pub report: MarginReport,
}

/// The margin of `statement` alone, worked out as [`margin`] works out a month: its lines' revenue
/// less the cost of its billing subscription's rows in its month (others in `rows` are ignored).
/// A final statement is costed on the rows it counted ([`counted_by_final`]): usage reported after
/// it is revenue of a later statement's correction, so its cost is left out here too.
pub fn statement_margin(
    statement: &Statement,
    rows: &[RatableRow],
    books: &PriceBooks,
) -> Result<StatementMargin, MarginError> {
    let mut tally = MarginTally::new(statement.month, books)?;
    tally.add_statement(statement)?;
    for r in rows.iter().filter(|r| {
        r.billing_subscription_id == statement.billing_subscription_id
            && (!statement.is_final() || counted_by_final(statement, r))
    }) {
        tally.add_row(r)?;
    }
    Ok(StatementMargin {
        billing_subscription_id: statement.billing_subscription_id.clone(),
        state: if statement.is_final() { "final" } else { "draft" },
        report: tally.report(),
    })
}

/// A month's margin summed as statements and rows stream past: what [`margin`] works out, with
/// nothing held but the sums per meter and stamp (a month's rows need not fit in memory).
pub struct MarginTally<'a> {
    month: Month,
    books: &'a PriceBooks,
    currency: Currency,
    /// Per meter and stamp: exact revenue, exact cost.
    lines: BTreeMap<(String, StampId), (Decimal, Decimal)>,
    /// Rows are hourly: one card per usage hour, built once.
    cards: HashMap<DateTime<Utc>, RateCard>,
    uncosted: BTreeMap<(String, StampId), (u64, String)>,
}

impl<'a> MarginTally<'a> {
    /// An empty tally of `month`; refused when `books` hold no cost book.
    pub fn new(month: Month, books: &'a PriceBooks) -> Result<Self, MarginError> {
        let currency = books
            .get(COST_BOOK_ID)
            .map(|b| b.currency.clone())
            .ok_or_else(|| MarginError::NoCostBook(BookError::UnknownBook { book: COST_BOOK_ID.into() }))?;
        Ok(Self {
            month,
            books,
            currency,
            lines: BTreeMap::new(),
            cards: HashMap::new(),
            uncosted: BTreeMap::new(),
        })
    }

    /// Adds a statement's revenue: its lines of this month's usage (another month's statement adds
    /// nothing; correction lines belong to the month they correct).
    pub fn add_statement(&mut self, s: &Statement) -> Result<(), MarginError> {
        if s.month != self.month {
            return Ok(());
        }
        if let Some(c) = &s.currency
            && c.code != self.currency.code
        {
            return Err(MarginError::CurrencyMismatch {
                billing_subscription_id: s.billing_subscription_id.clone(),
                statement: c.code.clone(),
                cost: self.currency.code.clone(),
            });
        }
        for l in s.lines.iter().filter(|l| l.corrects.is_none()) {
            self.lines.entry((l.meter_id.clone(), l.stamp_id.clone())).or_default().0 += l.exact_amount;
        }
        Ok(())
    }

    /// Adds a row's cost, when its usage is in the month (other rows are ignored).
    pub fn add_row(&mut self, r: &RatableRow) -> Result<(), MarginError> {
        if !self.month.contains(r.row.usage_start) {
            return Ok(());
        }
        let hour = floor_hour(r.row.usage_start);
        let card = match self.cards.entry(hour) {
            std::collections::hash_map::Entry::Occupied(card) => card.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(self.books.card_at(COST_BOOK_ID, hour).map_err(MarginError::NoCostBook)?)
            }
        };
        let cost = match rate(&r.row, card) {
            Ok(line) => match line.charge {
                Charge::Priced { amount, .. } => Ok((line.meter.to_string(), amount)),
                Charge::Zero => Ok((line.meter.to_string(), Decimal::ZERO)),
                Charge::Tiered { .. } => Err((
                    line.meter.to_string(),
                    "the cost book prices it by tiers; a cost is a unit, property or zero price".into(),
                )),
            },
            Err(unrated) => Err((r.row.meter_id.clone(), unrated.to_string())),
        };
        match cost {
            Ok((meter, amount)) => self.lines.entry((meter, r.stamp_id.clone())).or_default().1 += amount,
            Err((meter, reason)) => {
                let entry = self.uncosted.entry((meter, r.stamp_id.clone())).or_insert((0, reason));
                entry.0 += 1;
            }
        }
        Ok(())
    }

    /// The margin of what was added.
    pub fn report(self) -> MarginReport {
        let currency = self.currency;
        let round = |a: Decimal| round_to_minor_unit(a, currency.minor_units);
        let (mut revenue, mut cost) = (Decimal::ZERO, Decimal::ZERO);
        let lines = self
            .lines
            .into_iter()
            .map(|((meter_id, stamp_id), (exact_revenue, exact_cost))| {
                revenue += exact_revenue;
                cost += exact_cost;
                MarginLine {
                    meter_id,
                    stamp_id,
                    exact_revenue,
                    exact_cost,
                    revenue: round(exact_revenue),
                    cost: round(exact_cost),
                    margin: round(exact_revenue - exact_cost),
                }
            })
            .collect();
        MarginReport {
            month: self.month,
            currency: currency.clone(),
            lines,
            revenue: round(revenue),
            cost: round(cost),
            margin: round(revenue - cost),
            uncosted: self
                .uncosted
                .into_iter()
                .map(|((meter_id, stamp_id), (rows, reason))| Uncosted { meter_id, stamp_id, rows, reason })
                .collect(),
        }
    }
}
