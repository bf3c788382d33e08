//! End to end: `azs-usage margin` over collected usage, a sales book and the operator's cost book
//! equals the simulator's ground truth priced at both by hand.

use crate::common::*;
use azs_core::usage::normalize_meter_id;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};

const PRICE: &str = "0.0123";
const COST: &str = "0.0071";

fn book(id: &str, price: &str, meters: &BTreeSet<String>) -> serde_json::Value {
    let priced: Vec<serde_json::Value> = meters
        .iter()
        .map(|m| serde_json::json!({"meterId": m, "price": {"kind": "unit", "unitPrice": price}}))
        .collect();
    serde_json::json!({"id": id, "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "meters": priced}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn margin_shows_revenue_cost_and_margin_per_meter_and_stamp_equal_to_the_ground_truth_priced_by_hand() {
    // Given a stamp collected for a few hours, its tenants mapped to one customer
    let world = World::start(|_| vec![plain(0, 3)], 4, 50).await;
    let out = world.run(&["collect"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = world.truth(0, world.horizon());
    let tenants: BTreeSet<&str> = truth.iter().map(|r| r.subscription_id.as_str()).collect();
    for tenant in &tenants {
        let out = world.run(&["mapping", "set", &world.stamp_ids[0], tenant, "cust-margin"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // And a sales book assigned to everyone and the operator's cost book
    let month = azs_core::rating::Month::of(truth.iter().map(|r| r.usage_start).max().unwrap());
    let meters: BTreeSet<String> = truth.iter().map(|r| normalize_meter_id(&r.meter_id)).collect();
    std::fs::write(world.path("sales.json"), book("sales", PRICE, &meters).to_string()).unwrap();
    std::fs::write(world.path("cost.json"), book("operator-cost", COST, &meters).to_string()).unwrap();
    for args in [
        vec!["price-book", "import", world.path("sales.json").to_str().unwrap()],
        vec!["price-book", "import", world.path("cost.json").to_str().unwrap()],
        vec!["price-book", "assign", "sales", "--from", "2020-01-01T00:00:00Z"],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    // When the month's margin is asked for
    let out = world.run(&["margin", "--month", &month.to_string(), "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();

    // Then each meter's revenue, cost and margin are the truth's quantity priced at both, by hand
    let mut quantity: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in truth.iter().filter(|r| month.contains(r.usage_start)) {
        *quantity.entry(normalize_meter_id(&r.meter_id)).or_default() +=
            r.quantity.parse::<Decimal>().unwrap();
    }
    let (price, cost) = (PRICE.parse::<Decimal>().unwrap(), COST.parse::<Decimal>().unwrap());
    let cents = |a: Decimal| a.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let dec = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    let lines = report["lines"].as_array().unwrap();
    assert_eq!(lines.len(), quantity.len());
    for (line, (meter, q)) in lines.iter().zip(&quantity) {
        assert_eq!(line["meterId"], meter.as_str());
        assert_eq!(line["stampId"], world.stamp_ids[0].as_str());
        assert_eq!(dec(&line["revenue"]), cents(q * price), "{meter}");
        assert_eq!(dec(&line["cost"]), cents(q * cost), "{meter}");
        assert_eq!(dec(&line["margin"]), cents(q * (price - cost)), "{meter}");
    }
    let total: Decimal = quantity.values().sum();
    assert_eq!(dec(&report["margin"]), cents(total * (price - cost)));
    assert_eq!(report["currency"]["code"], "EUR");
    assert_eq!(report["uncosted"].as_array().unwrap().len(), 0);

    // And the table names the same total
    let out = world.run(&["margin", "--month", &month.to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&cents(total * (price - cost)).to_string()), "{}", stdout(&out));

    // And the one customer's statement shows the same margin, in JSON and as a table
    let month = month.to_string();
    let out = world.run(&["statement", "show", "cust-margin", &month, "--margin", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let view: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(view["billingSubscriptionId"], "cust-margin");
    assert_eq!((&view["lines"], &view["margin"]), (&report["lines"], &report["margin"]));
    let out = world.run(&["statement", "show", "cust-margin", &month, "--margin"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("margin of cust-margin {month} (draft, EUR)")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(&cents(total * (price - cost)).to_string()), "{}", stdout(&out));

    // And its CSV, read back, adds up to the statement's JSON totals and has no cost column
    let file = world.path("statement.csv");
    let out = world
        .run(&["statement", "show", "cust-margin", &month, "--json", "--csv", file.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let statement: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert!(!header.iter().any(|c| c.to_lowercase().contains("cost") || c.to_lowercase().contains("margin")));
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (record, component, amount) = (column("record"), column("component"), column("amount"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let sum = |kind: &str| -> Decimal {
        records.iter().filter(|r| &r[record] == kind).map(|r| r[amount].parse::<Decimal>().unwrap()).sum()
    };
    let total_of = |name: &str| -> Decimal {
        let r = records.iter().find(|r| &r[record] == "total" && &r[component] == name).unwrap();
        r[amount].parse().unwrap()
    };
    assert_eq!(sum("usage"), dec(&statement["usage"]));
    assert_eq!(sum("usage") + sum("correction") + sum("fee") + sum("tax"), dec(&statement["total"]));
    assert_eq!(
        (total_of("subtotal"), total_of("total")),
        (dec(&statement["subtotal"]), dec(&statement["total"]))
    );
    // (one line per meter, each rounded once: the truth's quantities at the price, by hand)
    assert_eq!(dec(&statement["total"]), quantity.values().map(|q| cents(q * price)).sum::<Decimal>());
}
