//! The timer's statement pass gives exactly the statements the one-at-a-time path gives
//! (`StatementService::finalize` then `refresh`, per billing subscription), on copies of one real
//! SQLite database: several billing subscriptions on several stamps, a final month, a late row
//! that becomes a correction, a tiered meter, and a stamp behind that blocks finalising.

use crate::statements::{map, window};
use azs_app::job::keep_statements;
use azs_app::rating::StatementService;
use azs_core::ports::{LeaseStore, StampRegistry, StatusStore};
use azs_core::rating::ports::{PriceBookStore, StatementStore};
use azs_core::rating::{Assignment, Component, Month, PriceBook, StatementSettings};
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::usage::UsageRow;
use azs_store_conformance::fixtures::{
    BLOCK_BLOB_CAPACITY, LEASE, RUN, TENANT_A, TENANT_B, advance, quantity, stamp, t, vm_usage,
};
use azs_store_sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const NOW: &str = "2026-12-07T14:00:00Z";

fn service(store: &Arc<SqliteStore>) -> StatementService {
    StatementService { store: store.clone(), rating: store.clone(), settings: StatementSettings::default() }
}

/// VM hours at 0.50 EUR, blob capacity in graduated tiers, a monthly fee; the default since 2020.
async fn book(store: &SqliteStore) {
    let book: PriceBook = serde_json::from_value(serde_json::json!({
        "id": "standard", "currency": {"code": "EUR", "minorUnits": 2},
        "versions": [{"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "monthlyFee": "10",
            "meters": [
                {"meterId": azs_store_conformance::fixtures::BASE_VM_HOURS,
                 "price": {"kind": "unit", "unitPrice": "0.50"}},
                {"meterId": BLOCK_BLOB_CAPACITY, "price": {"kind": "tiered", "mode": "graduated", "tiers": [
                    {"upTo": "4", "unitPrice": "0.10"}, {"unitPrice": "0.05"}]}}]}]
    }))
    .unwrap();
    store.add_book_versions(&book.validated().unwrap()).await.unwrap();
    let default = Assignment {
        billing_subscription_id: None,
        book_id: "standard".into(),
        effective_from: t("2020-01-01T00:00:00Z"),
    };
    store.set_assignment(&default).await.unwrap();
}

fn blob(tenant: &str, usage_hour: &str, qty: &str) -> UsageRow {
    UsageRow {
        meter_id: BLOCK_BLOB_CAPACITY.into(),
        quantity: quantity(qty),
        resource_uri: format!("/subscriptions/{tenant}/resourceGroups/data/providers/Microsoft.Storage/x"),
        additional_info: None,
        ..vm_usage(tenant, "blob", usage_hour, qty)
    }
}

async fn verified(store: &SqliteStore, stamp: &azs_core::StampId, at: &str, from: &str, to: &str) {
    let verify = LastVerified { at: t(at), range: window(from, to) };
    store.record_verified(stamp, &verify, &DriftCounts::default()).await.unwrap();
}

