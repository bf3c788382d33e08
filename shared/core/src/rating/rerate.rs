//! Price corrections for a closed month: a final statement never changes, so when a newer book
//! version re-prices a month already invoiced, the difference is worked out as a what-if (the
//! month rebuilt from exactly the rows its final counted, with the books as they are now) and,
//! once confirmed, carried as correction lines on the billing subscription's next open statement.
//!
//! The what-if covers every amount of the statement:
//! - usage, per meter, stamp and price component ([`PriceDifference`]): exact rerated less exact
//!   final amounts;
//! - fees, per kind ([`FeeDifference`]): the month's monthly fee over all its stretches whatever
//!   book priced them (a version boundary alone changes nothing), and its one-time fee;
//! - tax ([`TaxDifference`]), by this rule: **a corrected month is taxed by its own tax rule**, as
//!   the books state it now. Its corrected taxed amount is what its final statement taxed plus every
//!   correction of it confirmed so far (this one included, each line rounded as it is invoiced);
//!   the corrected tax is that amount at the month's tax rate, rounded; the tax difference is the
//!   corrected tax less the final's tax less the tax differences already confirmed. The open
//!   statement that carries the correction does not tax the corrected amounts again at its own
//!   rate: its `tax` is its own amounts at its own rate plus the rerates' tax differences.
//!
//! A confirmed [`Rerate`] is kept inside that draft (`Statement::rerates`) so every later rebuild of
//! the draft carries it again; what was already confirmed for a month is subtracted, so confirming
//! twice corrects once. A rerate a final statement itself carries (of an earlier month) is a
//! settled amount: the what-if of that final carries it unchanged.

use super::money::{Month, round_to_minor_unit};
use super::rate::Component;
use super::statement::{FeeKind, FeeLine, RatableRow, Statement, StatementLine};
use crate::stamp::StampId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The tax rule of corrections, as the CLI and the API state it.
pub const TAX_RULE: &str = "each corrected month is taxed at its own tax rate (as its books state it now); \
     the open statement does not tax these corrections again at its own rate";

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
    /// The lines' location (the stamp's region) and pricing unit.
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub pricing_unit: Option<String>,
    pub pricing_quantity: Decimal,
    /// Exact amounts: on the final statement, re-rated now, and their difference (less any part
    /// already confirmed).
    pub final_amount: Decimal,
    pub rerated_amount: Decimal,
    pub difference: Decimal,
}

/// A fee of the month the newer books price differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeDifference {
    pub kind: FeeKind,
    /// The book lineages that priced the fee on the final, and now (`, `-separated when a
    /// version boundary splits the month).
    pub final_book: String,
    pub book: String,
    /// Exact amounts: on the final, re-rated now, and their difference (less any part already
    /// confirmed).
    pub final_amount: Decimal,
    pub rerated_amount: Decimal,
    pub difference: Decimal,
}

/// The corrected month's tax, by the rule in this module's documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaxDifference {
    /// The month's tax rate on its final statement, and in the books now.
    pub final_tax_percent: Decimal,
    pub tax_percent: Decimal,
    /// What the final taxed, and that plus every correction of the month confirmed so far
    /// (this one included), rounded as invoiced.
    pub final_taxed: Decimal,
    pub corrected_taxed: Decimal,
    /// The final's tax, and `corrected_taxed` at `tax_percent`, rounded.
    pub final_tax: Decimal,
    pub corrected_tax: Decimal,
    /// `corrected_tax - final_tax`, less the tax differences already confirmed: rounded already.
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
    /// Usage lines.
    pub lines: Vec<PriceDifference>,
    #[serde(default)]
    pub fees: Vec<FeeDifference>,
    #[serde(default)]
    pub tax: Option<TaxDifference>,
    /// The exact differences of usage and fees summed, rounded to the currency's minor unit
    /// (before tax).
    pub difference: Decimal,
    /// What the correction adds to the statement it is confirmed onto: each line and fee
    /// difference rounded as invoiced, plus the tax difference.
    #[serde(default)]
    pub total: Decimal,
}

impl Rerate {
    /// Whether the books as they are now change nothing on the month.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.fees.is_empty() && self.tax.is_none()
    }

    /// The usage and fee corrections as invoiced (each rounded), before tax.
    fn taxed_amount(&self, minor_units: u32) -> Decimal {
        let round = |a: Decimal| round_to_minor_unit(a, minor_units);
        self.lines
            .iter()
            .map(|l| round(l.difference))
            .chain(self.fees.iter().map(|f| round(f.difference)))
            .sum()
    }

    fn tax_difference(&self) -> Decimal {
        self.tax.as_ref().map_or(Decimal::ZERO, |t| t.difference)
    }
}

