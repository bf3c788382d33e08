//! Price corrections for a closed month: the what-if a newer book version makes against a final
//! statement, checked against a computation written here, and the correction lines it becomes.

use crate::rating::{
    BLOCK_BLOB, IP, PAGE_BLOB, TABLE_TX, VM, books, build_november, d, evidence_for, november, request,
    simulated_month, t, usage,
};
use azs_core::rating::book::{Tier, TierMode};
use azs_core::rating::rerate::{add_rerate, carry_rerates, counted_by_final, price_differences};
use azs_core::rating::statement::{FeeKind, StatementState};
use azs_core::rating::{
    Assignment, Assignments, BookVersion, Month, Price, PriceBook, PriceBooks, RatableRow, Statement,
    StatementSettings, Statements, finalize, round_to_minor_unit,
};
use azs_core::usage::normalize_meter_id;
use rust_decimal::{Decimal, RoundingStrategy};
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

    // And confirmed onto December's draft it is a correction naming November, taxed as November (19 %)
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
    let taxed = final_.subtotal + added.iter().map(|l| l.amount).sum::<Decimal>();
    let tax_difference = round_to_minor_unit(taxed * d("0.19"), 2) - final_.tax;
    assert_eq!(rerate.tax.as_ref().map_or(Decimal::ZERO, |t| t.difference), tax_difference);
    assert_eq!(corrected.tax, draft.tax + tax_difference);
    assert_eq!(corrected.total, corrected.subtotal + corrected.tax);

    // And a rebuilt draft carries it, and confirming again corrects nothing more
    assert_eq!(carry_rerates(draft, Some(&corrected)), corrected);
    let again = price_differences(&final_, &rebuilt, &[&corrected.rerates[0]], t("2026-12-06T00:00:00Z"));
    assert!(again.lines.is_empty(), "{again:#?}");
}

/// A flat book for the fee and tax test: unit prices only, so every amount is a product a reader
/// can check. Version 2 re-prices all of November: VM and blobs up, the IP address down, the
/// monthly fee 50 -> 60, the one-time fee 100 -> 80, tax 19 % -> 21 %.
fn flat_books(with_v2: bool, v2_from: &str, v2_same_as_v1: bool) -> PriceBooks {
    let version = |n: u32, from: &str, [vm, ip, blob, page, monthly, once, tax]: [&str; 7]| {
        serde_json::json!({"version": n, "effectiveFrom": from, "monthlyFee": monthly, "oneTimeFee": once,
            "taxPercent": tax, "meters": [
                {"meterId": VM, "price": {"kind": "unit", "unitPrice": vm}},
                {"meterId": IP, "unitMultiplier": IP_MULTIPLIER, "pricingUnit": "IP address-months",
                 "price": {"kind": "unit", "unitPrice": ip}},
                {"meterId": BLOCK_BLOB, "price": {"kind": "unit", "unitPrice": blob}},
                {"meterId": PAGE_BLOB, "price": {"kind": "unit", "unitPrice": page}},
                {"meterId": TABLE_TX, "price": {"kind": "zero", "reason": "included in the platform fee"}}]})
    };
    let mut versions = vec![version(1, "2026-01-01T00:00:00Z", V1)];
    if with_v2 {
        versions.push(version(2, v2_from, if v2_same_as_v1 { V1 } else { V2 }));
    }
    let book =
        serde_json::json!({"id": "flat", "currency": {"code": "USD", "minorUnits": 2}, "versions": versions});
    let book: PriceBook = serde_json::from_value(book).unwrap();
    PriceBooks::new([book.validated().unwrap()])
}

/// VM, IP, block blob, page blob, monthly fee, one-time fee, tax %.
const V1: [&str; 7] = ["0.0400", "3.65", "0.00011", "0.0002", "50", "100", "19"];
const V2: [&str; 7] = ["0.0450", "3.10", "0.00013", "0.0002", "60", "80", "21"];

fn flat_assignments() -> Assignments {
    Assignments::new([Assignment {
        billing_subscription_id: None,
        book_id: "flat".into(),
        effective_from: t("2026-01-01T00:00:00Z"),
    }])
}

fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[test]
fn a_new_version_that_changes_prices_fees_and_tax_corrects_every_amount_of_the_month_at_its_own_tax_rate() {
    // Given cust-b's November (active from the 5th, 12:00: 612 hours) finalised under version 1
    let rows = simulated_month(0x5b);
    let settings = StatementSettings::default();
    let (v1_books, assignments) = (flat_books(false, "", false), flat_assignments());
    let evidence = evidence_for(november());
    let nov = |books: &PriceBooks, rows: &[RatableRow], now: &str| {
        Statements::new(books, &assignments, settings).build(&request(
            "cust-b",
            november(),
            rows,
            &[],
            &evidence,
            now,
        ))
    };
    let final_ = finalize(nov(&v1_books, &rows, "2026-12-03T00:00:00Z"), t("2026-12-03T00:05:00Z")).unwrap();
    let final_json = final_.to_json();

    // The independent computation: per meter and stamp, quantity x multiplier x price, by hand
    let prices = |v: [&str; 7]| -> BTreeMap<String, Decimal> {
        [(VM, v[0]), (IP, v[1]), (BLOCK_BLOB, v[2]), (PAGE_BLOB, v[3])]
            .into_iter()
            .map(|(m, p)| (normalize_meter_id(m), d(p)))
            .collect()
    };
    let (p1, p2) = (prices(V1), prices(V2));
    let mut exact: BTreeMap<(String, String), (Decimal, Decimal)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.billing_subscription_id == "cust-b") {
        let meter = normalize_meter_id(&r.row.meter_id);
        let Some(price1) = p1.get(&meter) else { continue };
        let quantity =
            if meter == normalize_meter_id(IP) { r.row.quantity * d(IP_MULTIPLIER) } else { r.row.quantity };
        let e = exact.entry((meter.clone(), r.stamp_id.0.clone())).or_default();
        e.0 += quantity * price1;
        e.1 += quantity * p2[&meter];
    }
    let (monthly1, monthly2) = (d("50") * d("612") / d("720"), d("60") * d("612") / d("720"));
    let subtotal1 = exact.values().map(|(a, _)| cents(*a)).sum::<Decimal>() + cents(monthly1) + d("100");
    let tax1 = cents(subtotal1 * d("0.19"));
    assert_eq!((final_.subtotal, final_.tax), (subtotal1, tax1), "the final is what version 1 charges");

    // When version 2 is in the books and November is re-rated from the rows its final counted
    let v2_books = flat_books(true, "2026-11-01T00:00:00Z", false);
    let counted: Vec<_> = rows.iter().filter(|r| counted_by_final(&final_, r)).cloned().collect();
    let rebuilt = nov(&v2_books, &counted, "2026-12-05T00:00:00Z");
    let rerate = price_differences(&final_, &rebuilt, &[], t("2026-12-05T00:00:00Z"));

    // Then every usage line differs by the price change on its quantity, exactly (the IP address
    // downwards), and the zero-rated meter not at all
    let expected_lines: BTreeMap<(String, String), Decimal> =
        exact.iter().filter(|(_, (a, b))| a != b).map(|(k, (a, b))| (k.clone(), b - a)).collect();
    let got: BTreeMap<(String, String), Decimal> =
        rerate.lines.iter().map(|l| ((l.meter_id.clone(), l.stamp_id.0.clone()), l.difference)).collect();
    assert_eq!(got, expected_lines);
    assert!(
        rerate
            .lines
            .iter()
            .filter(|l| l.meter_id == normalize_meter_id(IP))
            .all(|l| l.difference < Decimal::ZERO)
    );
    // And the monthly fee by 10 x 612 / 720 = 8.50, the one-time fee by -20
    let fees: Vec<_> = rerate.fees.iter().map(|f| (f.kind, cents(f.difference))).collect();
    assert_eq!(fees, [(FeeKind::Monthly, d("8.50")), (FeeKind::OneTime, d("-20.00"))]);
    assert_eq!(rerate.fees[0].difference, monthly2 - monthly1);
    // And the tax is November's, corrected, at November's rate now (21 %)
    let corrections = expected_lines.values().map(|v| cents(*v)).sum::<Decimal>() + d("8.50") - d("20.00");
    let tax = rerate.tax.clone().unwrap();
    assert_eq!((tax.final_tax_percent, tax.tax_percent), (d("19"), d("21")));
    assert_eq!((tax.final_taxed, tax.final_tax), (subtotal1, tax1));
    assert_eq!(tax.corrected_taxed, subtotal1 + corrections);
    let tax_difference = cents((subtotal1 + corrections) * d("0.21")) - tax1;
    assert_eq!(tax.difference, tax_difference);
    assert_eq!(rerate.total, corrections + tax_difference);
    let pre_tax: Decimal = expected_lines.values().sum::<Decimal>() + (monthly2 - monthly1) - d("20");
    assert_eq!(rerate.difference, cents(pre_tax));

    // When it is confirmed onto December's draft (December: the monthly fee 60, nothing else)
    let december: Month = "2026-12".parse().unwrap();
    let finals = std::slice::from_ref(&final_);
    let draft = Statements::new(&v2_books, &assignments, settings).build(&request(
        "cust-b",
        december,
        &rows,
        finals,
        &evidence_for(december),
        "2026-12-05T00:00:00Z",
    ));
    assert_eq!((draft.subtotal, draft.tax), (d("60.00"), d("12.60")));
    let corrected = add_rerate(draft.clone(), rerate.clone());

    // Then it carries a correction line per difference, fee corrections naming November over its
    // hours, and tax: December's own 21 % of 60.00 plus November's tax difference
    let added: Vec<_> = corrected.lines[draft.lines.len()..].iter().collect();
    assert_eq!(added.len(), expected_lines.len());
    assert!(added.iter().all(|l| l.corrects == Some(november()) && l.price_correction));
    let fee_corrections: Vec<_> = corrected.fees.iter().filter(|f| f.corrects.is_some()).collect();
    assert_eq!(fee_corrections.len(), 2);
    assert!(
        fee_corrections
            .iter()
            .all(|f| f.corrects == Some(november())
                && (f.from, f.to) == (november().start(), november().end()))
    );
    assert_eq!(corrected.corrections, corrections);
    assert_eq!(corrected.fees_total, d("60.00"));
    assert_eq!(corrected.subtotal, d("60.00") + corrections);
    assert_eq!(corrected.tax, d("12.60") + tax_difference);
    assert_eq!(corrected.total, d("60.00") + corrections + d("12.60") + tax_difference);

    // And a rebuilt draft carries it, confirming again corrects nothing, and the final is unchanged
    assert_eq!(carry_rerates(draft, Some(&corrected)), corrected);
    let again = price_differences(&final_, &rebuilt, &[&corrected.rerates[0]], t("2026-12-06T00:00:00Z"));
    assert!(again.is_empty(), "{again:#?}");
    assert_eq!(final_.to_json(), final_json);

    // And December, once final with November's correction in it, re-rates to nothing: the
    // correction it carries is settled, not reversed
    let december_final =
        Statement { state: StatementState::Final { finalized_at: t("2027-01-03T00:00:00Z") }, ..corrected };
    let december_rebuilt = Statements::new(&v2_books, &assignments, settings).build(&request(
        "cust-b",
        december,
        &rows,
        finals,
        &evidence_for(december),
        "2027-01-05T00:00:00Z",
    ));
    let none = price_differences(&december_final, &december_rebuilt, &[], t("2027-01-05T00:00:00Z"));
    assert!(none.is_empty(), "{none:#?}");
}

