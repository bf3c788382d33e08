//! The FOCUS export of a month's statements (with corrections, fees and tax) against the FinOps
//! Foundation's own validator, and the export's sums against the statements.

use crate::rating::{
    IP, VM, books, build_november, d, evidence_for, november, request, simulated_month, t, usage,
};
use azs_core::rating::focus::{COLUMNS, FocusIssuer, MeterCatalog, focus_csv};
use azs_core::rating::{Month, Statement, StatementSettings, Statements, finalize};
use rust_decimal::Decimal;
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

/// November final for every subscription, and cust-a's December draft carrying late November usage.
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
    let (books, assignments) = (books(), crate::rating::assignments());
    let mut builder = Statements::new(&books, &assignments, StatementSettings::default());
    let december: Month = "2026-12".parse().unwrap();
    let evidence = evidence_for(november());
    let draft =
        builder.build(&request("cust-a", december, &rows, &finals, &evidence, "2026-12-05T00:00:00Z"));
    finals.push(draft);
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
