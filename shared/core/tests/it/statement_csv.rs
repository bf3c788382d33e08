//! The statement as CSV: read back as a spreadsheet reads it, its records add up to the totals of
//! the statement's JSON; text from stamps cannot become a formula; and none of the customer's
//! outputs (JSON, CSV, HTML) carries what the operator pays.

use crate::focus::statements;
use crate::margin::{cost_book, with_cost};
use crate::rating::simulated_month;
use azs_core::rating::Statement;
use azs_core::rating::html::statement_html;
use azs_core::rating::margin::statement_margin;
use azs_core::rating::statement_csv::{COLUMNS, statement_csv};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Each record of the CSV as column -> cell, read with the csv crate.
fn read(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, COLUMNS);
    reader
        .records()
        .map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_owned)).collect())
        .collect()
}

/// A member of the statement's JSON document, as the exact decimal it is written as.
fn json_amount(json: &serde_json::Value, member: &str) -> Decimal {
    json[member].as_str().unwrap_or_else(|| panic!("{member}: {json}")).parse().unwrap()
}

#[test]
fn the_csv_records_add_up_to_the_totals_of_the_statements_json() {
    // Given November's finals and a December draft with corrections, fees and tax
    let all = statements();
    let december = all.iter().find(|s| s.month.to_string() == "2026-12").unwrap();
    assert!(december.lines.iter().any(|l| l.corrects.is_some()) && !december.fees.is_empty());
    for statement in &all {
        // When it is written as CSV and read back
        let records = read(&statement_csv(statement));
        let json = serde_json::to_value(statement).unwrap();
        let sum = |record: &str| -> Decimal {
            records
                .iter()
                .filter(|r| r["record"] == record)
                .map(|r| r["amount"].parse::<Decimal>().unwrap())
                .sum()
        };
        let total = |component: &str| -> Decimal {
            let r = records.iter().find(|r| r["record"] == "total" && r["component"] == component).unwrap();
            r["amount"].parse().unwrap()
        };

        // Then the records of each kind add up to the JSON's totals
        let id = format!("{} {}", statement.billing_subscription_id, statement.month);
        assert_eq!(sum("usage"), json_amount(&json, "usage"), "{id}");
        assert_eq!(sum("correction"), json_amount(&json, "corrections"), "{id}");
        assert_eq!(sum("fee"), json_amount(&json, "feesTotal"), "{id}");
        assert_eq!(sum("tax"), json_amount(&json, "tax"), "{id}");
        assert_eq!(
            sum("usage") + sum("correction") + sum("fee") + sum("tax"),
            json_amount(&json, "total"),
            "{id}"
        );
        for (component, member) in [
            ("usage", "usage"),
            ("corrections", "corrections"),
            ("fees", "feesTotal"),
            ("discount", "discount"),
            ("subtotal", "subtotal"),
            ("total", "total"),
        ] {
            assert_eq!(total(component), json_amount(&json, member), "{id} {component}");
        }

        // And every line is a record, each correction naming the month it corrects (a fee's price
        // correction is a correction record too, with no meter)
        let lines: Vec<_> = records
            .iter()
            .filter(|r| ["usage", "correction"].contains(&r["record"].as_str()) && !r["meterId"].is_empty())
            .collect();
        assert_eq!(lines.len(), statement.lines.len(), "{id}");
        for (record, line) in lines.iter().zip(&statement.lines) {
            assert_eq!(record["meterId"], line.meter_id);
            assert_eq!(record["correctsMonth"], line.corrects.map(|m| m.to_string()).unwrap_or_default());
            assert_eq!(record["pricingQuantity"].parse::<Decimal>().unwrap(), line.pricing_quantity);
        }
        assert!(records.iter().all(|r| r["billingSubscriptionId"] == statement.billing_subscription_id
            && r["month"] == statement.month.to_string()
            && r["state"] == if statement.is_final() { "final" } else { "draft" }));
    }
    let december = read(&statement_csv(december));
    assert!(december.iter().any(|r| r["record"] == "correction" && r["correctsMonth"] == "2026-11"));
    // The December draft carries November re-rated (the monthly fee and tax up): its fee correction
    // and its tax difference at November's rate are records of their own
    assert!(december.iter().any(|r| r["record"] == "correction" && r["component"] == "monthly fee"));
    assert!(december.iter().any(|r| r["record"] == "tax" && r["correctsMonth"] == "2026-11"));
}

#[test]
fn text_from_a_stamp_cannot_become_a_formula_and_negative_amounts_stay_numbers() {
    // Given a statement whose stamp id and location look like formulas, and a negative line
    let mut s = crate::html::one_row_statement("=HYPERLINK(\"https://evil.example\")", "@SUM(A1),x");
    s.lines[0].amount = -s.lines[0].amount;

    // When it is written as CSV and read back
    let records = read(&statement_csv(&s));

    // Then those cells are text to a spreadsheet, and the amount is still the number it was
    assert_eq!(records[0]["stampId"], "'=HYPERLINK(\"https://evil.example\")");
    assert_eq!(records[0]["location"], "'@SUM(A1),x");
    assert_eq!(records[0]["amount"].parse::<Decimal>().unwrap(), s.lines[0].amount);
    assert!(s.lines[0].amount < Decimal::ZERO);
}

#[test]
fn the_customers_json_csv_and_html_carry_no_cost_and_no_margin() {
    // Given a statement and its margin against the operator's cost book
    let rows = simulated_month(0x6d);
    let statement: Statement = crate::rating::build_november(&rows, "2026-12-03T00:00:00Z").remove(0);
    let margin = statement_margin(&statement, &rows, &with_cost(cost_book(true))).unwrap();
    assert!(margin.report.cost > Decimal::ZERO);

    // When it is written for the customer
    let html = statement_html(&statement);
    let page = html.split("</style>").nth(1).expect("the page's style ends");
    for (output, text) in
        [("JSON", statement.to_json()), ("CSV", statement_csv(&statement)), ("HTML", page.to_owned())]
    {
        // Then none of them names a cost or a margin
        let lower = text.to_lowercase();
        assert!(!lower.contains("cost") && !lower.contains("margin"), "{output}: {text}");
    }
}
