//! Price corrections for a closed month: the what-if a newer book version makes against a final
//! statement, checked against a computation written here, and the correction lines it becomes.

use crate::rating::{
    IP, books, build_november, d, evidence_for, november, request, simulated_month, t, usage,
};
use azs_core::rating::rerate::{add_rerate, carry_rerates, counted_by_final, price_differences};
use azs_core::rating::{
    BookVersion, Month, Price, PriceBook, PriceBooks, StatementSettings, Statements, finalize,
    round_to_minor_unit,
};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const IP_MULTIPLIER: &str = "0.0013698630";

/// The stored books plus base version 3: from 20 November the IP address costs 4.00, not 3.65.
fn books_with_v3() -> PriceBooks {
    let mut base = books().get("base").unwrap().clone();
    let mut v3: BookVersion = base.versions.last().unwrap().clone();
    v3.version = 3;
    v3.effective_from = t("2026-11-20T00:00:00Z");
    for m in v3
        .meters
        .iter_mut()
        .filter(|m| m.meter_id.replace('-', "").eq_ignore_ascii_case(&IP.replace('-', "")))
    {
        m.price = Price::Unit { unit_price: d("4.00") };
    }
    base.versions.push(v3);
    let others = ["gold", "premium"].map(|id| books().get(id).unwrap().clone());
    PriceBooks::new(std::iter::once(base.validated().unwrap()).chain(others).collect::<Vec<PriceBook>>())
}

#[test]
fn a_newer_version_for_a_final_month_is_a_what_if_equal_to_the_price_change_on_the_rows_it_reprices() {
    // Given cust-a's November final, one late IP row reported after it, and base version 3
    let mut rows = simulated_month(0x72);
    let final_ = build_november(&rows, "2026-12-03T00:00:00Z")
        .into_iter()
        .find(|s| s.billing_subscription_id == "cust-a")
        .map(|s| finalize(s, t("2026-12-03T00:05:00Z")).unwrap())
        .unwrap();
    let mut late = usage("stamp-east", "cust-a", IP, t("2026-11-30T23:00:00Z"), d("7"), None);
    late.reported_start = t("2026-12-04T00:00:00Z");
    rows.push(late);
    let (books, assignments) = (books_with_v3(), crate::rating::assignments());

    // When November is rebuilt with today's books from the rows its final counted
    let counted: Vec<_> = rows.iter().filter(|r| counted_by_final(&final_, r)).cloned().collect();
    let evidence = evidence_for(november());
    let rebuilt = Statements::new(&books, &assignments, StatementSettings::default()).build(&request(
        "cust-a",
        november(),
        &counted,
        &[],
        &evidence,
        "2026-12-05T00:00:00Z",
    ));
    let rerate = price_differences(&final_, &rebuilt, &[], t("2026-12-05T00:00:00Z"));

    // Then only IP lines differ, per stamp by (4.00 - 3.65) x multiplier x the quantity from the
    // 20th on (the late row excluded: it is a late-usage correction of its own)
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.billing_subscription_id == "cust-a" && r.row.meter_id == IP) {
        if r.row.usage_start >= t("2026-11-20T00:00:00Z") && r.reported_start < t("2026-12-02T05:00:00Z") {
            *expected.entry(r.stamp_id.0.clone()).or_default() +=
                r.row.quantity * d(IP_MULTIPLIER) * (d("4.00") - d("3.65"));
        }
    }
    let got: BTreeMap<String, Decimal> =
        rerate.lines.iter().map(|l| (l.stamp_id.0.clone(), l.difference)).collect();
    assert!(rerate.lines.iter().all(|l| l.meter_id == IP.replace('-', "").to_uppercase()), "{rerate:#?}");
    assert_eq!(got, expected);
    let total: Decimal = expected.values().sum();
    assert_eq!(rerate.difference, round_to_minor_unit(total, 2));
    assert!(rerate.difference > Decimal::ZERO);

    // And confirmed onto December's draft it is a correction naming November, taxed at 19 %
    let december: Month = "2026-12".parse().unwrap();
    let draft = Statements::new(&books, &assignments, StatementSettings::default()).build(&request(
        "cust-a",
        december,
        &rows,
        std::slice::from_ref(&final_),
        &evidence,
        "2026-12-05T00:00:00Z",
    ));
    let corrected = add_rerate(draft.clone(), rerate.clone());
    let added: Vec<_> = corrected.lines[draft.lines.len()..].iter().collect();
    assert_eq!(added.len(), expected.len());
    assert!(added.iter().all(|l| l.corrects == Some(november())));
    assert_eq!(corrected.corrections - draft.corrections, added.iter().map(|l| l.amount).sum::<Decimal>());
    assert_eq!(corrected.subtotal, corrected.usage + corrected.corrections + corrected.fees_total);
    assert_eq!(corrected.tax, round_to_minor_unit(corrected.subtotal * d("0.19"), 2));
    assert_eq!(corrected.total, corrected.subtotal + corrected.tax);

    // And a rebuilt draft carries it, and confirming again corrects nothing more
    assert_eq!(carry_rerates(draft, Some(&corrected)), corrected);
    let again = price_differences(&final_, &rebuilt, &[&corrected.rerates[0]], t("2026-12-06T00:00:00Z"));
    assert!(again.lines.is_empty(), "{again:#?}");
}
