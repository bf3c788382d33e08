//! The FOCUS export of a month's statements (with corrections, fees and tax) against the FinOps
//! Foundation's own validator, and the export's sums against the statements.

use crate::rating::{
    IP, VM, books, build_november, d, evidence_for, november, request, simulated_month, t, usage,
};
use azs_core::rating::focus::{
    COLUMNS, FocusIssuer, MeterCatalog, focus_csv, focus_csv_within, split_csv_line,
};
use azs_core::rating::rerate::{add_rerate, counted_by_final, price_differences};
use azs_core::rating::{
    BookVersion, Month, Price, PriceBook, PriceBooks, Statement, StatementSettings, Statements, finalize,
};
use azs_core::usage::normalize_meter_id;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn issuer() -> FocusIssuer {
    FocusIssuer {
        billing_account_id: "operator-contoso".into(),
        billing_account_name: "Contoso Azure Stack Hub".into(),
        name: "Contoso".into(),
    }
}

fn meters() -> MeterCatalog {
    MeterCatalog::from_csv(include_str!("../../../app/data/meters.csv"))
}

/// Base version 3 from 20 November: the IP address down (3.65 -> 3.00), the monthly fee up
/// (50 -> 55), tax 19 % -> 20 %.
fn books_with_v3() -> PriceBooks {
    let mut base = books().get("base").unwrap().clone();
    let mut v3: BookVersion = base.versions.last().unwrap().clone();
    v3.version = 3;
    v3.effective_from = t("2026-11-20T00:00:00Z");
    v3.monthly_fee = Some(d("55"));
    v3.tax_percent = Some(d("20"));
    for m in v3.meters.iter_mut().filter(|m| normalize_meter_id(&m.meter_id) == normalize_meter_id(IP)) {
        m.price = Price::Unit { unit_price: d("3.00") };
    }
    base.versions.push(v3);
    let others = ["gold", "premium"].map(|id| books().get(id).unwrap().clone());
    PriceBooks::new(std::iter::once(base.validated().unwrap()).chain(others).collect::<Vec<PriceBook>>())
}

