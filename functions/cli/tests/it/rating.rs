//! End to end: usage collected from a simulated stamp, mapped, priced by an imported book, becomes a
//! statement whose lines equal the simulator's ground truth priced by hand; a meter the book leaves
//! out and a month not yet over keep it a draft, and `statement finalize` says so.

use crate::common::*;
use azs_core::usage::normalize_meter_id;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};

const PRICE: &str = "0.0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collected_usage_becomes_a_statement_equal_to_the_ground_truth_priced_by_hand() {
    collected_usage_becomes_a_statement_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_collected_usage_becomes_a_statement_equal_to_the_ground_truth_priced_by_hand() {
    collected_usage_becomes_a_statement_on(Backend::fresh_postgres("rating").await).await;
}

async fn collected_usage_becomes_a_statement_on(backend: Backend) {
    // Given a stamp collected for a few hours, every tenant subscription mapped to one customer
    let world = World::start_on(backend, |_| vec![plain(0, 3)], 4, 50).await;
    let out = world.run(&["collect"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = world.truth(0, world.horizon());
    let tenants: BTreeSet<&str> = truth.iter().map(|r| r.subscription_id.as_str()).collect();
    for tenant in &tenants {
        let out = world.run(&["mapping", "set", &world.stamp_ids[0], tenant, "cust-e2e"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // And a book that prices every meter but one, assigned to everyone
    let month = azs_core::rating::Month::of(truth.iter().map(|r| r.usage_start).max().unwrap());
    let meters: BTreeSet<String> = truth.iter().map(|r| normalize_meter_id(&r.meter_id)).collect();
    let unpriced = meters.iter().next().unwrap().clone();
    let priced: Vec<serde_json::Value> = meters
        .iter()
        .filter(|m| **m != unpriced)
        .map(|m| serde_json::json!({"meterId": m, "price": {"kind": "unit", "unitPrice": PRICE}}))
        .collect();
    let book = serde_json::json!({"id": "e2e", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "meters": priced}]});
    std::fs::write(world.path("book.json"), book.to_string()).unwrap();
    let file = world.path("book.json");
    for args in [
        vec!["price-book", "import", file.to_str().unwrap()],
        vec!["price-book", "assign", "e2e", "--from", "2020-01-01T00:00:00Z"],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    // And the books export as CSV and import back unchanged (nothing added)
    let out = world.run(&["price-book", "export", "--csv"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(world.path("books.csv"), stdout(&out)).unwrap();
    let out = world.run(&["price-book", "import", world.path("books.csv").to_str().unwrap()]).await;
    assert!(stdout(&out).contains("e2e: 0 version(s) added"), "{}{}", stdout(&out), stderr(&out));

    // When the month's statement is shown
    let out = world.run(&["statement", "show", "cust-e2e", &month.to_string(), "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let statement: azs_core::rating::Statement = serde_json::from_str(&stdout(&out)).unwrap();

    // Then each meter's line holds the ground truth's quantity of the month, priced and rounded by hand
    let mut expected: BTreeMap<String, (Decimal, u64)> = BTreeMap::new();
    for r in truth.iter().filter(|r| month.contains(r.usage_start)) {
        let e = expected.entry(normalize_meter_id(&r.meter_id)).or_default();
        e.0 += r.quantity.parse::<Decimal>().unwrap();
        e.1 += 1;
    }
    let lines: BTreeMap<String, (Decimal, u64, Decimal)> = statement
        .lines
        .iter()
        .map(|l| (l.meter_id.clone(), (l.consumed_quantity, l.rows, l.amount)))
        .collect();
    assert_eq!(lines.len(), meters.len() - 1);
    for (meter, (quantity, rows, amount)) in &lines {
        let (truth_quantity, truth_rows) = expected[meter];
        assert_eq!((*quantity, *rows), (truth_quantity, truth_rows), "{meter}");
        let by_hand = (truth_quantity * PRICE.parse::<Decimal>().unwrap())
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        assert_eq!(*amount, by_hand, "{meter}");
    }
    assert_eq!(statement.total, lines.values().map(|l| l.2).sum::<Decimal>(), "no fees, no tax in this book");

    // And the meter the book leaves out is listed with its rows, never priced at zero
    assert_eq!(statement.unpriced.len(), 1);
    assert_eq!(
        (statement.unpriced[0].meter_id.as_str(), statement.unpriced[0].rows),
        (unpriced.as_str(), expected[&unpriced].1)
    );

    // And finalising refuses, naming the open month and the unpriced meter
    let out = world.run(&["statement", "finalize", "cust-e2e", &month.to_string()]).await;
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("open until") && why.contains(&unpriced), "{why}");
    let out = world.run(&["statement", "list", "--json"]).await;
    let listed: Vec<azs_core::rating::Statement> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].is_final());

    // And the FOCUS export of the stored statements bills what the statement totals
    let focus = world.path("focus.csv");
    let out = world.run(&["statement", "focus", "--csv", focus.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&focus).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let billed = header.iter().position(|c| *c == "BilledCost").unwrap();
    let sum: Decimal =
        text.lines().skip(1).map(|l| l.split(',').nth(billed).unwrap().parse::<Decimal>().unwrap()).sum();
    assert_eq!(sum, statement.total);
    assert!(text.contains(",Usage,") && text.contains("Azure Stack Hub "), "{text}");
    world.finish().await;
}