#[test]
fn a_new_version_with_the_same_prices_splitting_the_month_is_no_difference() {
    // Given cust-b's November final under version 1
    let rows = simulated_month(0x5c);
    let settings = StatementSettings::default();
    let assignments = flat_assignments();
    let evidence = evidence_for(november());
    let nov = |books: &PriceBooks, now: &str| {
        Statements::new(books, &assignments, settings).build(&request(
            "cust-b",
            november(),
            &rows,
            &[],
            &evidence,
            now,
        ))
    };
    let final_ =
        finalize(nov(&flat_books(false, "", false), "2026-12-03T00:00:00Z"), t("2026-12-03T00:05:00Z"))
            .unwrap();
    // When a version 2 with the same prices splits the month (and its monthly fee) at an odd hour
    let rebuilt = nov(&flat_books(true, "2026-11-16T13:00:00Z", true), "2026-12-05T00:00:00Z");
    assert_eq!(rebuilt.fees.iter().filter(|f| f.kind == FeeKind::Monthly).count(), 2);
    // Then nothing differs: not a line, not a fee, not the tax
    let rerate = price_differences(&final_, &rebuilt, &[], t("2026-12-05T00:00:00Z"));
    assert!(rerate.is_empty(), "{rerate:#?}");
    assert_eq!((rerate.difference, rerate.total), (d("0.00"), Decimal::ZERO));
}