/// Three stamps: `one` and `two` collected and verified past November, `behind` only to 20
/// November. `cust-a` uses tenant A on `one` and `two`, `cust-b` tenant B on `one`, `cust-c` tenant
/// A on `behind`. October is made final (one at a time) in November; then November's usage, a late
/// October row for `cust-a` reported after October's final, and December's first days arrive.
async fn a_database(dir: &Path) {
    let store = Arc::new(SqliteStore::open(dir.join("usage.db")).unwrap());
    book(&store).await;
    let one = registered_and_leased(&store, "one").await;
    let two = registered_and_leased(&store, "two").await;
    let behind = registered_and_leased(&store, "behind").await;
    map(&store, &one.id, TENANT_A, "cust-a").await;
    map(&store, &two.id, TENANT_A, "cust-a").await;
    map(&store, &one.id, TENANT_B, "cust-b").await;
    map(&store, &behind.id, TENANT_A, "cust-c").await;

    // October, collected to 2 November and verified on the two stamps, made final for a and b
    let october = window("2026-10-01T00:00:00Z", "2026-11-02T00:00:00Z");
    for stamp in [&one.id, &two.id] {
        let rows = [
            vm_usage(TENANT_A, "vm-1", "2026-10-10T05:00:00Z", "3"),
            blob(TENANT_A, "2026-10-11T00:00:00Z", "3"),
            vm_usage(TENANT_B, "vm-2", "2026-10-12T05:00:00Z", "2"),
        ];
        advance(store.as_ref(), stamp, october, &rows).await;
        verified(&store, stamp, "2026-11-02T01:00:00Z", "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z").await;
    }
    advance(
        store.as_ref(),
        &behind.id,
        window("2026-10-01T00:00:00Z", "2026-10-20T00:00:00Z"),
        &[vm_usage(TENANT_A, "vm-3", "2026-10-05T05:00:00Z", "1")],
    )
    .await;
    let service = service(&store);
    let october = Month::new(2026, 10).unwrap();
    for sub in ["cust-a", "cust-b", "cust-c"] {
        service.finalize(sub, october, t("2026-11-07T00:00:00Z")).await.unwrap();
    }
    assert!(store.statement("cust-a", october).await.unwrap().unwrap().is_final());

    // November with a late October row on `one`, then December's first days
    let november = window("2026-11-02T00:00:00Z", "2026-12-02T00:00:00Z");
    for stamp in [&one.id, &two.id] {
        let mut rows = vec![
            vm_usage(TENANT_A, "vm-1", "2026-11-10T05:00:00Z", "4"),
            blob(TENANT_A, "2026-11-11T00:00:00Z", "2"),
            blob(TENANT_A, "2026-11-12T00:00:00Z", "5"),
            vm_usage(TENANT_B, "vm-2", "2026-11-12T05:00:00Z", "6"),
        ];
        if *stamp == one.id {
            rows.push(vm_usage(TENANT_A, "vm-9", "2026-10-30T07:00:00Z", "7"));
        }
        advance(store.as_ref(), stamp, november, &rows).await;
        verified(&store, stamp, "2026-12-02T01:00:00Z", "2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z").await;
        let rows = [vm_usage(TENANT_A, "vm-1", "2026-12-03T05:00:00Z", "1")];
        advance(store.as_ref(), stamp, window("2026-12-02T00:00:00Z", "2026-12-07T00:00:00Z"), &rows).await;
    }
    let rows = [vm_usage(TENANT_A, "vm-3", "2026-11-05T05:00:00Z", "2")];
    advance(store.as_ref(), &behind.id, window("2026-10-20T00:00:00Z", "2026-11-20T00:00:00Z"), &rows).await;
}

/// A stamp collecting from 1 October, leased to the fixtures' run.
async fn registered_and_leased(store: &SqliteStore, name: &str) -> azs_core::Stamp {
    let s = azs_core::Stamp { collect_from: t("2026-10-01T00:00:00Z"), ..stamp(name) };
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, LEASE).await.unwrap());
    s
}

/// A copy of the database file (the store that wrote it is closed, so it is whole).
fn copy(from: &Path, to: &Path) -> Arc<SqliteStore> {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    Arc::new(SqliteStore::open(to.join("usage.db")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pass_gives_exactly_the_statements_built_one_at_a_time() {
    // Given one database, copied twice
    let (given, batch_dir, single_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a_database(given.path()).await;
    let batch = copy(given.path(), batch_dir.path());
    let single = copy(given.path(), single_dir.path());
    let (november, december) = (Month::new(2026, 11).unwrap(), Month::new(2026, 12).unwrap());

    // When the timer's pass keeps one copy's statements
    let report = keep_statements(&service(&batch), t(NOW), Instant::now() + Duration::from_secs(600)).await;

    // And the other copy's are kept one at a time, as the CLI and the API do
    let one_at_a_time = service(&single);
    for sub in ["cust-a", "cust-b", "cust-c"] {
        one_at_a_time.finalize(sub, november, t(NOW)).await.unwrap();
        one_at_a_time.refresh(sub, december, t(NOW)).await.unwrap();
    }

    // Then every statement is the same, field for field
    let kept = batch.statements(None).await.unwrap();
    assert_eq!(kept, single.statements(None).await.unwrap());
    assert_eq!(kept.len(), 9, "three subscriptions, October to December");

    // And the case covered what it claims: a's November is final with October's late row as a
    // correction and tiered lines; c's November is blocked by its stamp behind
    let a = batch.statement("cust-a", november).await.unwrap().unwrap();
    assert!(a.is_final());
    let correction = a.lines.iter().find(|l| l.corrects == Some(Month::new(2026, 10).unwrap())).unwrap();
    assert_eq!(correction.consumed_quantity, quantity("7"));
    let blob_meter = BLOCK_BLOB_CAPACITY.replace('-', "");
    assert!(
        a.lines.iter().any(|l| l.meter_id == blob_meter && matches!(l.component, Component::Tier { .. }))
    );
    assert!(!batch.statement("cust-c", november).await.unwrap().unwrap().is_final());
    assert_eq!(
        (
            report.finalised,
            report.already_final,
            report.blocked,
            report.drafts,
            report.failed,
            report.deferred
        ),
        (2, 0, 1, 3, 0, 0)
    );
}