/// November final for every subscription, and cust-a's December draft carrying late November
/// usage and November re-rated by base version 3 (usage, the monthly fee and tax), confirmed.
pub(crate) fn statements() -> Vec<Statement> {
    let mut rows = simulated_month(0x28);
    let mut finals: Vec<Statement> = build_november(&rows, "2026-12-03T00:00:00Z")
        .into_iter()
        .map(|s| finalize(s, t("2026-12-03T00:05:00Z")).unwrap())
        .collect();
    for (meter, quantity, info) in [(VM, "2", Some(r#"{"ServiceType":"Standard_A1"}"#)), (IP, "1", None)] {
        let mut late = usage(
            "stamp-east",
            "cust-a",
            meter,
            t("2026-11-30T23:00:00Z"),
            d(quantity),
            info.map(Into::into),
        );
        late.reported_start = t("2026-12-04T00:00:00Z");
        rows.push(late);
    }
    rows.push(usage("stamp-east", "cust-a", IP, t("2026-12-01T00:00:00Z"), d("1"), None));
    let (books, assignments) = (books_with_v3(), crate::rating::assignments());
    let mut builder = Statements::new(&books, &assignments, StatementSettings::default());
    let december: Month = "2026-12".parse().unwrap();
    let evidence = evidence_for(november());
    let final_a = finals.iter().find(|s| s.billing_subscription_id == "cust-a").unwrap();
    let counted: Vec<_> = rows.iter().filter(|r| counted_by_final(final_a, r)).cloned().collect();
    let rebuilt =
        builder.build(&request("cust-a", november(), &counted, &[], &evidence, "2026-12-05T00:00:00Z"));
    let rerate = price_differences(final_a, &rebuilt, &[], t("2026-12-05T00:00:00Z"));
    assert!(!rerate.lines.is_empty() && !rerate.fees.is_empty() && rerate.tax.is_some(), "{rerate:#?}");
    let draft =
        builder.build(&request("cust-a", december, &rows, &finals, &evidence, "2026-12-05T00:00:00Z"));
    finals.push(add_rerate(draft, rerate));
    finals
}

fn column(header: &str, name: &str) -> usize {
    header.split(',').position(|c| c == name).unwrap()
}

#[test]
fn the_focus_export_carries_every_charge_category_and_adds_up_to_each_statement_total() {
    let statements = statements();
    let csv = focus_csv(&statements, &issuer(), &meters());
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header = lines.next().unwrap();
    assert_eq!(header, COLUMNS.join(","));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // No field of this month needs quoting but the descriptions: split on the columns before them.
    let (billed, category) = (column(header, "BilledCost"), column(header, "ChargeCategory"));
    assert!(billed < column(header, "ChargeDescription") && category < column(header, "ChargeDescription"));
    for statement in &statements {
        let id = format!("{}/{}", statement.billing_subscription_id, statement.month);
        let sum: Decimal = csv
            .split("\r\n")
            .skip(1)
            .filter(|l| l.contains(&format!(",{id},")))
            .map(|l| Decimal::from_str_exact(l.split(',').nth(billed).unwrap()).unwrap())
            .sum();
        assert_eq!(sum, statement.total, "{id}");
    }
    let categories: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[category]).collect();
    assert_eq!(categories.into_iter().collect::<Vec<_>>(), ["Adjustment", "Purchase", "Tax", "Usage"]);
    assert!(
        csv.contains("Correction") && csv.contains("2026-11"),
        "a correction names the month it corrects"
    );
}

#[test]
fn a_page_of_the_focus_export_holds_the_whole_statements_that_fit_its_budget_and_at_least_one() {
    // Given the month's statements and each one's records as the whole export writes them
    let (statements, issuer, meters) = (statements(), issuer(), meters());
    assert!(statements.len() >= 3, "{} statements", statements.len());
    let header = format!("{}\r\n", COLUMNS.join(","));
    let records: Vec<String> = statements
        .iter()
        .map(|s| focus_csv(std::slice::from_ref(s), &issuer, &meters)[header.len()..].to_owned())
        .collect();

    // When a page's budget fits the header and the first two statements exactly, or one byte less
    let two = header.len() + records[0].len() + records[1].len();
    let (fits, held) = focus_csv_within(&statements, &issuer, &meters, two);
    let (short, held_short) = focus_csv_within(&statements, &issuer, &meters, two - 1);

    // Then the page holds those whole statements and no part of the next one
    assert_eq!((held, fits), (2, format!("{header}{}{}", records[0], records[1])));
    assert_eq!((held_short, short), (1, format!("{header}{}", records[0])));

    // And a budget smaller than any statement still holds the first, and an unbounded one is the export
    assert_eq!(focus_csv_within(&statements, &issuer, &meters, 0).1, 1);
    let all = focus_csv_within(&statements, &issuer, &meters, usize::MAX);
    assert_eq!(all, (focus_csv(&statements, &issuer, &meters), statements.len()));
    assert_eq!(focus_csv_within(&[], &issuer, &meters, 0), (header, 0));
}

/// The export's rows by column name (fields parsed as CSV: descriptions hold commas and quotes).
fn parsed(csv: &str) -> Vec<HashMap<String, String>> {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header = split_csv_line(lines.next().unwrap());
    lines.map(|l| header.iter().cloned().zip(split_csv_line(l)).collect()).collect()
}

#[test]
fn corrections_in_the_focus_export_follow_focus_1_2s_rules_for_corrections() {
    // Given the export of a December carrying late November usage and November re-rated
    let rows = parsed(&focus_csv(&statements(), &issuer(), &meters()));
    let corrections: Vec<_> = rows.iter().filter(|r| !r["x_CorrectsMonth"].is_empty()).collect();

    // Then every correction of an invoiced month is an Adjustment of class Correction, billed in
    // December (the period invoiced), charged in November (the period corrected)
    assert!(corrections.len() >= 5, "{corrections:#?}");
    for r in &corrections {
        assert_eq!((r["ChargeCategory"].as_str(), r["ChargeClass"].as_str()), ("Adjustment", "Correction"));
        assert_eq!(r["x_CorrectsMonth"], "2026-11");
        assert_eq!(r["BillingPeriodStart"], "2026-12-01T00:00:00Z");
        assert!(r["ChargePeriodStart"].as_str() >= "2026-11-01T00:00:00Z", "{r:?}");
        assert!(r["ChargePeriodEnd"].as_str() <= "2026-12-01T00:00:00Z", "{r:?}");
    }
    // And ChargeClass is null on every other row
    assert!(rows.iter().filter(|r| r["x_CorrectsMonth"].is_empty()).all(|r| r["ChargeClass"].is_empty()));
    // And late usage, the re-rated usage (down, for the IP address), the re-rated monthly fee and
    // November's tax (19 % -> 20 %) are each there
    let has = |what: &dyn Fn(&HashMap<String, String>) -> bool| corrections.iter().any(|r| what(r));
    assert!(has(&|r| r["ChargeDescription"].contains("late usage of 2026-11")));
    assert!(has(&|r| r["ChargeDescription"].contains("price correction of 2026-11")
        && r["SkuId"] == normalize_meter_id(IP)
        && r["BilledCost"].starts_with('-')));
    assert!(has(&|r| r["SkuId"] == "monthly-fee" && r["ChargeFrequency"] == "Recurring"));
    assert!(has(&|r| r["ServiceName"] == "Tax"
        && r["ChargeDescription"].contains("19 %")
        && r["ChargeDescription"].contains("20 %")));

    // And every row keeps FOCUS 1.2's conditional rules, which focus-validator 1.0 does not check
    for r in &rows {
        let (category, class) = (r["ChargeCategory"].as_str(), r["ChargeClass"].as_str());
        let regular = matches!(category, "Usage" | "Purchase") && class.is_empty();
        let at = format!("{category}/{class}: {}", r["ChargeDescription"]);
        // ConsumedQuantity and ConsumedUnit: only on usage, together
        assert_eq!(!r["ConsumedQuantity"].is_empty(), category == "Usage", "ConsumedQuantity {at}");
        assert_eq!(r["ConsumedUnit"].is_empty(), r["ConsumedQuantity"].is_empty(), "ConsumedUnit {at}");
        // SkuId, SkuPriceId, PricingCategory, PricingQuantity and the unit prices: null on tax,
        // present on usage and purchases that are not corrections
        for c in [
            "SkuId",
            "SkuPriceId",
            "PricingCategory",
            "PricingQuantity",
            "ListUnitPrice",
            "ContractedUnitPrice",
        ] {
            if category == "Tax" {
                assert!(r[c].is_empty(), "{c} {at}");
            }
            if regular {
                assert!(!r[c].is_empty(), "{c} {at}");
            }
        }
        // PricingUnit with PricingQuantity, SkuPriceDetails only with SkuPriceId, SkuMeter with SkuId
        assert_eq!(r["PricingUnit"].is_empty(), r["PricingQuantity"].is_empty(), "PricingUnit {at}");
        assert!(r["SkuPriceDetails"].is_empty() || !r["SkuPriceId"].is_empty(), "SkuPriceDetails {at}");
        assert_eq!(r["SkuMeter"].is_empty(), r["SkuId"].is_empty(), "SkuMeter {at}");
        // Unit prices are never negative
        for c in ["ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice"] {
            assert!(!r[c].starts_with('-'), "{c} {at}");
        }
        // A purchase is never usage-based; every row has a frequency
        assert!(!(category == "Purchase" && r["ChargeFrequency"] == "Usage-Based"), "{at}");
        assert!(!r["ChargeFrequency"].is_empty(), "{at}");
        // Quantity times unit price is the cost (to the cent), except on corrections, where FOCUS
        // allows a gap
        if class.is_empty() && !r["ContractedUnitPrice"].is_empty() {
            let n = |c: &str| Decimal::from_str_exact(&r[c]).unwrap();
            let cost = n("PricingQuantity") * n("ContractedUnitPrice");
            assert!((cost - n("ContractedCost")).abs() <= d("0.005"), "ContractedCost {at}");
        }
    }
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validate(csv: &str, name: &str) -> Option<std::process::Output> {
    if !root().join(".venv/focus/bin/focus-validator").exists() {
        println!("NOT RUN: FOCUS validation: no .venv/focus (scripts/python-tools.sh focus makes it)");
        return None;
    }
    let file = std::env::temp_dir().join(format!("azs-focus-{}-{name}.csv", std::process::id()));
    std::fs::write(&file, csv).unwrap();
    let output = Command::new(root().join("scripts/focus-validate.sh")).arg(&file).output().unwrap();
    std::fs::remove_file(&file).unwrap();
    Some(output)
}

#[test]
fn the_focus_export_passes_the_finops_foundations_validator() {
    let csv = focus_csv(&statements(), &issuer(), &meters());
    let Some(output) = validate(&csv, "good") else { return };
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The validator is really looking: a currency that is not ISO 4217 fails it.
    let Some(output) = validate(&csv.replace(",USD,", ",XXQ,"), "bad") else { return };
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BillingCurrency_IsCurrencyCode failed"));
}
