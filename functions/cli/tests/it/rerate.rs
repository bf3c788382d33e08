//! End to end: `statement rerate` of a final month. The dry run shows what a newer book version
//! would change and leaves the store byte for byte as it was; confirmed, the difference becomes
//! correction lines on the next month's statement and the final one stays as it is.

use crate::common::*;
use azs_core::rating::statement::StatementState;
use azs_core::rating::{Month, Statement};
use azs_core::usage::normalize_meter_id;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeSet;

const PRICE: &str = "0.0123";
const NEW_PRICE: &str = "0.0150";

fn store_bytes(world: &World) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(world.path(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("azs-usage.db"))
        .filter(|p| !p.to_string_lossy().ends_with("-shm"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// `statement show ... --json` as printed.
async fn shown(world: &World, month: Month) -> String {
    let out = world.run(&["statement", "show", "cust-rr", &month.to_string(), "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerate_dry_run_changes_nothing_and_confirmed_corrects_the_next_statement_never_the_final() {
    // Given collected usage mapped to one customer, priced by book v1, and its month's statement final
    let world = World::start(|_| vec![plain(0, 3)], 4, 50).await;
    let out = world.run(&["collect"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = world.truth(0, world.horizon());
    for tenant in truth.iter().map(|r| r.subscription_id.as_str()).collect::<BTreeSet<_>>() {
        let out = world.run(&["mapping", "set", &world.stamp_ids[0], tenant, "cust-rr"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let month = Month::of(truth.iter().map(|r| r.usage_start).max().unwrap());
    let meters: BTreeSet<String> = truth.iter().map(|r| normalize_meter_id(&r.meter_id)).collect();
    let version = |n: u32, from: String, price: &str| {
        let priced: Vec<serde_json::Value> = meters
            .iter()
            .map(|m| serde_json::json!({"meterId": m, "price": {"kind": "unit", "unitPrice": price}}))
            .collect();
        serde_json::json!({"version": n, "effectiveFrom": from, "meters": priced})
    };
    let v1 = version(1, "2020-01-01T00:00:00Z".into(), PRICE);
    let book =
        serde_json::json!({"id": "rr", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [v1]});
    std::fs::write(world.path("v1.json"), book.to_string()).unwrap();
    for args in [
        vec!["price-book", "import", world.path("v1.json").to_str().unwrap()],
        vec!["price-book", "assign", "rr", "--from", "2020-01-01T00:00:00Z"],
        vec!["statement", "show", "cust-rr", &month.to_string()],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // (made final directly: proving a month complete is the statement tests' subject)
    let rating = azs_store_sqlite::SqliteStore::open(world.database()).unwrap();
    use azs_core::rating::ports::StatementStore;
    let draft = rating.statement("cust-rr", month).await.unwrap().unwrap();
    let final_ = Statement { state: StatementState::Final { finalized_at: chrono::Utc::now() }, ..draft };
    rating.save_statement(&final_).await.unwrap();
    drop(rating);
    let final_json = shown(&world, month).await;

    // And version 2 re-prices every meter from the month's start
    let book = serde_json::json!({"id": "rr", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        version(1, "2020-01-01T00:00:00Z".into(), PRICE), version(2, month.start().to_rfc3339(), NEW_PRICE)]});
    std::fs::write(world.path("v2.json"), book.to_string()).unwrap();
    let out = world.run(&["price-book", "import", world.path("v2.json").to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // When the month is re-rated as a dry run
    let before = store_bytes(&world);
    assert!(!before.is_empty(), "the SQLite file is compared");
    let out = world.run(&["statement", "rerate", "cust-rr", &month.to_string(), "--dry-run", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let what_if: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();

    // Then the store is byte for byte as it was, and the difference is the truth's quantity times
    // the price change, by hand
    assert_eq!(store_bytes(&world), before, "a dry run writes nothing");
    assert!(stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    let quantity: Decimal = truth
        .iter()
        .filter(|r| month.contains(r.usage_start))
        .map(|r| r.quantity.parse::<Decimal>().unwrap())
        .sum();
    let change = NEW_PRICE.parse::<Decimal>().unwrap() - PRICE.parse::<Decimal>().unwrap();
    let expected = (quantity * change).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    assert_eq!(what_if["difference"].as_str().unwrap().parse::<Decimal>().unwrap(), expected);
    assert_eq!(what_if["lines"].as_array().unwrap().len(), meters.len());

    // When it is confirmed
    let out = world.run(&["statement", "rerate", "cust-rr", &month.to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Then the next month's statement carries it as corrections naming the month, and the final
    // statement is unchanged byte for byte
    assert_eq!(shown(&world, month).await, final_json);
    let next: Statement = serde_json::from_str(&shown(&world, month.next()).await).unwrap();
    let corrections: Vec<_> = next.lines.iter().filter(|l| l.corrects == Some(month)).collect();
    assert_eq!(corrections.len(), meters.len());
    assert_eq!(corrections.iter().map(|l| l.exact_amount).sum::<Decimal>(), quantity * change);
    assert_eq!(next.rerates.len(), 1, "kept through the refresh that showed it");

    // And confirming again corrects nothing more
    let out = world.run(&["statement", "rerate", "cust-rr", &month.to_string()]).await;
    assert!(stderr(&out).contains("nothing to correct"), "{}", stderr(&out));
    world.finish().await;
}
