//! End to end: `statement rerate` of a final month. The dry run shows what a newer book version
//! would change (usage, the monthly fee and the month's tax) and leaves the store byte for byte as
//! it was; confirmed, the difference becomes correction lines on the next month's statement and
//! the final one stays as it is.

use crate::common::*;
use azs_core::rating::statement::StatementState;
use azs_core::rating::{Month, Statement};
use azs_core::usage::normalize_meter_id;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};

const PRICE: &str = "0.0123";
const NEW_PRICE: &str = "0.0150";
/// Version 1's and version 2's monthly fee and tax rate.
const FEE: (&str, &str) = ("10", "12");
const TAX: (&str, &str) = ("10", "12");

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
    let version = |n: u32, from: String, price: &str, fee: &str, tax: &str| {
        let priced: Vec<serde_json::Value> = meters
            .iter()
            .map(|m| serde_json::json!({"meterId": m, "price": {"kind": "unit", "unitPrice": price}}))
            .collect();
        serde_json::json!({"version": n, "effectiveFrom": from, "meters": priced, "monthlyFee": fee,
            "taxPercent": tax})
    };
    let v1 = version(1, "2020-01-01T00:00:00Z".into(), PRICE, FEE.0, TAX.0);
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

    // The independent computation: per meter (one stamp, one line each) the truth's quantity
    // times the price; the month's fee in full (assigned since 2020); tax on the sum
    let dec = |s: &str| s.parse::<Decimal>().unwrap();
    let cents = |a: Decimal| a.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let mut per_meter: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in truth.iter().filter(|r| month.contains(r.usage_start)) {
        *per_meter.entry(normalize_meter_id(&r.meter_id)).or_default() += dec(&r.quantity);
    }
    let subtotal = per_meter.values().map(|q| cents(q * dec(PRICE))).sum::<Decimal>() + cents(dec(FEE.0));
    let tax = cents(subtotal * dec(TAX.0) / Decimal::ONE_HUNDRED);
    let final_: Statement = serde_json::from_str(&final_json).unwrap();
    assert_eq!((final_.subtotal, final_.tax), (subtotal, tax), "the final is what version 1 charges");

    // And version 2 re-prices every meter, the monthly fee and the tax from the month's start
    let v2 = version(2, month.start().to_rfc3339(), NEW_PRICE, FEE.1, TAX.1);
    let book = serde_json::json!({"id": "rr", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        version(1, "2020-01-01T00:00:00Z".into(), PRICE, FEE.0, TAX.0), v2]});
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
    // the price change plus the fee change, and the month's tax at its new rate, by hand
    assert_eq!(store_bytes(&world), before, "a dry run writes nothing");
    assert!(stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tax rule: each corrected month is taxed at its own tax rate"),
        "{}",
        stderr(&out)
    );
    let quantity: Decimal = per_meter.values().sum();
    let change = dec(NEW_PRICE) - dec(PRICE);
    let fee_change = dec(FEE.1) - dec(FEE.0);
    let field = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    assert_eq!(field(&what_if["difference"]), cents(quantity * change + fee_change));
    assert_eq!(what_if["lines"].as_array().unwrap().len(), meters.len());
    assert_eq!(what_if["fees"].as_array().unwrap().len(), 1);
    assert_eq!(field(&what_if["fees"][0]["difference"]), fee_change);
    let corrections = per_meter.values().map(|q| cents(q * change)).sum::<Decimal>() + cents(fee_change);
    let tax_difference = cents((subtotal + corrections) * dec(TAX.1) / Decimal::ONE_HUNDRED) - tax;
    assert_eq!(field(&what_if["tax"]["difference"]), tax_difference);
    assert_eq!(field(&what_if["total"]), corrections + tax_difference);

    // When it is confirmed
    let out = world.run(&["statement", "rerate", "cust-rr", &month.to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Then the next month's statement carries it as corrections naming the month, and the final
    // statement is unchanged byte for byte
    assert_eq!(shown(&world, month).await, final_json);
    let next: Statement = serde_json::from_str(&shown(&world, month.next()).await).unwrap();
    let lines: Vec<_> = next.lines.iter().filter(|l| l.corrects == Some(month)).collect();
    assert_eq!(lines.len(), meters.len());
    assert_eq!(lines.iter().map(|l| l.exact_amount).sum::<Decimal>(), quantity * change);
    assert_eq!(next.rerates.len(), 1, "kept through the refresh that showed it");
    let fees: Vec<_> = next.fees.iter().filter(|f| f.corrects == Some(month)).map(|f| f.amount).collect();
    assert_eq!(fees, [cents(fee_change)]);
    // And the next month taxes its own amounts (its fee) at its rate, plus the month's tax difference
    let own = cents(dec(FEE.1));
    assert_eq!((next.fees_total, next.corrections), (own, corrections));
    assert_eq!(next.tax, cents(own * dec(TAX.1) / Decimal::ONE_HUNDRED) + tax_difference);
    assert_eq!(next.total, own + corrections + next.tax);

    // And confirming again corrects nothing more
    let out = world.run(&["statement", "rerate", "cust-rr", &month.to_string()]).await;
    assert!(stderr(&out).contains("nothing to correct"), "{}", stderr(&out));
    world.finish().await;
}