/// Whether `final_` counted `r`: reported before the watermark the final recorded for its stamp.
/// The what-if rebuilds the month from these rows only, so late usage (already a correction of its
/// own) is not counted twice.
pub fn counted_by_final(final_: &Statement, r: &RatableRow) -> bool {
    final_.stamps.iter().any(|p| p.stamp_id == r.stamp_id && r.reported_start < p.watermark)
}

type Key = (Option<Month>, String, StampId, Component);

fn minor_units(s: &Statement) -> u32 {
    s.currency.as_ref().map_or(2, |c| c.minor_units)
}

/// What `rebuilt` (the final's month built afresh with today's books from [`counted_by_final`]'s
/// rows) differs from `final_` by, less what `confirmed` rerates of the month already carry.
pub fn price_differences(
    final_: &Statement,
    rebuilt: &Statement,
    confirmed: &[&Rerate],
    at: DateTime<Utc>,
) -> Rerate {
    // The rerates the final carries (of earlier months) are settled: the what-if carries them too.
    let rebuilt = final_.rerates.iter().cloned().fold(rebuilt.clone(), add_rerate);
    let confirmed: Vec<&Rerate> = confirmed.iter().copied().filter(|r| r.month == final_.month).collect();
    let minor_units = minor_units(final_);
    let lines = line_differences(final_, &rebuilt, &confirmed);
    let fees = fee_differences(final_, &rebuilt, &confirmed);
    let mut rerate = Rerate {
        billing_subscription_id: final_.billing_subscription_id.clone(),
        month: final_.month,
        at,
        difference: round_to_minor_unit(
            lines.iter().map(|l| l.difference).chain(fees.iter().map(|f| f.difference)).sum(),
            minor_units,
        ),
        lines,
        fees,
        tax: None,
        total: Decimal::ZERO,
    };
    rerate.tax = tax_difference(final_, &rebuilt, &confirmed, &rerate);
    rerate.total = rerate.taxed_amount(minor_units) + rerate.tax_difference();
    rerate
}

fn line_differences(final_: &Statement, rebuilt: &Statement, confirmed: &[&Rerate]) -> Vec<PriceDifference> {
    #[derive(Default)]
    struct Sides {
        final_book: String,
        book: String,
        location: String,
        pricing_unit: Option<String>,
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
        s.location = l.location.clone();
        s.pricing_unit = l.pricing_unit.clone();
        s.final_amount += l.exact_amount;
        s.quantity += l.pricing_quantity;
    }
    for l in &rebuilt.lines {
        let s = sides.entry(key(l)).or_default();
        s.book = l.book.clone();
        s.rerated_amount += l.exact_amount;
        if s.final_book.is_empty() {
            s.quantity += l.pricing_quantity;
            s.location = l.location.clone();
        }
        s.pricing_unit = l.pricing_unit.clone().or(s.pricing_unit.take());
    }
    for d in confirmed.iter().flat_map(|r| &r.lines) {
        let k = (d.corrects, d.meter_id.clone(), d.stamp_id.clone(), d.component.clone());
        sides.entry(k).or_default().confirmed += d.difference;
    }
    sides
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
                location: s.location,
                pricing_unit: s.pricing_unit,
                pricing_quantity: s.quantity,
                final_amount: s.final_amount,
                rerated_amount: s.rerated_amount,
                difference,
            })
        })
        .collect()
}

/// Per fee kind, over the month's own fees (a fee correction the final carries is settled).
/// A monthly fee is compared as fee x active hours summed, divided by the month's hours once: the
/// same fee split at a version boundary is then exactly the same amount.
fn fee_differences(final_: &Statement, rebuilt: &Statement, confirmed: &[&Rerate]) -> Vec<FeeDifference> {
    let month_hours = Decimal::from(final_.month.hours());
    let value = |f: &FeeLine| match f.kind {
        FeeKind::Monthly => f.fee * Decimal::from(f.active_hours),
        FeeKind::OneTime => f.fee,
    };
    let amount = |kind: FeeKind, value: Decimal| match kind {
        FeeKind::Monthly => value / month_hours,
        FeeKind::OneTime => value,
    };
    let side = |s: &Statement, kind: FeeKind| {
        let fees: Vec<&FeeLine> = s.fees.iter().filter(|f| f.corrects.is_none() && f.kind == kind).collect();
        let books: BTreeSet<&str> = fees.iter().map(|f| f.book.as_str()).collect();
        (fees.iter().map(|f| value(f)).sum::<Decimal>(), books.into_iter().collect::<Vec<_>>().join(", "))
    };
    [FeeKind::Monthly, FeeKind::OneTime]
        .into_iter()
        .filter_map(|kind| {
            let (final_value, final_book) = side(final_, kind);
            let (rerated_value, book) = side(rebuilt, kind);
            let already: Decimal =
                confirmed.iter().flat_map(|r| &r.fees).filter(|f| f.kind == kind).map(|f| f.difference).sum();
            let difference = amount(kind, rerated_value - final_value) - already;
            (!difference.is_zero()).then_some(FeeDifference {
                kind,
                final_book,
                book,
                final_amount: amount(kind, final_value),
                rerated_amount: amount(kind, rerated_value),
                difference,
            })
        })
        .collect()
}

