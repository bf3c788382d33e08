//! Margin against the operator's cost book: revenue from the statements, cost from every row at
//! the cost book version in force at its hour, checked against a computation written here.

use crate::rating::{
    BLOCK_BLOB, IP, PAGE_BLOB, TABLE_TX, VM, books, build_november, d, november, simulated_month, t,
};
use azs_core::StampId;
use azs_core::rating::margin::{COST_BOOK_ID, MarginError, margin, statement_margin};
use azs_core::rating::{PriceBook, PriceBooks, round_to_minor_unit};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Microsoft's prices to the operator: the VM price drops on 10 November at 05:00.
pub(crate) fn cost_book(with_page_blob: bool) -> PriceBook {
    let meters = |vm: &str| {
        let mut m = vec![
            serde_json::json!({"meterId": VM, "price": {"kind": "unit", "unitPrice": vm}}),
            serde_json::json!({"meterId": IP, "price": {"kind": "unit", "unitPrice": "0.004"}}),
            serde_json::json!({"meterId": BLOCK_BLOB, "price": {"kind": "unit", "unitPrice": "0.00003"}}),
            serde_json::json!({"meterId": TABLE_TX, "price": {"kind": "zero", "reason": "free to the operator"}}),
        ];
        if with_page_blob {
            m.push(
                serde_json::json!({"meterId": PAGE_BLOB, "price": {"kind": "unit", "unitPrice": "0.0001"}}),
            );
        }
        m
    };
    let json = serde_json::json!({"id": COST_BOOK_ID, "currency": {"code": "USD", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z", "meters": meters("0.02")},
        {"version": 2, "effectiveFrom": "2026-11-10T05:00:00Z", "meters": meters("0.018")}
    ]});
    serde_json::from_value::<PriceBook>(json).unwrap().validated().unwrap()
}

pub(crate) fn with_cost(cost: PriceBook) -> PriceBooks {
    let mut all: Vec<PriceBook> =
        ["base", "gold", "premium"].iter().map(|id| books().get(id).unwrap().clone()).collect();
    all.push(cost);
    PriceBooks::new(all)
}

fn key(meter: &str) -> String {
    meter.replace('-', "").to_uppercase()
}

/// The cost price written out by hand, not read from the book.
fn cost_price(meter: &str, hour: DateTime<Utc>) -> Decimal {
    match meter {
        VM if hour < t("2026-11-10T05:00:00Z") => d("0.02"),
        VM => d("0.018"),
        IP => d("0.004"),
        BLOCK_BLOB => d("0.00003"),
        PAGE_BLOB => d("0.0001"),
        TABLE_TX => Decimal::ZERO,
        other => panic!("no cost for {other}"),
    }
}

#[test]
fn margin_per_meter_and_stamp_is_revenue_from_the_statements_less_cost_at_each_hours_cost_price() {
    // Given a simulated November, its statements and a cost book whose VM price changes mid-month
    let rows = simulated_month(0x6d);
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    // When the margin is worked out
    let report = margin(november(), &statements, &rows, &with_cost(cost_book(true))).unwrap();
    // Then each meter and stamp's cost is the sum of quantity times that hour's cost price
    let mut expected: BTreeMap<(String, StampId), (Decimal, Decimal)> = BTreeMap::new();
    for r in &rows {
        let cost = r.row.quantity * cost_price(&r.row.meter_id, r.row.usage_start);
        expected.entry((key(&r.row.meter_id), r.stamp_id.clone())).or_default().1 += cost;
    }
    for s in &statements {
        for l in &s.lines {
            expected.entry((l.meter_id.clone(), l.stamp_id.clone())).or_default().0 += l.exact_amount;
        }
    }
    assert!(report.uncosted.is_empty(), "{:?}", report.uncosted);
    assert_eq!(report.lines.len(), expected.len());
    let cents = |a: Decimal| round_to_minor_unit(a, 2);
    for (line, ((meter, stamp), (revenue, cost))) in report.lines.iter().zip(&expected) {
        assert_eq!((&line.meter_id, &line.stamp_id), (meter, stamp));
        assert_eq!((line.exact_revenue, line.exact_cost), (*revenue, *cost), "{meter} on {stamp}");
        assert_eq!(line.margin, cents(revenue - cost), "{meter} on {stamp}");
    }
    let revenue: Decimal = expected.values().map(|v| v.0).sum();
    let cost: Decimal = expected.values().map(|v| v.1).sum();
    assert_eq!(
        (report.revenue, report.cost, report.margin),
        (cents(revenue), cents(cost), cents(revenue - cost))
    );
    assert!(report.cost > Decimal::ZERO && report.margin != Decimal::ZERO);
}

