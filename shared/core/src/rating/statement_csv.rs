//! A statement as CSV, for the customer's spreadsheet: one record per line, fee and tax, then the
//! statement's totals, with the same rounded amounts as its JSON (the amounts of the `usage`,
//! `correction`, `fee` and `tax` records add up to the `total` record). It carries what the
//! customer is charged, never what the operator pays (no cost, no margin).
//!
//! Records (the `record` column):
//! - `usage`: a line of this month's usage; `correction`: late usage (or a confirmed price
//!   correction) of the finalised month named in `correctsMonth`;
//! - `fee`: a monthly fee (`pricingQuantity` active hours of `pricingUnit`'s month, `unitPrice` the
//!   whole month's fee) or a one-time fee;
//! - `unpriced`: a meter no book prices (no amount: it blocks finalising, never rated at zero);
//! - `tax`: `unitPrice` percent of `pricingQuantity` (the subtotal, less confirmed price
//!   corrections); and per confirmed price correction, its tax difference at the corrected month's
//!   rate (`correctsMonth` names the month; fee corrections are `correction` records);
//! - `total`: one per total (`component` says which: usage, corrections, fees, discount, subtotal,
//!   total); the discount is information, already inside the lines.
//!
//! Text that comes from stamps and operators (ids, locations, books, price components) is made
//! spreadsheet-safe; amounts and quantities are numbers we write, never escaped.

use super::rerate::{carried_tax, taxed_base};
use super::statement::{FeeKind, Statement, StatementState};
use crate::spreadsheet::{csv_field, spreadsheet_safe};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// The columns, in order.
pub const COLUMNS: &[&str] = &[
    "billingSubscriptionId",
    "month",
    "state",
    "currency",
    "record",
    "correctsMonth",
    "meterId",
    "stampId",
    "location",
    "book",
    "component",
    "zeroReason",
    "from",
    "to",
    "rows",
    "consumedQuantity",
    "pricingQuantity",
    "pricingUnit",
    "unitPrice",
    "amount",
];

/// One record's cells by column; absent ones are empty.
#[derive(Default)]
struct Record {
    record: &'static str,
    corrects_month: String,
    meter_id: String,
    stamp_id: String,
    location: String,
    book: String,
    component: String,
    zero_reason: String,
    from: String,
    to: String,
    rows: String,
    consumed_quantity: String,
    pricing_quantity: String,
    pricing_unit: String,
    unit_price: String,
    amount: String,
}

/// The statement as CSV text: a header, then its records, lines ending in CRLF (RFC 4180).
pub fn statement_csv(s: &Statement) -> String {
    let mut records = Vec::new();
    for l in &s.lines {
        records.push(Record {
            record: if l.corrects.is_some() { "correction" } else { "usage" },
            corrects_month: l.corrects.map(|m| m.to_string()).unwrap_or_default(),
            meter_id: l.meter_id.clone(),
            stamp_id: l.stamp_id.to_string(),
            location: l.location.clone(),
            book: l.book.clone(),
            component: l.component.to_string(),
            zero_reason: l.zero_reason.clone().unwrap_or_default(),
            from: time(l.usage_from),
            to: time(l.usage_to),
            rows: l.rows.to_string(),
            consumed_quantity: l.consumed_quantity.to_string(),
            pricing_quantity: l.pricing_quantity.to_string(),
            pricing_unit: l.pricing_unit.clone().unwrap_or_default(),
            unit_price: l.unit_price.to_string(),
            amount: l.amount.to_string(),
        });
    }
    for f in &s.fees {
        let (component, quantity, unit) = match f.kind {
            FeeKind::Monthly => {
                ("monthly fee", f.active_hours.to_string(), format!("hours of {}", f.month_hours))
            }
            FeeKind::OneTime => ("one-time fee", "1".to_owned(), "one-time".to_owned()),
        };
        records.push(Record {
            // A price correction of a final month's fee counts in the corrections, as in the JSON.
            record: if f.corrects.is_some() { "correction" } else { "fee" },
            corrects_month: f.corrects.map(|m| m.to_string()).unwrap_or_default(),
            book: f.book.clone(),
            component: component.to_owned(),
            from: time(f.from),
            to: time(f.to),
            pricing_quantity: quantity,
            pricing_unit: unit,
            unit_price: f.fee.to_string(),
            amount: f.amount.to_string(),
            ..Record::default()
        });
    }
    for u in &s.unpriced {
        records.push(Record {
            record: "unpriced",
            corrects_month: u.corrects.map(|m| m.to_string()).unwrap_or_default(),
            meter_id: u.meter_id.clone(),
            book: u.book.clone(),
            component: "no price".to_owned(),
            rows: u.rows.to_string(),
            consumed_quantity: u.quantity.to_string(),
            ..Record::default()
        });
    }
    // The statement's own amounts are taxed at its rate; a confirmed price correction's tax
    // difference is worked out at the corrected month's rate (the rule in `rerate.rs`), one record
    // each, so the `tax` records add up to the statement's tax.
    records.push(Record {
        record: "tax",
        component: "tax".to_owned(),
        pricing_quantity: taxed_base(s).to_string(),
        pricing_unit: "percent of the subtotal".to_owned(),
        unit_price: s.tax_percent.to_string(),
        amount: (s.tax - carried_tax(s)).to_string(),
        ..Record::default()
    });
    for (month, tax) in s.rerates.iter().filter_map(|r| r.tax.as_ref().map(|t| (r.month, t))) {
        records.push(Record {
            record: "tax",
            corrects_month: month.to_string(),
            component: "tax correction".to_owned(),
            pricing_quantity: tax.corrected_taxed.to_string(),
            pricing_unit: "percent of the corrected month's taxed amount".to_owned(),
            unit_price: tax.tax_percent.to_string(),
            amount: tax.difference.to_string(),
            ..Record::default()
        });
    }
    for (component, amount) in [
        ("usage", s.usage),
        ("corrections", s.corrections),
        ("fees", s.fees_total),
        ("discount", s.discount),
        ("subtotal", s.subtotal),
        ("total", s.total),
    ] {
        records.push(total(component, amount));
    }

    let state = match s.state {
        StatementState::Draft => "draft",
        StatementState::Final { .. } => "final",
    };
    let currency = s.currency.as_ref().map_or("", |c| c.code.as_str());
    let month = s.month.to_string();
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in &records {
        // Text cells from stamps and operators are made spreadsheet-safe; the rest we wrote.
        let text = |v: &str| csv_field(&spreadsheet_safe(v)).into_owned();
        let cells = [
            text(&s.billing_subscription_id),
            month.clone(),
            state.to_owned(),
            text(currency),
            r.record.to_owned(),
            r.corrects_month.clone(),
            text(&r.meter_id),
            text(&r.stamp_id),
            text(&r.location),
            text(&r.book),
            text(&r.component),
            text(&r.zero_reason),
            r.from.clone(),
            r.to.clone(),
            r.rows.clone(),
            r.consumed_quantity.clone(),
            r.pricing_quantity.clone(),
            text(&r.pricing_unit),
            r.unit_price.clone(),
            r.amount.clone(),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn total(component: &'static str, amount: Decimal) -> Record {
    Record {
        record: "total",
        component: component.to_owned(),
        amount: amount.to_string(),
        ..Record::default()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