/// The month's tax as corrected, less what its final and the confirmed rerates already charged.
fn tax_difference(
    final_: &Statement,
    rebuilt: &Statement,
    confirmed: &[&Rerate],
    rerate: &Rerate,
) -> Option<TaxDifference> {
    let minor_units = minor_units(final_);
    let final_taxed = taxed_base(final_);
    let final_tax = final_.tax - carried_tax(final_);
    let corrected_taxed = final_taxed
        + confirmed.iter().map(|r| r.taxed_amount(minor_units)).sum::<Decimal>()
        + rerate.taxed_amount(minor_units);
    let corrected_tax =
        round_to_minor_unit(corrected_taxed * rebuilt.tax_percent / Decimal::ONE_HUNDRED, minor_units);
    let difference =
        corrected_tax - final_tax - confirmed.iter().map(|r| r.tax_difference()).sum::<Decimal>();
    (!difference.is_zero()).then_some(TaxDifference {
        final_tax_percent: final_.tax_percent,
        tax_percent: rebuilt.tax_percent,
        final_taxed,
        corrected_taxed,
        final_tax,
        corrected_tax,
        difference,
    })
}

/// What a statement taxes at its own rate: its subtotal less the corrections of rerates it carries
/// (those are taxed at their own month's rate).
pub fn taxed_base(s: &Statement) -> Decimal {
    s.subtotal - s.rerates.iter().map(|r| r.taxed_amount(minor_units(s))).sum::<Decimal>()
}

/// The tax differences of the rerates a statement carries (inside its `tax`).
pub fn carried_tax(s: &Statement) -> Decimal {
    s.rerates.iter().map(Rerate::tax_difference).sum()
}

/// `draft` with `rerate`'s differences as correction lines and fee lines (naming the re-rated
/// month, over its hours) and its totals worked out again: the draft's own amounts taxed at its
/// rate, the rerate's tax difference added (the rule in this module's documentation), rounding by
/// the statement rule. The rerate is kept in the draft so the next rebuild carries it
/// ([`carry_rerates`]).
pub fn add_rerate(mut draft: Statement, rerate: Rerate) -> Statement {
    let minor_units = minor_units(&draft);
    let round = |a: Decimal| round_to_minor_unit(a, minor_units);
    let label = |final_book: &str, book: &str| format!("re-rated {} ({final_book} -> {book})", rerate.month);
    for d in &rerate.lines {
        let corrected = d.corrects.unwrap_or(rerate.month);
        let unit =
            if d.pricing_quantity.is_zero() { Decimal::ZERO } else { d.difference / d.pricing_quantity };
        let line = StatementLine {
            corrects: Some(corrected),
            meter_id: d.meter_id.clone(),
            stamp_id: d.stamp_id.clone(),
            location: d.location.clone(),
            book: label(&d.final_book, &d.book),
            component: d.component.clone(),
            pricing_unit: d.pricing_unit.clone(),
            zero_reason: None,
            rows: 0,
            usage_from: corrected.start(),
            usage_to: corrected.end(),
            consumed_quantity: Decimal::ZERO,
            pricing_quantity: d.pricing_quantity,
            unit_price: unit,
            list_unit_price: unit,
            exact_amount: d.difference,
            exact_list_amount: d.difference,
            amount: round(d.difference),
            list_amount: round(d.difference),
            price_correction: true,
        };
        draft.corrections += line.amount;
        draft.lines.push(line);
    }
    for f in &rerate.fees {
        let fee = FeeLine {
            corrects: Some(rerate.month),
            kind: f.kind,
            book: label(&f.final_book, &f.book),
            from: rerate.month.start(),
            to: rerate.month.end(),
            active_hours: 0,
            month_hours: rerate.month.hours(),
            fee: f.difference,
            exact_amount: f.difference,
            amount: round(f.difference),
        };
        draft.corrections += fee.amount;
        draft.fees.push(fee);
    }
    draft.rerates.push(rerate);
    draft.subtotal = draft.usage + draft.corrections + draft.fees_total;
    draft.tax = round(taxed_base(&draft) * draft.tax_percent / Decimal::ONE_HUNDRED) + carried_tax(&draft);
    draft.total = draft.subtotal + draft.tax;
    draft
}

/// A fresh draft with the rerates confirmed onto the draft it replaces.
pub fn carry_rerates(fresh: Statement, previous: Option<&Statement>) -> Statement {
    let Some(previous) = previous.filter(|p| !p.is_final()) else { return fresh };
    previous.rerates.iter().cloned().fold(fresh, add_rerate)
}