#[test]
fn a_meter_the_cost_book_lacks_is_listed_uncosted_never_costed_at_zero() {
    let rows = simulated_month(0x6d);
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    let report = margin(november(), &statements, &rows, &with_cost(cost_book(false))).unwrap();
    let uncosted: Vec<_> = report.uncosted.iter().map(|u| (u.meter_id.as_str(), u.rows)).collect();
    let page_rows = |stamp: &str| {
        rows.iter().filter(|r| r.row.meter_id == PAGE_BLOB && r.stamp_id.0 == stamp).count() as u64
    };
    assert_eq!(
        uncosted,
        vec![
            (PAGE_BLOB, page_rows("stamp-east")),
            (PAGE_BLOB, page_rows("stamp-edge")),
            (PAGE_BLOB, page_rows("stamp-west"))
        ]
    );
    assert!(report.uncosted[0].reason.contains("no price"), "{}", report.uncosted[0].reason);
}

#[test]
fn without_a_cost_book_margin_says_which_book_to_import() {
    let err = margin(november(), &[], &[], &books()).unwrap_err();
    assert!(matches!(err, MarginError::NoCostBook(_)));
    assert!(err.to_string().contains(COST_BOOK_ID), "{err}");
}

#[test]
fn each_statements_margin_is_its_share_of_the_months_and_a_final_one_leaves_out_usage_reported_after_it() {
    // Given November's statements, one of them final, and a VM row reported after that final
    let mut rows = simulated_month(0x6d);
    let mut statements = build_november(&rows, "2026-12-03T00:00:00Z");
    let books = with_cost(cost_book(true));
    let month = margin(november(), &statements, &rows, &books).unwrap();

    // When each statement's margin is worked out
    let mut by_line: BTreeMap<(String, StampId), (Decimal, Decimal)> = BTreeMap::new();
    for s in &statements {
        let one = statement_margin(s, &rows, &books).unwrap();
        assert_eq!(
            (one.billing_subscription_id.as_str(), one.state),
            (s.billing_subscription_id.as_str(), "draft")
        );
        for l in &one.report.lines {
            let sums = by_line.entry((l.meter_id.clone(), l.stamp_id.clone())).or_default();
            sums.0 += l.exact_revenue;
            sums.1 += l.exact_cost;
        }
    }

    // Then the statements' shares add up to the month's margin, line by line, exactly
    let whole: BTreeMap<(String, StampId), (Decimal, Decimal)> = month
        .lines
        .iter()
        .map(|l| ((l.meter_id.clone(), l.stamp_id.clone()), (l.exact_revenue, l.exact_cost)))
        .collect();
    assert_eq!(by_line, whole);

    // And a final statement is costed on the rows it counted: a late row changes nothing
    let final_ = azs_core::rating::finalize(statements.remove(0), t("2026-12-03T00:05:00Z")).unwrap();
    let before = statement_margin(&final_, &rows, &books).unwrap();
    let stamp = final_.stamps[0].stamp_id.0.clone();
    let mut late = crate::rating::usage(
        &stamp,
        &final_.billing_subscription_id,
        VM,
        t("2026-11-30T23:00:00Z"),
        d("5"),
        None,
    );
    late.reported_start = t("2026-12-04T00:00:00Z");
    rows.push(late);
    let after = statement_margin(&final_, &rows, &books).unwrap();
    assert_eq!(after.state, "final");
    assert_eq!(after.report, before.report);
    // (the month's margin, which costs every row with usage in the month, does count it)
    let sub_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.billing_subscription_id == final_.billing_subscription_id)
        .cloned()
        .collect();
    let month = margin(november(), std::slice::from_ref(&final_), &sub_rows, &books).unwrap();
    assert_eq!(
        month.lines.iter().map(|l| l.exact_cost).sum::<Decimal>()
            - before.report.lines.iter().map(|l| l.exact_cost).sum::<Decimal>(),
        d("5") * d("0.018")
    );
}
