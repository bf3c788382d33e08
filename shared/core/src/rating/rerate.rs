//! Price corrections for a closed month: a final statement never changes, so when a newer book
//! version re-prices a month already invoiced, the difference is worked out as a what-if (the
//! month rebuilt from exactly the rows its final counted, with the books as they are now) and,
//! once confirmed, carried as correction lines on the billing subscription's next open statement.
//!
//! A confirmed [`Rerate`] is kept inside that draft (`Statement::rerates`) so every later rebuild of
//! the draft carries it again; what was already confirmed for a month is subtracted, so confirming
//! twice corrects once.

use super::money::{Month, round_to_minor_unit};
use super::rate::Component;
use super::statement::{RatableRow, Statement, StatementLine};
use crate::stamp::StampId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One meter, stamp and price the newer books price differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceDifference {
    /// The month the final statement's line itself corrected, if it was a late-usage line.
    pub corrects: Option<Month>,
    pub meter_id: String,
    pub stamp_id: StampId,
    pub component: Component,
    /// The book lineage the final used, and the one that prices the month now.
    pub final_book: String,
    pub book: String,
    pub pricing_quantity: Decimal,
    /// Exact amounts: on the final statement, re-rated now, and their difference (less any part
    /// already confirmed).
    pub final_amount: Decimal,
    pub rerated_amount: Decimal,
    pub difference: Decimal,
}

/// The difference newer books make to one final statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rerate {
    pub billing_subscription_id: String,
    /// The final month re-rated.
    pub month: Month,
    pub at: DateTime<Utc>,
    pub lines: Vec<PriceDifference>,
    /// The exact differences summed, rounded to the currency's minor unit (before tax).
    pub difference: Decimal,
}

/// Whether `final_` counted `r`: reported before the watermark the final recorded for its stamp.
/// The what-if rebuilds the month from these rows only, so late usage (already a correction of its
/// own) is not counted twice.
pub fn counted_by_final(final_: &Statement, r: &RatableRow) -> bool {
    final_.stamps.iter().any(|p| p.stamp_id == r.stamp_id && r.reported_start < p.watermark)
}

type Key = (Option<Month>, String, StampId, Component);

/// What `rebuilt` (the final's month rebuilt with today's books from [`counted_by_final`]'s rows)
/// differs from `final_` by, less what `confirmed` rerates of the month already carry.
pub fn price_differences(
    final_: &Statement,
    rebuilt: &Statement,
    confirmed: &[&Rerate],
    at: DateTime<Utc>,
) -> Rerate {
    #[derive(Default)]
    struct Sides {
        final_book: String,
        book: String,
        quantity: Decimal,
        final_amount: Decimal,
        rerated_amount: Decimal,
        confirmed: Decimal,
    }
    let key = |l: &StatementLine| (l.corrects, l.meter_id.clone(), l.stamp_id.clone(), l.component.clone());
    let mut sides: BTreeMap<Key, Sides> = BTreeMap::new();
    for l in &final_.lines {
        let s = sides.entry(key(l)).or_default();
        s.final_book = l.book.clone();
        s.final_amount += l.exact_amount;
        s.quantity += l.pricing_quantity;
    }
    for l in &rebuilt.lines {
        let s = sides.entry(key(l)).or_default();
        s.book = l.book.clone();
        s.rerated_amount += l.exact_amount;
        if s.final_book.is_empty() {
            s.quantity += l.pricing_quantity;
        }
    }
    for d in confirmed.iter().filter(|r| r.month == final_.month).flat_map(|r| &r.lines) {
        let k = (d.corrects, d.meter_id.clone(), d.stamp_id.clone(), d.component.clone());
        sides.entry(k).or_default().confirmed += d.difference;
    }
    let lines: Vec<PriceDifference> = sides
        .into_iter()
        .filter_map(|((corrects, meter_id, stamp_id, component), s)| {
            let difference = s.rerated_amount - s.final_amount - s.confirmed;
            (!difference.is_zero()).then_some(PriceDifference {
                corrects,
                meter_id,
                stamp_id,
                component,
                final_book: s.final_book,
                book: s.book,
                pricing_quantity: s.quantity,
                final_amount: s.final_amount,
                rerated_amount: s.rerated_amount,
                difference,
            })
        })
        .collect();
    let minor_units = final_.currency.as_ref().map_or(2, |c| c.minor_units);
    let difference = round_to_minor_unit(lines.iter().map(|l| l.difference).sum(), minor_units);
    Rerate {
        billing_subscription_id: final_.billing_subscription_id.clone(),
        month: final_.month,
        at,
        lines,
        difference,
    }
}

/// `draft` with `rerate`'s differences as correction lines (naming the re-rated month) and its
/// totals worked out again: tax at the draft's rate, rounding by the statement rule. The rerate is
/// kept in the draft so the next rebuild carries it ([`carry_rerates`]).
pub fn add_rerate(mut draft: Statement, rerate: Rerate) -> Statement {
    let minor_units = draft.currency.as_ref().map_or(2, |c| c.minor_units);
    let round = |a: Decimal| round_to_minor_unit(a, minor_units);
    for d in &rerate.lines {
        let unit =
            if d.pricing_quantity.is_zero() { Decimal::ZERO } else { d.difference / d.pricing_quantity };
        let line = StatementLine {
            corrects: Some(d.corrects.unwrap_or(rerate.month)),
            meter_id: d.meter_id.clone(),
            stamp_id: d.stamp_id.clone(),
            location: String::new(),
            book: format!("re-rated {} ({} -> {})", rerate.month, d.final_book, d.book),
            component: d.component.clone(),
            pricing_unit: None,
            zero_reason: None,
            rows: 0,
            usage_from: rerate.month.start(),
            usage_to: rerate.month.end(),
            consumed_quantity: Decimal::ZERO,
            pricing_quantity: d.pricing_quantity,
            unit_price: unit,
            list_unit_price: unit,
            exact_amount: d.difference,
            exact_list_amount: d.difference,
            amount: round(d.difference),
            list_amount: round(d.difference),
        };
        draft.corrections += line.amount;
        draft.lines.push(line);
    }
    draft.subtotal = draft.usage + draft.corrections + draft.fees_total;
    draft.tax = round(draft.subtotal * draft.tax_percent / Decimal::ONE_HUNDRED);
    draft.total = draft.subtotal + draft.tax;
    draft.rerates.push(rerate);
    draft
}

/// A fresh draft with the rerates confirmed onto the draft it replaces.
pub fn carry_rerates(fresh: Statement, previous: Option<&Statement>) -> Statement {
    let Some(previous) = previous.filter(|p| !p.is_final()) else { return fresh };
    previous.rerates.iter().cloned().fold(fresh, add_rerate)
}