#[test]
fn late_tiered_usage_after_a_confirmed_rerate_is_priced_from_the_quantity_invoiced_not_re_priced() {
    // Given cust-a's November final, and base version 3 from the 20th re-pricing block blob's bands
    let mut rows = simulated_month(0x7e);
    let final_ = build_november(&rows, "2026-12-03T00:00:00Z")
        .into_iter()
        .find(|s| s.billing_subscription_id == "cust-a")
        .map(|s| finalize(s, t("2026-12-03T00:05:00Z")).unwrap())
        .unwrap();
    let mut base = books().get("base").unwrap().clone();
    let mut v3: BookVersion = base.versions.last().unwrap().clone();
    v3.version = 3;
    v3.effective_from = t("2026-11-20T00:00:00Z");
    let band = |up_to: Option<&str>, price: &str| Tier { up_to: up_to.map(d), unit_price: d(price) };
    for m in
        v3.meters.iter_mut().filter(|m| normalize_meter_id(&m.meter_id) == normalize_meter_id(BLOCK_BLOB))
    {
        m.price = Price::Tiered {
            mode: TierMode::Graduated,
            tiers: vec![band(Some("5000"), "0.00012"), band(Some("20000"), "0.00009"), band(None, "0.00006")],
        };
    }
    base.versions.push(v3);
    let others = ["gold", "premium"].map(|id| books().get(id).unwrap().clone());
    let books = PriceBooks::new(std::iter::once(base.validated().unwrap()).chain(others).collect::<Vec<_>>());
    let assignments = crate::rating::assignments();
    let settings = StatementSettings::default();
    let block_blob: Decimal = rows
        .iter()
        .filter(|r| r.billing_subscription_id == "cust-a" && r.row.meter_id == BLOCK_BLOB)
        .map(|r| r.row.quantity)
        .sum();
    assert!(
        block_blob > d("5000") && block_blob < d("10000"),
        "{block_blob}: in the second band, 10000 from the third"
    );

    // And the rerate confirmed onto December, December final
    let counted: Vec<_> = rows.iter().filter(|r| counted_by_final(&final_, r)).cloned().collect();
    let evidence = evidence_for(november());
    let rebuilt = Statements::new(&books, &assignments, settings).build(&request(
        "cust-a",
        november(),
        &counted,
        &[],
        &evidence,
        "2026-12-05T00:00:00Z",
    ));
    let rerate = price_differences(&final_, &rebuilt, &[], t("2026-12-05T00:00:00Z"));
    let re_priced: Decimal = rerate
        .lines
        .iter()
        .filter(|l| l.meter_id == normalize_meter_id(BLOCK_BLOB))
        .map(|l| l.pricing_quantity)
        .sum();
    assert!(
        block_blob + re_priced + d("10000") > d("20000"),
        "counted twice, late usage reaches the third band"
    );
    let december: Month = "2026-12".parse().unwrap();
    let finals = vec![final_.clone()];
    let draft = Statements::new(&books, &assignments, settings).build(&request(
        "cust-a",
        december,
        &rows,
        &finals,
        &evidence_for(december),
        "2027-01-03T00:00:00Z",
    ));
    let december_final = finalize(add_rerate(draft, rerate), t("2027-01-03T00:05:00Z")).unwrap();

    // When 10000 GB of November's last hour are reported in January
    let mut late = usage("stamp-east", "cust-a", BLOCK_BLOB, t("2026-11-30T23:00:00Z"), d("10000"), None);
    late.reported_start = t("2027-01-03T00:00:00Z");
    rows.push(late);
    let january: Month = "2027-01".parse().unwrap();
    let finals = [final_, december_final];
    let january = Statements::new(&books, &assignments, settings).build(&request(
        "cust-a",
        january,
        &rows,
        &finals,
        &evidence_for(december),
        "2027-01-05T00:00:00Z",
    ));

    // Then it continues from November's invoiced quantity, all in the second band at version 3's
    // price: the re-priced quantity December carries is not counted again
    let late_lines: Vec<_> = january.lines.iter().filter(|l| l.corrects == Some(november())).collect();
    assert_eq!(late_lines.len(), 1, "{late_lines:#?}");
    assert_eq!(late_lines[0].exact_amount, d("10000") * d("0.00009"));
}
