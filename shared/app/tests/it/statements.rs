//! The timer's statement step through the job layer, on a real SQLite store: last month's
//! statement becomes final once every stamp is past the month and verified without drift; one whose
//! stamp is behind stays a draft and the log line says which stamp and why; this month's drafts are
//! kept current; a final statement is never rebuilt.

use azs_app::job::{StatementsReport, keep_statements};
use azs_app::rating::StatementService;
use azs_core::SubscriptionMapping;
use azs_core::ports::{MappingStore, StatusStore};
use azs_core::rating::ports::{PriceBookStore, StatementStore};
use azs_core::rating::{Assignment, Month, PriceBook, StatementSettings};
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::window::ReportedWindow;
use azs_store_conformance::fixtures::{TENANT_A, TENANT_B, advance, registered_and_leased, t, vm_usage};
use azs_store_sqlite::SqliteStore;
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const NOW: &str = "2026-12-07T14:00:00Z";

struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    service: StatementService,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("usage.db")).unwrap());
    let service = StatementService {
        store: store.clone(),
        rating: store.clone(),
        settings: StatementSettings::default(),
    };
    World { _dir: dir, store, service }
}

pub(crate) fn window(from: &str, to: &str) -> ReportedWindow {
    ReportedWindow::new(t(from), t(to)).unwrap()
}

pub(crate) async fn map(store: &SqliteStore, stamp: &azs_core::StampId, tenant: &str, customer: &str) {
    let mapping = SubscriptionMapping {
        stamp_id: stamp.clone(),
        external_subscription_id: tenant.to_lowercase(),
        billing_subscription_id: customer.into(),
        updated_at: t("2026-11-01T00:00:00Z"),
    };
    store.set_mapping(&mapping).await.unwrap();
}

/// A book `id` pricing VM hours in EUR: version 1 at 0.50 from 2020, then one per `(hour, price)`.
pub(crate) fn standard(id: &str, later: &[(&str, &str)]) -> PriceBook {
    let version = |n: usize, from: &str, price: &str| {
        serde_json::json!({"version": n, "effectiveFrom": from, "meters": [
            {"meterId": azs_store_conformance::fixtures::BASE_VM_HOURS,
             "price": {"kind": "unit", "unitPrice": price}}]})
    };
    let versions: Vec<serde_json::Value> = std::iter::once(version(1, "2020-01-01T00:00:00Z", "0.50"))
        .chain(later.iter().enumerate().map(|(i, (from, price))| version(i + 2, from, price)))
        .collect();
    let book: PriceBook = serde_json::from_value(serde_json::json!({
        "id": id, "currency": {"code": "EUR", "minorUnits": 2}, "versions": versions
    }))
    .unwrap();
    book.validated().unwrap()
}

/// One book pricing VM hours at 0.50 EUR, the default for everyone since 2020.
pub(crate) async fn priced(store: &SqliteStore) {
    store.add_book_versions(&standard("standard", &[])).await.unwrap();
    let default = Assignment {
        billing_subscription_id: None,
        book_id: "standard".into(),
        effective_from: t("2020-01-01T00:00:00Z"),
    };
    store.set_assignment(&default).await.unwrap();
}

/// `cust-ready` on a stamp collected past November plus the settle delay and verified clean over
/// its last hours; `cust-behind` on a stamp collected only to 20 November. Returns the second stamp.
pub(crate) async fn november(store: &SqliteStore) -> azs_core::StampId {
    let ready = registered_and_leased(store, "ready").await;
    map(store, &ready.id, TENANT_A, "cust-ready").await;
    let rows = [vm_usage(TENANT_A, "vm-1", "2026-11-10T05:00:00Z", "3")];
    advance(store, &ready.id, window("2026-11-01T00:00:00Z", "2026-12-02T00:00:00Z"), &rows).await;
    let verified = LastVerified {
        at: t("2026-12-02T01:00:00Z"),
        range: window("2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z"),
    };
    store.record_verified(&ready.id, &verified, &DriftCounts::default()).await.unwrap();

    let behind = registered_and_leased(store, "behind").await;
    map(store, &behind.id, TENANT_B, "cust-behind").await;
    let rows = [vm_usage(TENANT_B, "vm-2", "2026-11-05T05:00:00Z", "2")];
    advance(store, &behind.id, window("2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z"), &rows).await;
    behind.id
}

fn plenty() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

#[tokio::test]
async fn a_complete_month_becomes_final_and_one_with_a_stamp_behind_stays_a_draft_saying_why() {
    // Given two customers, one whose November is proven complete and one whose stamp is behind
    let w = world();
    priced(&w.store).await;
    let behind = november(&w.store).await;
    let november = Month::new(2026, 11).unwrap();

    // When the timer's statement step runs in December
    let report = keep_statements(&w.service, t(NOW), plenty()).await;

    // Then the complete November is final, at 3 hours x 0.50 EUR, and the log line says so
    let ready = w.store.statement("cust-ready", november).await.unwrap().unwrap();
    assert!(ready.is_final());
    assert_eq!(ready.total, Decimal::new(150, 2));
    assert!(
        report.lines.contains(&"cust-ready 2026-11: final, total 1.50 EUR".to_owned()),
        "{:?}",
        report.lines
    );

    // And the other November is kept as a draft, the log naming the stamp behind and how far it is
    let draft = w.store.statement("cust-behind", november).await.unwrap().unwrap();
    assert!(!draft.is_final());
    assert_eq!(draft.total, Decimal::new(100, 2));
    let why = report.lines.iter().find(|l| l.starts_with("cust-behind 2026-11: draft, not final: ")).unwrap();
    assert!(why.contains(&format!("stamp {behind} is collected to 2026-11-20")), "{why}");

    // And both December drafts are kept, and the counts add up in the summary line
    let december = w.store.statements(Some(Month::new(2026, 12).unwrap())).await.unwrap();
    assert_eq!(december.len(), 2);
    assert!(december.iter().all(|s| !s.is_final()));
    assert_eq!((report.finalised, report.blocked, report.drafts, report.failed), (1, 1, 2, 0));
    assert_eq!(
        report.summary(),
        "statements: 1 finalised, 0 already final, 2 current drafts, 1 blocked, 0 failed"
    );

    // And the next firing leaves the final statement exactly as it was
    let again = keep_statements(&w.service, t("2026-12-07T15:00:00Z"), plenty()).await;
    assert_eq!((again.finalised, again.already_final, again.blocked), (0, 1, 1));
    assert_eq!(w.store.statement("cust-ready", november).await.unwrap().unwrap(), ready);
}

#[tokio::test]
async fn without_a_price_book_no_statement_is_built() {
    // Given collected, mapped usage but no book
    let w = world();
    november(&w.store).await;

    // When the statement step runs
    let report = keep_statements(&w.service, t(NOW), plenty()).await;

    // Then nothing is built, and the log says why
    assert_eq!(report, StatementsReport::default());
    assert_eq!(report.summary(), "no price book imported: no statements built");
    assert!(w.store.statements(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_spent_budget_leaves_every_statement_for_the_next_firing() {
    // Given a book and two customers, and a timer whose budget is spent by collection
    let w = world();
    priced(&w.store).await;
    november(&w.store).await;

    // When the statement step runs past its deadline
    let report = keep_statements(&w.service, t(NOW), Instant::now()).await;

    // Then it starts none of the four statements and says they wait
    assert_eq!(report.deferred, 4);
    assert!(report.summary().ends_with(", 4 left for the next firing (budget)"), "{}", report.summary());
    assert!(w.store.statements(None).await.unwrap().is_empty());
}
